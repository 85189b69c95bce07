//! Shared helpers for the CLI's process tests: run the `needle` binary, write small input files,
//! and fingerprint a database's files to prove that a failed command changed nothing.

#![allow(dead_code)] // each test file uses a different subset

pub mod certs;
pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The result of one `needle` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts failure with exit code `code`, one line on stderr containing every `needle`;
    /// returns stderr.
    #[track_caller]
    pub fn fails(&self, code: i32, needles: &[&str]) -> &str {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "the error should be one line: {:?}",
            self.stderr
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}: {:?}",
                self.stderr
            );
        }
        &self.stderr
    }

    /// Parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `needle` with `args`.
pub fn needle<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out: Output = Command::new(env!("CARGO_BIN_EXE_needle"))
        .args(args)
        .output()
        .expect("the needle binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `.fvecs` rows.
pub fn write_fvecs(path: &Path, rows: &[Vec<f32>]) {
    let mut bytes = Vec::new();
    for r in rows {
        bytes.extend((r.len() as i32).to_le_bytes());
        for x in r {
            bytes.extend(x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).expect("write fvecs");
}

/// Writes a 2-D `.npy` array with the given dtype descriptor and raw data bytes.
pub fn write_npy_raw(path: &Path, descr: &str, shape: &str, data: &[u8]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).expect("write npy");
}

/// Writes rows as a float32 `.npy` (what `np.save(path, arr.astype(np.float32))` writes).
pub fn write_npy(path: &Path, rows: &[Vec<f32>]) {
    let data: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write_npy_raw(
        path,
        "<f4",
        &format!("({}, {})", rows.len(), rows[0].len()),
        &data,
    );
}

/// Deterministic pseudo-random vectors in [-1, 1) (a splitmix64 hash of row and column):
/// distinct directions, never all zero.
pub fn vectors(n: usize, dim: usize) -> Vec<Vec<f32>> {
    let hash = |x: u64| {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|i| {
            (0..dim)
                .map(|j| {
                    let h = hash((i as u64) << 20 | j as u64);
                    (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                })
                .collect()
        })
        .collect()
}

/// JSON Lines for `vectors(n, dim)` with ids `r{i}` and metadata `{"group": i % 3, "i": i}`.
pub fn write_jsonl(path: &Path, n: usize, dim: usize) {
    let text: String = vectors(n, dim)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::json!({"id": format!("r{i}"), "vector": v, "metadata": {"group": i % 3, "i": i}})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, text).expect("write jsonl");
}

/// The bytes of a database's checkpoint and log (missing files as `None`).
pub fn fingerprint(db: &Path) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    (
        std::fs::read(db).ok(),
        std::fs::read(PathBuf::from(wal)).ok(),
    )
}

/// The workspace's `testdata/` folder.
pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}
