//! The process's resident memory, from `/proc/self/status` (Linux only).

use crate::error::{BenchError, Result};

/// Resident set size now (`VmRSS`), in bytes.
pub fn rss_bytes() -> Result<u64> {
    status_kib("VmRSS").map(|kib| kib * 1024)
}

/// Peak resident set size so far (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Result<u64> {
    status_kib("VmHWM").map(|kib| kib * 1024)
}

/// Resident memory now, split as the kernel counts it: anonymous (`RssAnon`: heap and anonymous
/// maps, what only swap can reclaim) and file-backed (`RssFile`: pages of mapped files, which the
/// kernel can drop and read again), in bytes.
pub fn rss_split_bytes() -> Result<(u64, u64)> {
    Ok((status_kib("RssAnon")? * 1024, status_kib("RssFile")? * 1024))
}

fn status_kib(field: &str) -> Result<u64> {
    let path = "/proc/self/status";
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        what: format!("reading {path}"),
        source,
    })?;
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .ok_or_else(|| BenchError::Invalid(format!("{path}: no {field} line in kB")))
}

/// CPU time this process's threads have run so far, in seconds: the sum over
/// `/proc/self/task/*/schedstat` (nanoseconds on a CPU, per live thread). Threads that have
/// exited are not counted, so take both readings while the same threads are alive (a rayon
/// pool lives as long as its `ThreadPool`).
pub fn cpu_seconds() -> Result<f64> {
    let dir = "/proc/self/task";
    let io = |source| BenchError::Io {
        what: format!("reading {dir}"),
        source,
    };
    let mut ns: u64 = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path().join("schedstat");
        // A thread may exit between the listing and the read: it then counts nothing.
        if let Ok(text) = std::fs::read_to_string(&path) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_grows_when_memory_is_touched() {
        let before = rss_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        let after = rss_bytes().unwrap();
        assert!(after >= before + (32 << 20), "{before} -> {after}");
        assert!(peak_rss_bytes().unwrap() >= after);
        drop(std::hint::black_box(block));
    }

    #[test]
    fn cpu_seconds_grow_while_this_thread_works() {
        let before = cpu_seconds().unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_seconds().unwrap() <= before && start.elapsed().as_secs() < 10 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(cpu_seconds().unwrap() > before);
    }
}
