//! Needle's test kit: what every random or clustered test of the workspace shares. Dev-only
//! (`publish = false`); no crate of the workspace depends on it outside `[dev-dependencies]`.
//!
//! - [`seed`]: the one seed helper. Every random test takes its seed from `NEEDLE_SEED` (the one
//!   variable the repository uses for seeds) or draws a fresh one, and prints it with the way to
//!   replay it. Other `NEEDLE_*` variables are only counts and sizes ([`knob`]).
//! - `cluster` (feature `cluster`): the one in-process cluster, `ReplicatedDatabase` nodes on a
//!   `MemNetwork` with start, crash, restart, wait-for-leader and wait-for-convergence.
//!
//! The process cluster (`needle serve` nodes) lives in needle-cli's library
//! (`needle_cli::process_cluster`), because `needle demo --cluster` runs it too and this kit
//! must never be a runtime dependency.

#[cfg(feature = "cluster")]
pub mod cluster;

use std::hash::{BuildHasher, Hasher};

/// The variable that replays a random test: `NEEDLE_SEED=<u64> cargo test ... <test>`.
pub const SEED_VAR: &str = "NEEDLE_SEED";

/// `NEEDLE_SEED` if set. A value that is not a decimal `u64` panics (a typo must not silently
/// run another seed than the one asked for).
pub fn env_seed() -> Option<u64> {
    let value = std::env::var(SEED_VAR).ok()?;
    match value.trim().parse() {
        Ok(seed) => Some(seed),
        Err(_) => panic!("{SEED_VAR}={value:?} is not a decimal u64"),
    }
}

/// The seed of random test `test`: `NEEDLE_SEED` if set, else a fresh random one. Printed either
/// way (on stderr, which `cargo test` shows for a failing test) with the command that replays it.
pub fn seed(test: &str) -> u64 {
    let seed = env_seed().unwrap_or_else(fresh);
    announce(test, seed);
    seed
}

/// As [`seed`], but a test that is deterministic by default runs `default` unless
/// `NEEDLE_SEED` is set.
pub fn seed_or(test: &str, default: u64) -> u64 {
    let seed = env_seed().unwrap_or(default);
    announce(test, seed);
    seed
}

fn announce(test: &str, seed: u64) {
    eprintln!("{test}: seed {seed} (replay: {SEED_VAR}={seed} cargo test {test})");
}

/// A fresh seed from the process's random hasher keys (the OS random source) and the clock.
fn fresh() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish()
}

/// A count or size knob: `name` parsed as a `u64`, else `default`. Only for how much a test does
/// (cases, seeds, megabytes, milliseconds), never for a seed. A value that does not parse panics.
pub fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a decimal u64")),
        Err(_) => default,
    }
}

/// Whether the flag `name` is set (to anything): for the few on/off test switches
/// (`NEEDLE_SLOW`, `NEEDLE_TRACE`).
pub fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Output};

    #[test]
    fn fresh_seeds_differ() {
        assert_ne!(super::fresh(), super::fresh());
    }

    /// Runs `child_prints_its_seed` in a child process of this test binary with `NEEDLE_SEED`
    /// set to `value`.
    fn child(value: &str) -> Output {
        Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--ignored", "--exact", "tests::child_prints_its_seed"])
            .args(["--nocapture", "--test-threads", "1"])
            .env(super::SEED_VAR, value)
            .output()
            .expect("run the child")
    }

    /// What the parent tests below run (ignored on its own).
    #[test]
    #[ignore = "run by the tests below, in a child process with NEEDLE_SEED set"]
    fn child_prints_its_seed() {
        println!("child got {}", super::seed("child"));
    }

    #[test]
    fn a_seed_given_in_needle_seed_is_the_one_used_and_printed_with_its_replay() {
        let out = child("12345");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("child got 12345"), "{stdout}");
        assert!(
            stderr.contains("child: seed 12345 (replay: NEEDLE_SEED=12345 cargo test child)"),
            "{stderr}"
        );
    }

    #[test]
    fn a_needle_seed_that_is_not_a_number_fails_the_test_instead_of_running_another_seed() {
        let out = child("12x45");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stdout}");
        assert!(
            stdout.contains("is not a decimal u64") || stderr.contains("is not a decimal u64"),
            "{stdout}\n{stderr}"
        );
    }
}
