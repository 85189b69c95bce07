//! `needle cluster status --http ADDR`: asks one node for the cluster's members and their HTTP
//! addresses, then asks every member for its own status, and shows role, term, commit and
//! applied index, and lag behind the leader's commit index. An unreachable node is a row that
//! says so, not an error; an unreachable first node is.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{ClusterArgs, ClusterCommand};
use crate::client::Client;
use crate::error::{CliError, Result};
use crate::output::{self, Table};

pub fn run(args: &ClusterArgs, json: bool) -> Result<()> {
    match &args.command {
        ClusterCommand::Status {
            http,
            token_file,
            tls_ca,
        } => {
            let token = match token_file {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| CliError::io(format!("reading {}", p.display()), e))?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let tls = match tls_ca {
                Some(p) => Some(
                    crate::client::tls_client_config(
                        &std::fs::read(p)
                            .map_err(|e| CliError::io(format!("reading {}", p.display()), e))?,
                    )
                    .map_err(|e| CliError::Usage(format!("--tls-ca {}: {e}", p.display())))?,
                ),
                None => None,
            };
            status(*http, token, tls, json)
        }
    }
}

fn fetch(client: &Client) -> Result<Value> {
    let r = client
        .get("/v1/status")
        .map_err(|e| CliError::Http(format!("cannot reach http://{}: {e}", client.addr())))?;
    if !r.is_success() {
        return Err(CliError::Http(format!(
            "http://{} answered {}: {}",
            client.addr(),
            r.status,
            r.body["error"]["message"]
                .as_str()
                .unwrap_or("(no message)")
        )));
    }
    Ok(r.body)
}

/// A client for `addr` with the token and CA files of the command line.
pub fn client_for(
    addr: SocketAddr,
    token_file: Option<&std::path::Path>,
    tls_ca: Option<&std::path::Path>,
) -> Result<Client> {
    let token = match token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| CliError::io(format!("reading {}", p.display()), e))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let tls = match tls_ca {
        Some(p) => Some(
            crate::client::tls_client_config(
                &std::fs::read(p)
                    .map_err(|e| CliError::io(format!("reading {}", p.display()), e))?,
            )
            .map_err(|e| CliError::Usage(format!("--tls-ca {}: {e}", p.display())))?,
        ),
        None => None,
    };
    Ok(Client::new(addr).with_token(token).with_tls(tls))
}

fn status(
    http: SocketAddr,
    token: Option<String>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    json: bool,
) -> Result<()> {
    let client = |addr| {
        Client::new(addr)
            .with_token(token.clone())
            .with_tls(tls.clone())
            .with_timeout(Duration::from_secs(3))
    };
    let first = fetch(&client(http))?;
    let mut members: Vec<u64> = ids(&first["voters"]);
    members.extend(ids(&first["learners"]));
    members.sort_unstable();
    let addrs = &first["http_peers"];
    let mut rows = Vec::new();
    for id in &members {
        let addr = addrs[id.to_string()].as_str().and_then(|a| a.parse().ok());
        let answer = match addr {
            Some(a) => fetch(&client(a)).map_err(|e| e.to_string()),
            None => Err("HTTP address unknown to the node asked".to_string()),
        };
        rows.push((*id, addr, answer));
    }
    let leader_commit = rows
        .iter()
        .filter_map(|(_, _, a)| a.as_ref().ok())
        .find(|s| s["role"] == "leader")
        .and_then(|s| s["commit"].as_u64());

    if json {
        let nodes: Vec<Value> = rows
            .iter()
            .map(|(id, addr, a)| match a {
                Ok(s) => json!({
                    "id": id,
                    "http": addr.map(|a| a.to_string()),
                    "reachable": true,
                    "role": s["role"],
                    "term": s["term"],
                    "leader": s["leader"],
                    "commit": s["commit"],
                    "applied": s["applied"],
                    "lag": leader_commit.map(|c| c.saturating_sub(s["applied"].as_u64().unwrap_or(0))),
                }),
                Err(e) => json!({
                    "id": id,
                    "http": addr.map(|a| a.to_string()),
                    "reachable": false,
                    "error": e,
                }),
            })
            .collect();
        return output::print_json(&json!({"nodes": nodes, "leader_commit": leader_commit}));
    }
    let mut table = Table::new(&[
        "node", "http", "role", "term", "leader", "commit", "applied", "lag",
    ]);
    let mut notes = String::new();
    for (id, addr, a) in &rows {
        let http = addr.map_or("?".to_string(), |a| a.to_string());
        match a {
            Ok(s) => table.row(vec![
                id.to_string(),
                http,
                s["role"].as_str().unwrap_or("?").to_string(),
                s["term"].to_string(),
                s["leader"].as_u64().map_or("-".into(), |l| l.to_string()),
                s["commit"].to_string(),
                s["applied"].to_string(),
                leader_commit.map_or("?".into(), |c| {
                    c.saturating_sub(s["applied"].as_u64().unwrap_or(0))
                        .to_string()
                }),
            ]),
            Err(e) => {
                table.row(vec![
                    id.to_string(),
                    http,
                    "unreachable".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                notes.push_str(&format!("node {id}: {e}\n"));
            }
        }
    }
    let mut text = table.render();
    text.push_str(&notes);
    if leader_commit.is_none() {
        text.push_str("no reachable node is the leader\n");
    }
    output::print(&text)
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}
