//! The CLI as a client of a cluster: `needle search|get|insert|delete|count --http ADDR …` send
//! the command to a node's HTTP API instead of opening a file, and print what the local command
//! prints.
//!
//! Reads go to the given node (linearizable by default, so any node answers them). Writes carry
//! one `Idempotency-Key` for all their attempts: a `not_leader` answer is followed to the leader
//! it names; a timeout, a lost connection or an election (`504 timeout`, `503 no_leader`,
//! `leadership_lost`, `proposal_dropped`, `forward_failed`) is retried with the same key, so a
//! write that may have been applied is applied once, and its one outcome is printed. Retries
//! stop after [`RETRY_FOR`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use serde_json::Value;

use crate::cli::RemoteArgs;
use crate::client::{Client, Response};
use crate::error::{CliError, Result};

/// How long a command keeps retrying a write (or a read during an election).
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// What a path segment may hold unencoded: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path segment (a collection name, a record id), percent-encoded.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A cluster reached through one node's HTTP API.
#[derive(Debug)]
pub struct Remote {
    seed: SocketAddr,
    token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Codes after which the same request may be sent again.
fn retryable(r: &Response) -> bool {
    matches!(
        r.error_code(),
        Some(
            "timeout"
                | "no_leader"
                | "leadership_lost"
                | "proposal_dropped"
                | "forward_failed"
                | "shutting_down"
                | "stale_read"
        )
    )
}

/// A reading command's target and positional values: a cluster (`--http`, no FILE) or a file.
/// `--read-only` is refused with `--http`; `rest` and `names` are as for
/// [`positionals`](crate::cli::positionals).
pub type Target = (Option<Remote>, Option<PathBuf>, Vec<String>);

/// Resolves a reading command's `--http`/FILE, `--read-only` and positionals in one place.
pub fn reading_target(
    remote: &RemoteArgs,
    read_only: bool,
    file: &std::path::Path,
    rest: &[Option<&str>],
    names: &[&str],
) -> Result<Target> {
    let remote = Remote::from_args(remote)?;
    if remote.is_some() && read_only {
        return Err(CliError::Usage(
            "--read-only is for a file, not with --http".into(),
        ));
    }
    let (file, values) = crate::cli::positionals(remote.is_some(), file, rest, names)
        .map_err(CliError::CommandLine)?;
    Ok((remote, file, values))
}

impl Remote {
    /// The `--http`, `--token-file` and `--tls-ca` flags; `None` without `--http`.
    pub fn from_args(args: &RemoteArgs) -> Result<Option<Remote>> {
        let Some(seed) = args.http else {
            for (flag, given) in [
                ("--token-file", args.token_file.is_some()),
                ("--tls-ca", args.tls_ca.is_some()),
            ] {
                if given {
                    return Err(CliError::Usage(format!("{flag} needs --http")));
                }
            }
            return Ok(None);
        };
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| CliError::io(format!("reading {}", p.display()), e))
        };
        let token = match &args.token_file {
            Some(p) => Some(String::from_utf8_lossy(&read(p)?).trim().to_string()),
            None => None,
        };
        let tls = match &args.tls_ca {
            Some(p) => Some(
                crate::client::tls_client_config(&read(p)?)
                    .map_err(|e| CliError::Usage(format!("--tls-ca {}: {e}", p.display())))?,
            ),
            None => None,
        };
        Ok(Some(Remote { seed, token, tls }))
    }

    fn client(&self, addr: SocketAddr) -> Client {
        Client::new(addr)
            .with_token(self.token.clone())
            .with_tls(self.tls.clone())
            .with_timeout(Duration::from_secs(15))
    }

    /// A read from the given node, retried while there is no leader; a success or an error.
    pub fn read(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let deadline = Instant::now() + RETRY_FOR;
        let body = body.map(Value::to_string);
        loop {
            let answer =
                self.client(self.seed)
                    .request(method, path, body.as_deref().map(str::as_bytes));
            match answer {
                Ok(r) if !retryable(&r) || Instant::now() >= deadline => return Ok(r),
                Ok(_) => {}
                Err(e) => {
                    return Err(CliError::Http(format!(
                        "cannot reach http://{}: {e}",
                        self.seed
                    )));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A write: sent with one new `Idempotency-Key` until it has an outcome — following
    /// `not_leader` to the leader, retrying timeouts, lost connections and elections with the
    /// same key. Returns the outcome (a success or an error that is the write's answer).
    pub fn write(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let key = format!("needle-cli-{:032x}", rand::rng().random::<u128>());
        self.write_with_key(method, path, body, &key)
    }

    /// As [`Remote::write`], with the caller's key.
    pub fn write_with_key(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: &str,
    ) -> Result<Response> {
        let deadline = Instant::now() + RETRY_FOR;
        let body = body.map(Value::to_string);
        let mut target = self.seed;
        let mut last = String::new();
        while Instant::now() < deadline {
            let answer = self.client(target).request_with_headers(
                method,
                path,
                body.as_deref().map(str::as_bytes),
                &[("Idempotency-Key", key)],
            );
            match answer {
                Ok(r) if r.error_code() == Some("not_leader") => match r.leader_http() {
                    Some(leader) if leader != target => {
                        target = leader;
                        continue;
                    }
                    _ => last = format!("{}: {}", target, message(&r)),
                },
                Ok(r) if retryable(&r) => last = format!("{}: {}", target, message(&r)),
                Ok(r) => return Ok(r),
                Err(e) => {
                    last = format!("cannot reach http://{target}: {e}");
                    // The leader we were sent to is gone: ask the node we were given again.
                    target = self.seed;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(CliError::Http(format!(
            "the write had no outcome within {}s (it may have been applied; the last answer: {last})",
            RETRY_FOR.as_secs()
        )))
    }
}

/// The error message of an error answer.
pub fn message(r: &Response) -> String {
    r.body["error"]["message"]
        .as_str()
        .map_or_else(|| format!("HTTP {}: {}", r.status, r.body), str::to_string)
}

/// A success's body, or the answer's error as a `CliError`.
pub fn success(r: Response) -> Result<Value> {
    if r.is_success() {
        Ok(r.body)
    } else {
        Err(CliError::Http(message(&r)))
    }
}
