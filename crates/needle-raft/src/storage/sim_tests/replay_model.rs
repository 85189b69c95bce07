//! A model-based random test of the log's replay against its live state, aimed at the states
//! where replay and the live path can part: tiny segments (many rolls), a long uncommitted suffix
//! (the commit index advances slowly) overwritten from far back, frequent compactions that delete
//! some segments and keep later ones holding overwritten entries, snapshot installs between them,
//! conf states, clean reopens and power losses (inside a write, a roll, a compaction's deletions),
//! each followed by more work on the reopened log and another reopen.
//!
//! Three checks, after every operation or reopen:
//! - the live log equals a plain model (a map of entries, a compaction point, a hard state, conf
//!   states by index) driven by the same calls;
//! - a clean reopen equals the live log; after a power loss, the reopened log is one of the
//!   states since the last fsync (and becomes the model from then on);
//! - a copy of the files without one segment (the first or a middle one) is `Corrupted` or opens
//!   equal to the live log: never another log.
//!
//! `NEEDLE_SEED` replays a run; `NEEDLE_REPLAY_CASES` sets the number of cases (default 1000).

use std::collections::BTreeMap;

use super::*;

/// The log as raft-rs sees it, kept the simplest way.
#[derive(Debug, Clone, Default)]
struct Model {
    snap: (u64, u64),
    hs: (u64, u64, u64),
    entries: BTreeMap<u64, (u64, Vec<u8>)>,
    confs: BTreeMap<u64, ConfState>,
}

impl Model {
    fn of(s: &LogStore) -> Model {
        Model {
            snap: (s.snap_index, s.snap_term),
            hs: (s.hs.term, s.hs.vote, s.hs.commit),
            entries: s
                .entries
                .iter()
                .map(|e| (e.index, (e.term, e.data.to_vec())))
                .collect(),
            confs: s.confs.iter().cloned().collect(),
        }
    }

    fn last(&self) -> u64 {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.snap.0)
    }

    fn term_of(&self, i: u64) -> Option<u64> {
        if i == self.snap.0 {
            return Some(self.snap.1);
        }
        self.entries.get(&i).map(|e| e.0)
    }

    fn conf_at(&self, i: u64) -> ConfState {
        self.confs
            .range(..=i)
            .next_back()
            .map(|(_, cs)| cs.clone())
            .unwrap_or_default()
    }

    fn append(&mut self, ents: &[Entry]) {
        let mut truncated = false;
        for e in ents.iter().filter(|e| e.index > self.snap.0) {
            if !truncated {
                self.entries.split_off(&e.index);
                truncated = true;
            }
            self.entries.insert(e.index, (e.term, e.data.to_vec()));
        }
    }

    fn compact(&mut self, index: u64, term: u64) {
        self.entries = self.entries.split_off(&(index + 1));
        self.snap = (index, term);
    }

    fn snapshot(&mut self, index: u64, term: u64, cs: &ConfState) {
        self.entries.clear();
        self.snap = (index, term);
        self.hs.2 = self.hs.2.max(index);
        self.confs.split_off(&index);
        self.confs.insert(index, cs.clone());
    }

    fn conf_state(&mut self, index: u64, cs: &ConfState) {
        self.confs.split_off(&index);
        self.confs.insert(index, cs.clone());
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            snap: self.snap,
            hs: self.hs,
            entries: self
                .entries
                .iter()
                .map(|(i, (t, d))| (*i, *t, d.clone()))
                .collect(),
            conf_at_snap: self.conf_at(self.snap.0),
            conf_at_last: self.conf_at(self.last()),
        }
    }
}

fn short(f: &Fingerprint) -> String {
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for &(i, t, _) in &f.entries {
        match runs.last_mut() {
            Some(r) if r.1 + 1 == i && r.2 == t => r.1 = i,
            _ => runs.push((i, i, t)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|(a, b, t)| format!("{a}-{b}@t{t}"))
        .collect();
    format!(
        "snap {:?} hs {:?} entries [{}] voters@snap {:?} voters@last {:?}",
        f.snap,
        f.hs,
        runs.join(" "),
        f.conf_at_snap.voters,
        f.conf_at_last.voters
    )
}

fn differ(what: &str, got: &Fingerprint, want: &Fingerprint) -> String {
    format!("{what}\n  got:  {}\n  want: {}", short(got), short(want))
}

/// What one case did, summed over cases (to see that the states aimed at are reached).
#[derive(Debug, Default)]
pub(super) struct ReplayStats {
    ops: u64,
    overwrites: u64,
    far_overwrites: u64,
    compactions: u64,
    segments_deleted: u64,
    snapshots: u64,
    clean_reopens: u64,
    power_losses: u64,
    missing_segment_checks: u64,
    missing_segment_corrupted: u64,
}

struct Case {
    rng: Rng,
    disk: SimDisk,
    segment_size: u64,
    store: LogStore,
    model: Model,
    term: u64,
    /// States since the open, for a power loss: `history[durable..]` may be left.
    history: Vec<Fingerprint>,
    durable: usize,
    stats: ReplayStats,
}

impl Case {
    fn check_live(&self, op: &str) -> std::result::Result<(), String> {
        let live = fingerprint(&self.store);
        let want = self.model.fingerprint();
        if live != want {
            return Err(differ(
                &format!("after {op}, the live log differs from the model"),
                &live,
                &want,
            ));
        }
        Ok(())
    }

    fn reset_to(&mut self, store: LogStore) {
        self.model = Model::of(&store);
        self.term = self
            .term
            .max(store.hs.term)
            .max(store.snap_term)
            .max(store.term_of(store.last_index()).unwrap_or(0));
        self.history = vec![fingerprint(&store)];
        self.durable = 0;
        self.store = store;
    }

    fn reopen(&self) -> Result<LogStore> {
        open(&self.disk, self.segment_size)
    }

    /// One operation as the Ready loop makes it. Errors are the disk's (a power loss).
    fn op(&mut self) -> Result<&'static str> {
        let rng = &mut self.rng;
        let s = &mut self.store;
        let m = &mut self.model;
        let (snap, last, commit) = (s.snap_index, s.last_index(), s.hs.commit);
        let floor = commit.max(snap);
        let name = match rng.below(100) {
            0..=29 => {
                let ents: Vec<Entry> = (0..1 + rng.below(3))
                    .map(|i| entry(rng, last + 1 + i, self.term))
                    .collect();
                s.persist_entries(&ents);
                m.append(&ents);
                "append"
            }
            30..=44 if last > floor => {
                // A new leader overwrites the uncommitted suffix, often from its very start
                // (the farthest back an overwrite can reach).
                self.term += 1;
                let from = if rng.below(4) != 0 {
                    floor + 1
                } else {
                    floor + 1 + rng.below(last - floor)
                };
                self.stats.overwrites += 1;
                self.stats.far_overwrites += u64::from(last - from >= 4);
                let ents: Vec<Entry> = (0..1 + rng.below(3))
                    .map(|i| entry(rng, from + i, self.term))
                    .collect();
                s.persist_entries(&ents);
                m.append(&ents);
                "overwrite"
            }
            45..=56 => {
                // The commit index advances slowly (a long uncommitted suffix).
                if rng.below(4) == 0 {
                    self.term += 1;
                }
                let hs = HardState {
                    term: self.term,
                    vote: rng.below(4),
                    commit: (commit + rng.below(3)).min(last).max(commit),
                    ..Default::default()
                };
                s.persist_hard_state(&hs);
                m.hs = (hs.term, hs.vote, hs.commit);
                "hard state"
            }
            57..=71 if commit > snap => {
                // Compact to the commit index, or short of it.
                let to = if rng.below(2) == 0 {
                    commit
                } else {
                    snap + 1 + rng.below(commit - snap)
                };
                let term = m.term_of(to).expect("a committed index is in the log");
                let before = s.segments.len();
                m.compact(to, term);
                self.stats.compactions += 1;
                let r = s.compact(to);
                self.history.push(fingerprint(s));
                r?;
                self.stats.segments_deleted += (before + 1).saturating_sub(s.segments.len()) as u64;
                "compact"
            }
            72..=77 => {
                let mut cs = ConfState::default();
                cs.set_voters(vec![1, 2, 3 + rng.below(4)]);
                // Applied at the commit index.
                s.persist_conf_state(floor, &cs);
                m.conf_state(floor, &cs);
                "conf state"
            }
            78..=80 => {
                // A snapshot from a leader: past the commit index, inside the log or past it.
                self.term += rng.below(2);
                let index = commit.max(snap) + 1 + rng.below(last.saturating_sub(floor) + 4);
                let mut meta = SnapshotMetadata {
                    index,
                    term: self.term,
                    ..Default::default()
                };
                let mut cs = ConfState::default();
                cs.set_voters(vec![1, 2, 3 + rng.below(4)]);
                meta.set_conf_state(cs.clone());
                s.persist_snapshot(&meta);
                m.snapshot(index, self.term, &cs);
                self.stats.snapshots += 1;
                "snapshot"
            }
            81..=82 => {
                s.persist_commit((commit + 1).min(last));
                m.hs.2 = s.hs.commit;
                "commit"
            }
            _ => {
                let fsync = rng.below(5) != 0;
                s.sync(fsync)?;
                if fsync {
                    self.durable = self.history.len();
                }
                self.history.push(fingerprint(s));
                return Ok("sync");
            }
        };
        self.history.push(fingerprint(&self.store));
        Ok(name)
    }

    /// A copy of the files without one segment is `Corrupted` or the same log.
    fn missing_segment(&mut self) -> std::result::Result<(), String> {
        let files = self.disk.files();
        let segs: Vec<&PathBuf> = files
            .keys()
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        if segs.len() < 2 {
            return Ok(());
        }
        // Not the last one: losing it is losing a tail, which nothing can tell.
        let gone = segs[self.rng.below(segs.len() as u64 - 1) as usize];
        let copy = SimDisk::new(self.rng.next());
        for (p, b) in &files {
            if p != gone {
                copy.put_file(p, b);
            }
        }
        self.stats.missing_segment_checks += 1;
        match open(&copy, self.segment_size) {
            Err(NeedleError::Corrupted { .. }) => {
                self.stats.missing_segment_corrupted += 1;
                Ok(())
            }
            Err(e) => Err(format!("without {}: {e}", gone.display())),
            Ok(s) => {
                let live = fingerprint(&self.store);
                let got = fingerprint(&s);
                if got != live {
                    let names: Vec<String> = segs
                        .iter()
                        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                        .collect();
                    return Err(differ(
                        &format!(
                            "without {} (of {names:?}), the log opened as another log",
                            gone.display()
                        ),
                        &got,
                        &live,
                    ));
                }
                Ok(())
            }
        }
    }
}

/// One case: a few hundred operations with clean reopens and power losses among them.
pub(super) fn replay_case(seed: u64, stats: &mut ReplayStats) -> std::result::Result<(), String> {
    let mut rng = Rng(seed);
    let disk = SimDisk::new(seed);
    // Mostly tiny segments: a roll at every fsync, or every few records.
    let segment_size = match rng.below(4) {
        0 | 1 => 1,
        2 => 100 + rng.below(400),
        _ => 400 + rng.below(1200),
    };
    let store = open(&disk, segment_size).map_err(|e| e.to_string())?;
    let mut c = Case {
        rng,
        disk,
        segment_size,
        model: Model::of(&store),
        term: 1,
        history: Vec::new(),
        durable: 0,
        store,
        stats: ReplayStats::default(),
    };
    let r = run(&mut c);
    let st = &c.stats;
    stats.ops += st.ops;
    stats.overwrites += st.overwrites;
    stats.far_overwrites += st.far_overwrites;
    stats.compactions += st.compactions;
    stats.segments_deleted += st.segments_deleted;
    stats.snapshots += st.snapshots;
    stats.clean_reopens += st.clean_reopens;
    stats.power_losses += st.power_losses;
    stats.missing_segment_checks += st.missing_segment_checks;
    stats.missing_segment_corrupted += st.missing_segment_corrupted;
    r
}

fn run(c: &mut Case) -> std::result::Result<(), String> {
    c.history = vec![fingerprint(&c.store)];
    for round in 0..10 {
        let ops = 10 + c.rng.below(40);
        // Half the rounds end in a power loss somewhere in their disk calls.
        let power_loss = c.rng.below(2) == 0;
        if power_loss {
            let calls = c.disk.calls();
            c.disk.power_off_after(calls + c.rng.below(ops * 3));
        }
        let mut cut = false;
        for _ in 0..ops {
            c.stats.ops += 1;
            match c.op() {
                Ok(name) => c.check_live(name)?,
                Err(NeedleError::Io { .. }) if power_loss => {
                    cut = true;
                    break;
                }
                Err(e) => return Err(format!("round {round}: an operation failed: {e}")),
            }
        }
        if power_loss {
            c.stats.power_losses += 1;
            if !cut {
                // The power goes after this round's last operation.
                let _ = c.store.sync(true);
            }
            let history = std::mem::take(&mut c.history);
            let durable = c.durable.min(history.len() - 1);
            let placeholder = open_placeholder();
            drop(std::mem::replace(&mut c.store, placeholder));
            c.disk.crash();
            let store = c
                .reopen()
                .map_err(|e| format!("round {round}: reopen after a power loss: {e}"))?;
            let got = fingerprint(&store);
            if !history[durable..].contains(&got) {
                return Err(differ(
                    &format!(
                        "round {round}: after a power loss the log is none of the {} states since the last fsync (shown: the state at it)",
                        history.len() - durable
                    ),
                    &got,
                    &history[durable],
                ));
            }
            c.reset_to(store);
        } else {
            c.store
                .sync(true)
                .map_err(|e| format!("round {round}: sync: {e}"))?;
            if c.rng.below(2) == 0 {
                c.missing_segment()
                    .map_err(|e| format!("round {round}: {e}"))?;
            }
            let live = fingerprint(&c.store);
            let placeholder = open_placeholder();
            drop(std::mem::replace(&mut c.store, placeholder));
            let store = c
                .reopen()
                .map_err(|e| format!("round {round}: clean reopen: {e}"))?;
            c.stats.clean_reopens += 1;
            let got = fingerprint(&store);
            if got != live {
                return Err(differ(
                    &format!("round {round}: a clean reopen differs from the live log"),
                    &got,
                    &live,
                ));
            }
            c.reset_to(store);
        }
    }
    Ok(())
}

#[test]
fn replay_equals_the_live_log_under_overwrites_compactions_and_power_loss() {
    let seed = seed("replay_equals_the_live_log");
    let cases = needle_testkit::knob("NEEDLE_REPLAY_CASES", 1000);
    let mut rng = Rng(seed);
    let mut stats = ReplayStats::default();
    for i in 0..cases {
        let case_seed = rng.next();
        if let Err(why) = replay_case(case_seed, &mut stats) {
            panic!("case {i} of NEEDLE_SEED={seed} (case seed {case_seed}): {why}");
        }
    }
    eprintln!("{cases} cases: {stats:?}");
    assert!(
        stats.far_overwrites >= cases && stats.segments_deleted >= cases,
        "the states aimed at are not reached: {stats:?}"
    );
}
