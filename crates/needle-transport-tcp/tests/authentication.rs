//! Only nodes that prove the cluster secret (and share the cluster id and protocol version)
//! exchange messages; a mismatch is refused in both directions with a reason, and the rest of
//! the cluster goes on.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{SECRET, closed_by_peer, config, frame, loopback, msg, raw_handshake, wait_until};
use needle_raft::MessageHandler;
use needle_transport_tcp::{TcpConfig, TcpMessageHandler};

fn assert_pair_still_works(a: &TcpMessageHandler, b: &TcpMessageHandler) {
    for seq in 0..20 {
        a.send(2, msg(1, 2, seq, 8)).unwrap();
    }
    for seq in 0..20 {
        assert_eq!(
            common::recv(b, Duration::from_secs(5)),
            (1, msg(1, 2, seq, 8))
        );
    }
    assert_eq!(a.metrics().connections_established, 1);
}

/// Node 3 with `bad` config, and node 2 that knows it as a peer; checks nothing passes either
/// way and both sides give `reason`.
fn refused(bad: TcpConfig, reason: &str) {
    let (a, b) = common::pair();
    common::wait_connected(&a, 2);
    let c = TcpMessageHandler::new(3, loopback(), vec![(2, b.local_addr())], bad).unwrap();
    b.add_peer(3, c.local_addr()).unwrap();
    wait_until("both directions refused", Duration::from_secs(10), || {
        b.metrics().handshakes_refused >= 2 && c.metrics().handshakes_refused >= 2
    });
    for (who, h) in [("node 2", &b), ("node 3", &c)] {
        let m = h.metrics();
        let last = m.last_refusal.clone().unwrap_or_default();
        eprintln!("{who}: {last}");
        assert!(last.contains(reason), "{who}: {m:?}");
        assert_eq!(
            m.connections_established + m.connections_accepted,
            if who == "node 2" { 2 } else { 0 },
            "{who}: {m:?}"
        );
    }
    for seq in 0..20 {
        let _ = c.send(2, msg(3, 2, seq, 0));
        let _ = b.send(3, msg(2, 3, seq, 0));
    }
    assert_pair_still_works(&a, &b);
    std::thread::sleep(Duration::from_millis(200));
    while let Some((from, m)) = b.receive().unwrap() {
        assert_ne!(from, 3, "a message from the refused node: {m:?}");
    }
    assert!(
        c.receive().unwrap().is_none(),
        "the refused node got nothing"
    );
    assert!(!c.peer_stats(2).unwrap().connected);
}

#[test]
fn wrong_secret_is_refused_both_ways() {
    refused(
        TcpConfig {
            cluster_secret: b"not the cluster secret".to_vec(),
            ..config()
        },
        "did not prove the cluster secret",
    );
}

#[test]
fn wrong_cluster_id_is_refused_both_ways() {
    refused(
        TcpConfig {
            cluster_id: common::CLUSTER + 1,
            ..config()
        },
        "cluster",
    );
}

#[test]
fn a_peer_address_of_another_node_is_refused() {
    let (a, b) = common::pair();
    // Node 1 believes node 3 lives at node 2's address.
    a.add_peer(3, b.local_addr()).unwrap();
    wait_until("refused", Duration::from_secs(10), || {
        a.metrics().handshakes_refused >= 1
    });
    let last = a.metrics().last_refusal.unwrap();
    assert!(last.contains("this is node 2, not node 3"), "{last}");
}

#[test]
fn an_impostor_without_the_secret_cannot_inject() {
    let (a, b) = common::pair();
    common::wait_connected(&a, 2);
    let (mut s, verdict) = raw_handshake(b.local_addr(), 1, 2, b"guessed secret");
    let reason = verdict.unwrap_err();
    assert!(reason.contains("authentication failed"), "{reason}");
    // Writing anyway reaches no one.
    let _ = s.write_all(&frame(&msg(1, 2, 666, 0).encode()));
    assert!(closed_by_peer(&mut s, Duration::from_secs(5)));
    assert_pair_still_works(&a, &b);
    assert!(
        b.receive().unwrap().is_none(),
        "the injected message was not delivered"
    );
    // The same client with the secret is accepted.
    let (_s, verdict) = raw_handshake(b.local_addr(), 5, 2, SECRET);
    assert_eq!(verdict, Ok(()));
}
