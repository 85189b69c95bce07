//! The Raft node as a state machine: the one owner of the `RawNode`, the log store and the
//! database's write side. It is stepped by [`Input`]s (a tick, a message from the transport, a
//! caller's request, a background job's completion) at a time given by its driver, and after
//! each input handles the `Ready` in the order of `raft-rs-facts.md`, with one log sync (and at
//! most one fsync) per Ready. It reads no clock and starts no thread of its own: `driver.rs`
//! runs it on a thread against the wall clock, the simulator (`sim/`, tests only) steps many
//! nodes in one thread on a virtual clock.
//!
//! Slow work is handed to [`Background`] so that ticks and heartbeats go on: a snapshot is made
//! by a background job (committed entries wait in `unapplied` meanwhile, since the database must
//! stay at the snapshot's index until its checkpoint is written), and each snapshot is streamed
//! to a peer by a job of its own. Both report back through `Event`s.

mod driver;
#[cfg(test)]
mod hostile_messages;

pub(crate) use driver::run;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use needle_core::Database;
use needle_core::disk::Disk;
use protobuf::Message as PbMessage;
use raft::prelude::{
    ConfChange, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType,
    Message, MessageType, RawNode, Snapshot,
};
use raft::{SnapshotStatus, StateRole, Storage};

use crate::command::{DedupWindow, Outcome, RequestId, decode_entry, entry_request_id};
use crate::config::ReplicatedDatabaseConfig;
use crate::error::{NeedleError, Result, WriteOutcome};
use crate::message::{MessageHandler, NodeId, RaftMessage, RemovalNotice};
use crate::snapshot::{self, Added, Assembler, Outgoing, Pace, SnapshotAck, SnapshotSource};
use crate::status::{NodeStatus, PeerProgress, Role};
use crate::storage::{BOOTSTRAP_INDEX, LogStore, MAX_RECORD_INDEX, SnapshotDescriptor, conf_has};

pub(crate) type Reply = Sender<Result<()>>;

/// Ticks to wait after a failed snapshot job before an automatic retry.
const SNAPSHOT_RETRY_TICKS: u64 = 20;
/// A write's answer: for a delete, whether the record was there when it was applied.
pub(crate) type WriteReply = Sender<Result<u64>>;

/// What callers ask of the Raft thread.
pub(crate) enum Request {
    Propose {
        id: RequestId,
        data: Vec<u8>,
        reply: WriteReply,
    },
    ConfChange {
        id: RequestId,
        cc: ConfChangeV2,
        reply: WriteReply,
    },
    Read {
        reply: Reply,
    },
    /// A ReadIndex read that gives up after `timeout` (a bounded-staleness read confirming it).
    ReadWithin {
        reply: Reply,
        timeout: Duration,
    },
    /// Refresh this node's freshness (a ReadIndex round with no caller), unless one is pending.
    Probe,
    TransferLeader {
        to: NodeId,
        reply: Reply,
    },
    Status {
        reply: Sender<NodeStatus>,
    },
    Snapshot {
        reply: Reply,
    },
    Shutdown,
}

/// What background threads tell the Raft thread.
pub(crate) enum Event {
    /// The snapshot at `index` is made (or failed).
    SnapshotMade {
        index: u64,
        result: Result<SnapshotSource>,
    },
}

/// One thing that happens to a node: what the node is stepped by.
pub(crate) enum Input {
    /// The tick interval passed.
    Tick,
    /// A message from a peer, as the transport delivered it.
    Message(NodeId, RaftMessage),
    /// A caller's request.
    Request(Request),
    /// A background job finished.
    Event(Event),
}

/// Where slow jobs (making a snapshot, streaming one to a peer) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Background {
    /// On threads of their own; their `Event` arrives when they finish.
    Threads,
    /// At once, on the caller's thread; their `Event` waits in the node's queue for the driver
    /// to step it (the simulator decides when).
    #[cfg_attr(not(test), allow(dead_code))] // the simulator's mode
    Inline,
}

/// State the Raft thread publishes for callers, read without a round trip.
#[derive(Debug)]
pub(crate) struct Shared {
    pub role: AtomicU8,
    pub leader: AtomicU64,
    pub term: AtomicU64,
    pub applied: AtomicU64,
    pub started: Instant,
    pub stopped: AtomicBool,
    pub fatal: Mutex<Option<String>>,
    /// The latest ReadIndex answer: `index` answered a request this node first issued at `at`
    /// (time since `started`, on this node's monotonic clock), so every write committed before
    /// `at` has an index ≤ `index`. `None` before the first answer.
    pub fresh: Mutex<Option<(u64, Duration)>>,
}

impl Shared {
    /// Whether a local read at `now` sees every write acknowledged before `now - bound`: some
    /// ReadIndex answer `(index, at)` with `now - at ≤ bound` and `applied ≥ index`. `Err` gives
    /// the age of the latest answer (`None`: never answered).
    pub(crate) fn fresh_within(
        &self,
        bound: Duration,
        now: Duration,
    ) -> std::result::Result<Duration, Option<Duration>> {
        let fresh = *self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        let Some((index, at)) = fresh else {
            return Err(None);
        };
        let age = now.saturating_sub(at);
        if age <= bound && self.applied.load(Ordering::Acquire) >= index {
            Ok(age)
        } else {
            Err(Some(age))
        }
    }

    /// Records a ReadIndex answer: `index` for a request issued at `at`.
    fn note_fresh(&self, index: u64, at: Duration) {
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        match *fresh {
            Some((i, t)) if t > at || (t == at && i >= index) => {}
            _ => *fresh = Some((index, at)),
        }
    }

    pub(crate) fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Acquire))
    }

    pub(crate) fn leader(&self) -> Option<NodeId> {
        match self.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }
}

/// Callers waiting for one request id: a retry proposed while the first attempt is pending joins
/// it, and every caller gets the id's outcome.
struct PendingWrite {
    replies: Vec<WriteReply>,
    deadline: Duration,
    /// The log index of the latest proposal of this id.
    index: u64,
}

impl PendingWrite {
    fn send(self, result: Result<u64>) {
        let mut replies = self.replies;
        let last = replies.pop();
        for r in replies {
            let _ = r.send(copy_result(&result));
        }
        // The latest caller gets the result itself, the earlier ones an equal copy.
        if let Some(r) = last {
            let _ = r.send(result);
        }
    }
}

/// An equal answer for another caller of the same request id.
fn copy_result(r: &Result<u64>) -> Result<u64> {
    match r {
        Ok(b) => Ok(*b),
        Err(NeedleError::Timeout {
            operation,
            after,
            outcome,
        }) => Err(NeedleError::Timeout {
            operation,
            after: *after,
            outcome: *outcome,
        }),
        Err(NeedleError::LeadershipLost { outcome }) => {
            Err(NeedleError::LeadershipLost { outcome: *outcome })
        }
        Err(e) => Err(NeedleError::Rejected {
            reason: e.to_string(),
        }),
    }
}

struct PendingRead {
    /// `None` for a freshness probe, which no caller waits on.
    reply: Option<Reply>,
    deadline: Duration,
    index: Option<u64>,
    issued_tick: Option<u64>,
    /// When it was first handed to raft-rs: its answer covers every write committed before.
    first_issued: Option<Duration>,
}

pub(crate) struct Node {
    id: NodeId,
    rn: RawNode<LogStore>,
    db: Database,
    handler: Arc<dyn MessageHandler>,
    cfg: ReplicatedDatabaseConfig,
    /// Where the log and the snapshot files live (the file system, or a simulated disk).
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    shared: Arc<Shared>,
    applied: u64,
    window: DedupWindow,
    writes: BTreeMap<RequestId, PendingWrite>,
    by_index: BTreeMap<u64, RequestId>,
    reads: BTreeMap<Vec<u8>, PendingRead>,
    read_seq: u64,
    /// Differs in every incarnation of the node: a ReadIndex context must never equal one still
    /// pending at the leader from before a restart, which raft-rs would answer with the old,
    /// stale index (issue 10, item 5).
    read_nonce: u64,
    snapshot_waiters: Vec<Reply>,
    assembler: Assembler,
    conf_state: ConfState,
    last_snapshot: u64,
    /// After a failed snapshot job, the tick before which no automatic attempt is made.
    snapshot_retry_tick: u64,
    /// This node's latest snapshot, what a MsgSnapshot streams.
    snapshot_src: Option<Arc<SnapshotSource>>,
    /// The snapshot being made in the background: its index and thread.
    preparing: Option<(u64, Option<JoinHandle<()>>)>,
    /// Committed entries not applied yet (held while a snapshot is made).
    unapplied: VecDeque<Entry>,
    /// The applied index raft-rs has been told of.
    reported_applied: u64,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
    force_snapshot: bool,
    ticks: u64,
    unreachable: Vec<NodeId>,
    snapshot_reports: Vec<(NodeId, SnapshotStatus)>,
    /// Snapshots on their way to peers, paced by the peers' acks (one per peer).
    outgoing: BTreeMap<NodeId, Outgoing>,
    shutting_down: bool,
    /// The index of the applied membership change that removed this node: it stops serving.
    removed_at: Option<u64>,
    /// A member's [`RemovalNotice`] this node has not applied past: (the notice's index, the
    /// member that sent it). It serves nothing and does not campaign meanwhile.
    told_removed: Option<(u64, NodeId)>,
    /// The tick at which each non-member peer was last sent a [`RemovalNotice`].
    notices_sent: BTreeMap<NodeId, u64>,
    /// The highest commit index a leader's append carried: past this node's own commit index,
    /// committed entries exist that it has not received.
    leader_commit: u64,
    /// This node applied its own removal while committed entries it had not received existed
    /// (one of them may add it back): paused, it stops once its log has not grown for an
    /// election timeout, unless it applies a configuration containing itself first.
    removal_pending: Option<PendingRemoval>,
    /// The tick at which a message last arrived, or a learner last asked whether it was removed.
    last_heard_tick: u64,
    /// The time the driver gave with the current input (since the node's driver started).
    now: Duration,
    background: Background,
}

/// See [`Node::decide_pending_removal`].
struct PendingRemoval {
    /// The index of the applied membership change that removed this node.
    index: u64,
    /// The tick at which its log last grew or committed more (or the removal applied).
    since: u64,
    /// Its last log index and commit index then.
    last: u64,
    committed: u64,
}

fn role_of(r: StateRole) -> Role {
    match r {
        StateRole::Follower => Role::Follower,
        StateRole::Candidate => Role::Candidate,
        StateRole::PreCandidate => Role::PreCandidate,
        StateRole::Leader => Role::Leader,
    }
}

impl Node {
    /// Opens the log, brings the database up to the log's compaction point when needed, and
    /// builds the `RawNode` with `applied` = the database's checkpoint tag.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        disk: Arc<dyn Disk>,
        id: NodeId,
        db: Database,
        handler: Arc<dyn MessageHandler>,
        cfg: ReplicatedDatabaseConfig,
        shared: Arc<Shared>,
        background: Background,
        read_nonce: u64,
    ) -> Result<Node> {
        let dir = cfg.data_dir.clone();
        let mut store = LogStore::open(
            disk.clone(),
            &dir,
            cfg.log_segment_size,
            &cfg.initial_members,
        )?;
        // The state machine at the founders' bootstrap point is empty: a database never
        // checkpointed is at that point.
        let mut applied = db.checkpoint_tag();
        if applied < BOOTSTRAP_INDEX && store.snap_index() == BOOTSTRAP_INDEX {
            applied = BOOTSTRAP_INDEX;
        }
        let commit = store.hard_state().commit;
        let mut restored = None;
        // The database is behind the log's compaction point (a crash between logging an
        // installed snapshot and restoring it): restore it from that very snapshot's stream. An
        // in-memory database: from its newest stream at or after the compaction point.
        let snap_index = store.snap_index();
        let stream = if db.path().is_none() {
            snapshot::newest_stream(&*disk, &dir, snap_index.max(applied + 1), commit)?
        } else if applied < snap_index {
            snapshot::newest_stream(&*disk, &dir, snap_index, snap_index)?
        } else {
            None
        };
        if let Some((idx, path)) = stream {
            restored = Some(snapshot::restore(
                &*disk,
                &path,
                &db,
                cfg.dedup_window,
                idx,
            )?);
            applied = idx;
        }
        if applied < store.snap_index() {
            return Err(NeedleError::corrupted(
                &dir,
                0,
                format!(
                    "the database is at index {applied}, behind the log's compaction point {}, and no snapshot file covers it",
                    store.snap_index()
                ),
            ));
        }
        if applied > store.hard_state().commit {
            return Err(NeedleError::corrupted(
                &dir,
                0,
                format!(
                    "the database checkpoint is at index {applied}, beyond the log's commit index {} (wrong data_dir?)",
                    store.hard_state().commit
                ),
            ));
        }
        // The dedup window at `applied`: from the newest snapshot at or below it, then the log.
        let header = match restored {
            Some(h) => Some(h),
            None => snapshot::latest_header(&*disk, &dir, applied, cfg.dedup_window)?,
        };
        let (mut window, window_from) = match header {
            Some(h) => (h.window, h.index),
            None => (DedupWindow::new(cfg.dedup_window), 0),
        };
        for e in store.entries_in(window_from + 1, applied) {
            let normal = e.get_entry_type() == EntryType::EntryNormal;
            if let Some(rid) = normal.then(|| entry_request_id(&e.data)).flatten() {
                window.record(e.index, rid);
            }
        }
        store.set_initial_applied(applied);
        let conf_state = store.conf_state_at(applied);
        // The database's checkpoint is this node's snapshot at `applied`.
        let mut snapshot_src = None;
        if applied > 0 {
            let term = store
                .term_of(applied)
                .expect("the applied index is in the log or is its compaction point");
            let src = snapshot::prepare(&*disk, &dir, &db, applied, term, &window, false)?;
            store.set_snapshot(Some(src.desc));
            snapshot::remove_other_snapshots(&*disk, &dir, applied);
            snapshot_src = Some(Arc::new(src));
        }
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let rn = RawNode::new(&cfg.raft_config(id, applied), store, &logger)?;
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        shared.applied.store(applied, Ordering::Release);
        Ok(Node {
            id,
            rn,
            db,
            handler,
            disk,
            dir,
            shared,
            applied,
            window,
            writes: BTreeMap::new(),
            by_index: BTreeMap::new(),
            reads: BTreeMap::new(),
            read_seq: 0,
            read_nonce,
            snapshot_waiters: Vec::new(),
            assembler: Assembler::default(),
            conf_state,
            last_snapshot: if snapshot_src.is_some() { applied } else { 0 },
            snapshot_retry_tick: 0,
            snapshot_src,
            preparing: None,
            unapplied: VecDeque::new(),
            reported_applied: applied,
            events_tx,
            events_rx,
            force_snapshot: false,
            ticks: 0,
            unreachable: Vec::new(),
            snapshot_reports: Vec::new(),
            outgoing: BTreeMap::new(),
            shutting_down: false,
            removed_at: None,
            told_removed: None,
            notices_sent: BTreeMap::new(),
            leader_commit: 0,
            removal_pending: None,
            last_heard_tick: 0,
            now: Duration::ZERO,
            background,
            cfg,
        })
    }

    /// Steps the node by one input at time `now`, then handles the Ready. An error stops the
    /// node: the driver calls [`Node::finish`] with it.
    #[cfg_attr(not(test), allow(dead_code))] // the simulator steps one input at a time
    pub(crate) fn step(&mut self, now: Duration, input: Input) -> Result<()> {
        self.now = now;
        match input {
            Input::Tick => self.on_tick(),
            Input::Message(from, msg) => self.on_message(from, msg),
            Input::Request(r) => self.on_request(r),
            Input::Event(e) => self.on_event(e)?,
        }
        self.after_input()
    }

    /// Steps many inputs at time `now` and handles one Ready for all of them.
    pub(crate) fn step_all(&mut self, now: Duration, inputs: Vec<Input>) -> Result<()> {
        self.now = now;
        for input in inputs {
            match input {
                Input::Tick => self.on_tick(),
                Input::Message(from, msg) => self.on_message(from, msg),
                Input::Request(r) => self.on_request(r),
                Input::Event(e) => self.on_event(e)?,
            }
        }
        self.after_input()
    }

    fn after_input(&mut self) -> Result<()> {
        self.on_ready()?;
        self.after_ready()?;
        self.decide_pending_removal();
        // Applied as far as the notice's index, with itself in the configuration: added back.
        if let Some((index, _)) = self.told_removed {
            if self.applied >= index && conf_has(&self.conf_state, self.id) {
                self.told_removed = None;
            }
        }
        if let Some(index) = self.removed_at {
            return Err(NeedleError::Stopped {
                reason: format!(
                    "node {} was removed from the cluster by the membership change at index {index}",
                    self.id
                ),
            });
        }
        Ok(())
    }

    /// The index of the [`RemovalNotice`] this node is paused by, if any.
    #[cfg_attr(not(test), allow(dead_code))] // the simulator's check
    pub(crate) fn told_removed(&self) -> Option<u64> {
        self.told_removed.map(|(index, _)| index)
    }

    /// Whether this node applied its own removal and waits for committed entries it has not
    /// received (see [`Node::decide_pending_removal`]).
    #[cfg_attr(not(test), allow(dead_code))] // the simulator's count
    pub(crate) fn removal_pending(&self) -> bool {
        self.removal_pending.is_some()
    }

    /// The members (voters and learners, joint halves included) of the configuration this node
    /// has applied.
    #[cfg_attr(not(test), allow(dead_code))] // the simulator's check
    pub(crate) fn members(&self) -> BTreeSet<NodeId> {
        let cs = &self.conf_state;
        cs.voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners_next)
            .copied()
            .collect()
    }

    /// True once a `Shutdown` request was stepped.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The next finished background job's event, for a driver that runs jobs `Inline`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn take_event(&self) -> Option<Event> {
        self.events_rx.try_recv().ok()
    }

    /// True when a finished background job's event waits to be stepped.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn has_event(&self) -> bool {
        !self.events_rx.is_empty()
    }

    /// The receiver of background jobs' events, for a driver that runs them on `Threads`.
    pub(crate) fn events(&self) -> Receiver<Event> {
        self.events_rx.clone()
    }

    /// Stops the node after `result` (the error it stopped on, if any): waits for a checkpoint
    /// being written, records the error for callers, answers every pending request and syncs the
    /// log.
    pub(crate) fn finish(mut self, result: Result<()>) {
        // A checkpoint still being written must finish before the database is let go.
        if let Some((_, Some(job))) = self.preparing.take() {
            let _ = job.join();
        }
        if let Err(e) = result {
            let reason = match e {
                NeedleError::Stopped { reason } => reason,
                e => e.to_string(),
            };
            *self.shared.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        }
        self.shared.stopped.store(true, Ordering::Release);
        self.fail_all(|| NeedleError::Shutdown);
        let _ = self.rn.mut_store().sync(true);
    }

    fn fail_all(&mut self, err: impl Fn() -> NeedleError) {
        for (_, w) in std::mem::take(&mut self.writes) {
            w.send(Err(NeedleError::Timeout {
                operation: "write interrupted by shutdown",
                after: Duration::ZERO,
                outcome: WriteOutcome::MaybeApplied,
            }));
        }
        self.by_index.clear();
        for (_, r) in std::mem::take(&mut self.reads) {
            if let Some(reply) = r.reply {
                let _ = reply.send(Err(err()));
            }
        }
        for w in self.snapshot_waiters.drain(..) {
            let _ = w.send(Err(err()));
        }
    }

    fn is_leader(&self) -> bool {
        self.rn.raft.state == StateRole::Leader
    }

    fn leader_hint(&self) -> Option<NodeId> {
        match self.rn.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }

    // ---- inputs ----

    fn on_tick(&mut self) {
        // A node told it was removed does not campaign: raft-rs's elections run on ticks. But
        // its lease clock runs on: raft-rs ignores a (pre-)vote while it heard from a leader
        // within an election timeout (`election_elapsed`, advanced only by ticks), so a paused
        // member that heard a leader before that leader went silent would never vote again,
        // and the others could not elect the leader it needs to apply past the notice.
        if self.told_removed.is_none() {
            self.rn.tick();
        } else {
            let raft = &mut self.rn.raft;
            if raft.election_elapsed < raft.election_timeout() {
                raft.election_elapsed += 1;
            }
        }
        self.ticks += 1;
        self.ask_if_removed();
        self.pace_snapshots();
        let now = self.now;
        let expired: Vec<RequestId> = self
            .writes
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(w) = self.writes.remove(&id) {
                self.by_index.remove(&w.index);
                w.send(Err(NeedleError::Timeout {
                    operation: "write",
                    after: self.cfg.proposal_timeout,
                    outcome: WriteOutcome::MaybeApplied,
                }));
            }
        }
        let read_timeout = self.cfg.read_timeout;
        self.reads.retain(|_, r| {
            if r.deadline <= now {
                if let Some(reply) = &r.reply {
                    let _ = reply.send(Err(NeedleError::Timeout {
                        operation: "linearizable read",
                        after: read_timeout,
                        outcome: WriteOutcome::NotApplied,
                    }));
                }
                return false;
            }
            true
        });
        self.issue_reads();
        // Auto-leave can be lost on a leader change (raft.rs commit_apply TODO): leave joint here.
        if self.is_leader()
            && !self.conf_state.voters_outgoing.is_empty()
            && !self.rn.raft.has_pending_conf()
            && self.rn.raft.pending_conf_index <= self.applied
        {
            let _ = self.rn.propose_conf_change(vec![], ConfChangeV2::default());
        }
    }

    fn issue_reads(&mut self) {
        let reissue = (self.rn.raft.heartbeat_timeout() as u64 * 2).max(2);
        let can_issue = if self.is_leader() {
            self.rn.raft.commit_to_current_term()
        } else {
            self.rn.raft.leader_id != 0
        };
        if !can_issue {
            return;
        }
        let (ticks, now) = (self.ticks, self.now);
        let mut to_issue = Vec::new();
        for (ctx, r) in self.reads.iter_mut() {
            if r.index.is_none() && r.issued_tick.is_none_or(|t| ticks >= t + reissue) {
                r.issued_tick = Some(ticks);
                // The first issue, not a re-issue: an answer to any of them covers every
                // write committed before the first (the earlier time is the safe one).
                r.first_issued.get_or_insert(now);
                to_issue.push(ctx.clone());
            }
        }
        for ctx in to_issue {
            self.rn.read_index(ctx);
        }
    }

    /// A ReadIndex read: answered once applied reaches the index, or `Timeout` after `timeout`.
    fn start_read(&mut self, reply: Option<Reply>, timeout: Duration) {
        self.read_seq += 1;
        let mut ctx = self.id.to_le_bytes().to_vec();
        ctx.extend_from_slice(&self.read_nonce.to_le_bytes());
        ctx.extend_from_slice(&self.read_seq.to_le_bytes());
        self.reads.insert(
            ctx,
            PendingRead {
                reply,
                deadline: self.now + timeout,
                index: None,
                issued_tick: None,
                first_issued: None,
            },
        );
        self.issue_reads();
    }

    fn on_message(&mut self, from: NodeId, msg: RaftMessage) {
        self.last_heard_tick = self.ticks;
        // Any message from a non-member is answered, a learner's question (a notice at 0) too.
        self.tell_if_removed(from);
        if let RaftMessage::Removed(notice) = msg {
            self.on_removal_notice(from, notice);
            return;
        }
        match msg {
            RaftMessage::Raft(m) => {
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    return; // snapshots arrive only inside chunks (see snapshot.rs)
                }
                self.step_raft(from, m);
            }
            RaftMessage::SnapshotChunk(c) => {
                let max_idle = self.snapshot_max_idle();
                let (index, term) = (c.index, c.term);
                let received =
                    match self
                        .assembler
                        .add(&*self.disk, &self.dir, from, c, max_idle, self.now)
                    {
                        Ok(Added::Complete(m, count)) => {
                            if snapshot_matches_stream(&m, index, term) {
                                self.step_raft(from, m);
                            }
                            count
                        }
                        Ok(Added::Partial(n)) => n,
                        // A stream this node holds whole. Unless it took the snapshot (its
                        // commit reached the index), the sender is asked for the last chunk
                        // again: it carries the sender's MsgSnapshot, which, stepped in the
                        // sender's current term, installs the snapshot (the one stepped before
                        // may have been dropped as stale). Acked whole, the sender reported the
                        // transfer finished, raft-rs probed, the node refused the append, and
                        // the same snapshot went out again, forever (simulator seed
                        // 5940441644795897227: a learner never caught up).
                        Ok(Added::AlreadyComplete(n)) => {
                            if self.rn.raft.raft_log.committed >= index {
                                n
                            } else {
                                n.saturating_sub(1)
                            }
                        }
                        Err(_) => return, // a bad or stale chunk: the leader resends
                    };
                let ack = SnapshotAck {
                    index,
                    term,
                    received,
                };
                let _ = self.handler.send(from, RaftMessage::SnapshotAck(ack));
            }
            RaftMessage::Removed(_) => {} // handled above
            RaftMessage::SnapshotAck(a) => {
                let window = self.cfg.snapshot_window_bytes;
                let Some(out) = self.outgoing.get_mut(&from) else {
                    return;
                };
                if out.ack(&a, self.now) {
                    self.outgoing.remove(&from);
                    self.rn.report_snapshot(from, SnapshotStatus::Finish);
                } else {
                    let handler = &self.handler;
                    if out
                        .pump(window, |c| {
                            handler.send(from, RaftMessage::SnapshotChunk(c))
                        })
                        .is_err()
                    {
                        self.outgoing.remove(&from);
                        self.rn.report_snapshot(from, SnapshotStatus::Failure);
                    }
                }
            }
        }
    }

    /// Answers a message from `from` with a [`RemovalNotice`] when this node is a member and the
    /// configuration it has applied does not contain `from`: raft-rs's leader sends nothing to a
    /// removed node, which therefore never applies its removal unless told. At most one notice
    /// per peer per election timeout (a pre-candidate asks every election timeout).
    fn tell_if_removed(&mut self, from: NodeId) {
        if from == 0
            || from == self.id
            || self.told_removed.is_some()
            || !conf_has(&self.conf_state, self.id)
            || conf_has(&self.conf_state, from)
        {
            return;
        }
        let ticks = self.ticks;
        let every = self.rn.raft.election_timeout() as u64;
        self.notices_sent.retain(|_, at| ticks < *at + every);
        if self.notices_sent.contains_key(&from) {
            return;
        }
        self.notices_sent.insert(from, ticks);
        let notice = RemovalNotice {
            index: self.applied,
        };
        let _ = self.handler.send(from, RaftMessage::Removed(notice));
    }

    /// A voter that hears no leader campaigns, and a member answers its pre-vote with a notice;
    /// a learner sends nothing unasked. So a learner (in the configuration it has applied) that
    /// has heard nothing for two election timeouts asks the voters it knows with a notice at
    /// index 0: it pauses no one (everyone has applied index 0), and a member that no longer
    /// has the learner in its configuration answers it with a real one. A learner that is cut
    /// off asks in vain every two election timeouts.
    fn ask_if_removed(&mut self) {
        let cs = &self.conf_state;
        let learner = cs.learners.contains(&self.id)
            && !cs.voters.contains(&self.id)
            && !cs.voters_outgoing.contains(&self.id);
        let every = 2 * self.rn.raft.election_timeout() as u64;
        if !learner || self.told_removed.is_some() || self.ticks < self.last_heard_tick + every {
            return;
        }
        self.last_heard_tick = self.ticks;
        let voters: BTreeSet<NodeId> = cs
            .voters
            .iter()
            .chain(&cs.voters_outgoing)
            .copied()
            .filter(|&v| v != self.id)
            .collect();
        for v in voters {
            let _ = self
                .handler
                .send(v, RaftMessage::Removed(RemovalNotice { index: 0 }));
        }
    }

    /// A member says its configuration at `notice.index` does not contain this node. Unless this
    /// node has applied that far (then it was added back at or before that index, and the
    /// notice is stale), it was removed: it steps down and stops campaigning and serving until
    /// it applies a configuration containing itself at or past the index. It goes on stepping
    /// messages, so a leader that adds it back catches it up (by snapshot) and it resumes; one
    /// that replicates its removal to it stops it as an applied removal does.
    ///
    /// Only a member of the configuration this node has applied is believed: a genuine notice
    /// answers a message this node sent to a peer of that configuration (a pre-vote, a learner's
    /// question, a leader's append), so any other peer's notice is forged, or answers a reply
    /// sent while this node lagged behind the sender's addition; then the members it knows tell
    /// it when it next asks them.
    fn on_removal_notice(&mut self, from: NodeId, notice: RemovalNotice) {
        if from == 0
            || from == self.id
            || !conf_has(&self.conf_state, from)
            || notice.index > MAX_RECORD_INDEX / 2
            || self.applied >= notice.index
        {
            return;
        }
        self.pause(notice.index, from);
    }

    /// Pauses this node until it applies a configuration containing itself at or past `index`:
    /// it steps down to a leaderless follower, does not campaign, and refuses every request but
    /// `status` (`by` names who said it was removed).
    fn pause(&mut self, index: u64, by: NodeId) {
        match &mut self.told_removed {
            Some((at, who)) => {
                if index > *at {
                    (*at, *who) = (index, by);
                }
            }
            None => {
                self.told_removed = Some((index, by));
                let raft = &mut self.rn.raft;
                if raft.state != StateRole::Follower || raft.leader_id != raft::INVALID_ID {
                    let term = raft.term;
                    raft.become_follower(term, raft::INVALID_ID);
                }
            }
        }
    }

    /// A pending removal ends when this node applies a configuration containing itself (added
    /// back), or, once its log has neither grown nor committed more for an election timeout,
    /// in a stop: no leader is catching it up, so none added it back.
    fn decide_pending_removal(&mut self) {
        let Some(p) = &mut self.removal_pending else {
            return;
        };
        if conf_has(&self.conf_state, self.id) {
            self.removal_pending = None;
            return;
        }
        let log = &self.rn.raft.raft_log;
        let (last, committed) = (log.last_index(), log.committed);
        if last > p.last || committed > p.committed {
            (p.last, p.committed, p.since) = (last, committed, self.ticks);
        } else if self.ticks >= p.since + self.rn.raft.election_timeout() as u64 {
            self.removed_at = Some(p.index);
        }
    }

    /// `Stopped`, while a member's [`RemovalNotice`] holds: the answer to every request but
    /// `Status`, `Snapshot` and `Shutdown`.
    fn removed_error(&self) -> Option<NeedleError> {
        let (index, by) = self.told_removed?;
        Some(NeedleError::Stopped {
            reason: format!(
                "node {} was removed from the cluster: node {by} applied a configuration without it at index {index} (this node has applied {}); it serves nothing unless it is added back",
                self.id, self.applied
            ),
        })
    }

    /// A snapshot transfer with no chunk (receiver) or no ack (sender) for this long is dropped.
    fn snapshot_max_idle(&self) -> Duration {
        Duration::from_millis(self.cfg.election_timeout_max * 10)
    }

    /// On a tick: each outgoing snapshot resends what was not acknowledged for an election
    /// timeout, is abandoned after `snapshot_max_idle` without an ack (raft-rs hears `Failure`
    /// and sends a new one), and sends what its window allows (a send the transport refused is
    /// retried here).
    fn pace_snapshots(&mut self) {
        let resend = Duration::from_millis(self.cfg.election_timeout_min);
        let (max_idle, now, window) = (
            self.snapshot_max_idle(),
            self.now,
            self.cfg.snapshot_window_bytes,
        );
        let mut failed = Vec::new();
        for (&to, out) in self.outgoing.iter_mut() {
            let handler = &self.handler;
            let going = out.tick(now, resend, max_idle) == Pace::Going
                && out
                    .pump(window, |c| handler.send(to, RaftMessage::SnapshotChunk(c)))
                    .is_ok();
            if !going {
                failed.push(to);
            }
        }
        for to in failed {
            self.outgoing.remove(&to);
            self.rn.report_snapshot(to, SnapshotStatus::Failure);
        }
    }

    /// Steps a message from the network after the checks that keep raft-rs from panicking on
    /// well-formed but malicious or misrouted messages.
    fn step_raft(&mut self, from: NodeId, m: Message) {
        let ok = admissible(&self.rn.raft, from, &m)
            && (m.get_msg_type() != MessageType::MsgPropose
                || (!m.entries.is_empty()
                    && m.entries.iter().all(|e| self.acceptable_forwarded_entry(e))));
        // A paused node takes no leadership transfer: raft-rs campaigns on a MsgTimeoutNow
        // whatever its ticks, and a paused leader refuses every request and, not ticking, sends
        // no heartbeat. Dropped, it is a lost message: the transfer lapses.
        let transfer = m.get_msg_type() == MessageType::MsgTimeoutNow;
        if !ok || (transfer && self.told_removed.is_some()) {
            return;
        }
        if m.get_msg_type() == MessageType::MsgAppend && m.term >= self.rn.raft.term {
            self.leader_commit = self.leader_commit.max(m.commit);
        }
        let _ = self.rn.step(m);
    }

    /// Whether an entry a peer forwarded in a MsgPropose may enter the log: a normal entry that
    /// decodes as a command within `max_entry_bytes`. Our nodes propose only as leader, so a
    /// forwarded conf change or an undecodable entry is refused before raft-rs appends it (every
    /// node would apply it, and replay it at every restart).
    fn acceptable_forwarded_entry(&self, e: &Entry) -> bool {
        e.get_entry_type() == EntryType::EntryNormal
            && e.data.len() as u64 <= self.cfg.max_entry_bytes
            && decode_entry(&e.data).is_ok()
    }

    fn on_request(&mut self, r: Request) {
        match r {
            Request::Propose { id, data, reply } => {
                if let Some(err) = self.refuse_proposal() {
                    let _ = reply.send(Err(err));
                    return;
                }
                let before = self.rn.raft.raft_log.last_index();
                let res = self.rn.propose(vec![], data);
                self.track_proposal(id, before, res, reply);
            }
            Request::ConfChange { id, cc, reply } => {
                if let Some(err) = self
                    .refuse_proposal()
                    .or_else(|| self.refuse_conf_change(&cc))
                {
                    let _ = reply.send(Err(err));
                    return;
                }
                let before = self.rn.raft.raft_log.last_index();
                let ctx = id_bytes(id);
                let res = self.rn.propose_conf_change(ctx, cc);
                self.track_proposal(id, before, res, reply);
            }
            Request::Read { reply } | Request::ReadWithin { reply, .. }
                if self.told_removed.is_some() =>
            {
                let _ = reply.send(Err(self.removed_error().expect("told removed")));
            }
            Request::Read { reply } => self.start_read(Some(reply), self.cfg.read_timeout),
            Request::ReadWithin { reply, timeout } => self.start_read(Some(reply), timeout),
            Request::Probe if self.told_removed.is_some() => {}
            Request::Probe => {
                if !self
                    .reads
                    .values()
                    .any(|r| r.reply.is_none() && r.index.is_none())
                {
                    self.start_read(None, self.cfg.read_timeout);
                }
            }
            Request::TransferLeader { to, reply } => {
                if let Some(err) = self.removed_error() {
                    let _ = reply.send(Err(err));
                    return;
                }
                if !self.is_leader() {
                    let _ = reply.send(Err(NeedleError::NotLeader {
                        leader: self.leader_hint(),
                    }));
                    return;
                }
                if !self.rn.raft.prs().conf().voters().contains(to) {
                    let _ = reply.send(Err(NeedleError::LeadershipTransferRefused {
                        to,
                        reason: format!(
                            "not a voter (voters {:?}, learners {:?})",
                            sorted(self.conf_state.voters.clone()),
                            sorted(self.conf_state.learners.clone())
                        ),
                    }));
                    return;
                }
                self.rn.transfer_leader(to);
                let _ = reply.send(Ok(()));
            }
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Request::Snapshot { reply } => {
                self.force_snapshot = true;
                self.snapshot_waiters.push(reply);
            }
            Request::Shutdown => self.shutting_down = true,
        }
    }

    fn on_event(&mut self, e: Event) -> Result<()> {
        match e {
            Event::SnapshotMade { index, result } => {
                self.snapshot_made(index, result)?;
                self.apply_queued()?;
                self.report_applied();
                Ok(())
            }
        }
    }

    fn refuse_proposal(&self) -> Option<NeedleError> {
        if let Some(err) = self.removed_error() {
            return Some(err);
        }
        if !self.is_leader() {
            return Some(NeedleError::NotLeader {
                leader: self.leader_hint(),
            });
        }
        if self.rn.raft.lead_transferee.is_some() {
            return Some(NeedleError::ProposalDropped {
                reason: "a leadership transfer is in progress".into(),
            });
        }
        None
    }

    /// Refuses, before it enters the log, a membership change that would fail to apply (every
    /// node would then stop on it) or that removes this leader: raft-rs keeps a removed leader
    /// leading, dropping every proposal, so a leader hands its leadership over first.
    fn refuse_conf_change(&self, cc: &ConfChangeV2) -> Option<NeedleError> {
        let changes = cc.get_changes();
        if changes
            .iter()
            .any(|c| c.get_change_type() == ConfChangeType::RemoveNode && c.node_id == self.id)
        {
            return Some(NeedleError::MembershipChangeRefused {
                reason: format!(
                    "node {} is the leader: transfer the leadership to another voter before removing it",
                    self.id
                ),
            });
        }
        let mut changer = raft::Changer::new(self.rn.raft.prs());
        let checked = if changes.len() <= 1 && cc.get_transition() == ConfChangeTransition::Auto {
            changer.simple(changes).map(|_| ())
        } else {
            changer.enter_joint(true, changes).map(|_| ())
        };
        checked.err().map(|e| NeedleError::MembershipChangeRefused {
            reason: format!("membership change {changes:?} cannot apply: {e}"),
        })
    }

    fn track_proposal(
        &mut self,
        id: RequestId,
        before: u64,
        res: raft::Result<()>,
        reply: WriteReply,
    ) {
        let after = self.rn.raft.raft_log.last_index();
        match res {
            Err(e) => {
                let _ = reply.send(Err(NeedleError::ProposalDropped {
                    reason: e.to_string(),
                }));
            }
            Ok(()) if after == before => {
                let _ = reply.send(Err(NeedleError::ProposalDropped {
                    reason: "raft did not append the proposal".into(),
                }));
            }
            Ok(()) => {
                // A retry while an earlier proposal of the same id is pending joins it: the
                // earlier entry is in the log and may still apply (issue 10, item 6).
                self.by_index.insert(after, id);
                let deadline = self.now + self.cfg.proposal_timeout;
                let w = self.writes.entry(id).or_insert_with(|| PendingWrite {
                    replies: Vec::new(),
                    deadline,
                    index: after,
                });
                w.replies.push(reply);
                w.deadline = deadline;
                w.index = after;
            }
        }
    }

    // ---- the Ready loop ----

    fn on_ready(&mut self) -> Result<()> {
        if !self.rn.has_ready() {
            return Ok(());
        }
        let mut rd = self.rn.ready();
        if let Some(ss) = rd.ss() {
            self.shared
                .role
                .store(role_of(ss.raft_state) as u8, Ordering::Release);
            self.shared.leader.store(ss.leader_id, Ordering::Release);
            if ss.raft_state != StateRole::Leader {
                // raft-rs drops pending proposals silently on a role change.
                for (_, w) in std::mem::take(&mut self.writes) {
                    w.send(Err(NeedleError::LeadershipLost {
                        outcome: WriteOutcome::MaybeApplied,
                    }));
                }
                self.by_index.clear();
                // Only a leader streams snapshots.
                self.outgoing.clear();
            }
            for r in self.reads.values_mut() {
                if r.index.is_none() {
                    r.issued_tick = None;
                }
            }
        }
        // 1. A leader's messages may go before its own fsync — except those of a Ready that
        //    commits a membership change: they tell the removed node that it may stop, so this
        //    node's commit of the change must be durable first (else a crash brings it back
        //    with the removed node still a voter, and no quorum without it).
        let msgs = rd.take_messages();
        let commits_conf_change = rd
            .hs()
            .is_some_and(|hs| self.rn.store().commits_conf_change(hs.commit));
        let held = if commits_conf_change {
            msgs
        } else {
            self.send_messages(msgs);
            Vec::new()
        };
        // 2. A snapshot: its point goes into the log first (so a crash before the database is
        //    restored finds the snapshot file and restores it at start).
        let snap = rd.snapshot().clone();
        let has_snapshot = !snap.is_empty();
        if has_snapshot {
            // The database must not be checkpointed under the restore.
            self.wait_for_snapshot_job()?;
            self.rn.mut_store().persist_snapshot(snap.get_metadata());
        }
        // 3. Read states: answered once applied.
        for rs in rd.take_read_states() {
            if let Some(r) = self.reads.get_mut(&rs.request_ctx) {
                r.index = Some(rs.index);
                if let Some(at) = r.first_issued {
                    self.shared.note_fresh(rs.index, at);
                }
            }
        }
        // 4. Entries and hard state, one write, fsynced when raft says it must be.
        let must_sync = rd.must_sync() || has_snapshot;
        {
            let store = self.rn.mut_store();
            store.persist_entries(rd.entries());
            if let Some(hs) = rd.hs() {
                store.persist_hard_state(hs);
            }
            store.sync(must_sync)?;
        }
        self.send_messages(held);
        if has_snapshot {
            self.install_snapshot(&snap)?;
        }
        // 5. Apply, after the commit index is written (unless a snapshot is being made).
        self.unapplied.extend(rd.take_committed_entries());
        self.apply_queued()?;
        // 6. Votes and acks only once durable.
        let msgs = rd.take_persisted_messages();
        self.send_messages(msgs);
        // 7. Advance; raft-rs hears of the applied index separately (`report_applied`).
        let mut light = self.rn.advance_append(rd);
        // 8. The light ready.
        if let Some(commit) = light.commit_index() {
            let store = self.rn.mut_store();
            store.persist_commit(commit);
            store.sync(false)?;
        }
        let msgs = light.take_messages();
        self.send_messages(msgs);
        self.unapplied.extend(light.take_committed_entries());
        self.apply_queued()?;
        self.report_applied();
        for id in std::mem::take(&mut self.unreachable) {
            self.rn.report_unreachable(id);
        }
        for (id, status) in std::mem::take(&mut self.snapshot_reports) {
            self.rn.report_snapshot(id, status);
        }
        Ok(())
    }

    fn send_messages(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            if m.get_msg_type() == MessageType::MsgSnapshot {
                if self.send_snapshot(m).is_err() {
                    self.snapshot_reports.push((to, SnapshotStatus::Failure));
                }
                continue;
            }
            if self.handler.send(to, RaftMessage::Raft(m)).is_err() {
                self.unreachable.push(to);
            }
        }
    }

    /// Starts streaming this node's snapshot to `m.to`, paced by its acks ([`Outgoing`]): the
    /// first window of chunks goes now, the rest as acks arrive (`on_message`) and on ticks
    /// (`pace_snapshots`). A transfer already under way to that peer is replaced.
    fn send_snapshot(&mut self, m: Message) -> Result<()> {
        let d = SnapshotDescriptor::decode(m.get_snapshot().get_data())
            .ok_or_else(|| NeedleError::invalid_message("snapshot descriptor"))?;
        let src = self
            .snapshot_src
            .clone()
            .filter(|s| s.desc == d)
            .ok_or_else(|| NeedleError::invalid_message("that snapshot is no longer held"))?;
        let to = m.to;
        self.outgoing.remove(&to);
        let mut out = Outgoing::new(src, m, self.cfg.snapshot_chunk_size, self.now)?;
        let handler = &self.handler;
        out.pump(self.cfg.snapshot_window_bytes, |c| {
            handler.send(to, RaftMessage::SnapshotChunk(c))
        })?;
        self.outgoing.insert(to, out);
        Ok(())
    }

    /// Runs `job` where [`Background`] says.
    fn spawn(
        &self,
        name: String,
        job: impl FnOnce() + Send + 'static,
    ) -> Result<Option<JoinHandle<()>>> {
        match self.background {
            Background::Threads => std::thread::Builder::new()
                .name(name.clone())
                .spawn(job)
                .map(Some)
                .map_err(|e| NeedleError::io(format!("spawning thread {name}"), e)),
            Background::Inline => {
                job();
                Ok(None)
            }
        }
    }

    /// Replaces the database with the received snapshot `snap` (its point is already logged).
    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        let path = snapshot::incoming_file(&self.dir, meta.index, meta.term);
        let header = snapshot::restore(
            &*self.disk,
            &path,
            &self.db,
            self.cfg.dedup_window,
            meta.index,
        )?;
        self.window = header.window;
        self.applied = meta.index;
        self.last_snapshot = meta.index;
        self.conf_state = meta.get_conf_state().clone();
        self.unapplied.retain(|e| e.index > meta.index);
        snapshot::keep_installed(&*self.disk, &self.dir, &path, &self.db, meta.index)?;
        let src = snapshot::prepare(
            &*self.disk,
            &self.dir,
            &self.db,
            meta.index,
            meta.term,
            &self.window,
            false,
        )?;
        self.rn.mut_store().set_snapshot(Some(src.desc));
        self.snapshot_src = Some(Arc::new(src));
        snapshot::remove_other_snapshots(&*self.disk, &self.dir, meta.index);
        self.shared.applied.store(self.applied, Ordering::Release);
        Ok(())
    }

    /// Applies the queued committed entries, unless a snapshot is being made.
    fn apply_queued(&mut self) -> Result<()> {
        if self.preparing.is_some() || self.unapplied.is_empty() {
            return Ok(());
        }
        let entries: Vec<Entry> = self.unapplied.drain(..).collect();
        self.apply(entries)
    }

    /// Tells raft-rs how far this node has applied (not between `ready` and `advance_append`).
    fn report_applied(&mut self) {
        if self.applied > self.reported_applied {
            self.rn.advance_apply_to(self.applied);
            self.reported_applied = self.applied;
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            let id = match e.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&e)?,
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&e)?
                }
            };
            self.applied = e.index;
            // Our proposal at this index lost to another entry. When it was the id's latest
            // proposal, the id can no longer commit through this node's proposals.
            let lost = self.by_index.remove(&e.index).filter(|pid| {
                id.as_ref() != Some(pid) && self.writes.get(pid).is_some_and(|w| w.index == e.index)
            });
            if let Some((pid, w)) = lost.and_then(|pid| self.writes.remove(&pid).map(|w| (pid, w)))
            {
                let outcome = if self.window.contains(&pid) {
                    WriteOutcome::MaybeApplied // an earlier attempt applied
                } else {
                    WriteOutcome::NotApplied
                };
                w.send(Err(NeedleError::LeadershipLost { outcome }));
            }
        }
        self.shared.applied.store(self.applied, Ordering::Release);
        Ok(())
    }

    fn apply_normal(&mut self, e: &Entry) -> Result<Option<RequestId>> {
        if e.data.is_empty() {
            return Ok(None); // a new leader's no-op, or a refused conf change
        }
        let (id, result) = match decode_entry(&e.data) {
            Ok((id, cmd)) => {
                // A retry of an applied command changes nothing and gets the first outcome.
                let result = if self.window.contains(&id) {
                    match self.window.outcome(&id) {
                        Some(Outcome::Applied(b)) => Ok(*b),
                        Some(Outcome::Rejected(reason)) => Err(NeedleError::Rejected {
                            reason: reason.clone(),
                        }),
                        // Applied before this node's last restart, outcome not kept.
                        None => Ok(0),
                    }
                } else {
                    cmd.apply(&self.db).map_err(NeedleError::from)
                };
                (id, result)
            }
            Err(err) => match entry_request_id(&e.data) {
                Some(id) => (id, Err(err)),
                None => return Ok(None),
            },
        };
        // A failure of this node's database (an I/O error, a database that refuses writes
        // after one, corruption) is not the command's outcome: recorded as a rejection, it
        // would make this replica differ from the others. The node stops instead; a restart
        // recovers from the checkpoint and the log.
        if let Err(NeedleError::Core(
            err @ (needle_core::Error::Io { .. }
            | needle_core::Error::Corrupted { .. }
            | needle_core::Error::UnsupportedVersion { .. }
            | needle_core::Error::Locked { .. }
            | needle_core::Error::Internal { .. }),
        )) = &result
        {
            return Err(NeedleError::Stopped {
                reason: format!(
                    "the database failed applying the entry at index {}: {err}",
                    e.index
                ),
            });
        }
        let outcome = match &result {
            Ok(b) => Outcome::Applied(*b),
            Err(err) => Outcome::Rejected(err.to_string()),
        };
        self.window.record_outcome(e.index, id, outcome);
        self.answer(id, result);
        Ok(Some(id))
    }

    fn answer(&mut self, id: RequestId, result: Result<u64>) {
        if let Some(w) = self.writes.remove(&id) {
            self.by_index.remove(&w.index);
            w.send(result);
        }
    }

    fn apply_conf_change(&mut self, e: &Entry) -> Result<Option<RequestId>> {
        let id = entry_request_id(&e.context);
        let res = if e.get_entry_type() == EntryType::EntryConfChangeV2 {
            ConfChangeV2::parse_from_bytes(&e.data)
                .map_err(|err| NeedleError::invalid_message(format!("conf change: {err}")))
                .and_then(|cc| {
                    self.rn
                        .apply_conf_change(&cc)
                        .map_err(NeedleError::from)
                        .map(|cs| (cs, cc.changes.to_vec()))
                })
        } else {
            ConfChange::parse_from_bytes(&e.data)
                .map_err(|err| NeedleError::invalid_message(format!("conf change: {err}")))
                .and_then(|cc| {
                    let single = {
                        let mut s = raft::prelude::ConfChangeSingle::default();
                        s.set_change_type(cc.get_change_type());
                        s.node_id = cc.node_id;
                        s
                    };
                    self.rn
                        .apply_conf_change(&cc)
                        .map_err(NeedleError::from)
                        .map(|cs| (cs, vec![single]))
                })
        };
        let (cs, changes) = match res {
            Ok(applied) => applied,
            Err(err) => {
                // Every node applies the same committed change to the same configuration: an
                // error here means this node's configuration differs from the cluster's (the
                // split brain of issue 10). Serving on would let it vote, or lead, on its own
                // idea of the membership: stop.
                let reason = format!(
                    "applying the membership change at index {}: {err}; this node's configuration ({:?}) is not the cluster's",
                    e.index, self.conf_state
                );
                if let Some(id) = id {
                    self.answer(
                        id,
                        Err(NeedleError::Stopped {
                            reason: reason.clone(),
                        }),
                    );
                }
                return Err(NeedleError::Stopped { reason });
            }
        };
        let result = {
            {
                self.rn.mut_store().persist_conf_state(e.index, &cs);
                if conf_has(&self.conf_state, self.id)
                    && !conf_has(&cs, self.id)
                    && !self.added_back_after(e.index)
                {
                    let log = &self.rn.raft.raft_log;
                    if self.leader_commit > log.committed {
                        // A leader has committed entries this node has not received, and one
                        // of them may add it back (they arrive one append at a time): wait.
                        self.removal_pending = Some(PendingRemoval {
                            index: e.index,
                            since: self.ticks,
                            last: log.last_index(),
                            committed: log.committed,
                        });
                        self.pause(e.index, self.id);
                    } else {
                        self.removed_at = Some(e.index);
                    }
                }
                self.conf_state = cs;
                if self.is_leader()
                    && changes.iter().any(|c| {
                        matches!(
                            c.get_change_type(),
                            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode
                        )
                    })
                {
                    // A joiner catches up by snapshot, and ignores one that lacks it (raft.rs restore).
                    self.force_snapshot = true;
                }
                Ok(1)
            }
        };
        if let Some(id) = id {
            self.answer(id, result);
        }
        Ok(id)
    }

    /// Whether an entry this node knows to be committed past `index` adds it back (as a voter or
    /// a learner). A node removed and added back under its id, whose old log the leader still
    /// holds, is caught up by appends and applies its own old removal on the way: it must not
    /// stop there. raft-rs's leader replicates to an added node only once it has applied the
    /// addition, so its appends carry a commit index at or past the addition, and the node knows
    /// of it once the entries up to it have arrived (one append message holds up to
    /// `max_size_per_msg` of them: past that, the node learns the addition too late and stops,
    /// as before). A committed entry is final, so the node is a member again once it applies it;
    /// until then its configuration lacks it, so it neither campaigns (raft-rs: not promotable)
    /// nor counts in anyone's quorum.
    fn added_back_after(&self, index: u64) -> bool {
        let log = &self.rn.raft.raft_log;
        if log.committed <= index {
            return false;
        }
        let Ok(entries) = log.slice(
            index + 1,
            log.committed + 1,
            None,
            raft::GetEntriesContext::empty(false),
        ) else {
            return false; // unreadable: stop, as a removal always did
        };
        entries.iter().any(|e| adds(e, self.id))
    }

    fn after_ready(&mut self) -> Result<()> {
        let applied = self.applied;
        let mut done = Vec::new();
        self.reads.retain(|_, r| {
            if r.index.is_some_and(|i| i <= applied) {
                done.extend(r.reply.clone());
                false
            } else {
                true
            }
        });
        for reply in done {
            let _ = reply.send(Ok(()));
        }
        let wanted = self.rn.store().take_snapshot_wanted();
        let automatic = (wanted || applied >= self.last_snapshot + self.cfg.snapshot_threshold)
            && self.ticks >= self.snapshot_retry_tick;
        if (self.force_snapshot || automatic) && applied > 0 && self.preparing.is_none() {
            self.force_snapshot = false;
            self.start_snapshot()?;
        }
        self.shared.term.store(self.rn.raft.term, Ordering::Release);
        Ok(())
    }

    /// Starts making the snapshot at the applied index on a background thread: database
    /// checkpoint → snapshot header → (on `Event::SnapshotMade`) log compaction. Entries committed
    /// meanwhile wait in `unapplied`; ticks, heartbeats and appends go on.
    fn start_snapshot(&mut self) -> Result<()> {
        let index = self.applied;
        if self
            .snapshot_src
            .as_ref()
            .is_some_and(|s| s.desc.index == index)
        {
            for w in self.snapshot_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
            return Ok(());
        }
        let term = self
            .rn
            .store()
            .term_of(index)
            .expect("the applied index is in the log or is its compaction point");
        // The persisted commit must cover what the checkpoint will hold.
        self.rn.mut_store().sync(true)?;
        self.rn.mut_store().set_preparing(true);
        let (disk, dir, db, window) = (
            self.disk.clone(),
            self.dir.clone(),
            self.db.clone(),
            self.window.clone(),
        );
        let events = self.events_tx.clone();
        // Marked first: an inline job has sent its event by the time `spawn` returns.
        self.preparing = Some((index, None));
        let job = self.spawn(format!("needle-raft-{}-snapshot", self.id), move || {
            // A panic in the job is an error the node recovers from, not a stalled apply.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                snapshot::prepare(&*disk, &dir, &db, index, term, &window, true)
            }))
            .unwrap_or_else(|_| {
                Err(NeedleError::Snapshot {
                    reason: format!("the snapshot job at index {index} panicked"),
                })
            });
            let _ = events.send(Event::SnapshotMade { index, result });
        });
        match job {
            Ok(job) => self.preparing = Some((index, job)),
            Err(e) => {
                self.preparing = None;
                self.rn.mut_store().set_preparing(false);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Takes in a finished snapshot: raft-rs may send it from now on, and the log is compacted.
    fn snapshot_made(&mut self, index: u64, result: Result<SnapshotSource>) -> Result<()> {
        if let Some((_, Some(job))) = self.preparing.take() {
            let _ = job.join();
        }
        self.rn.mut_store().set_preparing(false);
        let result: Result<SnapshotSource> = match result {
            Ok(src) => Ok(src),
            Err(e) => {
                // A failed job (an I/O error writing the snapshot, a panic) is not fatal: the
                // queued entries are applied now, and the snapshot is tried again after a while
                // (a waiter of `trigger_snapshot` gets the error). Nothing was compacted, so the
                // log still holds everything after the previous snapshot.
                self.snapshot_retry_tick = self.ticks + SNAPSHOT_RETRY_TICKS;
                for w in self.snapshot_waiters.drain(..) {
                    let _ = w.send(Err(NeedleError::Snapshot {
                        reason: e.to_string(),
                    }));
                }
                return Ok(());
            }
        };
        let res = result.and_then(|src| {
            self.last_snapshot = index;
            let store = self.rn.mut_store();
            store.set_snapshot(Some(src.desc));
            self.snapshot_src = Some(Arc::new(src));
            let compact_to = index.saturating_sub(self.cfg.log_retain_entries);
            if compact_to > store.snap_index() {
                store.compact(compact_to)?;
            }
            snapshot::remove_other_snapshots(&*self.disk, &self.dir, index);
            Ok(())
        });
        for w in self.snapshot_waiters.drain(..) {
            let _ = w.send(match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(NeedleError::Snapshot {
                    reason: e.to_string(),
                }),
            });
        }
        res
    }

    /// Blocks until the snapshot being made (if any) is done, keeping other events for later.
    fn wait_for_snapshot_job(&mut self) -> Result<()> {
        while self.preparing.is_some() {
            match self.events_rx.recv() {
                Ok(Event::SnapshotMade { index, result }) => self.snapshot_made(index, result)?,
                Err(_) => unreachable!("the node holds a sender of its own events"),
            }
        }
        Ok(())
    }

    fn status(&self) -> NodeStatus {
        let raft = &self.rn.raft;
        let mut progress = BTreeMap::new();
        if self.is_leader() {
            for (id, p) in raft.prs().iter() {
                progress.insert(
                    *id,
                    PeerProgress {
                        matched: p.matched,
                        next_index: p.next_idx,
                        state: format!("{:?}", p.state),
                        recent_active: p.recent_active,
                    },
                );
            }
        }
        let store = self.rn.store();
        NodeStatus {
            id: self.id,
            role: role_of(raft.state),
            term: raft.term,
            leader: self.leader_hint(),
            commit: raft.raft_log.committed,
            applied: self.applied,
            first_index: store.first_index().unwrap_or(0),
            last_index: raft.raft_log.last_index(),
            snapshot_index: self.last_snapshot,
            voters: sorted(self.conf_state.voters.clone()),
            learners: sorted(self.conf_state.learners.clone()),
            pending_conf_index: if self.is_leader() {
                raft.pending_conf_index
            } else {
                0
            },
            progress,
            removed: self.told_removed.map(|(index, _)| index),
        }
    }
}

/// Whether a node steps `m`, which the transport delivered from `from` (a MsgPropose's entries
/// are checked apart): addressed to this node by a peer that is not node 0 nor itself, not one
/// of raft-rs's local messages, a read index with the one context entry raft-rs indexes, and
/// [`steppable`]. A leader steps nothing from a node outside its configuration: any message of a
/// newer term would make it step down (raft-rs ignores only votes while it holds its lease, and
/// only responses from unknown nodes). A node that has not applied the change adding `from`
/// yet loses its messages until it has, as if they were lost. Other roles step such messages: a
/// follower or candidate that lags may not know the newer members it needs to follow or to vote
/// for.
pub(crate) fn admissible<S: Storage>(raft: &raft::Raft<S>, from: NodeId, m: &Message) -> bool {
    let t = m.get_msg_type();
    m.to == raft.id
        && m.from == from
        && from != 0
        && from != raft.id
        && !raft::raw_node::is_local_msg(t)
        && (!matches!(t, MessageType::MsgReadIndex | MessageType::MsgReadIndexResp)
            || m.entries.len() == 1)
        && (raft.state != StateRole::Leader || raft.prs().get(from).is_some())
        && steppable(raft, m)
}

/// Whether raft-rs steps `m` from a peer without reaching one of its `fatal!` panics (raft-rs
/// 0.7 trusts its peers). Fields only a faulty or hostile peer sends:
/// - MsgAppend: entries not at `index + 1, index + 2, ...` (`maybe_append` slices by their gap
///   and calls a conflict at or below the commit index fatal), or entry terms below `log_term`
///   or decreasing (an entry of term 0 after `log_term` 3 ended in `unstable.slice`'s "out of
///   bound" in the test of this module);
/// - MsgHeartbeat: a commit index past this log's last index (`commit_to`: "out of range");
/// - MsgSnapshot: a conf state raft-rs does not restore as it is ("invalid restore").
///
/// And any term or index past half [`MAX_RECORD_INDEX`]: the log would store it (or its own
/// elections would count terms on from it past the bound), and refuse to open; a rejection's
/// hint past it overflowed the leader's `match_hint + 1` (`Progress::maybe_decr_to`: a hint of
/// `u64::MAX` past the leader's log comes back from `find_conflict_by_term` as it is).
///
/// A leader never sends any of these (it sends `min(matched, committed)` in a heartbeat, its
/// log holds our committed entries with their terms); dropping one is a lost message.
pub(crate) fn steppable<S: Storage>(raft: &raft::Raft<S>, m: &Message) -> bool {
    let log = &raft.raft_log;
    let meta = m.get_snapshot().get_metadata();
    let within = [
        m.term,
        m.index,
        m.log_term,
        m.commit,
        m.reject_hint,
        m.request_snapshot,
        meta.index,
        meta.term,
    ]
    .into_iter()
    .chain(m.entries.iter().flat_map(|e| [e.index, e.term]))
    .all(|x| x <= MAX_RECORD_INDEX / 2);
    if !within {
        return false;
    }
    match m.get_msg_type() {
        MessageType::MsgAppend => {
            let consecutive = m.entries.iter().enumerate().all(|(i, e)| {
                m.index
                    .checked_add(i as u64 + 1)
                    .is_some_and(|at| at == e.index)
            });
            let terms = m
                .entries
                .iter()
                .try_fold(m.log_term, |t, e| (e.term >= t).then_some(e.term))
                .is_some();
            consecutive && terms
        }
        MessageType::MsgHeartbeat => m.commit <= log.last_index(),
        MessageType::MsgSnapshot => {
            crate::storage::check_conf_state(m.get_snapshot().get_metadata().get_conf_state())
                .is_ok()
        }
        _ => true,
    }
}

/// Whether `m`, carried by the last chunk of the stream of the snapshot at (`index`, `term`), is
/// the MsgSnapshot of that very stream: the file stepping it installs is named by its metadata.
fn snapshot_matches_stream(m: &Message, index: u64, term: u64) -> bool {
    let snap = m.get_snapshot();
    let meta = snap.get_metadata();
    m.get_msg_type() == MessageType::MsgSnapshot
        && meta.index == index
        && meta.term == term
        && SnapshotDescriptor::decode(snap.get_data())
            .is_some_and(|d| d.index == index && d.term == term)
}

/// Whether the membership change `e` (a normal entry is none) adds `id` as a voter or a learner.
fn adds(e: &Entry, id: NodeId) -> bool {
    let is_add =
        |t: ConfChangeType| matches!(t, ConfChangeType::AddNode | ConfChangeType::AddLearnerNode);
    match e.get_entry_type() {
        EntryType::EntryNormal => false,
        EntryType::EntryConfChange => ConfChange::parse_from_bytes(&e.data)
            .is_ok_and(|cc| cc.node_id == id && is_add(cc.get_change_type())),
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data).is_ok_and(|cc| {
            cc.changes
                .iter()
                .any(|c| c.node_id == id && is_add(c.get_change_type()))
        }),
    }
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

pub(crate) fn id_bytes(id: RequestId) -> Vec<u8> {
    let mut b = id.client.to_le_bytes().to_vec();
    b.extend_from_slice(&id.seq.to_le_bytes());
    b
}
