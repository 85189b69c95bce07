//! # needle-cli
//!
//! The `needle` command of Needle, an embedded vector database in one `.needle` file: local work
//! on a file, the demos, and running one node of a replicated cluster with an HTTP JSON API.
//! The binary is `src/main.rs`, which calls [`run`]; the library also offers [`client`], a
//! small blocking client for a node's HTTP API (used by `needle cluster` and the tests).
//!
//! Modules: `cli` (the flags, parsed by clap), `commands` (one module per local command),
//! `demo` (the local tour) and `demo_cluster` (the cluster tour), `serve` (a cluster node and its
//! HTTP API), `cluster` (`needle cluster status`), `client`, `input` (fvecs, npy and JSON Lines
//! readers), `output` (tables and JSON), `progress` (progress bars), `error` (the error type).

mod cli;
pub mod client;
mod cluster;
mod commands;
mod demo;
mod demo_cluster;
mod error;
mod input;
mod output;
pub mod process_cluster;
mod progress;
mod remote;
mod serve;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::{Cli, Command};
use crate::commands::{
    backup, check, compact, create, delete, export, get, import, info, insert, repair, search, sets,
};

/// Parses the command line, runs the command, prints any error as one line on stderr, and
/// returns the exit code: 0 success, 1 failure, 2 a malformed command line.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let json = cli.json;
    let result = match &cli.command {
        Command::Demo(a) if a.cluster => demo_cluster::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Cluster(a) => cluster::run(a, json),
        Command::Backup(a) => backup::run(a, json),
        Command::Create(a) => create::run(a, json),
        Command::Import(a) => import::run(a, json),
        Command::Search(a) => search::run(a, json),
        Command::Get(a) => get::run(a, json),
        Command::Insert(a) => insert::run(a, json),
        Command::Delete(a) => delete::run(a, json),
        Command::Count(a) => sets::count(a, json),
        Command::Scroll(a) => sets::scroll(a, json),
        Command::Index(c) => sets::index(c, json),
        Command::Info(a) => info::run(a, json),
        Command::Compact(a) => compact::run(a, json),
        Command::Check(a) => check::run(a, json),
        Command::Repair(a) => repair::run(a, json),
        Command::Export(a) => export::run(a, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e @ error::CliError::CommandLine(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A bad command line: clap's message folded into one line on stderr, exit code 2. Help and
/// version requests print as clap prints them.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:") && !l.starts_with("For more"))
        .collect();
    eprintln!("{} (try --help)", message.join(" "));
    ExitCode::from(2)
}
