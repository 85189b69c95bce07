//! The deterministic simulator (tests only): 1, 3 or 5 Raft [`Node`]s stepped in one thread on a
//! virtual clock, with one seeded RNG deciding everything — each node's tick jitter, message
//! delay, loss, duplication and reordering, partitions (asymmetric too), crashes and restarts,
//! clients' operations and their timeouts, membership changes and leadership transfers. One seed
//! gives one exact run: `NEEDLE_SEED=<seed> cargo test -p needle-raft --lib sim::` replays it.
//!
//! raft-rs draws its election timeout from a thread RNG; the simulator pins it
//! (`election_timeout_max = election_timeout_min + tick_interval`, so max = min + 1 tick) and
//! jitters each node's ticks instead.
//!
//! Checks, after the faults stop and the cluster is quiet: Wing–Gong–Lowe linearizability of the
//! writes and linearizable reads of every key (an acknowledged write that is lost, or a command
//! applied twice, shows up there: every write writes a value of its own); one acknowledged write
//! after healing (liveness); every live member agrees on the voters and learners, has applied the
//! same index and holds the same `state_checksum`; no node stopped on an error; and a minimum of
//! acknowledged writes and reads, so that no run passes vacuously.

#[path = "../../tests/common/linearizability.rs"]
#[allow(dead_code)]
mod linearizability;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use needle_core::Database;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

use crate::command::{ReplicatedCommand, RequestId, encode_entry};
use crate::config::ReplicatedDatabaseConfig;
use crate::error::{NeedleError, Result};
use crate::message::{MessageHandler, NodeId, RaftMessage};
use crate::node::{Background, Input, Node, Request, Shared};
use crate::status::{NodeStatus, Role};
use linearizability::{Event as HEvent, Op, check_register};

/// splitmix64: small, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille` / 1000.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub(crate) fn pick<T: Copy>(&mut self, v: &[T]) -> Option<T> {
        (!v.is_empty()).then(|| v[self.below(v.len() as u64) as usize])
    }
}

type Outbox = Arc<Mutex<Vec<(NodeId, NodeId, RaftMessage)>>>;

/// A node's transport in the simulator: sends go to the shared outbox, which the simulator
/// drains after every step into its event queue. Nothing is received through it.
struct SimHandler {
    id: NodeId,
    out: Outbox,
}

impl MessageHandler for SimHandler {
    fn send(&self, to: NodeId, message: RaftMessage) -> Result<()> {
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((self.id, to, message));
        Ok(())
    }

    fn receive(&self) -> Result<Option<(NodeId, RaftMessage)>> {
        Ok(None)
    }

    fn peers(&self) -> Vec<NodeId> {
        Vec::new()
    }
}

/// What the simulator schedules.
enum Ev {
    /// Node `.0`'s tick (of incarnation `.1`: a restarted node has new ticks).
    Tick(NodeId, u64),
    /// A message arrives.
    Deliver(NodeId, NodeId, Box<RaftMessage>),
    /// Node `.0` (incarnation `.1`) finishes a background job.
    Job(NodeId, u64),
    /// Client `.0` acts.
    Client(usize),
    /// The nemesis acts.
    Nemesis,
    /// The membership operator acts.
    Admin,
}

struct SimNode {
    node: Option<Node>,
    db: Database,
    shared: Arc<Shared>,
    dir: PathBuf,
    incarnation: u64,
    founder: bool,
    /// Stopped for good (removed from the cluster): never restarted.
    removed: bool,
}

/// How a run is shaped; drawn from the seed.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub nodes: u64,
    pub spares: u64,
    pub clients: usize,
    pub keys: u64,
    /// Milliseconds of faults, then of quiet.
    pub chaos_ms: u64,
    pub quiet_ms: u64,
    pub drop_per_mille: u64,
    pub dup_per_mille: u64,
    pub max_delay_ms: u64,
    pub crashes: bool,
    pub partitions: bool,
    pub membership: bool,
    pub snapshot_threshold: u64,
}

impl Shape {
    fn draw(rng: &mut Rng) -> Shape {
        let nodes = [1, 3, 3, 3, 5][rng.below(5) as usize];
        Shape {
            nodes,
            spares: 2,
            clients: rng.range(2, 4) as usize,
            keys: rng.range(2, 5),
            chaos_ms: rng.range(1_000, 3_000),
            quiet_ms: 2_000,
            drop_per_mille: [0, 10, 50, 150][rng.below(4) as usize],
            dup_per_mille: [0, 10, 50][rng.below(3) as usize],
            max_delay_ms: [2, 10, 40][rng.below(3) as usize],
            crashes: rng.chance(600),
            partitions: nodes > 1 && rng.chance(600),
            membership: rng.chance(700),
            snapshot_threshold: [5, 20, 1_000][rng.below(3) as usize],
        }
    }
}

struct PendingOp {
    kind: OpKind,
    node: NodeId,
    key: u64,
    /// When the client gives up waiting (the node answers by its own deadline; a crashed node
    /// never does).
    give_up_at: u64,
}

enum OpKind {
    Write {
        id: RequestId,
        value: u64,
        /// Index of the write in its key's history.
        hist: usize,
        attempts: u32,
        /// Some attempt may have been applied.
        maybe: bool,
        rx: Receiver<Result<bool>>,
    },
    LinRead {
        call: u64,
        rx: Receiver<Result<()>>,
    },
}

struct Client {
    seq: u64,
    pending: Option<PendingOp>,
    /// The node this client believes leads.
    target: NodeId,
}

/// What a run reports.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub acked_writes: u64,
    pub lin_reads: u64,
    pub stale_reads: u64,
    pub crashes: u64,
    pub membership_changes: u64,
    pub transfers: u64,
    pub messages: u64,
}

pub(crate) struct Sim {
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    nodes: BTreeMap<NodeId, SimNode>,
    out: Outbox,
    shape: Shape,
    cfg: ReplicatedDatabaseConfig,
    _root: tempfile::TempDir,
    clients: Vec<Client>,
    /// Per key, the register history.
    history: BTreeMap<u64, Vec<HEvent>>,
    next_value: u64,
    /// Directed links that drop everything: (from, to).
    blocked: BTreeSet<(NodeId, NodeId)>,
    chaos: bool,
    /// Time the faults stopped, and of the first write acknowledged after that.
    healed_at: Option<u64>,
    first_ack_after_heal: Option<u64>,
    admin: Option<AdminOp>,
    stop_clients: bool,
    /// Writes known never to have been applied: left out of the history.
    never_applied: BTreeSet<(u64, usize)>,
    pub report: Report,
}

struct AdminOp {
    rx: Receiver<Result<bool>>,
    /// A learner to promote once it is caught up, when this op is its AddLearner.
    promote: Option<NodeId>,
}

const TICK_MS: u64 = 10;

fn sim_config(shape: &Shape) -> ReplicatedDatabaseConfig {
    ReplicatedDatabaseConfig {
        tick_interval: Duration::from_millis(TICK_MS),
        heartbeat_interval: 2 * TICK_MS,
        election_timeout_min: 10 * TICK_MS,
        // Pinned: raft-rs draws the timeout in [min, max) ticks, so max = min + 1 tick.
        election_timeout_max: 11 * TICK_MS,
        max_staleness: Duration::from_millis(300),
        proposal_timeout: Duration::from_millis(600),
        read_timeout: Duration::from_millis(600),
        snapshot_threshold: shape.snapshot_threshold,
        log_retain_entries: 3,
        snapshot_chunk_size: 2048,
        log_segment_size: 16 * 1024,
        ..Default::default()
    }
}

fn temp_root() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("needle-sim-")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("a temporary directory")
}

impl Sim {
    pub(crate) fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let shape = Shape::draw(&mut rng);
        let cfg = sim_config(&shape);
        let root = temp_root();
        let mut sim = Sim {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes: BTreeMap::new(),
            out: Arc::new(Mutex::new(Vec::new())),
            cfg,
            _root: root,
            clients: Vec::new(),
            history: BTreeMap::new(),
            next_value: 1,
            blocked: BTreeSet::new(),
            chaos: true,
            healed_at: None,
            first_ack_after_heal: None,
            admin: None,
            stop_clients: false,
            never_applied: BTreeSet::new(),
            report: Report::default(),
            shape,
        };
        for id in 1..=sim.shape.nodes + sim.shape.spares {
            let dir = sim._root.path().join(format!("node-{id}"));
            sim.nodes.insert(
                id,
                SimNode {
                    node: None,
                    db: Database::in_memory(),
                    shared: new_shared(),
                    dir,
                    incarnation: 0,
                    founder: id <= sim.shape.nodes,
                    removed: false,
                },
            );
        }
        for id in 1..=sim.shape.nodes {
            sim.start(id);
        }
        for _ in 0..sim.shape.clients {
            sim.clients.push(Client {
                seq: 0,
                pending: None,
                target: 1,
            });
        }
        sim
    }

    fn schedule(&mut self, after: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn start(&mut self, id: NodeId) {
        let n = self.nodes.get_mut(&id).expect("a known node");
        let founders: Vec<NodeId> = (1..=self.shape.nodes).collect();
        let cfg = ReplicatedDatabaseConfig {
            data_dir: n.dir.clone(),
            initial_members: if n.founder { founders } else { vec![] },
            ..self.cfg.clone()
        };
        // A crash loses the in-memory database: it comes back from snapshots and the log.
        n.db = Database::in_memory();
        n.shared = new_shared();
        n.incarnation += 1;
        let handler = Arc::new(SimHandler {
            id,
            out: self.out.clone(),
        });
        let nonce = self.rng.next();
        let node = Node::open(
            id,
            n.db.clone(),
            handler,
            cfg,
            n.shared.clone(),
            Background::Inline,
            nonce,
        )
        .unwrap_or_else(|e| panic!("node {id} does not start: {e}"));
        n.node = Some(node);
        let inc = n.incarnation;
        let first = self.rng.range(1, TICK_MS);
        self.schedule(first, Ev::Tick(id, inc));
    }

    fn crash(&mut self, id: NodeId) {
        let n = self.nodes.get_mut(&id).expect("a known node");
        // Dropped without `finish`: nothing more is written, pending callers see a disconnect.
        n.node = None;
        self.report.crashes += 1;
    }

    /// Steps node `id` by `input`; a node that stops is finished (a removal is expected, any
    /// other error fails the run).
    fn step(&mut self, id: NodeId, input: Input) {
        let now = Duration::from_millis(self.now);
        let n = self.nodes.get_mut(&id).expect("a known node");
        let Some(node) = n.node.as_mut() else {
            return;
        };
        let res = node.step(now, input);
        let inc = n.incarnation;
        let has_job = node.has_event();
        if let Err(e) = res {
            let node = n.node.take().expect("the node was running");
            let removal =
                matches!(&e, NeedleError::Stopped { reason } if reason.contains("was removed"));
            node.finish(Err(e));
            if removal {
                n.removed = true;
            } else {
                panic!(
                    "node {id} stopped at {} ms: {}",
                    self.now,
                    n.shared.fatal.lock().unwrap().clone().unwrap_or_default()
                );
            }
        } else if has_job {
            let d = self.rng.range(1, 30);
            self.schedule(d, Ev::Job(id, inc));
        }
        self.flush_outbox();
    }

    fn flush_outbox(&mut self) {
        let msgs = std::mem::take(&mut *self.out.lock().unwrap_or_else(|p| p.into_inner()));
        for (from, to, m) in msgs {
            self.report.messages += 1;
            if self.blocked.contains(&(from, to)) {
                continue;
            }
            if self.chaos && self.rng.chance(self.shape.drop_per_mille) {
                continue;
            }
            let max = if self.chaos {
                self.shape.max_delay_ms
            } else {
                2
            };
            let d = self.rng.range(0, max);
            if self.chaos && self.rng.chance(self.shape.dup_per_mille) {
                let d2 = self.rng.range(0, max * 2);
                self.schedule(d2, Ev::Deliver(from, to, Box::new(m.clone())));
            }
            self.schedule(d, Ev::Deliver(from, to, Box::new(m)));
        }
    }

    fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.node.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn status(&mut self, id: NodeId) -> Option<NodeStatus> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.step(id, Input::Request(Request::Status { reply: tx }));
        rx.try_recv().ok()
    }

    /// The running node that leads in the highest term, as the nodes themselves report it.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.node.is_some() && n.shared.role() == Role::Leader)
            .max_by_key(|(_, n)| n.shared.term.load(std::sync::atomic::Ordering::Acquire))
            .map(|(id, _)| *id)
    }

    /// Runs until virtual time `until`.
    fn run_until(&mut self, until: u64) {
        while let Some(&Reverse((t, s))) = self.queue.peek() {
            if t > until {
                break;
            }
            self.queue.pop();
            self.now = t;
            let ev = self
                .events
                .remove(&s)
                .expect("every queued event is stored");
            self.handle(ev);
            self.poll_clients();
        }
        self.now = until;
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick(id, inc) => {
                if self.nodes[&id].incarnation != inc || self.nodes[&id].node.is_none() {
                    return;
                }
                self.step(id, Input::Tick);
                // Jittered ticks: each node's clock runs at its own, slightly varying pace.
                let next = TICK_MS + self.rng.range(0, 2) - 1;
                self.schedule(next, Ev::Tick(id, inc));
            }
            Ev::Deliver(from, to, m) => {
                if self.blocked.contains(&(from, to)) {
                    return;
                }
                self.step(to, Input::Message(from, *m));
            }
            Ev::Job(id, inc) => {
                if self.nodes[&id].incarnation != inc {
                    return;
                }
                let ev = self.nodes[&id].node.as_ref().and_then(|n| n.take_event());
                if let Some(e) = ev {
                    self.step(id, Input::Event(e));
                }
            }
            Ev::Client(c) => self.client_act(c),
            Ev::Nemesis => self.nemesis(),
            Ev::Admin => self.admin_act(),
        }
    }

    // ---- faults ----

    fn nemesis(&mut self) {
        if !self.chaos {
            return;
        }
        let ids: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.removed && (n.founder || n.node.is_some()))
            .map(|(id, _)| *id)
            .collect();
        match self.rng.below(6) {
            0 | 1 if self.shape.crashes => {
                let running = self.running();
                if let Some(id) = self.rng.pick(&running) {
                    self.crash(id);
                }
            }
            2 => {
                // Restart whatever is down.
                let down: Vec<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|id| self.nodes[id].node.is_none())
                    .collect();
                if let Some(id) = self.rng.pick(&down) {
                    self.start(id);
                }
            }
            3 if self.shape.partitions => {
                // Cut a random set of directed links (asymmetric partitions included).
                self.blocked.clear();
                let cut = self.rng.range(1, ids.len() as u64);
                for _ in 0..cut {
                    let a = self.rng.pick(&ids).expect("some node");
                    let b = self.rng.pick(&ids).expect("some node");
                    if a != b {
                        self.blocked.insert((a, b));
                        if self.rng.chance(500) {
                            self.blocked.insert((b, a));
                        }
                    }
                }
            }
            4 => self.blocked.clear(),
            _ => {}
        }
        let next = self.rng.range(100, 600);
        self.schedule(next, Ev::Nemesis);
    }

    fn heal(&mut self) {
        self.chaos = false;
        self.blocked.clear();
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.node.is_none() && !n.removed && n.incarnation > 0)
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            self.start(id);
        }
        self.healed_at = Some(self.now);
    }

    // ---- membership ----

    fn admin_act(&mut self) {
        let next = self.rng.range(300, 900);
        if let Some(op) = &self.admin {
            match op.rx.try_recv() {
                Err(TryRecvError::Empty) => {
                    self.schedule(next, Ev::Admin);
                    return;
                }
                Ok(Ok(_)) => {
                    self.report.membership_changes += 1;
                    if let Some(learner) = op.promote {
                        self.admin = None;
                        self.promote_later(learner);
                        self.schedule(next, Ev::Admin);
                        return;
                    }
                    self.admin = None;
                }
                Ok(Err(_)) | Err(TryRecvError::Disconnected) => self.admin = None,
            }
        }
        if !self.chaos && self.healed_at.is_some_and(|h| self.now > h + 500) {
            return; // quiet: membership settles
        }
        let Some(leader) = self.leader() else {
            self.schedule(next, Ev::Admin);
            return;
        };
        let Some(st) = self.status(leader) else {
            self.schedule(next, Ev::Admin);
            return;
        };
        if st.role != Role::Leader {
            self.schedule(next, Ev::Admin);
            return;
        }
        let choice = self.rng.below(4);
        if choice == 0 {
            // Add a node that never was a member: it starts empty, joins as a learner.
            let spare = self
                .nodes
                .iter()
                .find(|(id, n)| !n.founder && n.incarnation == 0 && !st.learners.contains(id))
                .map(|(id, _)| *id);
            if let Some(id) = spare {
                self.start(id);
                self.conf_change(leader, ConfChangeType::AddLearnerNode, id, Some(id));
            }
        } else if choice == 1 {
            // Promote a caught-up learner.
            if let Some(&l) = st.learners.first()
                && st
                    .progress
                    .get(&l)
                    .is_some_and(|p| p.matched + 2 >= st.commit && p.matched > 0)
            {
                self.conf_change(leader, ConfChangeType::AddNode, l, None);
            }
        } else if choice == 2 && st.voters.len() > 3 {
            // Remove a follower voter.
            let followers: Vec<NodeId> =
                st.voters.iter().copied().filter(|&v| v != leader).collect();
            if let Some(v) = self.rng.pick(&followers) {
                self.conf_change(leader, ConfChangeType::RemoveNode, v, None);
            }
        } else if choice == 3 && st.voters.len() > 1 {
            let others: Vec<NodeId> = st.voters.iter().copied().filter(|&v| v != leader).collect();
            if let Some(to) = self.rng.pick(&others) {
                let (tx, _rx) = crossbeam_channel::bounded(1);
                self.step(
                    leader,
                    Input::Request(Request::TransferLeader { to, reply: tx }),
                );
                self.report.transfers += 1;
            }
        }
        self.schedule(next, Ev::Admin);
    }

    fn promote_later(&mut self, _learner: NodeId) {
        // The next admin turn's "promote" choice picks it up once it is caught up.
    }

    fn conf_change(
        &mut self,
        leader: NodeId,
        t: ConfChangeType,
        node: NodeId,
        promote: Option<NodeId>,
    ) {
        let mut s = ConfChangeSingle::default();
        s.set_change_type(t);
        s.node_id = node;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![s].into());
        let id = RequestId {
            client: 1 << 40,
            seq: self.seq,
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.step(
            leader,
            Input::Request(Request::ConfChange { id, cc, reply: tx }),
        );
        self.admin = Some(AdminOp { rx, promote });
    }

    // ---- clients ----

    fn client_act(&mut self, c: usize) {
        if self.clients[c].pending.is_some() || self.stop_clients {
            return;
        }
        let running = self.running();
        if running.is_empty() {
            let d = self.rng.range(20, 100);
            self.schedule(d, Ev::Client(c));
            return;
        }
        let key = self.rng.below(self.shape.keys);
        let roll = self.rng.below(10);
        let target = if self.rng.chance(700) && running.contains(&self.clients[c].target) {
            self.clients[c].target
        } else {
            self.rng.pick(&running).expect("a running node")
        };
        if roll < 5 {
            self.clients[c].seq += 1;
            let id = RequestId {
                client: c as u64 + 1,
                seq: self.clients[c].seq,
            };
            let value = self.next_value;
            self.next_value += 1;
            let h = self.history.entry(key).or_default();
            h.push(HEvent {
                op: Op::Write(value),
                call: self.now,
                ret: None,
            });
            let hist = h.len() - 1;
            self.send_write(c, target, id, key, value, hist, 0, false);
        } else if roll < 9 {
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.clients[c].pending = Some(PendingOp {
                kind: OpKind::LinRead { call: self.now, rx },
                node: target,
                key,
                give_up_at: self.now + 2_000,
            });
            self.step(target, Input::Request(Request::Read { reply: tx }));
        } else {
            // A local read on any node at bounded staleness: not linearizable, not checked
            // here beyond not failing; counted.
            self.report.stale_reads += 1;
            let d = self.rng.range(5, 50);
            self.schedule(d, Ev::Client(c));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_write(
        &mut self,
        c: usize,
        target: NodeId,
        id: RequestId,
        key: u64,
        value: u64,
        hist: usize,
        attempts: u32,
        maybe: bool,
    ) {
        let cmd = ReplicatedCommand::Insert {
            collection: "c".into(),
            id: format!("k{key}"),
            // Distinct vectors: a graph of equal vectors makes every insert a slow search.
            vector: vec![(value % 97) as f32 + 1.0, (value % 89) as f32 + 1.0],
            // The value travels in the metadata (a cosine collection normalises vectors).
            metadata: Some(ReplicatedCommand::json(&serde_json::json!({ "v": value }))),
        };
        let data = encode_entry(id, &cmd);
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.clients[c].pending = Some(PendingOp {
            kind: OpKind::Write {
                id,
                value,
                hist,
                attempts,
                maybe,
                rx,
            },
            node: target,
            key,
            give_up_at: self.now + 2_000,
        });
        self.step(
            target,
            Input::Request(Request::Propose {
                id,
                data,
                reply: tx,
            }),
        );
    }

    /// Collects every answer that arrived, and retries or completes the ops.
    fn poll_clients(&mut self) {
        for c in 0..self.clients.len() {
            let Some(op) = self.clients[c].pending.take() else {
                continue;
            };
            let node_alive = self.nodes[&op.node].node.is_some();
            match op.kind {
                OpKind::Write {
                    id,
                    value,
                    hist,
                    attempts,
                    maybe,
                    rx,
                } => {
                    let answer = match rx.try_recv() {
                        Ok(r) => Some(r),
                        Err(TryRecvError::Empty) if node_alive && self.now < op.give_up_at => {
                            self.clients[c].pending = Some(PendingOp {
                                kind: OpKind::Write {
                                    id,
                                    value,
                                    hist,
                                    attempts,
                                    maybe,
                                    rx,
                                },
                                ..op
                            });
                            continue;
                        }
                        // The node crashed, or never answered: the write may have been applied.
                        Err(_) => None,
                    };
                    match answer {
                        Some(Ok(_)) => {
                            self.history.get_mut(&op.key).expect("the key's history")[hist].ret =
                                Some(self.now);
                            self.report.acked_writes += 1;
                            if self.healed_at.is_some() && self.first_ack_after_heal.is_none() {
                                self.first_ack_after_heal = Some(self.now);
                            }
                            self.next_turn(c);
                        }
                        other => {
                            let maybe = maybe
                                || match &other {
                                    Some(Err(e)) => e.may_have_been_applied(),
                                    _ => true,
                                };
                            if let Some(Err(NeedleError::NotLeader { leader: Some(l) })) = &other {
                                self.clients[c].target = *l;
                            }
                            if let Some(Err(e)) = &other
                                && !e.may_have_been_applied()
                                && !matches!(
                                    e,
                                    NeedleError::NotLeader { .. }
                                        | NeedleError::ProposalDropped { .. }
                                        | NeedleError::LeadershipLost { .. }
                                        | NeedleError::Shutdown
                                        | NeedleError::Timeout { .. }
                                )
                            {
                                panic!("write {id:?} failed: {e}");
                            }
                            if attempts < 20 {
                                // Retry the same request id, maybe elsewhere, a little later.
                                let running = self.running();
                                let target = if running.contains(&self.clients[c].target) {
                                    self.clients[c].target
                                } else {
                                    match self.rng.pick(&running) {
                                        Some(t) => t,
                                        None => op.node,
                                    }
                                };
                                if self.nodes[&target].node.is_some() {
                                    self.send_write(
                                        c,
                                        target,
                                        id,
                                        op.key,
                                        value,
                                        hist,
                                        attempts + 1,
                                        maybe,
                                    );
                                    continue;
                                }
                            }
                            // Given up: a write that may have happened stays in the history
                            // without a return; one that certainly did not is removed.
                            if !maybe {
                                self.never_applied.insert((op.key, hist));
                            }
                            self.next_turn(c);
                        }
                    }
                }
                OpKind::LinRead { call, rx } => match rx.try_recv() {
                    Ok(Ok(())) => {
                        let db = &self.nodes[&op.node].db;
                        let got = db
                            .get("c", &format!("k{}", op.key))
                            .ok()
                            .flatten()
                            .and_then(|r| value_of(&r));
                        let collection_exists = db.list_collections().iter().any(|n| n == "c");
                        if collection_exists {
                            self.history.entry(op.key).or_default().push(HEvent {
                                op: Op::Read(got),
                                call,
                                ret: Some(self.now),
                            });
                            self.report.lin_reads += 1;
                        }
                        self.next_turn(c);
                    }
                    Ok(Err(e)) => {
                        if let NeedleError::NotLeader { leader: Some(l) } = e {
                            self.clients[c].target = l;
                        }
                        self.next_turn(c);
                    }
                    Err(TryRecvError::Empty) if node_alive && self.now < op.give_up_at => {
                        self.clients[c].pending = Some(PendingOp {
                            kind: OpKind::LinRead { call, rx },
                            ..op
                        });
                    }
                    Err(_) => self.next_turn(c),
                },
            }
        }
    }

    fn next_turn(&mut self, c: usize) {
        let d = self.rng.range(1, 40);
        self.schedule(d, Ev::Client(c));
    }

    /// The whole run: setup, faults, healing, quiet, then the checks. Panics on a violation.
    pub(crate) fn run(&mut self) {
        // Setup: the collection every write goes to, created before the clients start.
        self.run_until(300);
        let mut created = false;
        for _ in 0..200 {
            if let Some(l) = self.leader() {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let id = RequestId {
                    client: 0,
                    seq: self.now,
                };
                let cmd = ReplicatedCommand::CreateCollection {
                    name: "c".into(),
                    dimensions: 2,
                    config: Some(sim_collection_config()),
                };
                self.step(
                    l,
                    Input::Request(Request::Propose {
                        id,
                        data: encode_entry(id, &cmd),
                        reply: tx,
                    }),
                );
                let until = self.now + 700;
                while self.now < until {
                    let t = self.now + 10;
                    self.run_until(t);
                    match rx.try_recv() {
                        Ok(Ok(_)) => {
                            created = true;
                            break;
                        }
                        Ok(Err(NeedleError::Core(_))) => {
                            created = true; // an earlier attempt created it
                            break;
                        }
                        Ok(Err(_)) | Err(TryRecvError::Disconnected) => break,
                        Err(TryRecvError::Empty) => {}
                    }
                }
                if created {
                    break;
                }
            } else {
                let t = self.now + 50;
                self.run_until(t);
            }
        }
        assert!(created, "no leader created the collection");
        for c in 0..self.clients.len() {
            let at = self.rng.range(1, 50);
            self.schedule(at, Ev::Client(c));
        }
        self.schedule(100, Ev::Nemesis);
        if self.shape.membership {
            self.schedule(300, Ev::Admin);
        }
        let chaos_end = self.now + self.shape.chaos_ms;
        self.run_until(chaos_end);
        self.heal();
        let quiet_end = self.now + self.shape.quiet_ms;
        self.run_until(quiet_end);
        // Stop the clients and the operator; let everything in flight finish.
        self.shape.clients = 0;
        for c in 0..self.clients.len() {
            self.clients[c].seq = u64::MAX / 2;
        }
        self.stop_clients = true;
        let settle = self.now + 1_000;
        self.run_until(settle);
        self.check();
    }
}

impl Sim {
    fn check(&mut self) {
        // Liveness: once the faults stopped, a write was acknowledged.
        assert!(
            self.first_ack_after_heal.is_some(),
            "no write was acknowledged in the {} ms after healing",
            self.shape.quiet_ms
        );
        // Membership, applied index and state agree on every running member.
        let running = self.running();
        let statuses: Vec<NodeStatus> = running.iter().filter_map(|&id| self.status(id)).collect();
        let leader = statuses
            .iter()
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .unwrap_or_else(|| panic!("no leader once quiet: {statuses:#?}"));
        let members: BTreeSet<NodeId> = leader
            .voters
            .iter()
            .chain(leader.learners.iter())
            .copied()
            .collect();
        for st in &statuses {
            if !members.contains(&st.id) {
                continue;
            }
            assert_eq!(
                (&st.voters, &st.learners),
                (&leader.voters, &leader.learners),
                "node {} disagrees on the membership: {statuses:#?}",
                st.id
            );
            assert_eq!(
                st.applied, leader.applied,
                "node {} has not applied what the leader has: {statuses:#?}",
                st.id
            );
            let a = self.nodes[&st.id].db.state_checksum();
            let b = self.nodes[&leader.id].db.state_checksum();
            assert_eq!(
                a, b,
                "node {} and leader {} differ at index {}",
                st.id, leader.id, st.applied
            );
        }
        for m in &members {
            assert!(
                running.contains(m),
                "member {m} is not running once healed: {statuses:#?}"
            );
        }
        // Linearizability of every key's history, final reads included.
        let mut final_reads = Vec::new();
        let ldb = self.nodes[&leader.id].db.clone();
        for key in 0..self.shape.keys {
            let got = ldb
                .get("c", &format!("k{key}"))
                .ok()
                .flatten()
                .and_then(|r| value_of(&r));
            final_reads.push((key, got));
        }
        let t = self.now;
        for (key, got) in final_reads {
            self.history.entry(key).or_default().push(HEvent {
                op: Op::Read(got),
                call: t,
                ret: Some(t + 1),
            });
        }
        for (key, h) in &self.history {
            let h: Vec<HEvent> = h
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.never_applied.contains(&(*key, *i)))
                .map(|(_, e)| e.clone())
                .collect();
            if let Err(e) = check_register(&h) {
                panic!("key k{key}: {e}");
            }
        }
        assert!(
            self.report.acked_writes >= 3,
            "too few acknowledged writes for a meaningful run: {:?}",
            self.report
        );
    }
}

/// A small graph: the simulator tests replication, not recall, and every write is an HNSW
/// insert on every replica (the default `ef_construction` of 200 was the largest single cost).
fn sim_collection_config() -> needle_core::CollectionConfig {
    needle_core::CollectionConfig {
        m: 4,
        ef_construction: 8,
        ef_search: 8,
        ..Default::default()
    }
}

fn value_of(r: &needle_core::Record) -> Option<u64> {
    r.metadata.as_ref()?.get("v")?.as_u64()
}

fn new_shared() -> Arc<Shared> {
    Arc::new(Shared {
        role: AtomicU8::new(Role::Follower as u8),
        leader: AtomicU64::new(0),
        term: AtomicU64::new(0),
        applied: AtomicU64::new(0),
        started: Instant::now(),
        leader_contact_ms: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
        fatal: Mutex::new(None),
    })
}

/// Runs one seed; on a panic, prints how to replay it and panics again.
pub(crate) fn run_seed(seed: u64) -> Report {
    let res = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed);
        sim.run();
        (std::mem::take(&mut sim.report), sim.shape.clone())
    });
    match res {
        Ok((report, _)) => report,
        Err(p) => {
            let shape = Shape::draw(&mut Rng::new(seed));
            eprintln!(
                "simulation seed {seed} failed ({shape:?}); replay with: NEEDLE_SEED={seed} cargo test -p needle-raft --lib sim::tests::replay -- --nocapture"
            );
            std::panic::resume_unwind(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_u64(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|s| s.parse().ok())
    }

    /// `NEEDLE_SIM_SEEDS` seeds (default 200) from a base seed (`NEEDLE_SIM_BASE`, else random,
    /// printed). With `NEEDLE_SEED`, that one seed only.
    #[test]
    fn seeds() {
        if let Some(seed) = env_u64("NEEDLE_SEED") {
            let r = run_seed(seed);
            eprintln!("seed {seed}: {r:?}");
            return;
        }
        let n = env_u64("NEEDLE_SIM_SEEDS").unwrap_or(200);
        let base = env_u64("NEEDLE_SIM_BASE").unwrap_or_else(rand::random::<u64>);
        eprintln!("simulation: {n} seeds from {base} (re-run with NEEDLE_SIM_BASE={base})");
        let t0 = Instant::now();
        let mut total = Report::default();
        for i in 0..n {
            let r = run_seed(base.wrapping_add(i));
            total.acked_writes += r.acked_writes;
            total.lin_reads += r.lin_reads;
            total.crashes += r.crashes;
            total.membership_changes += r.membership_changes;
            total.transfers += r.transfers;
            total.messages += r.messages;
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "simulation: {n} seeds in {secs:.1} s ({:.0} seeds/minute): {total:?}",
            n as f64 * 60.0 / secs
        );
    }

    /// Replays `NEEDLE_SEED` (what a failing seed prints).
    #[test]
    fn replay() {
        if let Some(seed) = env_u64("NEEDLE_SEED") {
            let r = run_seed(seed);
            eprintln!("seed {seed}: {r:?}");
        }
    }

    /// Issue 10, item 6: a second proposal of a request id while the first is pending answered
    /// the first caller `ProposalDropped` (not applied), although its entry was in the log.
    #[test]
    fn a_retry_while_the_first_attempt_is_pending_shares_its_outcome() {
        let root = temp_root();
        let shared = new_shared();
        let cfg = ReplicatedDatabaseConfig {
            data_dir: root.path().join("node-1"),
            initial_members: vec![1],
            ..sim_config(&Shape::draw(&mut Rng::new(1)))
        };
        let handler = Arc::new(SimHandler {
            id: 1,
            out: Outbox::default(),
        });
        let mut node = Node::open(
            1,
            Database::in_memory(),
            handler,
            cfg,
            shared.clone(),
            Background::Inline,
            1,
        )
        .unwrap();
        let mut t = 0;
        while shared.role() != Role::Leader {
            t += TICK_MS;
            node.step(Duration::from_millis(t), Input::Tick).unwrap();
            assert!(t < 10_000, "a single voter elects itself");
        }
        let propose = |seq: u64, cmd: &ReplicatedCommand| {
            let id = RequestId { client: 9, seq };
            let (tx, rx) = crossbeam_channel::bounded(1);
            let data = encode_entry(id, cmd);
            (
                Input::Request(Request::Propose {
                    id,
                    data,
                    reply: tx,
                }),
                rx,
            )
        };
        let create = ReplicatedCommand::CreateCollection {
            name: "c".into(),
            dimensions: 2,
            config: None,
        };
        let (input, rx) = propose(1, &create);
        node.step(Duration::from_millis(t), input).unwrap();
        assert!(matches!(rx.try_recv(), Ok(Ok(_))));
        let insert = ReplicatedCommand::Insert {
            collection: "c".into(),
            id: "a".into(),
            vector: vec![1.0, 0.0],
            metadata: None,
        };
        let (first, rx1) = propose(2, &insert);
        let (retry, rx2) = propose(2, &insert);
        node.step_all(Duration::from_millis(t), vec![first, retry])
            .unwrap();
        for _ in 0..3 {
            t += TICK_MS;
            node.step(Duration::from_millis(t), Input::Tick).unwrap();
        }
        match rx1.try_recv() {
            Ok(Ok(_)) => {}
            other => panic!("the first caller of an applied request id got {other:?}"),
        }
        assert!(matches!(rx2.try_recv(), Ok(Ok(_))));
    }

    /// Issue 10, item 2: a retry of a request id whose first apply failed was answered `Ok`.
    #[test]
    fn a_retry_of_a_rejected_command_gets_the_rejection() {
        let root = temp_root();
        let shared = new_shared();
        let cfg = ReplicatedDatabaseConfig {
            data_dir: root.path().join("node-1"),
            initial_members: vec![1],
            ..sim_config(&Shape::draw(&mut Rng::new(1)))
        };
        let handler = Arc::new(SimHandler {
            id: 1,
            out: Outbox::default(),
        });
        let mut node = Node::open(
            1,
            Database::in_memory(),
            handler,
            cfg,
            shared.clone(),
            Background::Inline,
            1,
        )
        .unwrap();
        let mut t = 0;
        while shared.role() != Role::Leader {
            t += TICK_MS;
            node.step(Duration::from_millis(t), Input::Tick).unwrap();
            assert!(t < 10_000, "a single voter elects itself");
        }
        let create = ReplicatedCommand::CreateCollection {
            name: "c".into(),
            dimensions: 2,
            config: None,
        };
        let mut send = |seq: u64| {
            let id = RequestId { client: 9, seq };
            let (tx, rx) = crossbeam_channel::bounded(1);
            let data = encode_entry(id, &create);
            let input = Input::Request(Request::Propose {
                id,
                data,
                reply: tx,
            });
            node.step(Duration::from_millis(t), input).unwrap();
            rx.try_recv().expect("a single voter answers at once")
        };
        assert!(send(1).is_ok());
        assert!(matches!(send(2), Err(NeedleError::Core(_))));
        match send(2) {
            Err(NeedleError::Rejected { reason }) => assert!(reason.contains("exists"), "{reason}"),
            other => panic!("a retry of a rejected command got {other:?}"),
        }
        // And a retry of a successful one is still Ok, without applying twice.
        assert!(send(1).is_ok());
    }

    #[test]
    fn one_seed_is_one_exact_run() {
        let seed = env_u64("NEEDLE_SEED").unwrap_or(7);
        let a = Sim::new(seed);
        let b = Sim::new(seed);
        drop((a, b));
        let mut a = Sim::new(seed);
        a.run();
        let mut b = Sim::new(seed);
        b.run();
        assert_eq!(format!("{:?}", a.report), format!("{:?}", b.report));
        assert_eq!(a.now, b.now);
    }
}
