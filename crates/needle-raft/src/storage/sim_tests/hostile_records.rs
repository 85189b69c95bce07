//! Log records whose checksums are valid and whose fields are hostile (a bug of an older
//! build, a hand edit, someone with the disk): each segment of a valid log decoded, one field of
//! one record changed, every frame sealed again. A reopen is a typed error, or a log that
//! `Node::new` starts raft-rs from without a panic: `term_of(applied)` (an `expect` there) and
//! `RawNode::new` (whose `load_state` and conf-state restore panic on what they cannot use).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use raft::RawNode;

use super::*;

const SEGMENT: u64 = 2048;

fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![index as u8; 40].into(),
        ..Default::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState {
        voters: ids.to_vec(),
        ..Default::default()
    }
}

/// A log with every kind of record, over several segments: entries of several terms, hard
/// states, conf states, a compaction (so later segments start with a `Base` naming confs), an
/// overwrite, and an installed snapshot in the middle.
fn valid_log(disk: &SimDisk) {
    let mut s = open(disk, SEGMENT).expect("a fresh log");
    let hs = |term, commit| HardState {
        term,
        vote: 1,
        commit,
        ..Default::default()
    };
    for i in 2..=30 {
        s.persist_entries(&[ent(i, 1 + i / 10)]);
        if i % 5 == 0 {
            s.persist_hard_state(&hs(1 + i / 10, i - 2));
        }
        if i == 12 {
            s.persist_conf_state(12, &voters(&[1, 2, 3, 4]));
        }
        s.sync(true).expect("sync");
    }
    s.compact(14).expect("compact");
    let mut joint = voters(&[1, 2, 3]);
    joint.voters_outgoing = vec![1, 2, 3, 4];
    joint.learners_next = vec![4];
    joint.auto_leave = true;
    s.persist_conf_state(25, &joint);
    s.persist_entries(&[ent(29, 5), ent(30, 5), ent(31, 5)]);
    s.persist_hard_state(&hs(5, 28));
    s.sync(true).expect("sync");
    let mut meta = SnapshotMetadata {
        index: 40,
        term: 6,
        ..Default::default()
    };
    meta.set_conf_state(voters(&[1, 2, 3]));
    s.persist_snapshot(&meta);
    s.persist_entries(&(41..=50).map(|i| ent(i, 6)).collect::<Vec<_>>());
    s.persist_hard_state(&hs(6, 47));
    s.sync(true).expect("sync");
    s.compact(43).expect("compact");
    s.persist_hard_state(&hs(6, 49));
    s.sync(true).expect("sync");
}

/// A value where a count, an index or a term is: near `x`, near the bounds, or far past them.
fn hostile(rng: &mut Rng, x: u64) -> u64 {
    let choices = [
        0,
        1,
        x.saturating_sub(1),
        x.saturating_add(1),
        x.saturating_add(1_000),
        MAX_RECORD_INDEX,
        MAX_RECORD_INDEX + 1,
        u64::MAX / 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    choices[rng.below(choices.len() as u64) as usize]
}

fn hostile_conf_state(rng: &mut Rng, cs: &mut ConfState) {
    let some = cs.voters.first().copied().unwrap_or(1);
    match rng.below(9) {
        0 => cs.voters.push(some),
        1 => cs.learners.push(some),
        2 => cs.voters.clear(),
        3 => cs.voters.push(0),
        4 => cs.auto_leave = !cs.auto_leave,
        5 => cs.voters_outgoing.push(some),
        6 => cs.learners_next.push(some),
        7 => cs.learners_next.push(77),
        _ => cs.voters.push(hostile(rng, some)),
    }
}

fn hostile_hard_state(rng: &mut Rng, hs: &mut HardState) {
    match rng.below(3) {
        0 => hs.commit = hostile(rng, hs.commit),
        1 => hs.term = hostile(rng, hs.term),
        _ => hs.vote = hostile(rng, hs.vote),
    }
}

/// Changes one decoded field of `rec`; returns what it changed.
fn mutate(rng: &mut Rng, rec: &mut Record) -> String {
    let what = format!("{rec:?}");
    match rec {
        Record::Entries(ents) => {
            let at = rng.below(ents.len() as u64) as usize;
            if let Some(e) = ents.get_mut(at) {
                match rng.below(2) {
                    0 => e.term = hostile(rng, e.term),
                    _ => e.index = hostile(rng, e.index),
                }
            }
        }
        Record::HardState(hs) => hostile_hard_state(rng, hs),
        Record::ConfState { index, cs } => match rng.below(2) {
            0 => *index = hostile(rng, *index),
            _ => hostile_conf_state(rng, cs),
        },
        Record::Compact { index, term } => match rng.below(2) {
            0 => *index = hostile(rng, *index),
            _ => *term = hostile(rng, *term),
        },
        Record::Snapshot { index, term, cs } => match rng.below(3) {
            0 => *index = hostile(rng, *index),
            1 => *term = hostile(rng, *term),
            _ => hostile_conf_state(rng, cs),
        },
        Record::Base {
            hs,
            snap_index,
            snap_term,
            confs,
            last_index,
        } => match rng.below(6) {
            0 => hostile_hard_state(rng, hs),
            1 => *snap_index = hostile(rng, *snap_index),
            2 => *snap_term = hostile(rng, *snap_term),
            3 if !confs.is_empty() => {
                let at = rng.below(confs.len() as u64) as usize;
                match rng.below(2) {
                    0 => confs[at].0 = hostile(rng, confs[at].0),
                    _ => hostile_conf_state(rng, &mut confs[at].1),
                }
            }
            4 => *last_index = Some(hostile(rng, last_index.unwrap_or(0))),
            _ => {
                confs.reverse();
            }
        },
    }
    format!("{what} -> {rec:?}")
}

/// What `Node::new` does with an opened log, for the applied index `pick` chooses from the
/// ones it accepts (`snap_index ..= commit`); `Err` is a refusal it reports as an error.
fn start_raft(disk: &SimDisk, pick: impl Fn(u64, u64) -> u64) -> std::result::Result<(), String> {
    let mut s = open(disk, SEGMENT).map_err(|e| e.to_string())?;
    let (snap, commit) = (s.snap_index(), s.hard_state().commit);
    if snap > commit {
        return Err("applied cannot be both at or past the snapshot and at most the commit".into());
    }
    let applied = pick(snap, commit);
    s.term_of(applied)
        .expect("the applied index is in the log or is its compaction point");
    s.set_initial_applied(applied);
    let cfg = raft::Config {
        id: 1,
        applied,
        election_tick: 10,
        heartbeat_tick: 1,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    RawNode::new(&cfg, s, &logger).map_err(|e| e.to_string())?;
    Ok(())
}

fn segments(files: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<PathBuf> {
    files
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .cloned()
        .collect()
}

/// One case: a record of one segment changed, the segment sealed again, then the checks.
fn case(rng: &mut Rng, files: &BTreeMap<PathBuf, Vec<u8>>) -> std::result::Result<(), String> {
    let segs = segments(files);
    let seg = &segs[rng.below(segs.len() as u64) as usize];
    let bytes = &files[seg];
    let mut recs = {
        let d = SimDisk::new(0);
        d.put_file(seg, bytes);
        read_segment(&d, seg, false)
            .map_err(|e| format!("the valid log does not read: {e}"))?
            .records
    };
    let at = rng.below(recs.len() as u64) as usize;
    let what = mutate(rng, &mut recs[at]);
    let seal = seal_of(bytes);
    let mut sealed = bytes[..SEGMENT_HEADER as usize].to_vec();
    for rec in &recs {
        let offset = sealed.len() as u64;
        encode_record(rec, seal, offset, &mut sealed);
    }
    let disk = SimDisk::new(1);
    for (path, b) in files {
        disk.put_file(path, if path == seg { &sealed } else { b });
    }
    let context = format!("{} record {at}: {what}", seg.display());
    for (name, pick) in [
        (
            "the compaction point",
            (|snap, _| snap) as fn(u64, u64) -> u64,
        ),
        ("the commit index", |_, commit| commit),
    ] {
        match catch_unwind(AssertUnwindSafe(|| start_raft(&disk, pick))) {
            Ok(_) => {}
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                return Err(format!("applied at {name}: a panic ({msg}) with {context}"));
            }
        }
    }
    Ok(())
}

fn seal_of(segment: &[u8]) -> Seal {
    assert!(segment.starts_with(SEGMENT_MAGIC), "a format-2 segment");
    let salt = u64::from_le_bytes(segment[12..20].try_into().expect("8 bytes"));
    Seal::Bound { salt }
}

#[test]
fn a_hostile_field_under_a_valid_checksum_is_refused_or_starts_raft() {
    let seed = seed("a_hostile_field_under_a_valid_checksum_is_refused_or_starts_raft");
    let disk = SimDisk::new(0);
    valid_log(&disk);
    let files = disk.files();
    assert!(segments(&files).len() >= 2, "several segments");
    start_raft(&disk, |snap, _| snap).expect("the valid log starts raft-rs");
    let cases = needle_testkit::knob("NEEDLE_HOSTILE_CASES", 2000);
    let mut rng = Rng(seed);
    for n in 0..cases {
        if let Err(why) = case(&mut rng, &files) {
            panic!("case {n} (NEEDLE_SEED={seed}): {why}");
        }
    }
}
