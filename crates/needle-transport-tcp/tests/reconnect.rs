//! Peers come and go: a peer that restarts on the same address is reconnected to, a peer that
//! starts late is connected to once it is up, peers can be added, moved and removed at run time,
//! and a shut-down handler frees its port and refuses work.

mod common;

use std::time::{Duration, Instant};

use common::{handler, msg, rebind, seq_of, wait_connected, wait_until};
use needle_raft::{MessageHandler, NeedleError};

/// Sends numbered messages from `from` to node `to` every few milliseconds until `rx` gets one
/// numbered at least `first`; returns how long that took.
fn deliver_again(
    from: &needle_transport_tcp::TcpMessageHandler,
    rx: &needle_transport_tcp::TcpMessageHandler,
    first: u64,
) -> Duration {
    let t0 = Instant::now();
    let mut seq = first;
    loop {
        let _ = from.send(rx.node_id(), msg(from.node_id(), rx.node_id(), seq, 16));
        seq += 1;
        if let Some((f, m)) = rx.receive_timeout(Duration::from_millis(5)).unwrap()
            && f == from.node_id()
            && seq_of(&m) >= first
        {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "node {} never reached node {} again",
            from.node_id(),
            rx.node_id()
        );
    }
}

#[test]
fn a_restarted_peer_is_reconnected_to() {
    let (a, b) = common::pair();
    let b_addr = b.local_addr();
    deliver_again(&a, &b, 0);
    deliver_again(&b, &a, 0);
    for round in 1..=3u64 {
        b.shutdown();
        // Messages sent while the peer is down are dropped, never block.
        for seq in 0..50 {
            let _ = a.send(2, msg(1, 2, round * 1_000_000 + seq, 16));
        }
        std::thread::sleep(Duration::from_millis(50));
        let b2 = rebind(2, b_addr, vec![(1, a.local_addr())]);
        let took = deliver_again(&a, &b2, round * 1_000_000 + 100);
        let back = deliver_again(&b2, &a, round * 1_000_000);
        eprintln!(
            "a_restarted_peer_is_reconnected_to: round {round}: delivered again {took:?} after the restart \
             (and back in {back:?})"
        );
        // The restarted node's first connection replaced the old one on node 1's side.
        wait_until(
            "node 1 sees one connection from node 2",
            Duration::from_secs(5),
            || a.connected_from() == vec![2],
        );
        drop(b2);
    }
    let m = a.metrics();
    assert!(m.connections_established >= 4, "{m:?}");
    assert_eq!(m.handshakes_refused, 0, "{m:?}");
}

#[test]
fn a_peer_that_starts_late_is_connected_once_up() {
    // Reserve a loopback port, then free it: nothing listens there for a while.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a = handler(1, vec![(2, addr)]);
    wait_until("a failed connect", Duration::from_secs(5), || {
        a.metrics().connect_failures >= 2
    });
    assert!(!a.peer_stats(2).unwrap().connected);
    let b = rebind(2, addr, vec![]);
    let took = deliver_again(&a, &b, 0);
    eprintln!("a_peer_that_starts_late_is_connected_once_up: delivered {took:?} after it bound");
    // Backoff is capped (200 ms here): reconnecting never waits for long.
    let m = a.metrics();
    assert!(
        m.connections_established >= 1 && m.connect_failures >= 2,
        "{m:?}"
    );
}

#[test]
fn peers_are_added_moved_and_removed_at_run_time() {
    let a = handler(1, vec![]);
    let b = handler(2, vec![]);
    assert!(a.peers().is_empty());
    let err = a.send(2, msg(1, 2, 0, 0)).unwrap_err();
    assert!(matches!(err, NeedleError::Transport { .. }), "{err}");
    assert_eq!(a.metrics().dropped_unknown_peer, 1);

    a.add_peer(2, b.local_addr()).unwrap();
    assert_eq!(a.peers(), vec![2]);
    deliver_again(&a, &b, 0);

    // Node 2 moves: a new process at a new address.
    let b2 = handler(2, vec![]);
    a.add_peer(2, b2.local_addr()).unwrap();
    deliver_again(&a, &b2, 1000);

    assert!(a.remove_peer(2));
    assert!(!a.remove_peer(2));
    assert!(a.peers().is_empty());
    assert!(a.send(2, msg(1, 2, 0, 0)).is_err());
    assert!(a.add_peer(1, b.local_addr()).is_err(), "not its own peer");
    assert!(a.add_peer(0, b.local_addr()).is_err(), "0 is reserved");
}

#[test]
fn shutdown_frees_the_port_and_refuses_work() {
    let (a, b) = common::pair();
    wait_connected(&a, 2);
    let addr = b.local_addr();
    let t0 = Instant::now();
    b.shutdown();
    b.shutdown(); // idempotent
    eprintln!(
        "shutdown_frees_the_port_and_refuses_work: shutdown took {:?}",
        t0.elapsed()
    );
    assert!(matches!(
        b.send(1, msg(2, 1, 0, 0)),
        Err(NeedleError::Shutdown)
    ));
    assert!(matches!(b.receive(), Err(NeedleError::Shutdown)));
    assert!(b.add_peer(3, addr).is_err());
    // The port is free at once.
    let again = std::net::TcpListener::bind(addr);
    assert!(again.is_ok(), "{again:?}");
    wait_until("node 1 notices", Duration::from_secs(5), || {
        !a.peer_stats(2).unwrap().connected
    });
}
