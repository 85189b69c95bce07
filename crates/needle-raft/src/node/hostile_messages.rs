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

use super::{admissible, steppable};
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

// Messages a follower, candidate or learner sends a leader.
//
// Raft trusts its members: an append or heartbeat response from a member is believed, so a
// member that lies (acks entries it does not hold) can make the leader commit what a quorum of
// real acks would not have (up to the leader's own last index; see docs/replication.md). What
// is tested here is what does not depend on trust: no field of any of them panics the leader,
// now or on the steps, ticks and Ready rounds after it; the leader never commits past its own
// log nor rewrites it; and nothing from a node outside the configuration (or claiming to be
// the leader itself, or node 0) changes the leader's term, role or commit.

/// Hands every Ready of `rn` to its log (entries, hard state, commit; no snapshot arrives at
/// these nodes) and applies what commits, as the node's Ready loop does.
fn drain(rn: &mut RawNode<LogStore>) {
    while rn.has_ready() {
        let mut rd = rn.ready();
        let _ = rd.take_messages();
        rn.mut_store().persist_entries(rd.entries());
        if let Some(hs) = rd.hs() {
            rn.mut_store().persist_hard_state(hs);
        }
        rn.mut_store().sync(true).expect("sync");
        let _ = rd.take_persisted_messages();
        let mut light = rn.advance(rd);
        if let Some(c) = light.commit_index() {
            rn.mut_store().persist_commit(c);
            rn.mut_store().sync(true).expect("sync");
        }
        let _ = light.take_messages();
        rn.advance_apply();
    }
}

fn response(t: MessageType, from: u64, term: u64) -> Message {
    let mut m = message(t, term);
    m.from = from;
    m
}

/// Node 1 of voters 1, 2, 3, with the log of [`follower`], elected leader of term 4 by node 2
/// (pre-vote, then vote): its empty entry 21 and three proposals 22..=24 are in its log; node 2
/// acked 21 (replicating, commit 21), node 3 never answered (probing); a read index with
/// context `r1` waits for a quorum of heartbeat acks.
fn leader() -> RawNode<LogStore> {
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
        check_quorum: true,
        pre_vote: true,
        read_only_option: raft::ReadOnlyOption::Safe,
        max_inflight_msgs: 4,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut rn = RawNode::new(&cfg, s, &logger).expect("the node starts");
    rn.campaign().expect("campaign");
    drain(&mut rn);
    rn.step(response(MessageType::MsgRequestPreVoteResponse, 2, 4))
        .expect("pre-vote");
    drain(&mut rn);
    rn.step(response(MessageType::MsgRequestVoteResponse, 2, 4))
        .expect("vote");
    drain(&mut rn);
    for _ in 0..3 {
        rn.propose(vec![], vec![1; 8]).expect("propose");
    }
    drain(&mut rn);
    let mut ack = response(MessageType::MsgAppendResponse, 2, 4);
    ack.index = 21;
    rn.step(ack).expect("ack");
    drain(&mut rn);
    rn.read_index(b"r1".to_vec());
    drain(&mut rn);
    assert_eq!(rn.raft.state, raft::StateRole::Leader);
    assert_eq!(
        (rn.raft.raft_log.last_index(), rn.raft.raft_log.committed),
        (24, 21)
    );
    rn
}

/// What each kind of node sends a leader of term 4, valid: append acks (whole, probe accepted,
/// rejected with a hint, a snapshot request), heartbeat acks (one with the pending read's
/// context), late votes and pre-votes, a forwarded read index, a forwarded leadership transfer,
/// and the local MsgSnapStatus / MsgUnreachable a peer must not be able to inject.
fn valid_responses() -> Vec<Message> {
    use MessageType::*;
    let mut out = Vec::new();
    let mut m = response(MsgAppendResponse, 2, 4);
    m.index = 24;
    m.commit = 21;
    out.push(m);
    let mut m = response(MsgAppendResponse, 3, 4);
    m.index = 24;
    m.commit = 15;
    out.push(m);
    let mut m = response(MsgAppendResponse, 3, 4);
    m.index = 20;
    m.reject = true;
    m.reject_hint = 17;
    m.log_term = 3;
    m.commit = 15;
    out.push(m);
    let mut m = response(MsgAppendResponse, 3, 4);
    m.index = 15;
    m.reject = true;
    m.reject_hint = 17;
    m.log_term = 3;
    m.commit = 15;
    m.request_snapshot = 17;
    out.push(m);
    let mut m = response(MsgHeartbeatResponse, 2, 4);
    m.commit = 21;
    out.push(m);
    let mut m = response(MsgHeartbeatResponse, 3, 4);
    m.commit = 15;
    m.context = b"r1".to_vec().into();
    out.push(m);
    for t in [MsgRequestVoteResponse, MsgRequestPreVoteResponse] {
        out.push(response(t, 3, 4));
    }
    let mut m = response(MsgReadIndex, 2, 0);
    m.entries = vec![Entry {
        data: b"f1".to_vec().into(),
        ..Default::default()
    }]
    .into();
    out.push(m);
    out.push(response(MsgTransferLeader, 2, 4));
    let mut m = response(MsgSnapStatus, 3, 0);
    m.reject = true;
    out.push(m);
    out.push(response(MsgUnreachable, 3, 0));
    out
}

/// Changes one field of a response; says which.
fn mutate_response(rng: &mut Rng, m: &mut Message) -> &'static str {
    use MessageType::*;
    match rng.below(12) {
        0 => {
            m.index = hostile(rng, m.index);
            "index"
        }
        1 => {
            m.log_term = hostile(rng, m.log_term);
            "log_term"
        }
        2 => {
            m.commit = hostile(rng, m.commit);
            "commit"
        }
        3 => {
            m.term = hostile(rng, m.term);
            "term"
        }
        4 => {
            m.reject = !m.reject;
            m.reject_hint = hostile(rng, m.reject_hint);
            "reject"
        }
        5 => {
            m.request_snapshot = hostile(rng, m.request_snapshot);
            "request_snapshot"
        }
        6 => {
            m.from = [0, 1, 4, 9, u64::MAX][rng.below(5) as usize];
            if rng.below(2) == 0 {
                m.term = hostile(rng, m.term).max(5);
                return "from (not a member, the leader itself, or node 0) with a newer term";
            }
            "from (not a member, the leader itself, or node 0)"
        }
        7 => {
            m.to = [0, 2, 9][rng.below(3) as usize];
            "to"
        }
        8 => {
            let types = [
                MsgAppendResponse,
                MsgHeartbeatResponse,
                MsgRequestVoteResponse,
                MsgRequestPreVoteResponse,
                MsgReadIndex,
                MsgReadIndexResp,
                MsgTransferLeader,
                MsgSnapStatus,
                MsgUnreachable,
                MsgTimeoutNow,
            ];
            m.set_msg_type(types[rng.below(types.len() as u64) as usize]);
            "type"
        }
        9 => {
            let ctx: &[u8] = [&b""[..], b"r1", b"r2", &[0xff; 64]][rng.below(4) as usize];
            m.context = ctx.to_vec().into();
            "context"
        }
        10 => {
            let n = rng.below(3) as usize;
            m.entries = (0..n)
                .map(|i| ent(hostile(rng, 21 + i as u64), hostile(rng, 4)))
                .collect::<Vec<_>>()
                .into();
            "entries"
        }
        _ => {
            m.reject = true;
            m.reject_hint = hostile(rng, m.reject_hint);
            m.log_term = hostile(rng, m.log_term);
            "reject hint and its term"
        }
    }
}

/// What the node's `step_raft` lets through (MsgPropose aside: no template is one).
fn passes_step_raft(rn: &RawNode<LogStore>, m: &Message) -> bool {
    admissible(&rn.raft, m.from, m)
}

#[test]
fn valid_responses_are_steppable() {
    let rn = leader();
    for m in valid_responses() {
        let local = raft::raw_node::is_local_msg(m.get_msg_type());
        assert_eq!(passes_step_raft(&rn, &m), !local, "{m:?}");
    }
}

/// Found by the test below: a rejection whose hint is `u64::MAX` (past the leader's log) made
/// raft-rs compute `u64::MAX + 1` for the follower's next index (a panic with overflow checks,
/// next index 1 without). Dropped: every index field is bounded by [`steppable`].
#[test]
fn a_rejection_hinting_past_every_index_is_dropped() {
    let mut m = response(MessageType::MsgAppendResponse, 3, 4);
    m.index = 20;
    m.reject = true;
    m.reject_hint = u64::MAX;
    let rn = leader();
    assert!(!passes_step_raft(&rn, &m));
    if cfg!(debug_assertions) {
        let mut rn = leader();
        let stepped = catch_unwind(AssertUnwindSafe(|| rn.step(m.clone())));
        assert!(stepped.is_err(), "raft-rs 0.7 overflows on it");
    }
}

/// Found by the test below: a forwarded read index (or a leadership transfer, or anything but
/// a response) from a node outside the configuration, in a newer term, made the leader step
/// down. A leader drops every message from a non-member; members' still go through.
#[test]
fn a_leader_steps_nothing_from_a_non_member() {
    let mut m = response(MessageType::MsgReadIndex, 9, 5);
    m.entries = vec![Entry {
        data: b"f1".to_vec().into(),
        ..Default::default()
    }]
    .into();
    let mut rn = leader();
    assert!(!passes_step_raft(&rn, &m));
    rn.step(m.clone()).expect("raft-rs steps it");
    assert_eq!(
        (rn.raft.term, rn.raft.state),
        (5, raft::StateRole::Follower)
    );
    m.from = 3;
    assert!(passes_step_raft(&leader(), &m), "a member's is stepped");
}

#[test]
fn a_leader_never_panics_on_a_response_with_a_hostile_field() {
    let seed = needle_testkit::seed("a_leader_never_panics_on_a_response_with_a_hostile_field");
    let cases = needle_testkit::knob("NEEDLE_HOSTILE_CASES", 300);
    let mut rng = Rng(seed);
    let templates = valid_responses();
    let fresh = leader();
    let own_terms: Vec<u64> = (16..=24)
        .map(|i| fresh.raft.raft_log.term(i).expect("in the log"))
        .collect();
    drop(fresh);
    let mut stepped_count = 0;
    for case in 0..cases {
        let mut m = templates[rng.below(templates.len() as u64) as usize].clone();
        let before = format!("{m:?}");
        let what = mutate_response(&mut rng, &mut m);
        let mut rn = leader();
        let (term, committed) = (rn.raft.term, rn.raft.raft_log.committed);
        let member = [2, 3].contains(&m.from);
        // Then valid messages and ticks, one in four hostile too (a lie may need a second one
        // to reach a state that panics).
        let after: Vec<Message> = (0..3)
            .map(|_| {
                let mut v = templates[rng.below(templates.len() as u64) as usize].clone();
                if rng.below(4) == 0 {
                    mutate_response(&mut rng, &mut v);
                }
                v
            })
            .collect();
        let ctx = format!(
            "case {case} (NEEDLE_SEED={seed}): {what} of {before} -> {m:?}, then {after:?}"
        );
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            if passes_step_raft(&rn, &m) {
                stepped_count += 1;
                let _ = rn.step(m.clone());
            }
            drain(&mut rn);
            if !member {
                assert_eq!(
                    (rn.raft.term, rn.raft.state, rn.raft.raft_log.committed),
                    (term, raft::StateRole::Leader, committed),
                    "a message from a non-member changed the leader"
                );
            }
            for v in &after {
                if passes_step_raft(&rn, v) {
                    let _ = rn.step(v.clone());
                }
                rn.tick();
                drain(&mut rn);
            }
            let log = &rn.raft.raft_log;
            assert!(log.committed >= committed, "the commit index went back");
            assert!(
                log.committed <= log.last_index(),
                "committed {} past the last index {}",
                log.committed,
                log.last_index()
            );
            if rn.raft.state == raft::StateRole::Leader {
                for (i, t) in (16..=24).zip(&own_terms) {
                    assert_eq!(log.term(i).ok(), Some(*t), "entry {i} was rewritten");
                }
            }
        }));
        if let Err(e) = stepped {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{ctx}: {msg}");
        }
    }
    eprintln!("{stepped_count} of {cases} hostile responses passed step_raft's checks");
    assert!(stepped_count * 3 > cases, "too few cases reach raft-rs");
}
