//! Messages on one connection arrive in the order they were sent, complete and unchanged, with
//! several senders writing to one receiver at once. Prints the throughput it saw (not asserted).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{handler, msg, seq_of, wait_connected};
use needle_raft::MessageHandler;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn per_connection_order_is_preserved() {
    let seed = common::seed("per_connection_order_is_preserved");
    const PER_SENDER: u64 = 3000;
    let senders: Vec<u64> = vec![1, 2, 3];
    let rx = handler(9, vec![]);
    let txs: Vec<_> = senders
        .iter()
        .map(|&id| handler(id, vec![(9, rx.local_addr())]))
        .collect();
    for t in &txs {
        wait_connected(t, 9);
    }
    // The same sizes on every run of a seed: mostly small, some of 64 KiB.
    let mut rng = StdRng::seed_from_u64(seed);
    let sizes: Vec<Vec<usize>> = senders
        .iter()
        .map(|_| {
            (0..PER_SENDER)
                .map(|_| {
                    if rng.random_bool(0.02) {
                        64 * 1024
                    } else {
                        rng.random_range(0..2048)
                    }
                })
                .collect()
        })
        .collect();
    let total_bytes: usize = sizes.iter().flatten().sum();

    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (t, sizes) in txs.iter().zip(&sizes) {
            s.spawn(move || {
                for (seq, &pad) in sizes.iter().enumerate() {
                    let m = msg(t.node_id(), 9, seq as u64, pad);
                    // send never blocks; on a full queue, wait a little and resend the same one.
                    while t.send(9, m.clone()).is_err() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
        }
        let mut next: BTreeMap<u64, u64> = senders.iter().map(|&id| (id, 0)).collect();
        let mut got = 0;
        while got < PER_SENDER * senders.len() as u64 {
            let (from, m) = common::recv(&rx, Duration::from_secs(20));
            let expected = next.get_mut(&from).expect("a known sender");
            assert_eq!(seq_of(&m), *expected, "from node {from}: out of order");
            let i = senders.iter().position(|&s| s == from).unwrap();
            assert_eq!(m, msg(from, 9, *expected, sizes[i][*expected as usize]));
            *expected += 1;
            got += 1;
        }
    });
    let elapsed = t0.elapsed();
    let n = PER_SENDER * senders.len() as u64;
    eprintln!(
        "per_connection_order_is_preserved: {n} messages ({:.1} MiB) from {} senders in {elapsed:?}: \
         {:.0} messages/s, {:.1} MiB/s",
        total_bytes as f64 / (1 << 20) as f64,
        senders.len(),
        n as f64 / elapsed.as_secs_f64(),
        total_bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64(),
    );
    let m = rx.metrics();
    assert_eq!(m.messages_received, n);
    assert_eq!(m.dropped_inbound_full, 0);
    for t in &txs {
        let m = t.metrics();
        assert_eq!(
            m.connections_established, 1,
            "one connection throughout: {m:?}"
        );
        assert_eq!(m.dropped_in_flight + m.dropped_unreachable, 0, "{m:?}");
    }
}

#[test]
fn both_directions_of_a_pair_carry_messages() {
    let (a, b) = common::pair();
    wait_connected(&a, 2);
    wait_connected(&b, 1);
    for seq in 0..100 {
        a.send(2, msg(1, 2, seq, 10)).unwrap();
        b.send(1, msg(2, 1, seq, 10)).unwrap();
    }
    for seq in 0..100 {
        assert_eq!(
            common::recv(&b, Duration::from_secs(5)),
            (1, msg(1, 2, seq, 10))
        );
        assert_eq!(
            common::recv(&a, Duration::from_secs(5)),
            (2, msg(2, 1, seq, 10))
        );
    }
    assert_eq!(a.peers(), vec![2]);
    assert_eq!(b.connected_from(), vec![1]);
}

/// Each kind of `RaftMessage` crosses the wire unchanged: a Raft message, a snapshot chunk and
/// its ack, and a member's removal notice (the frame codec carries any encoded message).
#[test]
fn every_kind_of_message_arrives_unchanged() {
    use needle_raft::{RaftMessage, RemovalNotice, SnapshotAck, SnapshotChunk};
    let (a, b) = common::pair();
    wait_connected(&a, 2);
    let kinds = [
        msg(1, 2, 7, 3),
        RaftMessage::SnapshotChunk(SnapshotChunk {
            index: 10,
            term: 2,
            seq: 1,
            count: 3,
            total_len: 12,
            crc: 5,
            data: vec![1, 2, 3, 4],
            message: None,
        }),
        RaftMessage::SnapshotAck(SnapshotAck {
            index: 10,
            term: 2,
            received: 2,
        }),
        RaftMessage::Removed(RemovalNotice { index: 42 }),
    ];
    for m in &kinds {
        a.send(2, m.clone()).unwrap();
    }
    for m in kinds {
        assert_eq!(common::recv(&b, Duration::from_secs(5)), (1, m));
    }
}
