//! Raft messages that decode and carry one hostile field (a faulty or hostile peer): a follower
//! with a compacted log and a commit index steps each one that [`steppable`] lets through, and
//! raft-rs must not panic. Valid messages of each kind are built first and must pass
//! [`steppable`] (what it drops, a real leader never sends). Random: prints its seed, replays
//! from `NEEDLE_SEED`; `NEEDLE_HOSTILE_CASES` sets the number of cases.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use needle_core::disk::SimDisk;
use raft::RawNode;
use raft::prelude::{ConfState, Entry, HardState, Message, MessageType, Snapshot};

use super::steppable;
use crate::storage::LogStore;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![1; 8].into(),
        ..Default::default()
    }
}

/// Node 1 of voters 1, 2, 3: entries 2..=20 (terms 1 to 3), compacted to 8, committed and
/// applied to 15, in term 3, following node 2.
fn follower() -> RawNode<LogStore> {
    let disk = Arc::new(SimDisk::new(0));
    let mut s = LogStore::open(disk, Path::new("/raft"), 4096, &[1, 2, 3]).expect("a fresh log");
    s.persist_entries(&(2..=20).map(|i| ent(i, 1 + i / 8)).collect::<Vec<_>>());
    s.persist_hard_state(&HardState {
        term: 3,
        vote: 2,
        commit: 15,
        ..Default::default()
    });
    s.sync(true).expect("sync");
    s.compact(8).expect("compact");
    s.set_initial_applied(15);
    let cfg = raft::Config {
        id: 1,
        applied: 15,
        election_tick: 10,
        heartbeat_tick: 1,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    RawNode::new(&cfg, s, &logger).expect("the follower starts")
}

fn message(t: MessageType, term: u64) -> Message {
    let mut m = Message {
        from: 2,
        to: 1,
        term,
        ..Default::default()
    };
    m.set_msg_type(t);
    m
}

/// Messages a leader (node 2) or a candidate (node 3) sends this follower.
fn valid_messages() -> Vec<Message> {
    let mut out = Vec::new();
    for (index, log_term, n) in [(20, 3, 3), (16, 3, 2), (12, 2, 0), (4, 1, 2)] {
        let mut m = message(MessageType::MsgAppend, 3);
        m.index = index;
        m.log_term = log_term;
        m.commit = 17;
        m.entries = (index + 1..=index + n)
            .map(|i| ent(i, 3))
            .collect::<Vec<_>>()
            .into();
        out.push(m);
    }
    let mut hb = message(MessageType::MsgHeartbeat, 3);
    hb.commit = 18;
    out.push(hb);
    let mut snap = message(MessageType::MsgSnapshot, 4);
    let mut s = Snapshot::default();
    s.mut_metadata().index = 30;
    s.mut_metadata().term = 4;
    s.mut_metadata().set_conf_state(ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    });
    snap.set_snapshot(s);
    out.push(snap);
    for t in [MessageType::MsgRequestVote, MessageType::MsgRequestPreVote] {
        let mut v = message(t, 5);
        v.from = 3;
        v.index = 25;
        v.log_term = 4;
        out.push(v);
    }
    out
}

fn hostile(rng: &mut Rng, x: u64) -> u64 {
    let choices = [
        0,
        1,
        x.saturating_sub(1),
        x.saturating_add(1),
        x.saturating_add(100),
        7,
        15,
        u64::MAX / 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    choices[rng.below(choices.len() as u64) as usize]
}

/// Changes one field of `m`; says which.
fn mutate(rng: &mut Rng, m: &mut Message) -> &'static str {
    loop {
        match rng.below(9) {
            0 => {
                m.index = hostile(rng, m.index);
                return "index";
            }
            1 => {
                m.log_term = hostile(rng, m.log_term);
                return "log_term";
            }
            2 => {
                m.commit = hostile(rng, m.commit);
                return "commit";
            }
            3 => {
                m.term = hostile(rng, m.term).max(3);
                return "term";
            }
            4 if !m.entries.is_empty() => {
                let i = rng.below(m.entries.len() as u64) as usize;
                m.entries[i].index = hostile(rng, m.entries[i].index);
                return "an entry's index";
            }
            5 if !m.entries.is_empty() => {
                let i = rng.below(m.entries.len() as u64) as usize;
                m.entries[i].term = hostile(rng, m.entries[i].term);
                return "an entry's term";
            }
            6 if m.has_snapshot() => {
                let meta = m.mut_snapshot().mut_metadata();
                meta.index = hostile(rng, meta.index);
                return "the snapshot's index";
            }
            7 if m.has_snapshot() => {
                let cs = m.mut_snapshot().mut_metadata().mut_conf_state();
                match rng.below(4) {
                    0 => cs.voters.push(2),
                    1 => cs.learners.push(3),
                    2 => cs.voters.clear(),
                    _ => cs.auto_leave = true,
                }
                return "the snapshot's conf state";
            }
            8 => {
                m.reject = true;
                m.reject_hint = hostile(rng, m.reject_hint);
                return "reject";
            }
            _ => {}
        }
    }
}

#[test]
fn valid_messages_are_steppable() {
    let rn = follower();
    for m in valid_messages() {
        assert!(steppable(&rn.raft, &m), "dropped a valid message: {m:?}");
    }
}

#[test]
fn raft_never_panics_on_a_steppable_message_with_a_hostile_field() {
    let seed =
        needle_testkit::seed("raft_never_panics_on_a_steppable_message_with_a_hostile_field");
    let cases = needle_testkit::knob("NEEDLE_HOSTILE_CASES", 300);
    let mut rng = Rng(seed);
    let templates = valid_messages();
    for case in 0..cases {
        let mut m = templates[rng.below(templates.len() as u64) as usize].clone();
        let before = format!("{m:?}");
        let what = mutate(&mut rng, &mut m);
        let mut rn = follower();
        if !steppable(&rn.raft, &m) {
            continue;
        }
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            let _ = rn.step(m.clone());
            if rn.has_ready() {
                let _ = rn.ready();
            }
        }));
        assert!(
            stepped.is_ok(),
            "case {case} (NEEDLE_SEED={seed}): raft-rs panicked on {what} of {before} -> {m:?}"
        );
    }
}
