//! Per-value graphs (Qdrant's `payload_m`, built as separate graphs): for a keyword, integer or
//! bool payload index, each value held by at least [`min_records`] live records (and by at most
//! half of them) gets an HNSW graph over its records alone, so that a filtered search on that
//! value walks matches only — an unfiltered walk on a small graph instead of a filtered walk
//! through every record of the collection.
//!
//! Owns the graphs' bookkeeping: local node ids → collection slots, which records are still in
//! the value (tombstones, as in the main graph), and inserting through a view of the
//! collection's vectors ([`Mapped`]). The collection decides when a graph is built and which
//! records enter or leave it (`Collection::enter_value_graphs`), so every replica applying the
//! same commands in the same order builds the same graphs. Knows nothing of filters or files.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::distance::Kernel;
use crate::hnsw::{Cand, Exact, Graph, Links0Kind, Points, Query, Space};

/// The fewest live records a value needs for a graph of its own, by default. Below it an
/// exact pass over the value's records (int8 codes, ~2.7 cache lines a match) costs less than
/// a walk (~2.1 · ef · m nodes of ~4 lines at ef 64, m 16: ~8,600 lines, i.e. ~3,200 matches
/// at 50 dimensions and ~2,500 at 384): at twice that break-even a graph walk is clearly the
/// cheaper plan for a filter on the value alone, and a value held by fewer records than this
/// would cost memory and build time for little.
pub(crate) const DEFAULT_MIN_RECORDS: usize = 8192;

static MIN_RECORDS: AtomicUsize = AtomicUsize::new(DEFAULT_MIN_RECORDS);

thread_local! {
    /// A threshold for this thread only (0: none), for unit tests that run side by side.
    static HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The threshold in force (see [`DEFAULT_MIN_RECORDS`]; tests lower it).
pub(crate) fn min_records() -> usize {
    match HERE.with(std::cell::Cell::get) {
        0 => MIN_RECORDS.load(Ordering::Relaxed),
        n => n,
    }
}

/// Sets the threshold for the calling thread alone (0: back to the process-wide one).
#[cfg(test)]
pub(crate) fn set_min_records_here(n: usize) {
    HERE.with(|h| h.set(n))
}

/// Sets the threshold, process-wide (tests and benches only: collections already built keep
/// their graphs, and new ones follow the new value).
pub(crate) fn set_min_records(n: usize) {
    MIN_RECORDS.store(n.max(1), Ordering::Relaxed)
}

/// Whether a value held by `count` of `live` records gets a graph: at least [`min_records`],
/// and at most half the live records (above that, a filtered walk of the main graph costs
/// under 1.5 unfiltered walks, and the value's graph would cost about the main graph's memory).
pub(crate) fn eligible(count: usize, live: usize) -> bool {
    count >= min_records() && count.saturating_mul(2) <= live
}

/// The `ef_construction` of a collection's value graphs: half the collection's (at least 32).
/// Checkpoints store none: opening uses this too, so later inserts build alike everywhere.
pub(crate) fn ef_construction(collection: usize) -> usize {
    (collection / 2).max(32).min(collection.max(1))
}

/// One value's graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValueGraph {
    /// Local node id → collection slot.
    pub slots: Vec<u32>,
    /// Live slot → its local node id (slots that left the value are not here).
    pub local: HashMap<u32, u32>,
    /// Per local node: it left the value (deleted, or its metadata changed); still walked
    /// through, never returned.
    pub dead: Vec<bool>,
    pub graph: Graph,
}

impl ValueGraph {
    pub fn new(m: usize, ef_construction: usize) -> Self {
        ValueGraph {
            slots: Vec::new(),
            local: HashMap::new(),
            dead: Vec::new(),
            // Value graphs are small beside the main one: their links stay `u32` words.
            graph: Graph::new(m, ef_construction, Links0Kind::U32),
        }
    }

    /// Adds `slot` (its vector in `space`) at `level`, unless it is in already.
    pub fn insert(&mut self, space: &Space, slot: u32, level: u8) {
        if self.local.contains_key(&slot) {
            return;
        }
        let ValueGraph {
            slots,
            local,
            dead,
            graph,
        } = self;
        let id = graph.push_node(level);
        slots.push(slot);
        dead.push(false);
        local.insert(slot, id);
        let view = Mapped {
            space: *space,
            slots,
        };
        let plan = graph.plan_for(&view, space.vector(slot), level);
        graph.apply_insert(&view, id, &plan, |n| dead[n as usize]);
    }

    /// Makes room for `nodes` more nodes, so that inserting them cannot fail for memory: done
    /// before a write is logged. An error (the system refused the memory) changes nothing the
    /// graph holds. (Upper-layer links are not reserved, as in the main graph: they grow in
    /// the ordinary heap.)
    pub fn try_reserve(&mut self, nodes: usize) -> std::io::Result<()> {
        let heap = |e: std::collections::TryReserveError| std::io::Error::other(e);
        self.graph.links0.try_reserve(nodes)?;
        self.graph.levels.try_reserve(nodes).map_err(heap)?;
        self.graph
            .upper_base
            .try_reserve(nodes.div_ceil(crate::hnsw::UPPER_CHUNK) + 1)
            .map_err(heap)?;
        self.slots.try_reserve(nodes).map_err(heap)?;
        self.dead.try_reserve(nodes).map_err(heap)?;
        self.local.try_reserve(nodes).map_err(heap)
    }

    /// `slot` leaves the value (if it is in).
    pub fn leave(&mut self, slot: u32) {
        if let Some(id) = self.local.remove(&slot) {
            self.dead[id as usize] = true;
        }
    }

    /// Approximate bytes of memory.
    pub fn memory_bytes(&self) -> usize {
        let g = &self.graph;
        g.levels.capacity()
            + g.links0.memory_bytes()
            + g.upper_base.capacity() * 4
            + g.upper.memory_bytes()
            + self.slots.capacity() * 4
            + self.dead.capacity()
            + self.local.capacity() * 12
    }
}

/// A collection's vectors seen through a value graph's local ids.
#[derive(Clone, Copy)]
pub(crate) struct Mapped<'a> {
    pub space: Space<'a>,
    pub slots: &'a [u32],
}

impl Points for Mapped<'_> {
    #[inline(always)]
    fn point(&self, id: u32) -> &[f32] {
        self.space.vector(self.slots[id as usize])
    }

    #[inline(always)]
    fn kernel(&self) -> Kernel {
        self.space.kernel
    }

    #[inline(always)]
    fn exact<'q>(&'q self, q: &'q [f32]) -> impl Query + 'q {
        MappedQuery {
            inner: Exact {
                space: self.space,
                q,
            },
            slots: self.slots,
        }
    }
}

/// A query over slots, asked about a value graph's local ids.
pub(crate) struct MappedQuery<'a, Q> {
    pub inner: Q,
    pub slots: &'a [u32],
}

impl<Q: Query> Query for MappedQuery<'_, Q> {
    #[inline(always)]
    fn dist(&self, id: u32) -> f32 {
        self.inner.dist(self.slots[id as usize])
    }

    #[inline(always)]
    fn prefetch(&self, id: u32) {
        if let Some(&s) = self.slots.get(id as usize) {
            self.inner.prefetch(s);
        }
    }

    #[inline(always)]
    fn batched(&self) -> bool {
        self.inner.batched()
    }

    #[inline(always)]
    fn dist4(&self, ids: [u32; 4]) -> [f32; 4] {
        self.inner.dist4(ids.map(|id| self.slots[id as usize]))
    }

    #[inline(always)]
    fn lookahead(&self) -> usize {
        self.inner.lookahead()
    }
}

impl<Q: Query + ?Sized> Query for &Q {
    #[inline(always)]
    fn dist(&self, slot: u32) -> f32 {
        (**self).dist(slot)
    }

    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        (**self).prefetch(slot)
    }

    #[inline(always)]
    fn batched(&self) -> bool {
        (**self).batched()
    }

    #[inline(always)]
    fn dist4(&self, slots: [u32; 4]) -> [f32; 4] {
        (**self).dist4(slots)
    }

    #[inline(always)]
    fn lookahead(&self) -> usize {
        (**self).lookahead()
    }
}

/// Local ids of a walk's results → collection slots.
pub(crate) fn to_slots(found: Vec<Cand>, slots: &[u32]) -> Vec<Cand> {
    found
        .into_iter()
        .map(|c| Cand {
            d: c.d,
            id: slots[c.id as usize],
        })
        .collect()
}
