//! `needle`: see `needle --help` and `docs/cli.md`.

fn main() -> std::process::ExitCode {
    needle_cli::run()
}
