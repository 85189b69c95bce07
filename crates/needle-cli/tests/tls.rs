//! TLS (issue 13): a cluster of `needle serve` processes with `--tls-cert/--tls-key/--tls-ca`
//! works end to end over HTTPS and mutual TLS between nodes; plaintext to a TLS port (HTTP or
//! Raft) is refused; a node whose certificate comes from another CA is refused by the others.
//! Certificates are made in the test with rcgen.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::certs::{Ca, flags};
use common::cluster::Cluster;
use needle_cli::client::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use serde_json::{Value, json};

fn transport(c: &Cluster, id: u64) -> Value {
    c.status(id, false).expect("status")["transport"].clone()
}

#[test]
fn a_cluster_works_over_tls_end_to_end_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let (cert, key) = ca.node(dir.path(), "node");
    let tls = flags(&cert, &key, &ca.pem);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let mut c = Cluster::start(3, &tls);
    c.tls = Some(ca.client());
    let mut leader = c.wait_leader(Duration::from_secs(30));
    let long = Duration::from_secs(20);
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 2}),
        long,
    )
    .expect("collection created over HTTPS");
    for i in 0..10 {
        let (_, at) = c
            .write(
                leader,
                "/v1/collections/items/records",
                &json!({"id": format!("r{i}"), "vector": [1.0, i as f32]}),
                long,
            )
            .expect("write over HTTPS, replicated over mutual TLS");
        leader = at;
    }
    // Every node has every write (Raft ran over TLS): a linearizable read on each.
    for id in 1..=3 {
        let r = c.client(id).get("/v1/collections/items/ids").unwrap();
        assert_eq!(r.body["count"], 10, "node {id}: {r:?}");
    }
    for id in 1..=3 {
        let t = transport(&c, id);
        assert!(t["connections_accepted"].as_u64().unwrap() >= 1, "{t}");
    }

    // Plaintext HTTP to the HTTPS port: no answer.
    let plain = Client::new(c.node(leader).http).with_timeout(Duration::from_secs(5));
    assert!(
        plain.get("/v1/status").is_err(),
        "plaintext HTTP was answered"
    );

    // Plaintext to the Raft port (the HMAC handshake's first bytes, no TLS): refused and counted.
    let before = transport(&c, leader)["handshakes_refused"]
        .as_u64()
        .unwrap();
    let mut s = TcpStream::connect(c.node(leader).raft).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"\x00\x00\x00\x20needle handshake in plaintext....");
    let mut buf = [0u8; 64];
    // The node answers with a TLS alert at most, then closes; it never speaks the handshake.
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.is_empty() || got[0] == 0x15,
        "expected nothing or a TLS alert, got {got:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = transport(&c, leader);
        if t["handshakes_refused"].as_u64().unwrap() > before {
            let reason = t["last_refusal"].as_str().unwrap_or_default().to_string();
            assert!(reason.contains("TLS"), "{reason}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plaintext not counted as refused: {t}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // `needle cluster status` speaks HTTPS with --tls-ca.
    let out = common::needle([
        "cluster",
        "status",
        "--http",
        &c.node(leader).http.to_string(),
        "--tls-ca",
        ca.pem.to_str().unwrap(),
        "--json",
    ]);
    let s = out.json();
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{s}");
    assert!(
        nodes
            .iter()
            .all(|n| n["reachable"] == true && n["leader"] == leader),
        "{s}"
    );
}

#[test]
fn a_node_with_a_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let other = Ca::new(dir.path(), "other-ca");
    let good = ca.node(dir.path(), "good");
    let rogue = other.node(dir.path(), "rogue");
    let ca_pem = ca.pem.clone();
    // Node 3 trusts the cluster's CA but presents a certificate from another one.
    let mut c = Cluster::start_with(3, &[], |id| {
        let (cert, key) = if id == 3 { &rogue } else { &good };
        flags(cert, key, &ca_pem)
    });
    c.tls = Some(ca.client());
    let leader = c.wait_leader(Duration::from_secs(30));
    assert_ne!(leader, 3);
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 2}),
        Duration::from_secs(20),
    )
    .expect("two of three nodes form a majority");

    // Nodes 1 and 2 refuse node 3's connections, naming the certificate.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reason = loop {
        let refused: Vec<String> = [1, 2]
            .iter()
            .map(|&id| transport(&c, id))
            .filter(|t| t["handshakes_refused"].as_u64().unwrap() > 0)
            .filter_map(|t| t["last_refusal"].as_str().map(String::from))
            .collect();
        if let Some(r) = refused.first() {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "node 3 was never refused");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        reason.contains("TLS") && reason.to_lowercase().contains("certificate"),
        "{reason}"
    );
    // Node 3 (asked over HTTPS with its own CA) has no leader and nothing applied.
    let n3 = Client::new(c.node(3).http)
        .with_tls(Some(other.client()))
        .with_timeout(Duration::from_secs(3));
    let s = n3.get("/v1/status").unwrap().body;
    assert_eq!(s["leader"], Value::Null, "{s}");
    let leader_applied = c.status(leader, false).unwrap()["applied"]
        .as_u64()
        .unwrap();
    assert!(s["applied"].as_u64().unwrap() < leader_applied, "{s}");
    // And the test's client, which trusts only the cluster's CA, refuses node 3's HTTPS.
    assert!(c.client(3).get("/v1/status").is_err());

    // A TLS client that presents the rogue certificate to node 1's Raft port (trusting the
    // cluster's CA itself, so that only the server's check of the client is at stake) gets a
    // fatal alert: the server requires a certificate from the cluster's CA.
    let chain =
        needle_transport_tcp::certificates(&std::fs::read(&rogue.0).unwrap(), "rogue").unwrap();
    let key = PrivateKeyDer::from_pem_slice(&std::fs::read(&rogue.1).unwrap()).unwrap();
    let roots = needle_transport_tcp::root_store(&std::fs::read(&ca.pem).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(needle_transport_tcp::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::IpAddress(c.node(1).raft.ip().into()),
    )
    .unwrap();
    let tcp = TcpStream::connect(c.node(1).raft).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let _ = tls.write_all(b"hello").and_then(|()| tls.flush());
    let mut buf = [0u8; 16];
    let e = tls
        .read(&mut buf)
        .expect_err("the server must refuse the rogue certificate");
    assert!(e.to_string().contains("alert"), "{e}");
}
