//! `NEEDLE_SIMD` forces the kernel set of a whole process, f32 and int8 alike, and an unknown
//! value falls back to the best set with a warning: each case runs this test binary again as a
//! child process (the set is chosen once per process) with the variable set, and the child
//! reports the sets it uses.

use std::process::Command;

use needle_core::__private::{Simd, int8_kernels_available, kernel_names, runnable_simd};

/// Set in the child: the f32 set the parent expects; the child checks it after a search.
const EXPECT: &str = "NEEDLE_SIMD_SWITCH_EXPECT";

/// Runs only as a child (`EXPECT` set): searches a small collection, so the kernels are looked
/// up the way a database looks them up, then checks which sets were chosen.
#[test]
fn child_reports_its_kernel_sets() {
    let Ok(expected) = std::env::var(EXPECT) else {
        return;
    };
    let db = needle_core::Database::in_memory();
    db.create_collection("c", 3).expect("create");
    db.insert("c", "a", vec![1.0, 0.0, 0.0], None)
        .expect("insert");
    let hits = db.search("c", &[1.0, 0.1, 0.0], 1).expect("search");
    assert_eq!(hits[0].id, "a");
    let (f32_set, int8_set) = kernel_names();
    println!("kernel sets: f32 {f32_set}, int8 {int8_set}");
    assert_eq!(f32_set, expected);
    let int8_simd = int8_kernels_available()
        .into_iter()
        .find(|k| k.name == int8_set)
        .map(|k| k.simd)
        .expect("the int8 set in use is one this CPU runs");
    // The int8 set belongs to the f32 one (an AVX-512F CPU without AVX-512BW would use AVX2's).
    assert!(
        int8_simd.name() == f32_set || (f32_set == "avx512" && int8_simd == Simd::Avx2),
        "int8 {int8_set} with f32 {f32_set}"
    );
}

/// Runs the child with `NEEDLE_SIMD` = `value` (`None`: unset), expecting the f32 set `expected`;
/// returns the child's stderr.
fn run_child(value: Option<&str>, expected: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "child_reports_its_kernel_sets",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(EXPECT, expected)
    .env_remove("NEEDLE_SIMD");
    if let Some(value) = value {
        cmd.env("NEEDLE_SIMD", value);
    }
    let out = cmd.output().expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "NEEDLE_SIMD={value:?}, expected {expected}:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("kernel sets: f32 {expected},")),
        "{stdout}"
    );
    stderr
}

#[test]
fn needle_simd_forces_each_set_and_falls_back_on_an_unknown_value() {
    if std::env::var_os(EXPECT).is_some() {
        return;
    }
    let sets = runnable_simd();
    let best = sets[0].name();
    let stderr = run_child(None, best);
    assert!(
        !stderr.contains("NEEDLE_SIMD"),
        "no warning when unset: {stderr}"
    );
    for set in &sets {
        let stderr = run_child(Some(set.name()), set.name());
        assert!(!stderr.contains("warning"), "{set:?}: {stderr}");
    }
    let stderr = run_child(Some("avx9000"), best);
    assert!(
        stderr.contains("NEEDLE_SIMD=avx9000: unknown")
            && stderr.contains(&format!("using {best}")),
        "{stderr}"
    );
    // A known set this CPU cannot run (NEON on x86_64, AVX2 on aarch64) falls back the same way.
    let foreign = if cfg!(target_arch = "x86_64") {
        Simd::Neon
    } else {
        Simd::Avx2
    };
    let stderr = run_child(Some(foreign.name()), best);
    assert!(
        stderr.contains(&format!(
            "NEEDLE_SIMD={}: this CPU cannot run",
            foreign.name()
        )),
        "{stderr}"
    );
}
