//! Adversarial storage tests: sequences of failed calls, reopens and power losses on the
//! simulated disk chosen to break the promises of `database.rs` — an acknowledged write is never
//! lost, a failed call leaves a database that goes on correctly or refuses writes until
//! reopened, recovery survives a crash inside itself.
//!
//! The failure most tests here aim at: after a failed `fsync`, the bytes it was meant to make
//! durable are still *visible* (the page cache keeps them; Linux marks them clean, "fsyncgate"),
//! so a database reopened without a crash reads state that is not on disk, and builds on it.
//!
//! Random tests print their seed and replay from `NEEDLE_SEED`; `NEEDLE_ADVERSARIAL_CASES=N`
//! runs the long mode of the random ones.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Rng;
use needle_core::disk::{Disk, FaultKind, SimDisk};
use needle_core::{Database, DatabaseOptions, Error, LogCheck, WalMode};

const PATH: &str = "/db/x.needle";

fn open(sim: &SimDisk, wal: WalMode) -> Result<Database, Error> {
    Database::open_on(sim.shared(), PATH, DatabaseOptions { wal })
}

fn disk(seed: u64) -> SimDisk {
    let sim = SimDisk::new(seed);
    sim.create_dir_all(Path::new("/db")).unwrap();
    sim
}

fn v(i: u64) -> Vec<f32> {
    vec![1.0 + i as f32, 2.0]
}

fn cases(default: u64) -> u64 {
    needle_testkit::knob("NEEDLE_ADVERSARIAL_CASES", default)
}

/// What an operation does in the scenario of [`fail_each_call_then_reopen_without_a_crash`].
#[derive(Debug, Clone, Copy)]
enum Victim {
    Insert,
    Checkpoint,
    Restore,
    Compact,
    Drop,
}

/// The calls of one `victim` operation, failed one at a time (EIO, then ENOSPC); after the
/// failure the database is dropped and reopened *without* a crash (what a caller does when told
/// "reopen the database"), takes more acknowledged writes, then the power fails (several disk
/// seeds, so several crash outcomes). Every write acknowledged before the failure or after the
/// reopen must be there.
fn fail_each_call_then_reopen(victim: Victim, wal: WalMode) -> Vec<String> {
    let mut failures = Vec::new();
    for kind in [FaultKind::Eio, FaultKind::NoSpace] {
        for k in 0.. {
            let mut done = false;
            for seed in 0..4 {
                match one_failed_call(victim, wal, kind, k, k * 16 + seed) {
                    Ok(true) => done = true,
                    Ok(false) => {}
                    Err(why) => failures.push(format!(
                        "{victim:?} {wal:?}: {kind:?} at call {k} (disk seed {}): {why}",
                        k * 16 + seed
                    )),
                }
            }
            if done {
                break;
            }
        }
    }
    failures
}

/// One run of [`fail_each_call_then_reopen`]; `Ok(true)` when the victim made fewer than `k`
/// calls (every call site has been failed).
fn one_failed_call(
    victim: Victim,
    wal: WalMode,
    kind: FaultKind,
    k: u64,
    seed: u64,
) -> Result<bool, String> {
    let sim = disk(seed);
    let db = open(&sim, wal).unwrap();
    db.create_collection("c", 2).unwrap();
    db.create_collection("d", 2).unwrap();
    let mut acked: Vec<String> = Vec::new();
    for i in 0..3 {
        db.insert("c", &format!("pre{i}"), v(i), None).unwrap();
        acked.push(format!("pre{i}"));
    }
    let mut snap = Vec::new();
    db.write_snapshot(&mut snap, 1).unwrap();
    if wal == WalMode::Unsynced {
        // An unsynced log promises nothing before a checkpoint.
        db.checkpoint().unwrap();
    }
    let start = sim.calls();
    sim.fail_at(start + k, kind);
    let result = match victim {
        Victim::Insert => db.insert("c", "victim", v(9), None),
        Victim::Checkpoint => db.checkpoint(),
        Victim::Restore => db.restore_snapshot(&mut snap.as_slice()).map(|_| ()),
        Victim::Compact => db.compact("c"),
        Victim::Drop => db.drop_collection("d"),
    };
    let used = sim.calls() - start;
    sim.clear_faults();
    if k >= used {
        result.map_err(|e| format!("no call failed, yet: {e}"))?;
        return Ok(true);
    }
    drop(db);
    let db = open(&sim, wal).map_err(|e| format!("reopen (no crash) failed: {e}"))?;
    for i in 0..3 {
        db.insert("c", &format!("post{i}"), v(10 + i), None)
            .map_err(|e| format!("write after the reopen failed: {e}"))?;
        acked.push(format!("post{i}"));
    }
    if wal == WalMode::Unsynced {
        db.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
    }
    drop(db);
    sim.crash();
    let db = open(&sim, wal).map_err(|e| format!("open after the crash failed: {e}"))?;
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| db.get("c", id).ok().flatten().is_none())
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "reopened, wrote, crashed: acknowledged writes lost: {lost:?}"
        ));
    }
    Ok(false)
}

fn assert_none(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_failed_call_in_an_insert_then_a_reopen_then_a_crash_loses_nothing() {
    assert_none(fail_each_call_then_reopen(Victim::Insert, WalMode::Synced));
}

#[test]
fn a_failed_call_in_a_checkpoint_then_a_reopen_then_a_crash_loses_nothing() {
    assert_none(fail_each_call_then_reopen(
        Victim::Checkpoint,
        WalMode::Synced,
    ));
}

#[test]
fn a_failed_call_in_a_restore_then_a_reopen_then_a_crash_loses_nothing() {
    assert_none(fail_each_call_then_reopen(Victim::Restore, WalMode::Synced));
}

#[test]
fn a_failed_call_in_compact_or_drop_then_a_reopen_then_a_crash_loses_nothing() {
    let mut f = fail_each_call_then_reopen(Victim::Compact, WalMode::Synced);
    f.extend(fail_each_call_then_reopen(Victim::Drop, WalMode::Synced));
    assert_none(f);
}

#[test]
fn unsynced_a_failed_call_in_a_checkpoint_then_a_reopen_then_a_crash_loses_nothing() {
    assert_none(fail_each_call_then_reopen(
        Victim::Checkpoint,
        WalMode::Unsynced,
    ));
}

// ---- the log's framing --------------------------------------------------------------------

/// A complete record — its CRC matches — that this build cannot decode (a newer build's op, or
/// a bug) is not a torn write: a tear cannot make a CRC match. Cutting it as a "torn tail"
/// drops an acknowledged write without a word. Open must refuse (or replay it), never cut it,
/// and `check` must not call the log clean or torn.
#[test]
fn a_complete_record_that_does_not_decode_is_never_cut_as_a_torn_tail() {
    let sim = disk(1);
    let db = open(&sim, WalMode::Synced).unwrap();
    db.create_collection("c", 2).unwrap();
    db.insert("c", "a", v(0), None).unwrap();
    drop(db);
    let wal = Path::new("/db/x.needle-wal");
    let mut bytes = sim.files()[wal].clone();
    // bincode: an enum variant index this build does not know, then a few bytes of body.
    let (seal, at) = (common::wal_seal(&bytes), bytes.len() as u64);
    needle_core::disk::frame::encode_into(&mut bytes, seal, at, &[200, 1, 2, 3]);
    sim.put_file(wal, &bytes);
    let before = sim.files();
    let opened = open(&sim, WalMode::Synced);
    let after = sim.files();
    assert_eq!(
        before[wal].len(),
        after[wal].len(),
        "open cut a complete record off the log ({opened:?})"
    );
    assert!(matches!(opened, Err(Error::Corrupted { .. })), "{opened:?}");
}

/// A record's payload holds caller bytes (vectors are raw `f32`s), which can spell a frame.
/// When a crash tears such a record, the search for "a valid record after the bad one" looks
/// inside the torn record. In the first log format a frame image verified wherever it was, so
/// the tear read as corruption and the database no longer opened after a power loss during one
/// (hostile, or unlucky) write. Format 2 binds each frame's CRC to the log's random salt and
/// the frame's offset: an image in user data never verifies, and the tear is a torn tail.
#[test]
fn a_torn_record_whose_payload_spells_a_frame_is_still_a_torn_tail() {
    let (unopenable, torn) = torn_records_with_payload(true);
    assert!(torn > 0, "no crash tore the record: the test tests nothing");
    assert_eq!(
        unopenable, 0,
        "{unopenable} of {torn} tears of a record spelling a frame made the database unopenable"
    );
}

/// The control for the test above: the same tears of an ordinary record all open.
#[test]
fn a_torn_ordinary_record_is_a_torn_tail() {
    let (unopenable, torn) = torn_records_with_payload(false);
    assert!(torn > 0, "no crash tore the record: the test tests nothing");
    assert_eq!(unopenable, 0);
}

/// Returns (opens that failed, crashes that tore the victim write) over 200 seeds.
fn torn_records_with_payload(spell_a_frame: bool) -> (u64, u64) {
    const DIM: usize = 1024;
    // The frame of the op `Delete { collection: "c", id: "x" }` (bincode: variant 4, then two
    // length-prefixed strings), padded to whole floats; every 4-byte group is a finite f32. As
    // the first format framed it: the writer of a vector cannot know the log's salt.
    let decoy = {
        let mut f = needle_core::disk::frame::encode(
            needle_core::disk::frame::Seal::Payload,
            0,
            &[4, 1, b'c', 1, b'x'],
        );
        f.resize(16, 0);
        f
    };
    let mut vector = vec![0.5f32; DIM];
    if spell_a_frame {
        for (i, chunk) in decoy.chunks_exact(4).enumerate() {
            vector[8 + i] = f32::from_le_bytes(chunk.try_into().unwrap());
        }
        assert!(vector.iter().all(|x| x.is_finite()), "pick another decoy");
    }
    let (mut unopenable, mut torn) = (0, 0);
    for seed in 0..200 {
        let sim = disk(seed);
        let db = open(&sim, WalMode::Synced).unwrap();
        db.create_collection_with_config(
            "c",
            DIM,
            needle_core::CollectionConfig {
                distance: needle_core::Distance::Euclidean,
                ..Default::default()
            },
        )
        .unwrap();
        db.insert("c", "a", vec![0.25; DIM], None).unwrap();
        // The power goes just after the write of the record, before its fsync.
        sim.power_off_after(sim.calls() + 1);
        assert!(db.insert("c", "victim", vector.clone(), None).is_err());
        drop(db);
        let report = sim.crash();
        if report.writes_torn == 0 {
            continue;
        }
        torn += 1;
        match open(&sim, WalMode::Synced) {
            Ok(db) => assert!(db.get("c", "a").unwrap().is_some(), "seed {seed}"),
            Err(e) => {
                eprintln!("seed {seed}: {e}");
                unopenable += 1;
            }
        }
    }
    (unopenable, torn)
}

// ---- the random search: faults, reopens, crashes, crashes during recovery ------------------

/// Collection → (id → (vector, tag), indexed paths).
type Model = BTreeMap<String, (BTreeMap<String, (Vec<f32>, Option<u64>)>, Vec<String>)>;

#[derive(Debug, Clone)]
enum Step {
    Create(String),
    Drop(String),
    Upsert(String, Vec<(String, Vec<f32>, Option<u64>)>),
    Update(String, String, Option<u64>),
    Delete(String, String),
    DeleteMany(String, Vec<String>),
    DeleteTag(String, u64),
    CreateIndex(String),
    DropIndex(String),
    Compact(String),
    Checkpoint,
    Snapshot,
    Restore,
}

fn random_step(rng: &mut Rng, model: &Model) -> Step {
    let name = ["a", "b"][rng.below(2) as usize].to_string();
    let id = |rng: &mut Rng| format!("k{}", rng.below(30));
    let tag = |rng: &mut Rng| (rng.below(3) > 0).then(|| rng.below(4));
    let vector = |rng: &mut Rng| vec![rng.f32() * 4.0 - 2.0, rng.f32() * 4.0 - 2.0];
    if !model.contains_key(&name) && rng.below(3) > 0 {
        return Step::Create(name);
    }
    match rng.below(100) {
        0..5 => Step::Create(name),
        5..7 => Step::Drop(name),
        7..35 => {
            let big = rng.below(3) == 0;
            let n = 1 + rng.below(if big { 20 } else { 1 }) as usize;
            Step::Upsert(
                name,
                (0..n).map(|_| (id(rng), vector(rng), tag(rng))).collect(),
            )
        }
        35..45 => Step::Update(name, id(rng), Some(rng.below(4))),
        45..55 => Step::Delete(name, id(rng)),
        55..60 => Step::DeleteMany(name, (0..3).map(|_| id(rng)).collect()),
        60..65 => Step::DeleteTag(name, rng.below(4)),
        65..70 => Step::CreateIndex(name),
        70..72 => Step::DropIndex(name),
        72..76 => Step::Compact(name),
        76..88 => Step::Checkpoint,
        88..93 => Step::Snapshot,
        _ => Step::Restore,
    }
}

/// The model after `step`, or `None` when the database must refuse it.
fn applied(model: &Model, step: &Step, snapshot: Option<&Model>) -> Option<Model> {
    let mut m = model.clone();
    match step {
        Step::Create(name) => {
            if m.contains_key(name) {
                return None;
            }
            m.insert(name.clone(), Default::default());
        }
        Step::Drop(name) => {
            m.remove(name)?;
        }
        Step::Upsert(name, records) => {
            let c = &mut m.get_mut(name)?.0;
            for (id, v, t) in records {
                c.insert(id.clone(), (v.clone(), *t));
            }
        }
        Step::Update(name, id, t) => m.get_mut(name)?.0.get_mut(id)?.1 = *t,
        Step::Delete(name, id) => {
            m.get_mut(name)?.0.remove(id);
        }
        Step::DeleteMany(name, ids) => {
            let c = &mut m.get_mut(name)?.0;
            for id in ids {
                c.remove(id);
            }
        }
        Step::DeleteTag(name, t) => m.get_mut(name)?.0.retain(|_, r| r.1 != Some(*t)),
        Step::CreateIndex(name) => {
            let idx = &mut m.get_mut(name)?.1;
            if !idx.is_empty() {
                return None;
            }
            idx.push("t".into());
        }
        Step::DropIndex(name) => {
            let idx = &mut m.get_mut(name)?.1;
            idx.pop()?;
        }
        Step::Compact(name) => {
            m.get(name)?;
        }
        Step::Checkpoint | Step::Snapshot => {}
        Step::Restore => return Some(snapshot.cloned().unwrap_or(m)),
    }
    Some(m)
}

fn run(
    db: &Database,
    step: &Step,
    snapshot: &mut Option<(Vec<u8>, Model)>,
    model: &Model,
) -> Result<(), Error> {
    let meta = |t: &Option<u64>| t.map(|t| serde_json::json!({ "t": t }));
    let filter = |t: u64| needle_core::Filter::parse(&serde_json::json!({ "t": t })).unwrap();
    match step {
        Step::Create(name) => db.create_collection_with_config(
            name,
            2,
            needle_core::CollectionConfig {
                distance: needle_core::Distance::Euclidean,
                m: 4,
                ef_construction: 16,
                ..Default::default()
            },
        ),
        Step::Drop(name) => db.drop_collection(name),
        Step::Upsert(name, records) => db.insert_batch(
            name,
            records
                .iter()
                .map(|(id, v, t)| needle_core::Record::new(id.clone(), v.clone(), meta(t)))
                .collect(),
        ),
        Step::Update(name, id, t) => db.update(name, id, None, meta(t)),
        Step::Delete(name, id) => db.delete(name, id).map(|_| ()),
        Step::DeleteMany(name, ids) => db.delete_many(name, ids).map(|_| ()),
        Step::DeleteTag(name, t) => db.delete_by_filter(name, &filter(*t)).map(|_| ()),
        Step::CreateIndex(name) => db.create_index(name, "t", needle_core::IndexKind::Integer),
        Step::DropIndex(name) => db.drop_index(name, "t"),
        Step::Compact(name) => db.compact(name),
        Step::Checkpoint => db.checkpoint(),
        Step::Snapshot => {
            let mut bytes = Vec::new();
            db.write_snapshot(&mut bytes, 3)?;
            *snapshot = Some((bytes, model.clone()));
            Ok(())
        }
        Step::Restore => match snapshot {
            Some((bytes, _)) => db.restore_snapshot(&mut bytes.as_slice()).map(|_| ()),
            None => Ok(()),
        },
    }
}

fn state_of(db: &Database) -> Model {
    let mut m = Model::new();
    for name in db.list_collections() {
        let mut c = BTreeMap::new();
        for id in db.ids(&name).unwrap() {
            let r = db.get(&name, &id).unwrap().unwrap();
            let t = r
                .metadata
                .as_ref()
                .and_then(|m| m.get("t"))
                .and_then(|t| t.as_u64());
            c.insert(id, (r.vector, t));
        }
        let idx = db
            .collection_info(&name)
            .unwrap()
            .indexes
            .into_iter()
            .map(|i| i.path)
            .collect();
        // The index answers like a scan of the records.
        for t in 0..4 {
            let f = needle_core::Filter::parse(&serde_json::json!({ "t": t })).unwrap();
            let want = c.values().filter(|r| r.1 == Some(t)).count();
            assert_eq!(
                db.count_matching(&name, Some(&f)).unwrap(),
                want,
                "{name} t={t}"
            );
        }
        m.insert(name, (c, idx));
    }
    m
}

#[derive(Debug, Default)]
struct Stats {
    acked: u64,
    failed_calls: u64,
    reopened_without_crash: u64,
    crashes: u64,
    crashes_in_recovery: u64,
    went_on_after_error: u64,
}

/// Opens after a power loss, with the power failing again inside recovery now and then (then a
/// second crash): returns the database, opened cleanly at last.
fn open_through_crashes(
    sim: &SimDisk,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<Database, String> {
    for attempt in 0..3 {
        if rng.below(3) == 0 {
            sim.power_off_after(sim.calls() + rng.below(40));
            match open(sim, WalMode::Synced) {
                Ok(db) => {
                    // Recovery finished before the power went: use it (its writes fail).
                    drop(db);
                }
                Err(Error::Io { .. }) => {}
                Err(e) => return Err(format!("open {attempt} with the power failing: {e}")),
            }
            stats.crashes_in_recovery += 1;
            let r = sim.crash();
            if trace() {
                eprintln!("crash in recovery: {r:?}");
            }
        }
    }
    // `check` first: it must change no byte, and say what the open then does.
    let before = sim.files();
    let check = Database::check_on(sim.shared(), PATH);
    if sim.files() != before {
        return Err("check changed the files".into());
    }
    let db = open(sim, WalMode::Synced).map_err(|e| format!("open after crashes: {e}"))?;
    let check = check.map_err(|e| format!("check failed where open succeeds: {e}"))?;
    if !matches!(
        check.log,
        LogCheck::Empty | LogCheck::Stale | LogCheck::Clean | LogCheck::TornTail { .. }
    ) {
        return Err(format!("check says {:?} where open succeeds", check.log));
    }
    let counts: Vec<(String, usize)> = db
        .list_collections()
        .into_iter()
        .map(|n| {
            let c = db.count(&n).unwrap();
            (n, c)
        })
        .collect();
    if counts != check.collections {
        return Err(format!(
            "check counts {:?}, open finds {counts:?}",
            check.collections
        ));
    }
    Ok(db)
}

fn trace() -> bool {
    std::env::var("NEEDLE_TRACE").is_ok()
}

fn vopr_case(seed: u64, stats: &mut Stats) -> Result<(), String> {
    let mut rng = Rng(seed);
    let sim = disk(seed);
    // The acknowledged state.
    let mut model = Model::new();
    // The states the steps that failed since the last open would have made: each may or may not
    // have happened, until a later write is acknowledged on top (then none did).
    let mut maybe: Vec<Model> = Vec::new();
    // The state the open database shows, and whether it must refuse writes (it shows a step
    // that failed: a restore whose rename happened).
    let mut live = Model::new();
    let mut must_refuse = false;
    let mut snapshot: Option<(Vec<u8>, Model)> = None;
    let mut db = open(&sim, WalMode::Synced).map_err(|e| e.to_string())?;
    for i in 0..60 {
        if rng.below(6) == 0 {
            let kind = if rng.below(2) == 0 {
                FaultKind::Eio
            } else {
                FaultKind::NoSpace
            };
            sim.fail_at(sim.calls() + rng.below(12), kind);
        }
        let step = random_step(&mut rng, &live);
        let expected = applied(&live, &step, snapshot.as_ref().map(|s| &s.1));
        let result = run(&db, &step, &mut snapshot, &live);
        if trace() {
            eprintln!("step {i}: {step:?} -> {result:?} (calls {})", sim.calls());
        }
        let mut reopen = rng.below(15) == 0;
        match result {
            Ok(()) => {
                let Some(after) = expected else {
                    if !matches!(
                        step,
                        Step::Delete(..) | Step::DeleteMany(..) | Step::DeleteTag(..)
                    ) {
                        return Err(format!("step {i}: {step:?} succeeded but should fail"));
                    }
                    continue;
                };
                if after != live {
                    if must_refuse {
                        return Err(format!(
                            "step {i}: {step:?} accepted after an error that should stop writes"
                        ));
                    }
                    stats.acked += 1;
                    maybe.clear();
                    model = after.clone();
                    live = after;
                }
                let found = state_of(&db);
                if found != live {
                    return Err(format!(
                        "step {i}: {step:?}: live state differs:\n found {found:?}\n live {live:?}"
                    ));
                }
            }
            Err(Error::Io { .. }) => {
                stats.failed_calls += 1;
                sim.clear_faults();
                let found = state_of(&db);
                let after = expected.unwrap_or_else(|| live.clone());
                if found == after && after != live {
                    // Applied in memory (a restore whose rename happened): writes must stop.
                    must_refuse = true;
                } else if found != live {
                    return Err(format!(
                        "step {i}: {step:?} failed and left a third state:\n found {found:?}\n live {live:?}"
                    ));
                }
                maybe.push(after);
                live = found;
                match rng.below(3) {
                    0 => stats.went_on_after_error += 1,
                    1 => {
                        stats.reopened_without_crash += 1;
                        if trace() {
                            eprintln!("reopen without a crash");
                        }
                        drop(db);
                        db = open(&sim, WalMode::Synced)
                            .map_err(|e| format!("step {i}: reopen after {step:?} failed: {e}"))?;
                        let found = state_of(&db);
                        if found != model && !maybe.contains(&found) {
                            return Err(format!(
                                "step {i}: after {step:?} failed, a reopen (no crash) shows a state \
                                 that is neither before nor after it:\n found {found:?}\n model {model:?}"
                            ));
                        }
                        // The reopened database goes on from what it read; a crash later must
                        // not take it back (that is what the next check tests).
                        model = found.clone();
                        live = found;
                        maybe.clear();
                        must_refuse = false;
                    }
                    _ => reopen = true,
                }
            }
            Err(e) => {
                if expected.is_some() {
                    return Err(format!("step {i}: {step:?} refused: {e}"));
                }
            }
        }
        if reopen {
            stats.crashes += 1;
            sim.clear_faults();
            drop(db);
            let r = sim.crash();
            if trace() {
                eprintln!("crash: {r:?}");
            }
            db = open_through_crashes(&sim, &mut rng, stats)
                .map_err(|e| format!("step {i}: {e}"))?;
            let found = state_of(&db);
            if found != model && !maybe.contains(&found) {
                return Err(format!(
                    "step {i}: after a crash the state is not the acknowledged one (nor one a failed \
                     step would have made):\n found {found:?}\n model {model:?}\n maybe {maybe:?}"
                ));
            }
            model = found.clone();
            live = found;
            maybe.clear();
            must_refuse = false;
        }
    }
    Ok(())
}

#[test]
fn random_faults_reopens_and_crashes_lose_no_acknowledged_write() {
    let seed = common::seed("random_faults_reopens_and_crashes_lose_no_acknowledged_write");
    let n = cases(150);
    let mut rng = Rng(seed);
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    for i in 0..n {
        let case_seed = rng.next_u64();
        if let Err(why) = vopr_case(case_seed, &mut stats) {
            failures.push(format!(
                "case {i} (replay it alone: NEEDLE_SEED={case_seed} cargo test -p needle-core --test adversarial_storage one_case): {why}"
            ));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    eprintln!("{n} cases: {stats:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        stats.failed_calls > n / 2 && stats.crashes_in_recovery > 0,
        "{stats:?}"
    );
}

/// Replays one case, the seed of a failing case as its `NEEDLE_SEED`:
/// `NEEDLE_SEED=<case seed> cargo test -p needle-core --test adversarial_storage one_case`.
#[test]
fn one_case() {
    if let Some(seed) = needle_testkit::env_seed() {
        let mut stats = Stats::default();
        let r = vopr_case(seed, &mut stats);
        eprintln!("{stats:?}");
        r.unwrap();
    }
}

// ---- bytes that pass every checksum -------------------------------------------------------

/// A database with everything a checkpoint holds: two collections, upper layers, deletions,
/// metadata, payload indexes of each kind; and a log with one of each op after it.
fn rich_files(seed: u64) -> (Vec<u8>, Vec<u8>) {
    use needle_core::{CollectionConfig, Distance, IndexKind, Record};
    use serde_json::json;
    let sim = disk(seed);
    let db = open(&sim, WalMode::Synced).unwrap();
    let config = CollectionConfig {
        distance: Distance::Euclidean,
        m: 2,
        ef_construction: 8,
        ..Default::default()
    };
    db.create_collection_with_config("a", 3, config).unwrap();
    db.create_collection("b", 2).unwrap();
    let records = (0..60)
        .map(|i| {
            Record::new(
                format!("r{i}"),
                vec![i as f32, (i % 7) as f32, 1.0],
                Some(json!({"k": format!("w{}", i % 3), "n": [i % 5, 7], "f": i as f64 / 3.0, "b": i % 2 == 0})),
            )
        })
        .collect();
    db.insert_batch("a", records).unwrap();
    db.insert("b", "x", vec![1.0, 0.5], None).unwrap();
    for (path, kind) in [
        ("k", IndexKind::Keyword),
        ("n", IndexKind::Integer),
        ("f", IndexKind::Float),
        ("b", IndexKind::Bool),
    ] {
        db.create_index("a", path, kind).unwrap();
    }
    for i in 0..10 {
        db.delete("a", &format!("r{}", i * 3)).unwrap();
    }
    db.checkpoint().unwrap();
    db.insert("a", "late", vec![0.5, 0.5, 0.5], Some(json!({"k": "w1"})))
        .unwrap();
    db.update("a", "r1", None, Some(json!({"n": 3}))).unwrap();
    db.delete("a", "r2").unwrap();
    db.delete_many("a", &["r4".into(), "r5".into()]).unwrap();
    let f = needle_core::Filter::parse(&json!({"k": "w2"})).unwrap();
    db.delete_by_filter("a", &f).unwrap();
    db.drop_index("a", "b").unwrap();
    db.compact("a").unwrap();
    db.create_collection("c", 4).unwrap();
    db.drop_collection("c").unwrap();
    drop(db);
    let files = sim.files();
    (
        files[Path::new(PATH)].clone(),
        files[Path::new("/db/x.needle-wal")].clone(),
    )
}

/// The checkpoint's sections: (offset of the payload, its length).
fn sections(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 64;
    while pos + 16 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[pos + 4..pos + 12].try_into().unwrap()) as usize;
        out.push((pos + 16, len));
        pos += 16 + len + 4;
        pos += (8 - (len + 4) % 8) % 8;
    }
    out
}

/// Uses an opened database every way a caller can, so that a panic anywhere shows.
fn exercise(db: &Database) {
    use needle_core::SearchOptions;
    for name in db.list_collections() {
        let Ok(info) = db.collection_info(&name) else {
            continue;
        };
        let q = vec![0.3; info.dimensions];
        let _ = db.search(&name, &q, 5);
        for f in [
            serde_json::json!({"k": "w1"}),
            serde_json::json!({"n": {"$gte": 2}}),
            serde_json::json!({"f": {"$lt": 4.0}}),
            serde_json::json!({"b": true}),
        ] {
            let f = needle_core::Filter::parse(&f).unwrap();
            let _ = db.search_with(&name, &q, 5, &SearchOptions::new().with_filter(f.clone()));
            let _ = db.count_matching(&name, Some(&f));
            let _ = db.scroll(&name, Some(&f), None, 7);
        }
        for id in db.ids(&name).unwrap_or_default() {
            let _ = db.get(&name, &id);
        }
        let _ = db.insert(&name, "new", vec![0.1; info.dimensions], None);
        let _ = db.delete(&name, "r7");
        let _ = db.compact(&name);
        let _ = db.search(&name, &q, 5);
    }
    let _ = db.checkpoint();
}

/// Bytes changed *and checksums recomputed* (a bug, a hand edit, an old build): every check of
/// meaning must hold on its own. Open — and everything after it — returns errors, never panics.
#[test]
fn open_never_panics_on_checkpoint_bytes_with_valid_checksums() {
    let seed = common::seed("open_never_panics_on_checkpoint_bytes_with_valid_checksums");
    let mut rng = Rng(seed);
    let (main, wal) = rich_files(1);
    let secs = sections(&main);
    let n = cases(300);
    let mut opened = 0;
    for case in 0..n {
        let mut bytes = main.clone();
        let (at, len) = secs[rng.below(secs.len() as u64) as usize];
        if len == 0 {
            continue;
        }
        for _ in 0..1 + rng.below(3) {
            let i = at + rng.below(len as u64) as usize;
            match rng.below(4) {
                0 => bytes[i] ^= 1 << rng.below(8),
                1 => bytes[i] = rng.below(256) as u8,
                2 => {
                    // A small number where a count or a slot may be.
                    let j = at + (i - at) / 4 * 4;
                    if j + 4 <= at + len {
                        let x =
                            [0u32, 1, 2, 59, 60, 61, u32::MAX, u32::MAX - 1][rng.below(8) as usize];
                        bytes[j..j + 4].copy_from_slice(&x.to_le_bytes());
                    }
                }
                _ => bytes[i] = bytes[i].wrapping_add(1),
            }
        }
        // A checkpoint section's CRC-32C: the first log format's frame CRC, `crc32c(bytes)`.
        let crc = needle_core::disk::frame::Seal::Payload.crc(0, &bytes[at..at + len]);
        bytes[at + len..at + len + 4].copy_from_slice(&crc.to_le_bytes());
        let sim = disk(case);
        sim.put_file(Path::new(PATH), &bytes);
        sim.put_file(Path::new("/db/x.needle-wal"), &wal);
        let result = std::panic::catch_unwind(|| match open(&sim, WalMode::Synced) {
            Ok(db) => {
                exercise(&db);
                true
            }
            Err(_) => false,
        });
        match result {
            Ok(o) => opened += u64::from(o),
            Err(_) => {
                panic!("case {case} (NEEDLE_SEED={seed}): a panic with a section at {at} edited")
            }
        }
    }
    eprintln!("{n} edited checkpoints, {opened} opened");
}

/// A record's metadata edited under a valid checksum (`"k":"w1"` made `"k":"w0"`, both values
/// of the keyword index on `k`), its payload index left as it was: each half checks on its own,
/// and they disagree. Opened, a filter on `k` would answer from the index what the record
/// contradicts; the open refuses, naming the index and the slot.
#[test]
fn an_index_that_disagrees_with_its_records_metadata_is_refused() {
    let (main, _) = rich_files(1);
    let needle = br#""k":"w1""#;
    let at = main
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("a record holding k = w1");
    let (start, len) = sections(&main)
        .into_iter()
        .find(|&(start, len)| (start..start + len).contains(&at))
        .expect("the records section");
    let mut bytes = main.clone();
    bytes[at + needle.len() - 2] = b'0';
    let crc = needle_core::disk::frame::Seal::Payload.crc(0, &bytes[start..start + len]);
    bytes[start + len..start + len + 4].copy_from_slice(&crc.to_le_bytes());
    for (file, what) in [(&main, "the file as written"), (&bytes, "the edited file")] {
        let sim = disk(0);
        sim.put_file(Path::new(PATH), file);
        let opened = open(&sim, WalMode::Synced);
        if what == "the file as written" {
            assert!(opened.is_ok(), "{what}: {:?}", opened.err());
            continue;
        }
        match opened {
            Err(Error::Corrupted { reason, .. }) => {
                assert!(reason.contains("payload index 'k'"), "{reason}");
                assert!(reason.contains("disagrees"), "{reason}");
            }
            Err(e) => panic!("{what}: expected Corrupted, got {e}"),
            Ok(_) => panic!("{what}: opened with an index that contradicts its records"),
        }
    }
}

/// The same for log records: a payload edited and its frame's CRC recomputed.
#[test]
fn open_never_panics_on_log_records_with_valid_checksums() {
    let seed = common::seed("open_never_panics_on_log_records_with_valid_checksums");
    let mut rng = Rng(seed);
    let (main, wal) = rich_files(2);
    let (h, seal) = (common::WAL_HEADER, common::wal_seal(&wal));
    let scan = needle_core::disk::frame::scan(&wal[h..], seal, h as u64, |p: &[u8]| Some(p.len()));
    let n = cases(300);
    for case in 0..n {
        let mut bytes = wal.clone();
        let r = &scan.records[rng.below(scan.records.len() as u64) as usize];
        let (at, len) = (r.offset as usize + 8, r.value);
        for _ in 0..1 + rng.below(3) {
            let i = at + rng.below(len as u64) as usize;
            match rng.below(3) {
                0 => bytes[i] ^= 1 << rng.below(8),
                1 => bytes[i] = rng.below(256) as u8,
                _ => bytes[i] = bytes[i].wrapping_add(1),
            }
        }
        let crc = seal.crc(r.offset, &bytes[at..at + len]);
        bytes[at - 4..at].copy_from_slice(&crc.to_le_bytes());
        let sim = disk(case);
        sim.put_file(Path::new(PATH), &main);
        sim.put_file(Path::new("/db/x.needle-wal"), &bytes);
        let result = std::panic::catch_unwind(|| {
            let _ = Database::check_on(sim.shared(), PATH);
            if let Ok(db) = open(&sim, WalMode::Synced) {
                exercise(&db);
            }
        });
        assert!(
            result.is_ok(),
            "case {case} (NEEDLE_SEED={seed}): a panic with record at {} edited",
            r.offset
        );
    }
}

// ---- unsynced: a prefix after any power loss ------------------------------------------------

/// With [`WalMode::Unsynced`] a power loss may lose the writes since the last checkpoint (or
/// open), but the database opens, and holds a prefix of them: the state after some step since
/// then, each step whole. Power cut at a random call, several rounds, crashes inside recovery.
fn unsynced_case(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed);
    let sim = disk(seed);
    let mut snapshot: Option<(Vec<u8>, Model)> = None;
    // The states a crash may leave: the last durable one, then one per step since.
    let mut history: Vec<Model> = vec![Model::new()];
    for round in 0..4 {
        let db = match open(&sim, WalMode::Unsynced) {
            Ok(db) => db,
            Err(e) => return Err(format!("round {round}: open failed: {e}")),
        };
        let found = state_of(&db);
        if !history.contains(&found) {
            if trace() {
                for (j, h) in history.iter().enumerate() {
                    eprintln!("history {j}: {h:?}");
                }
                eprintln!("found: {found:?}");
            }
            return Err(format!(
                "round {round}: after a power loss the state is no prefix of the writes:\n found {found:?}\n history {history:?}"
            ));
        }
        // The open made what it found durable.
        history = vec![found];
        sim.power_off_after(sim.calls() + rng.below(150));
        for i in 0..40 {
            let live = history.last().unwrap().clone();
            let step = random_step(&mut rng, &live);
            let expected = applied(&live, &step, snapshot.as_ref().map(|s| &s.1));
            // A checkpoint, or a restore of a snapshot, is durable when it returns.
            let durable = matches!(step, Step::Checkpoint)
                || (matches!(step, Step::Restore) && snapshot.is_some());
            let result = run(&db, &step, &mut snapshot, &live);
            if trace() {
                eprintln!("round {round} step {i}: {step:?} -> {result:?}");
            }
            match result {
                Ok(()) => match expected {
                    Some(after) if durable => history = vec![after],
                    Some(after) => history.push(after),
                    None => {}
                },
                Err(Error::Io { .. }) => {
                    if let Some(after) = expected {
                        history.push(after);
                    }
                    if trace() {
                        eprintln!("round {round} step {i}: {step:?} cut by the power");
                    }
                    break;
                }
                Err(e) if expected.is_some() => {
                    return Err(format!("round {round}: {step:?} refused: {e}"));
                }
                Err(_) => {}
            }
        }
        drop(db);
        sim.crash();
        // Now and then the power fails again during recovery.
        if rng.below(3) == 0 {
            sim.power_off_after(sim.calls() + rng.below(30));
            drop(open(&sim, WalMode::Unsynced));
            sim.crash();
        }
    }
    Ok(())
}

#[test]
fn unsynced_opens_after_any_power_loss_with_a_prefix_of_the_writes() {
    let seed = common::seed("unsynced_opens_after_any_power_loss_with_a_prefix_of_the_writes");
    let mut rng = Rng(seed);
    let n = cases(100);
    let mut failures = Vec::new();
    for i in 0..n {
        let case_seed = rng.next_u64();
        if let Err(why) = unsynced_case(case_seed) {
            failures.push(format!(
                "case {i} (replay it alone: NEEDLE_SEED={case_seed} cargo test -p needle-core --test adversarial_storage one_unsynced_case): {why}"
            ));
            if failures.len() >= 3 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Replays one case of the test above, the seed of a failing case as its `NEEDLE_SEED`.
#[test]
fn one_unsynced_case() {
    if let Some(seed) = needle_testkit::env_seed() {
        unsynced_case(seed).unwrap();
    }
}

/// Open writes the recovered log anew and renames it into place: the log keeps the permissions
/// its owner gave it (as a checkpoint keeps the database file's).
#[cfg(unix)]
#[test]
fn reopening_keeps_the_log_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.needle");
    let wal = dir.path().join("p.needle-wal");
    let db = Database::open(&path).unwrap();
    db.create_collection("c", 2).unwrap();
    drop(db);
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o600)).unwrap();
    let db = Database::open(&path).unwrap();
    assert_eq!(db.list_collections(), ["c"]);
    let mode = std::fs::metadata(&wal).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Every call of recovery itself failed in turn (the open returns an error), then an open
/// without a crash, acknowledged writes, a power loss: every write is there.
#[test]
fn a_failed_call_in_recovery_then_a_reopen_then_a_crash_loses_nothing() {
    let mut failures = Vec::new();
    for kind in [FaultKind::Eio, FaultKind::NoSpace] {
        for k in 0u64.. {
            let sim = disk(k);
            let db = open(&sim, WalMode::Synced).unwrap();
            db.create_collection("c", 2).unwrap();
            db.insert("c", "pre", v(0), None).unwrap();
            // An unacknowledged write in flight when the power went: a torn tail to cut.
            sim.power_off_after(sim.calls() + 1);
            assert!(db.insert("c", "torn", v(1), None).is_err());
            drop(db);
            sim.crash();
            let start = sim.calls();
            sim.fail_at(start + k, kind);
            let first = open(&sim, WalMode::Synced);
            let used = sim.calls() - start;
            sim.clear_faults();
            drop(first);
            if k >= used {
                break;
            }
            let outcome = (|| -> Result<(), String> {
                let db = open(&sim, WalMode::Synced).map_err(|e| format!("reopen: {e}"))?;
                db.insert("c", "post", v(2), None)
                    .map_err(|e| format!("write: {e}"))?;
                drop(db);
                sim.crash();
                let db = open(&sim, WalMode::Synced).map_err(|e| format!("open: {e}"))?;
                for id in ["pre", "post"] {
                    if db.get("c", id).unwrap().is_none() {
                        return Err(format!("{id} lost"));
                    }
                }
                Ok(())
            })();
            if let Err(why) = outcome {
                failures.push(format!("{kind:?} at call {k} of {used}: {why}"));
            }
        }
    }
    assert_none(failures);
}
