//! A minimal `log` logger for `needle serve`: warnings and errors (the TCP transport's refused
//! handshakes and closed connections, with their reason) as one line each on stderr.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr {
    node: u64,
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "node {}: {} {}: {}",
                self.node,
                record.level().as_str().to_lowercase(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once per process (later calls do nothing).
pub fn install(node: u64) {
    // One logger for the life of the process, so leaking it is the intended lifetime.
    let logger: &'static Stderr = Box::leak(Box::new(Stderr { node }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}
