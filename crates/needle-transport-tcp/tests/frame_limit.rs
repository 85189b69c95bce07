//! The frame limit and the queues' bounds: the largest message that fits in one frame arrives
//! whole, one byte more is refused at `send` (counted, and the connection is untouched); a
//! snapshot-sized burst of chunks arrives whole and in order; a full queue drops and counts.

mod common;

use std::time::{Duration, Instant};

use common::{config, loopback, msg, seq_of, wait_connected, wait_until};
use needle_raft::{MessageHandler, NeedleError, RaftMessage, SnapshotChunk};
use needle_transport_tcp::{TcpConfig, TcpMessageHandler};

fn chunk(seq: u32, count: u32, len: usize) -> RaftMessage {
    RaftMessage::SnapshotChunk(SnapshotChunk {
        index: 10,
        term: 2,
        seq,
        count,
        total_len: len as u64 * u64::from(count),
        crc: 0,
        data: (0..len).map(|i| (i as u32 ^ seq) as u8).collect(),
        message: None,
    })
}

#[test]
fn largest_message_that_fits_is_delivered_and_one_byte_more_is_refused() {
    let limit = 16 << 20;
    let cfg = TcpConfig {
        max_frame_size: limit,
        ..config()
    };
    let a = TcpMessageHandler::new(1, loopback(), vec![], cfg.clone()).unwrap();
    let b = TcpMessageHandler::new(2, loopback(), vec![], cfg).unwrap();
    a.add_peer(2, b.local_addr()).unwrap();
    wait_connected(&a, 2);

    let overhead = chunk(0, 1, 0).encode().len();
    let largest = chunk(0, 1, limit as usize - overhead);
    assert_eq!(largest.encode().len(), limit as usize);
    let t0 = Instant::now();
    a.send(2, largest.clone()).unwrap();
    let (from, got) = common::recv(&b, Duration::from_secs(30));
    eprintln!(
        "largest_message_that_fits: {} bytes delivered in {:?}",
        limit,
        t0.elapsed()
    );
    assert_eq!((from, &got), (1, &largest));

    let err = a
        .send(2, chunk(0, 1, limit as usize - overhead + 1))
        .unwrap_err();
    assert!(
        matches!(&err, NeedleError::Transport { reason } if reason.contains("over the frame limit")),
        "{err}"
    );
    assert_eq!(a.metrics().dropped_oversized, 1);
    a.send(2, msg(1, 2, 5, 0)).unwrap();
    assert_eq!(
        common::recv(&b, Duration::from_secs(5)),
        (1, msg(1, 2, 5, 0))
    );
    assert_eq!(a.metrics().connections_established, 1);
}

#[test]
fn a_snapshot_sized_burst_of_chunks_arrives_whole_and_in_order() {
    let (a, b) = common::pair();
    wait_connected(&a, 2);
    let (count, len) = (128u32, 256 * 1024);
    let t0 = Instant::now();
    // Sent in one burst, as needle-raft streams a snapshot.
    for seq in 0..count {
        a.send(2, chunk(seq, count, len)).unwrap();
    }
    for seq in 0..count {
        let (_, m) = common::recv(&b, Duration::from_secs(30));
        assert_eq!(seq_of(&m), u64::from(seq));
        assert_eq!(m, chunk(seq, count, len));
    }
    let elapsed = t0.elapsed();
    let mib = f64::from(count) * len as f64 / f64::from(1 << 20);
    eprintln!(
        "a_snapshot_sized_burst: {count} chunks, {mib:.0} MiB in {elapsed:?} ({:.0} MiB/s)",
        mib / elapsed.as_secs_f64()
    );
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    // A peer that is not there, and a long backoff: after the first failed connect the queue
    // fills and stays full for the whole test.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = TcpConfig {
        queue_capacity: 16,
        queue_max_bytes: 64 * 1024,
        backoff_min: Duration::from_secs(10),
        backoff_max: Duration::from_secs(10),
        ..config()
    };
    let a = TcpMessageHandler::new(1, loopback(), vec![(2, nowhere)], cfg).unwrap();
    wait_until("a failed connect", Duration::from_secs(5), || {
        a.metrics().connect_failures >= 1
    });
    // By count: 16 small messages fit.
    let accepted = (0..100)
        .filter(|&s| a.send(2, msg(1, 2, s, 0)).is_ok())
        .count();
    assert_eq!(accepted, 16);
    assert_eq!(a.metrics().dropped_queue_full, 84);
    let stats = a.peer_stats(2).unwrap();
    assert_eq!((stats.queued, stats.connected), (16, false));

    // By bytes: 10 KiB messages, 64 KiB in all.
    let b = TcpMessageHandler::new(
        3,
        loopback(),
        vec![(2, nowhere)],
        TcpConfig {
            queue_max_bytes: 64 * 1024,
            backoff_min: Duration::from_secs(10),
            backoff_max: Duration::from_secs(10),
            ..config()
        },
    )
    .unwrap();
    wait_until("a failed connect", Duration::from_secs(5), || {
        b.metrics().connect_failures >= 1
    });
    let accepted = (0..20)
        .filter(|&s| b.send(2, msg(3, 2, s, 10 * 1024)).is_ok())
        .count();
    assert_eq!(accepted, 6);
    assert!(b.peer_stats(2).unwrap().queued_bytes <= 64 * 1024);
    let t0 = Instant::now();
    a.shutdown();
    b.shutdown();
    eprintln!(
        "a_full_queue: shutdown during a 10 s backoff took {:?}",
        t0.elapsed()
    );
}
