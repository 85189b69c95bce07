//! `needle serve` refuses bad configuration at once, with one line on stderr and nothing
//! started or written: missing or empty secret and token files, a public HTTP address without
//! `--http-public` or without a token, a node among its own peers, unusable peer addresses,
//! malformed flags, Raft timings that do not fit, and a Raft port already in use.

mod common;

use common::cluster::free_ports;
use common::needle;

#[test]
fn serve_refuses_bad_configuration_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a secret").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "  \n").unwrap();
    let s = secret.to_str().unwrap();
    let p = free_ports(2);
    let raft = format!("127.0.0.1:{}", p[0]);
    let http = format!("127.0.0.1:{}", p[1]);
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "serve", "--id", "1", "--data", d, "--raft", &raft, "--http", &http,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, i32, Vec<&str>)> = vec![
        (
            base(&["--secret-file", "/nonexistent/secret"]),
            1,
            vec!["reading secret file", "/nonexistent/secret"],
        ),
        (
            base(&["--secret-file", empty.to_str().unwrap()]),
            1,
            vec!["secret file", "is empty"],
        ),
        (
            base(&["--secret-file", s, "--token-file", empty.to_str().unwrap()]),
            1,
            vec!["token file", "is empty"],
        ),
        (
            {
                let mut v = base(&["--secret-file", s]);
                v[8] = format!("0.0.0.0:{}", p[1]);
                v
            },
            1,
            vec!["is not a loopback address", "--http-public"],
        ),
        (
            {
                let mut v = base(&["--secret-file", s, "--http-public"]);
                v[8] = format!("0.0.0.0:{}", p[1]);
                v
            },
            1,
            vec!["--http-public requires --token-file"],
        ),
        (
            base(&["--secret-file", s, "--peers", &format!("1={raft}")]),
            1,
            vec!["lists node 1 itself"],
        ),
        (
            base(&["--secret-file", s, "--peers", "2=0.0.0.0:7002"]),
            1,
            vec!["cannot be connected to"],
        ),
        (
            base(&["--peers", "2=10.1.2.3:7002"]),
            1,
            vec!["--secret-file is required"],
        ),
        (
            base(&["--secret-file", s, "--peers", "2:127.0.0.1:7002"]),
            2,
            vec!["is not ID=HOST:PORT"],
        ),
        (
            base(&["--secret-file", s, "--peers", "2=localhost"]),
            2,
            vec!["not an IP:PORT address"],
        ),
        (
            base(&["--secret-file", s, "--heartbeat-ms", "75"]),
            1,
            vec!["heartbeat_interval", "multiple of tick_interval"],
        ),
        (base(&["--secret-file", s, "--id", "0"]), 2, vec!["--id"]),
    ];
    for (args, code, needles) in &cases {
        needle(args).fails(*code, needles);
        assert!(!data.exists(), "{args:?} created the data directory");
    }

    // A Raft port already in use: refused before the data directory is created.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut args = base(&["--secret-file", s]);
    args[6] = taken.local_addr().unwrap().to_string();
    needle(&args).fails(1, &["cannot listen on"]);
    assert!(!data.exists());
}
