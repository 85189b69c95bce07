//! # needle-transport-mem
//!
//! An in-process network for testing Needle clusters: [`MemNetwork`] hands out one
//! [`MemHandler`] (a `needle_raft::MessageHandler`) per node and injects faults a test turns on
//! and off: a drop rate, a delay range, duplication, reordering, partitions into sets, isolating
//! a node, healing, and crashing and restarting a node. Every message goes through
//! `RaftMessage::encode`/`decode`, as on a real wire. Randomness comes from one seeded generator.
//! Knows no disks: restarting a node from its data directory is the test harness's job; the
//! network only cuts the node off ([`MemNetwork::crash`]) and hands out a fresh handler
//! ([`MemNetwork::restart`]).
//!
//! ```
//! use needle_transport_mem::MemNetwork;
//! use needle_raft::MessageHandler;
//! let net = MemNetwork::new(42);
//! let a = net.handler(1);
//! let b = net.handler(2);
//! assert_eq!(a.peers(), vec![2]);
//! net.partition(&[&[1], &[2]]);
//! net.heal();
//! # let _ = b;
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use needle_raft::{MessageHandler, NeedleError, NodeId, RaftMessage, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The faults applied to every message sent while they are set.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop_rate: f64,
    /// Each message is delayed by a uniform draw from this range.
    pub delay: (Duration, Duration),
    /// Probability that a message is delivered twice.
    pub duplicate_rate: f64,
    /// Probability that a message may overtake earlier ones on its link (otherwise links are FIFO).
    pub reorder_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            drop_rate: 0.0,
            delay: (Duration::ZERO, Duration::ZERO),
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
        }
    }
}

/// Counters of what the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to `send`.
    pub sent: u64,
    /// Messages delivered to `receive`.
    pub delivered: u64,
    /// Messages lost to the drop rate, a partition, isolation or a crash.
    pub dropped: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
}

struct InFlight {
    from: NodeId,
    bytes: Vec<u8>,
}

struct Slot {
    up: bool,
    generation: u64,
    inbox: BinaryHeap<Reverse<(Instant, u64)>>,
    payloads: HashMap<u64, InFlight>,
}

struct State {
    seed: u64,
    rng: StdRng,
    nodes: BTreeMap<NodeId, Slot>,
    faults: Faults,
    groups: Option<Vec<BTreeSet<NodeId>>>,
    isolated: BTreeSet<NodeId>,
    link_last: HashMap<(NodeId, NodeId), Instant>,
    seq: u64,
    stats: NetStats,
    filter: Option<Filter>,
}

/// A test's message filter: `(from, to, message)` → deliver?
type Filter = Arc<dyn Fn(NodeId, NodeId, &RaftMessage) -> bool + Send + Sync>;

impl State {
    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        if self.isolated.contains(&a) || self.isolated.contains(&b) {
            return false;
        }
        match &self.groups {
            None => true,
            Some(groups) => groups.iter().any(|g| g.contains(&a) && g.contains(&b)),
        }
    }
}

struct Inner {
    state: Mutex<State>,
    cv: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An in-memory network with fault injection. Cloning shares the network.
#[derive(Clone)]
pub struct MemNetwork {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.lock();
        f.debug_struct("MemNetwork")
            .field("seed", &s.seed)
            .field("nodes", &s.nodes.keys().collect::<Vec<_>>())
            .field("faults", &s.faults)
            .finish()
    }
}

impl MemNetwork {
    /// A network whose random choices (drops, delays, duplicates) come from `seed`.
    pub fn new(seed: u64) -> Self {
        MemNetwork {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    seed,
                    rng: StdRng::seed_from_u64(seed),
                    nodes: BTreeMap::new(),
                    faults: Faults::default(),
                    groups: None,
                    isolated: BTreeSet::new(),
                    link_last: HashMap::new(),
                    seq: 0,
                    stats: NetStats::default(),
                    filter: None,
                }),
                cv: Condvar::new(),
            }),
        }
    }

    /// The seed the network was made with.
    pub fn seed(&self) -> u64 {
        self.inner.lock().seed
    }

    /// Registers node `id` (or brings it back up) and returns its handler. A handler handed out
    /// earlier for the same id stops working.
    pub fn handler(&self, id: NodeId) -> MemHandler {
        let mut s = self.inner.lock();
        let slot = s.nodes.entry(id).or_insert_with(|| Slot {
            up: true,
            generation: 0,
            inbox: BinaryHeap::new(),
            payloads: HashMap::new(),
        });
        slot.up = true;
        slot.generation += 1;
        slot.inbox.clear();
        slot.payloads.clear();
        MemHandler {
            inner: self.inner.clone(),
            id,
            generation: slot.generation,
        }
    }

    /// Crashes node `id`: its queued messages are lost, messages to it are lost, and its handler
    /// neither sends nor receives. Stop the node itself (and restart it from its data directory)
    /// in the test.
    pub fn crash(&self, id: NodeId) {
        let mut s = self.inner.lock();
        if let Some(slot) = s.nodes.get_mut(&id) {
            slot.up = false;
            slot.inbox.clear();
            slot.payloads.clear();
        }
        self.inner.cv.notify_all();
    }

    /// Brings a crashed node back with a fresh handler.
    pub fn restart(&self, id: NodeId) -> MemHandler {
        self.handler(id)
    }

    /// True unless the node is crashed.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.inner.lock().nodes.get(&id).is_some_and(|s| s.up)
    }

    /// Replaces all message faults at once.
    pub fn set_faults(&self, faults: Faults) {
        self.inner.lock().faults = faults;
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.inner.lock().faults.clone()
    }

    /// Sets the probability that a message is lost.
    pub fn set_drop_rate(&self, p: f64) {
        self.inner.lock().faults.drop_rate = p;
    }

    /// Sets the range each message's delay is drawn from.
    pub fn set_delay(&self, min: Duration, max: Duration) {
        self.inner.lock().faults.delay = (min, max.max(min));
    }

    /// Sets the probability that a message is delivered twice.
    pub fn set_duplicate_rate(&self, p: f64) {
        self.inner.lock().faults.duplicate_rate = p;
    }

    /// Sets the probability that a message may overtake earlier ones on its link.
    pub fn set_reorder_rate(&self, p: f64) {
        self.inner.lock().faults.reorder_rate = p;
    }

    /// Splits the network: only nodes in the same set talk. A node in no set is cut off.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let groups = groups.iter().map(|g| g.iter().copied().collect()).collect();
        self.inner.lock().groups = Some(groups);
    }

    /// Cuts one node off from all others (on top of any partition).
    pub fn isolate(&self, id: NodeId) {
        self.inner.lock().isolated.insert(id);
    }

    /// Removes partitions and isolation (faults and crashes stay).
    pub fn heal(&self) {
        let mut s = self.inner.lock();
        s.groups = None;
        s.isolated.clear();
    }

    /// Removes partitions, isolation and message faults.
    pub fn heal_all(&self) {
        self.heal();
        self.set_faults(Faults::default());
    }

    /// Drops every message for which `keep(from, to, &message)` is false (on top of the other
    /// faults): e.g. starve one node of log entries and snapshot chunks while its heartbeats
    /// still arrive. Replaces any filter set before.
    pub fn set_filter(
        &self,
        keep: impl Fn(NodeId, NodeId, &RaftMessage) -> bool + Send + Sync + 'static,
    ) {
        self.inner.lock().filter = Some(Arc::new(keep));
    }

    /// Removes the message filter.
    pub fn clear_filter(&self) {
        self.inner.lock().filter = None;
    }

    /// What the network has done so far.
    pub fn stats(&self) -> NetStats {
        self.inner.lock().stats
    }
}

/// One node's end of a [`MemNetwork`].
pub struct MemHandler {
    inner: Arc<Inner>,
    id: NodeId,
    generation: u64,
}

impl std::fmt::Debug for MemHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemHandler").field("id", &self.id).finish()
    }
}

impl MemHandler {
    fn live(&self, s: &State) -> bool {
        s.nodes
            .get(&self.id)
            .is_some_and(|slot| slot.up && slot.generation == self.generation)
    }
}

impl MessageHandler for MemHandler {
    fn send(&self, to: NodeId, message: RaftMessage) -> Result<()> {
        let mut guard = self.inner.lock();
        let s = &mut *guard;
        if !self.live(s) {
            return Err(NeedleError::Transport {
                reason: format!("node {} is crashed", self.id),
            });
        }
        s.stats.sent += 1;
        match s.nodes.get(&to) {
            None => {
                return Err(NeedleError::Transport {
                    reason: format!("unknown node {to}"),
                });
            }
            Some(slot) if !slot.up => {
                s.stats.dropped += 1;
                return Err(NeedleError::Transport {
                    reason: format!("node {to} is unreachable"),
                });
            }
            Some(_) => {}
        }
        let filtered = s
            .filter
            .as_ref()
            .is_some_and(|keep| !keep(self.id, to, &message));
        if filtered || !s.connected(self.id, to) || s.rng.random::<f64>() < s.faults.drop_rate {
            s.stats.dropped += 1;
            return Ok(());
        }
        let bytes = message.encode();
        let copies = if s.rng.random::<f64>() < s.faults.duplicate_rate {
            2
        } else {
            1
        };
        let now = Instant::now();
        for copy in 0..copies {
            let (lo, hi) = s.faults.delay;
            let delay = if hi > lo {
                s.rng.random_range(lo..=hi)
            } else {
                lo
            };
            let mut at = now + delay;
            let reorder = s.rng.random::<f64>() < s.faults.reorder_rate;
            let link = (self.id, to);
            if reorder {
                at += Duration::from_micros(
                    s.rng.random_range(0..=(hi.as_micros() as u64 * 2 + 2000)),
                );
            } else if let Some(&last) = s.link_last.get(&link) {
                at = at.max(last);
            }
            if !reorder {
                s.link_last.insert(link, at);
            }
            s.seq += 1;
            let seq = s.seq;
            if copy > 0 {
                s.stats.duplicated += 1;
            }
            let slot = s.nodes.get_mut(&to).expect("checked above");
            slot.inbox.push(Reverse((at, seq)));
            slot.payloads.insert(
                seq,
                InFlight {
                    from: self.id,
                    bytes: bytes.clone(),
                },
            );
        }
        self.inner.cv.notify_all();
        Ok(())
    }

    fn receive(&self) -> Result<Option<(NodeId, RaftMessage)>> {
        let mut guard = self.inner.lock();
        loop {
            match pop_ready(&mut guard, self)? {
                Popped::Message(m) => return Ok(Some(*m)),
                Popped::Dropped => continue,
                Popped::Nothing(_) => return Ok(None),
            }
        }
    }

    fn peers(&self) -> Vec<NodeId> {
        self.inner
            .lock()
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    fn receive_timeout(&self, timeout: Duration) -> Result<Option<(NodeId, RaftMessage)>> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.inner.lock();
        loop {
            let next = match pop_ready(&mut guard, self)? {
                Popped::Message(m) => return Ok(Some(*m)),
                Popped::Dropped => continue,
                Popped::Nothing(next) => next,
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let until = next.map_or(deadline, |n| n.min(deadline));
            let wait = until
                .saturating_duration_since(now)
                .max(Duration::from_micros(50));
            guard = self
                .inner
                .cv
                .wait_timeout(guard, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

enum Popped {
    Message(Box<(NodeId, RaftMessage)>),
    Dropped,
    /// Nothing deliverable now; the time the next message is due, if any.
    Nothing(Option<Instant>),
}

fn pop_ready(s: &mut State, h: &MemHandler) -> Result<Popped> {
    if !h.live(s) {
        return Ok(Popped::Nothing(None));
    }
    let now = Instant::now();
    let slot = s.nodes.get_mut(&h.id).expect("a live handler has a slot");
    match slot.inbox.peek() {
        Some(Reverse((at, _))) if *at <= now => {}
        Some(Reverse((at, _))) => return Ok(Popped::Nothing(Some(*at))),
        None => return Ok(Popped::Nothing(None)),
    }
    let Reverse((_, seq)) = slot.inbox.pop().expect("peeked");
    let m = slot
        .payloads
        .remove(&seq)
        .expect("every queued seq has a payload");
    // A partition made while the message was in flight cuts it too.
    if !s.connected(m.from, h.id) {
        s.stats.dropped += 1;
        return Ok(Popped::Dropped);
    }
    s.stats.delivered += 1;
    Ok(Popped::Message(Box::new((
        m.from,
        RaftMessage::decode(&m.bytes)?,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use needle_raft::RaftProtoMessage;

    fn msg(to: NodeId, from: NodeId, term: u64) -> RaftMessage {
        RaftMessage::Raft(RaftProtoMessage {
            to,
            from,
            term,
            ..Default::default()
        })
    }

    #[test]
    fn delivers_in_order_and_respects_partitions() {
        let net = MemNetwork::new(1);
        let a = net.handler(1);
        let b = net.handler(2);
        for t in 1..=5 {
            a.send(2, msg(2, 1, t)).unwrap();
        }
        for t in 1..=5 {
            let (from, m) = b
                .receive_timeout(Duration::from_millis(100))
                .unwrap()
                .unwrap();
            assert_eq!(from, 1);
            assert_eq!(m, msg(2, 1, t));
        }
        net.partition(&[&[1], &[2]]);
        a.send(2, msg(2, 1, 9)).unwrap();
        assert!(
            b.receive_timeout(Duration::from_millis(20))
                .unwrap()
                .is_none()
        );
        net.heal();
        a.send(2, msg(2, 1, 10)).unwrap();
        assert!(
            b.receive_timeout(Duration::from_millis(100))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn crash_cuts_a_node_off_and_restart_gives_a_fresh_handler() {
        let net = MemNetwork::new(2);
        let a = net.handler(1);
        let b = net.handler(2);
        a.send(2, msg(2, 1, 1)).unwrap();
        net.crash(2);
        assert!(a.send(2, msg(2, 1, 2)).is_err());
        assert!(b.receive().unwrap().is_none());
        assert!(b.send(1, msg(1, 2, 1)).is_err());
        let b2 = net.restart(2);
        a.send(2, msg(2, 1, 3)).unwrap();
        let (_, m) = b2
            .receive_timeout(Duration::from_millis(100))
            .unwrap()
            .unwrap();
        assert_eq!(m, msg(2, 1, 3));
        assert!(b.receive().unwrap().is_none());
    }

    #[test]
    fn drop_duplicate_and_delay_follow_the_seed() {
        let run = |seed| {
            let net = MemNetwork::new(seed);
            net.set_drop_rate(0.3);
            net.set_duplicate_rate(0.3);
            net.set_delay(Duration::from_millis(0), Duration::from_millis(2));
            let a = net.handler(1);
            let _b = net.handler(2);
            for t in 0..200 {
                a.send(2, msg(2, 1, t)).unwrap();
            }
            let s = net.stats();
            (s.dropped, s.duplicated)
        };
        let (d, u) = run(7);
        assert!(d > 20 && u > 20, "dropped {d}, duplicated {u}");
        assert_eq!(run(7), (d, u));
    }
}
