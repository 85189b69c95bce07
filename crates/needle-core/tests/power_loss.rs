//! Power loss, property-tested on the simulated disk: random sequences of collection changes,
//! inserts, batches, updates, deletes, checkpoints, compactions and snapshot restores against a
//! model (a map per collection), with the power cut at a random disk call — inside a log
//! append, a checkpoint, a log reset, a batch — then a crash (unsynced bytes dropped, kept,
//! torn or zeroed; unsynced renames kept or lost) and a reopen. The reopened database must hold
//! every acknowledged write, and the one write in flight whole or not at all. Several crashes
//! per case, so recovery also runs on top of earlier recoveries.
//!
//! In half the cases the disk also fails calls at random with EIO or ENOSPC (reads too, opens
//! and recoveries included): a step that gets an I/O error is not acknowledged and is whole or
//! absent, in memory and after the crash that follows; the database then either refuses the
//! next write or takes it, and a write it takes survives. After one crash in eight a bit
//! rots at rest in a durable byte of the checkpoint or of any whole record of the log, the last
//! one included (a whole last frame one bit away from valid is rot, not a tear:
//! `needle_core::disk::frame::ONE_BIT`): the next open is a typed
//! `Corrupted` (the case ends there), or opens with exactly the acknowledged state (the bit was
//! one no reader uses, e.g. padding or a stale log); never a panic, never other data.
//!
//! `NEEDLE_SIM_CASES=N` sets the number of cases (default 200); `NEEDLE_SEED` replays a run,
//! and a failure prints the seed of its case.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Rng;
use needle_core::disk::{Disk, FaultConfig, SimDisk, frame};
use needle_core::{CollectionConfig, Database, DatabaseOptions, Distance, Error, Record, WalMode};

const PATH: &str = "/db/p.needle";
const WAL: &str = "/db/p.needle-wal";
const DIM: usize = 3;
const NAMES: [&str; 2] = ["a", "b"];

/// Collection → id → (vector, metadata tag).
type Model = BTreeMap<String, BTreeMap<String, (Vec<f32>, Option<u64>)>>;

#[derive(Debug, Clone)]
enum Step {
    Create(String),
    Drop(String),
    Upsert(String, Vec<(String, Vec<f32>, Option<u64>)>),
    Update(String, String, Option<Vec<f32>>, Option<u64>),
    Delete(String, String),
    Compact(String),
    Checkpoint,
    Snapshot,
    Restore,
}

fn config() -> CollectionConfig {
    CollectionConfig {
        distance: Distance::Euclidean,
        m: 4,
        ef_construction: 16,
        ..Default::default()
    }
}

fn vector(rng: &mut Rng) -> Vec<f32> {
    (0..DIM).map(|_| rng.f32() * 10.0 - 5.0).collect()
}

fn random_step(rng: &mut Rng, model: &Model) -> Step {
    let name = NAMES[rng.below(2) as usize].to_string();
    let id = |rng: &mut Rng| format!("k{}", rng.below(40));
    let tag = |rng: &mut Rng| (rng.below(3) > 0).then(|| rng.below(1000));
    if !model.contains_key(&name) && rng.below(3) > 0 {
        return Step::Create(name);
    }
    match rng.below(100) {
        0..6 => Step::Create(name),
        6..8 => Step::Drop(name),
        8..40 => Step::Upsert(name, vec![(id(rng), vector(rng), tag(rng))]),
        40..55 => {
            let n = 1 + rng.below(25) as usize;
            let records = (0..n).map(|_| (id(rng), vector(rng), tag(rng))).collect();
            Step::Upsert(name, records)
        }
        55..65 => {
            let id = model
                .get(&name)
                .and_then(|c| c.keys().nth(rng.below(c.len() as u64) as usize).cloned())
                .unwrap_or_else(|| id(rng));
            let v = (rng.below(2) == 0).then(|| vector(rng));
            let t = if v.is_none() {
                Some(rng.below(1000))
            } else {
                tag(rng)
            };
            Step::Update(name, id, v, t)
        }
        65..78 => Step::Delete(name, id(rng)),
        78..83 => Step::Compact(name),
        83..92 => Step::Checkpoint,
        92..96 => Step::Snapshot,
        _ => Step::Restore,
    }
}

/// What the step does to the model if it succeeds; `None` when the database must refuse it
/// (a collection that does not exist or already exists, an update of a missing id).
fn applied(model: &Model, step: &Step, snapshot: Option<&Model>) -> Option<Model> {
    let mut m = model.clone();
    match step {
        Step::Create(name) => {
            if m.contains_key(name) {
                return None;
            }
            m.insert(name.clone(), BTreeMap::new());
        }
        Step::Drop(name) => {
            m.remove(name)?;
        }
        Step::Upsert(name, records) => {
            let c = m.get_mut(name)?;
            for (id, v, t) in records {
                c.insert(id.clone(), (v.clone(), *t));
            }
        }
        Step::Update(name, id, v, t) => {
            let rec = m.get_mut(name)?.get_mut(id)?;
            if let Some(v) = v {
                rec.0 = v.clone();
            }
            if t.is_some() {
                rec.1 = *t;
            }
        }
        Step::Delete(name, id) => {
            m.get_mut(name)?.remove(id);
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
    match step {
        Step::Create(name) => db.create_collection_with_config(name, DIM, config()),
        Step::Drop(name) => db.drop_collection(name),
        Step::Upsert(name, records) => db.insert_batch(
            name,
            records
                .iter()
                .map(|(id, v, t)| Record::new(id.clone(), v.clone(), meta(t)))
                .collect(),
        ),
        Step::Update(name, id, v, t) => db.update(name, id, v.clone(), meta(t)),
        Step::Delete(name, id) => db.delete(name, id).map(|_| ()),
        Step::Compact(name) => db.compact(name),
        Step::Checkpoint => db.checkpoint(),
        Step::Snapshot => {
            let mut bytes = Vec::new();
            db.write_snapshot(&mut bytes, 5)?;
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
        m.insert(name, c);
    }
    m
}

fn open_once(sim: &SimDisk) -> Result<Database, Error> {
    Database::open_on(
        sim.shared(),
        PATH,
        DatabaseOptions {
            wal: WalMode::Synced,
        },
    )
}

/// Opens, retrying opens that an injected I/O error failed (each must be a typed `Io`).
fn open(sim: &SimDisk) -> Result<Database, Error> {
    let mut tries = 0;
    loop {
        match open_once(sim) {
            Err(Error::Io { .. }) if tries < 200 => tries += 1,
            other => return other,
        }
    }
}

/// Flips one bit at rest in a durable byte that a reader checks: anywhere in the checkpoint,
/// or in any whole record of the log (see the module doc). Returns where, if anywhere.
fn rot(sim: &SimDisk, rng: &mut Rng) -> Option<(String, u64)> {
    let files = sim.files();
    let mut targets: Vec<(&str, u64)> = Vec::new();
    if let Some(main) = files.get(Path::new(PATH)) {
        targets.push((PATH, main.len() as u64));
    }
    if let Some(wal) = files.get(Path::new(WAL))
        && wal.len() >= common::WAL_HEADER
        && wal[..8] == *b"NEEDLWAL"
    {
        let seal = common::wal_seal(wal);
        let h = common::WAL_HEADER;
        let scan = frame::scan(&wal[h..], seal, h as u64, |_| Some(()));
        if !scan.records.is_empty() {
            targets.push((WAL, scan.valid_len()));
        }
    }
    let (path, len) = targets[rng.below(targets.len() as u64) as usize];
    let bit = rng.below(len * 8);
    sim.flip_bit(Path::new(path), bit).unwrap();
    Some((path.to_string(), bit))
}

/// What the cases did, so a run that tests nothing shows.
#[derive(Debug, Default)]
struct Stats {
    acknowledged: u64,
    refused: u64,
    cut_in_flight: u64,
    in_flight_kept: u64,
    checkpoints: u64,
    restores: u64,
    /// Cases whose disk failed calls at random.
    faulty_cases: u64,
    /// Steps that failed with an I/O error while the power was on (injected EIO/ENOSPC).
    io_errors: u64,
    /// After an I/O error: the next write was refused / was taken (and had to survive).
    refused_after_error: u64,
    went_on_after_error: u64,
    /// Bits rotted at rest; opens that found them (`Corrupted`); opens they did not affect.
    rotted: u64,
    rot_detected: u64,
    rot_harmless: u64,
}

/// One case: a few rounds of random steps, each ended by a power cut at a random call.
fn case(seed: u64, stats: &mut Stats) -> Result<(), String> {
    let mut rng = Rng(seed);
    let sim = SimDisk::new(seed);
    sim.create_dir_all(Path::new("/db")).unwrap();
    let mut model = Model::new();
    let mut snapshot: Option<(Vec<u8>, Model)> = None;
    if rng.below(2) == 0 {
        stats.faulty_cases += 1;
        let ppm = [2_000, 10_000, 30_000][rng.below(3) as usize];
        sim.set_faults(FaultConfig {
            eio_ppm: ppm,
            read_eio_ppm: ppm / 2,
            enospc_ppm: ppm / 2,
        });
    }
    let mut rotted: Option<(String, u64)> = None;
    for round in 0..3 {
        let db = match open(&sim) {
            Ok(db) => db,
            Err(Error::Corrupted { .. }) if rotted.is_some() => {
                stats.rot_detected += 1;
                return Ok(());
            }
            Err(e) => return Err(format!("round {round}: open failed: {e} (rot: {rotted:?})")),
        };
        if rotted.take().is_some() {
            stats.rot_harmless += 1;
        }
        let found = state_of(&db);
        if found != model {
            return Err(format!(
                "round {round}: after reopening, the state differs from the acknowledged one:\n found {found:?}\n model {model:?}"
            ));
        }
        // The power goes off within the next few hundred calls (or the round ends first).
        let power_at = sim.calls() + rng.below(120);
        sim.power_off_after(power_at);
        let steps = 1 + rng.below(40);
        for _ in 0..steps {
            let step = random_step(&mut rng, &model);
            let snap_model = snapshot.as_ref().map(|(_, m)| m);
            let expected = applied(&model, &step, snap_model);
            match run(&db, &step, &mut snapshot, &model) {
                Ok(()) => match expected {
                    Some(m) if matches!(step, Step::Checkpoint) => {
                        stats.checkpoints += 1;
                        stats.acknowledged += 1;
                        model = m;
                    }
                    Some(m) if matches!(step, Step::Restore) => {
                        stats.restores += 1;
                        stats.acknowledged += 1;
                        model = m;
                    }
                    Some(m) => {
                        stats.acknowledged += 1;
                        model = m;
                    }
                    None => {
                        // Refused by the model but accepted: only steps that change nothing.
                        if !matches!(step, Step::Delete(..)) {
                            return Err(format!(
                                "round {round}: {step:?} succeeded but should fail"
                            ));
                        }
                    }
                },
                Err(Error::Io { .. }) => {
                    // The step in flight when the power went, or that an injected EIO/ENOSPC
                    // failed: not acknowledged; whole or not at all, in memory too.
                    stats.cut_in_flight += 1;
                    stats.io_errors += u64::from(sim.calls() <= power_at);
                    let now = state_of(&db);
                    let after = expected.clone().unwrap_or_else(|| model.clone());
                    if now != model && now != after {
                        return Err(format!(
                            "round {round}: {step:?} failed, and the state in memory is neither before nor after it:\n now {now:?}\n model {model:?}"
                        ));
                    }
                    // The database refuses the next write, or takes it: then it must last.
                    let extra = match now.keys().next() {
                        Some(name) => Step::Upsert(
                            name.clone(),
                            vec![("after-error".into(), vec![1.0; DIM], Some(7))],
                        ),
                        None => Step::Create("a".into()),
                    };
                    let mut must_find = None;
                    match run(&db, &extra, &mut snapshot, &now) {
                        Ok(()) => {
                            stats.went_on_after_error += 1;
                            must_find = applied(&now, &extra, None);
                        }
                        Err(Error::Io { .. }) => stats.refused_after_error += 1,
                        Err(e) => {
                            return Err(format!(
                                "round {round}: after a failed {step:?}, {extra:?} failed with {e}"
                            ));
                        }
                    }
                    drop(db);
                    sim.crash();
                    let db = open(&sim).map_err(|e| {
                        format!("round {round}: open after a crash in {step:?} failed: {e}")
                    })?;
                    let found = state_of(&db);
                    // Taken: exactly as acknowledged. Otherwise the failed step, and the
                    // extra write if it failed too (unacknowledged), each whole or absent.
                    let candidates: Vec<Model> = match must_find {
                        Some(m) => vec![m],
                        None => {
                            let mut c = vec![model.clone()];
                            c.extend(expected.clone());
                            let with_extra: Vec<Model> =
                                c.iter().filter_map(|m| applied(m, &extra, None)).collect();
                            c.extend(with_extra);
                            c
                        }
                    };
                    if !candidates.contains(&found) {
                        return Err(format!(
                            "round {round}: crash during {step:?} (then {extra:?}): the state is none of the acknowledged ones:\n found {found:?}\n model {model:?}"
                        ));
                    }
                    stats.in_flight_kept += u64::from(found != model);
                    model = found;
                    // Its snapshot, if any, was taken in memory: still usable.
                    break;
                }
                Err(e) => {
                    stats.refused += 1;
                    if expected.is_some() {
                        return Err(format!("round {round}: {step:?} failed: {e}"));
                    }
                }
            }
        }
        sim.crash();
        if rng.below(8) == 0 {
            stats.rotted += 1;
            rotted = rot(&sim, &mut rng);
        }
    }
    let db = match open(&sim) {
        Ok(db) => db,
        Err(Error::Corrupted { .. }) if rotted.is_some() => {
            stats.rot_detected += 1;
            return Ok(());
        }
        Err(e) => return Err(format!("final open failed: {e} (rot: {rotted:?})")),
    };
    stats.rot_harmless += u64::from(rotted.is_some());
    let found = state_of(&db);
    if found != model {
        return Err(format!(
            "final: state differs (rot: {rotted:?}):\n found {found:?}\n model {model:?}"
        ));
    }
    Ok(())
}

#[test]
fn every_acknowledged_write_survives_a_power_loss() {
    let seed = common::seed("every_acknowledged_write_survives_a_power_loss");
    let cases = needle_testkit::knob("NEEDLE_SIM_CASES", 200);
    let mut rng = Rng(seed);
    let start = std::time::Instant::now();
    let mut stats = Stats::default();
    for i in 0..cases {
        let case_seed = rng.next_u64();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(case_seed, &mut stats)));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                panic!(
                    "case {i} (replay this case alone: NEEDLE_SEED={case_seed} cargo test -p needle-core --test power_loss one_case): {why}"
                )
            }
            Err(_) => panic!(
                "case {i} panicked (replay this case alone: NEEDLE_SEED={case_seed} cargo test -p needle-core --test power_loss one_case)"
            ),
        }
    }
    eprintln!(
        "{cases} power-loss cases in {:.1?}: {stats:?}",
        start.elapsed()
    );
    assert!(
        stats.acknowledged >= cases * 5,
        "too few steps acknowledged: {stats:?}"
    );
    assert!(
        stats.cut_in_flight >= cases,
        "too few power cuts inside a step: {stats:?}"
    );
    if cases >= 100 {
        assert!(stats.io_errors > 0 && stats.rot_detected > 0, "{stats:?}");
    }
}

/// Replays one case, the seed of a failing case as its `NEEDLE_SEED`:
/// `NEEDLE_SEED=<case seed> cargo test -p needle-core --test power_loss one_case`.
#[test]
fn one_case() {
    if let Some(seed) = needle_testkit::env_seed() {
        case(seed, &mut Stats::default()).unwrap();
    }
}
