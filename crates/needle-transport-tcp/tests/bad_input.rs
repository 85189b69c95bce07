//! Garbage, oversized, unauthenticated and corrupt frames close the one connection that carried
//! them, and nothing else: a legitimate peer streaming to the same node the whole time keeps its
//! one connection and loses no message.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{SECRET, closed_by_peer, frame, msg, raw_handshake, seq_of, wait_connected};
use needle_raft::{MessageHandler, NodeId, RaftMessage};
use needle_transport_tcp::TcpMessageHandler;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const LEGIT: u64 = 300;

/// Runs `attack` against node 2 while node 1 streams `LEGIT` numbered messages to it, then
/// checks that all of them arrived in order over a single connection. Returns node 2's messages
/// from other senders.
fn while_traffic_flows(attack: impl FnOnce(&TcpMessageHandler)) -> Vec<(NodeId, RaftMessage)> {
    let (a, b) = common::pair();
    wait_connected(&a, 2);
    let mut others = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 0..LEGIT {
                a.send(2, msg(1, 2, seq, 100)).expect("queued");
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        attack(&b);
    });
    let mut next = 0;
    while next < LEGIT {
        let (from, m) = common::recv(&b, Duration::from_secs(10));
        if from != 1 {
            others.push((from, m));
            continue;
        }
        assert_eq!(m, msg(1, 2, next, 100), "node 1's messages in order");
        next += 1;
    }
    while let Some(m) = b.receive().unwrap() {
        assert_ne!(m.0, 1, "nothing extra from node 1");
        others.push(m);
    }
    let am = a.metrics();
    assert_eq!(
        am.connections_established, 1,
        "node 1 never lost its connection: {am:?}"
    );
    assert_eq!(am.dropped_in_flight + am.dropped_queue_full, 0, "{am:?}");
    assert_eq!(b.connected_from(), vec![1]);
    others
}

fn connect(b: &TcpMessageHandler) -> TcpStream {
    TcpStream::connect_timeout(&b.local_addr(), Duration::from_secs(2)).unwrap()
}

fn last_refusal(b: &TcpMessageHandler) -> String {
    b.metrics().last_refusal.unwrap_or_default()
}

#[test]
fn garbage_closes_only_that_connection() {
    let seed = common::seed("garbage_closes_only_that_connection");
    let mut rng = StdRng::seed_from_u64(seed);
    let others = while_traffic_flows(|b| {
        for i in 0..20 {
            let mut junk = vec![0u8; rng.random_range(1..4096)];
            rng.fill_bytes(&mut junk);
            let mut s = connect(b);
            let _ = s.write_all(&junk);
            assert!(
                closed_by_peer(&mut s, Duration::from_secs(5)),
                "garbage connection {i} ({} bytes) was closed",
                junk.len()
            );
        }
        assert!(
            b.metrics().connections_closed_bad_input >= 20,
            "{:?}",
            b.metrics()
        );
    });
    assert!(others.is_empty(), "{others:?}");
}

#[test]
fn oversized_frames_close_only_that_connection() {
    let others = while_traffic_flows(|b| {
        // Before the handshake, frames are limited to a few hundred bytes.
        let mut s = connect(b);
        let mut header = Vec::from((1u32 << 20).to_le_bytes());
        header.extend(0u32.to_le_bytes());
        s.write_all(&header).unwrap();
        assert!(closed_by_peer(&mut s, Duration::from_secs(5)));
        assert!(
            last_refusal(b).contains("over the limit"),
            "{}",
            last_refusal(b)
        );

        // After it, the configured limit holds, and is enforced from the header alone: no
        // payload follows, yet the connection is closed with that reason.
        let (mut s, verdict) = raw_handshake(b.local_addr(), 7, 2, SECRET);
        assert_eq!(verdict, Ok(()));
        let over = common::config().max_frame_size + 1;
        let mut header = Vec::from(over.to_le_bytes());
        header.extend(0u32.to_le_bytes());
        s.write_all(&header).unwrap();
        assert!(closed_by_peer(&mut s, Duration::from_secs(5)));
        let reason = last_refusal(b);
        assert!(
            reason.contains("node 7") && reason.contains("over the limit"),
            "{reason}"
        );
    });
    assert!(others.is_empty(), "{others:?}");
}

#[test]
fn unauthenticated_frames_close_only_that_connection() {
    let others = while_traffic_flows(|b| {
        // A well-formed message frame, but no handshake first.
        let mut s = connect(b);
        s.write_all(&frame(&msg(1, 2, 999_999, 0).encode()))
            .unwrap();
        assert!(closed_by_peer(&mut s, Duration::from_secs(5)));
        assert!(
            last_refusal(b).contains("before authentication"),
            "{}",
            last_refusal(b)
        );
    });
    assert!(
        others.is_empty(),
        "the injected message was not delivered: {others:?}"
    );
}

#[test]
fn corrupt_frames_after_the_handshake_close_only_that_connection() {
    let others = while_traffic_flows(|b| {
        // An authenticated raw client: a good message first (delivered), then a bad checksum.
        let (mut s, verdict) = raw_handshake(b.local_addr(), 7, 2, SECRET);
        assert_eq!(verdict, Ok(()));
        s.write_all(&frame(&msg(7, 2, 777, 3).encode())).unwrap();
        let mut bad = frame(&msg(7, 2, 778, 3).encode());
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        s.write_all(&bad).unwrap();
        assert!(closed_by_peer(&mut s, Duration::from_secs(5)));
        assert!(last_refusal(b).contains("checksum"), "{}", last_refusal(b));

        // A frame whose checksum is right but whose bytes are no RaftMessage.
        let (mut s, verdict) = raw_handshake(b.local_addr(), 7, 2, SECRET);
        assert_eq!(verdict, Ok(()));
        s.write_all(&frame(&[0xEE; 40])).unwrap();
        assert!(closed_by_peer(&mut s, Duration::from_secs(5)));
        assert!(
            last_refusal(b).contains("invalid message"),
            "{}",
            last_refusal(b)
        );
    });
    let from7: Vec<u64> = others
        .iter()
        .filter(|(f, _)| *f == 7)
        .map(|(_, m)| seq_of(m))
        .collect();
    assert_eq!(
        from7,
        vec![777],
        "only the good frame was delivered: {others:?}"
    );
}
