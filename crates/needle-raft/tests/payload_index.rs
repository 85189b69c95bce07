//! Payload indexes and the set operations through Raft: indexes are replicated commands, so
//! every node holds the same ones (equal checksums), also a node that restarts and one that
//! catches up by snapshot — value graphs included (the threshold lowered to 50 records, so that
//! each `lang` gets one: the checksums cover them); `delete_by_filter` is one command that deletes the same records on
//! every node; the read paths count, get and scroll like the local database.

mod common;

use std::time::Duration;

use common::{Cluster, test_config};
use needle_core::{Filter, IndexKind, Record};
use needle_raft::{NeedleError, ReadConsistency, RequestId};
use serde_json::json;

const LANGS: [&str; 3] = ["en", "de", "fr"];

fn records(batch: usize) -> Vec<Record> {
    (0..40)
        .map(|i| {
            Record::new(
                format!("r{batch:02}-{i:02}"),
                vec![(batch * 40 + i) as f32, 1.0, (i % 7) as f32],
                Some(json!({"tenant": i % 10, "lang": LANGS[i % 3], "price": i as f64 / 4.0})),
            )
        })
        .collect()
}

#[test]
fn indexes_and_deletes_by_filter_replicate_identically() {
    // Process-wide: the only test of this binary.
    needle_core::__private::set_value_graph_min_records(50);
    let config = test_config().snapshot_threshold(40).log_retain_entries(0);
    let seed = common::seed("indexes_and_deletes_by_filter_replicate_identically");
    let c = Cluster::with_config(3, seed, config);
    let leader = c.wait_leader(Duration::from_secs(10));
    let lagger = c.founders.iter().copied().find(|&i| i != leader).unwrap();
    let l = c.node(leader);
    l.create_collection("c", 3).unwrap();
    l.create_index("c", "tenant", IndexKind::Integer).unwrap();
    l.insert_batch("c", records(0)).unwrap();
    l.create_index("c", "lang", IndexKind::Keyword).unwrap();
    assert!(matches!(
        l.create_index("c", "lang", IndexKind::Keyword),
        Err(NeedleError::Core(needle_core::Error::IndexExists { .. }))
    ));
    c.wait_converged(Duration::from_secs(10));

    // A node that misses the next writes catches up by a snapshot: it had no value graph (13
    // records of each `lang`, under the threshold of 50) and gets the three the others built
    // (checked by the checksums of `wait_converged` and below).
    let applied_at_crash = c.node(lagger).status().unwrap().applied;
    let info = c
        .node(lagger)
        .collection_info_with("c", ReadConsistency::Linearizable)
        .unwrap();
    assert_eq!(info.indexes[0].path, "lang");
    assert_eq!(info.indexes[0].value_graphs, 0);
    c.crash(lagger);
    for b in 1..8 {
        c.on_leader(Duration::from_secs(5), |l| l.insert_batch("c", records(b)));
    }
    let f = Filter::parse(&json!({"$and": [{"tenant": {"$lt": 3}}, {"lang": "de"}]})).unwrap();
    let before = c.on_leader(Duration::from_secs(5), |l| {
        l.count_matching_with("c", Some(&f), ReadConsistency::Linearizable)
    });
    assert!(before > 0);
    // One request id for every attempt: a retry of an applied delete gets the first apply's
    // count from the dedup window, so the count is exact even if an attempt timed out.
    let request = RequestId {
        client: 0xf11e,
        seq: 1,
    };
    let deleted = c.on_leader(Duration::from_secs(5), |l| {
        l.delete_by_filter_with_id(request, "c", &f)
    });
    assert_eq!(deleted, before, "the count deleted, as applied");
    assert_eq!(
        c.on_leader(Duration::from_secs(5), |l| l.count_matching_with(
            "c",
            Some(&f),
            ReadConsistency::Linearizable
        )),
        0
    );
    let ids = vec!["r01-00".to_string(), "nope".to_string()];
    let gone = c.on_leader(Duration::from_secs(5), |l| l.delete_many("c", &ids));
    assert!(gone <= 1, "one of the two ids exists");
    // Entries enough for the leader to snapshot and compact its log past the lagger after the
    // deletes: the snapshot's graphs hold nodes that left their value, which a graph built
    // afresh would not (so a snapshot that dropped the graphs, to be built again, would show
    // in the checksums).
    for i in 0..45 {
        c.on_leader(Duration::from_secs(5), |l| {
            l.insert("c", &format!("x{i:02}"), vec![i as f32, 2.0, 0.0], None)
        });
    }
    c.on_leader(Duration::from_secs(5), |l| {
        l.create_index("c", "price", IndexKind::Float)
    });
    c.on_leader(Duration::from_secs(5), |l| l.drop_index("c", "tenant"));
    let first = c
        .on_leader(Duration::from_secs(5), |l| l.status())
        .first_index;
    assert!(
        first > applied_at_crash + 1,
        "the leader compacted past the lagger: {first} > {applied_at_crash} + 1"
    );
    c.restart(lagger);
    c.wait_converged(Duration::from_secs(30));
    let s = c.node(lagger).status().unwrap();
    assert!(
        s.snapshot_index > applied_at_crash,
        "the lagger installed a snapshot: {s:?}"
    );

    let total = 8 * 40 + 45 - before - 1;
    for n in c.live() {
        let info = n
            .collection_info_with("c", ReadConsistency::Linearizable)
            .unwrap();
        let paths: Vec<(String, IndexKind)> = info
            .indexes
            .iter()
            .map(|i| (i.path.clone(), i.kind))
            .collect();
        assert_eq!(
            paths,
            [
                ("lang".to_string(), IndexKind::Keyword),
                ("price".to_string(), IndexKind::Float)
            ],
            "node {}",
            n.node_id()
        );
        assert_eq!(info.count, total, "node {}", n.node_id());
        // `lang`: three values of ~100 records each, all over the lowered threshold.
        assert_eq!(info.indexes[0].value_graphs, 3, "node {}", n.node_id());
        let page = n
            .scroll_with("c", Some(&f), None, 10, ReadConsistency::Linearizable)
            .unwrap();
        assert!(page.records.is_empty() && page.next_cursor.is_none());
        let got = n
            .get_many_with("c", &ids, ReadConsistency::Linearizable)
            .unwrap();
        assert_eq!(got, vec![None, None]);
    }
}
