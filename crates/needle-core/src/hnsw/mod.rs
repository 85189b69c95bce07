//! The HNSW graph of Malkov & Yashunin (2018): layered proximity graphs, greedy descent through
//! the upper layers, a beam search of width `ef` on layer 0, and neighbour selection by their
//! heuristic (Algorithm 4).
//!
//! Owns only links and levels; vectors are borrowed through [`Space`], so the graph knows nothing
//! of ids, metadata or files. Layer-0 links are one flat array with a fixed stride (a count,
//! then up to `2·m` slots: `u32` words, or bit-packed in low-dimensional sq8 collections, see [`Links0`]), so a
//! node's links are found by arithmetic.
//! Inserting is split into a read-only *plan* (searching for candidates) and a mutating *apply*
//! (linking), so a batch can plan in parallel and still link in a fixed order: the graph depends
//! only on the operations, never on the thread count.

mod flat;
mod links0;
mod nearest;
mod packed;
mod upper;
mod visited;

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::distance::{Kernel, Kernel4, batch_for, batch_from, prefetch};
pub(crate) use flat::{Flat, Plain, refuse_anonymous_maps, refuse_anonymous_maps_after};
#[cfg(test)]
pub(crate) use links0::forcing;
pub(crate) use links0::{Links0, Links0Kind};
use nearest::Nearest;
pub(crate) use upper::Upper;
pub(crate) use visited::{VisitedSet, with_visited};

/// "No node" in link arrays and for the entry point.
pub(crate) const NONE: u32 = u32::MAX;
/// Levels are capped so a pathological hash cannot build a tower of empty layers.
pub(crate) const MAX_LEVEL: u8 = 16;
/// Most links a node can have on any layer: `2·m` with `m` at most 128 (`CollectionConfig`).
pub(crate) const MAX_LINKS: usize = 256;
/// Cache lines of a vector prefetched ahead of its distance: a whole vector up to 120 dims;
/// longer ones are streamed by the hardware prefetcher once the first lines arrive. On
/// words-minilm (384 dims) prefetching all 24 lines was 3-14% slower than 8, and prefetching
/// inside the kernel ahead of the loads gained nothing (Zen 4, best of 5 interleaved passes).
const PREFETCH_LINES: usize = 8;
/// While the distance to the j-th fresh neighbour is computed, the vector of the (j + 4)-th is
/// prefetched (the first 4 before the loop), for f32 vectors (sq8 codes are prefetched further
/// ahead where a block is small: `Sq8Query::lookahead`). Against prefetching all fresh
/// neighbours at once: glove50 1.13-1.25x QPS at ef 32-192 (lookahead 2: 1.0-1.1x, 6-8: like 4; words-minilm
/// within ±5% for any lookahead), because a burst of 30 vectors × 4-5 lines fills the
/// miss queue and stalls the prefetches themselves.
pub(crate) const LOOKAHEAD: usize = 4;

/// A node and its distance to the query; ordered by distance, then slot, so ties are deterministic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}

impl Eq for Cand {}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d.total_cmp(&other.d).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The four-at-once form of `kernel` if a walk over `dim`-float vectors should use it.
fn batch_for_dim(kernel: Kernel, dim: usize) -> Option<Kernel4> {
    batch_for(kernel).filter(|_| dim >= batch_from(kernel) || !lever(levers::BATCH_FLOOR))
}

/// The vectors a graph indexes: `dim` floats per slot in two runs (see `crate::vectors`: a
/// prefix mapped from the file, then the slots in memory; or everything in `head`), and the
/// distance kernel.
#[derive(Clone, Copy)]
pub(crate) struct Space<'a> {
    pub head: &'a [f32],
    pub tail: &'a [f32],
    pub dim: usize,
    pub kernel: Kernel,
    /// `kernel` four vectors at a time, where the CPU has that form (see [`Query::dist4`]).
    pub kernel4: Option<Kernel4>,
}

impl<'a> Space<'a> {
    /// Vectors in one array.
    #[cfg(test)]
    pub fn flat(data: &'a [f32], dim: usize, kernel: Kernel) -> Self {
        Space {
            head: data,
            tail: &[],
            dim,
            kernel,
            kernel4: batch_for_dim(kernel, dim),
        }
    }

    /// A collection's vectors.
    pub fn of(vectors: &'a crate::vectors::Vectors, dim: usize, kernel: Kernel) -> Self {
        let (head, tail) = vectors.parts();
        Space {
            head,
            tail,
            dim,
            kernel,
            kernel4: batch_for_dim(kernel, dim),
        }
    }

    /// The run holding `slot`'s vector and where it starts in it.
    #[inline(always)]
    fn locate(&self, slot: u32) -> (&'a [f32], usize) {
        let start = slot as usize * self.dim;
        if start < self.head.len() {
            (self.head, start)
        } else {
            (self.tail, start - self.head.len())
        }
    }

    #[inline(always)]
    pub fn vector(&self, slot: u32) -> &'a [f32] {
        let (run, start) = self.locate(slot);
        &run[start..start + self.dim]
    }

    #[inline(always)]
    fn dist(&self, q: &[f32], slot: u32) -> f32 {
        (self.kernel)(q, self.vector(slot))
    }

    /// Hints the CPU to fetch the first [`PREFETCH_LINES`] cache lines of a vector.
    #[inline(always)]
    pub(crate) fn prefetch(&self, slot: u32) {
        let (run, start) = self.locate(slot);
        if let Some(v) = run.get(start..start + self.dim) {
            let bytes = std::mem::size_of_val(v);
            let first = v.as_ptr().cast::<u8>();
            // The lines the vector touches: it need not start on a line boundary.
            let lines = ((first as usize % 64 + bytes).div_ceil(64)).min(PREFETCH_LINES);
            for line in 0..lines {
                prefetch(first.wrapping_add(line * 64));
            }
        }
    }
}

/// The vectors a graph is built over, by node id: a collection's [`Space`] (node = slot), or a
/// view that maps a smaller graph's local ids to slots (the per-value graphs of
/// `crate::value_graphs`). Inserts are generic over it; searches take a [`Query`].
pub(crate) trait Points {
    /// The vector of node `id`.
    fn point(&self, id: u32) -> &[f32];
    /// The distance kernel.
    fn kernel(&self) -> Kernel;
    /// A query for `q` against these nodes.
    fn exact<'q>(&'q self, q: &'q [f32]) -> impl Query + 'q;
}

impl Points for Space<'_> {
    #[inline(always)]
    fn point(&self, id: u32) -> &[f32] {
        self.vector(id)
    }

    #[inline(always)]
    fn kernel(&self) -> Kernel {
        self.kernel
    }

    #[inline(always)]
    fn exact<'q>(&'q self, q: &'q [f32]) -> impl Query + 'q {
        Exact { space: *self, q }
    }
}

/// Distances from one query to the graph's nodes: exact ([`Exact`]) or over quantized codes
/// (`sq8::Sq8Query`). The walks are generic over it, so each is compiled once per kind.
pub(crate) trait Query {
    /// The distance from the query to `slot`: smaller is nearer.
    fn dist(&self, slot: u32) -> f32;
    /// Hints the CPU to fetch what `dist(slot)` will read.
    fn prefetch(&self, slot: u32);
    /// Whether [`Query::dist4`] is faster than four `dist` (a four-at-once kernel exists).
    #[inline(always)]
    fn batched(&self) -> bool {
        false
    }
    /// `dist` of four slots, each bit for bit what `dist` returns.
    #[inline(always)]
    fn dist4(&self, slots: [u32; 4]) -> [f32; 4] {
        slots.map(|s| self.dist(s))
    }
    /// How many fresh neighbours ahead of the distance being computed their data is
    /// prefetched ([`LOOKAHEAD`] unless the query's data is small enough for more).
    #[inline(always)]
    fn lookahead(&self) -> usize {
        LOOKAHEAD
    }
}

/// A query vector against the f32 vectors of a [`Space`].
#[derive(Clone, Copy)]
pub(crate) struct Exact<'a> {
    pub space: Space<'a>,
    pub q: &'a [f32],
}

impl Query for Exact<'_> {
    #[inline(always)]
    fn dist(&self, slot: u32) -> f32 {
        #[cfg(test)]
        tests::log(tests::Event::Dist(slot));
        self.space.dist(self.q, slot)
    }

    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        #[cfg(test)]
        tests::log(tests::Event::PrefetchVector(slot));
        self.space.prefetch(slot);
    }

    #[inline(always)]
    fn batched(&self) -> bool {
        self.space.kernel4.is_some() && BATCHED.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[inline(always)]
    fn dist4(&self, slots: [u32; 4]) -> [f32; 4] {
        #[cfg(test)]
        for s in slots {
            tests::log(tests::Event::Dist(s));
        }
        match self.space.kernel4 {
            Some(four) => four(self.q, slots.map(|s| self.space.vector(s))),
            None => slots.map(|s| self.space.dist(self.q, s)),
        }
    }
}

/// Whether searches use the four-at-once kernels where they exist: always, except while the
/// `needle-ab` benchmark measures them against one at a time (`__private::set_batched_distances`).
/// Either way the distances, and so every result and graph, are the same bit for bit.
pub(crate) static BATCHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// The walk's speed levers of `docs/benchmarks-history.md`, speed10, as bits of
/// [`WALK_LEVERS`]; every one is on except while `needle-ab lever` measures them against each
/// other (`__private::set_walk_levers`). None changes a distance, a result or a graph.
pub(crate) mod levers {
    /// Prefetch every cache line of a layer-0 link block, not only its first (at m 16 a block
    /// is 132 bytes: three lines, and the walk stalled on the second and third).
    pub const ALL_LINK_LINES: u32 = 1;
    /// Prefetch a node's link block when it enters the beam, not only when it is next to be
    /// expanded (which misses whenever a nearer node enters in between).
    pub const LINKS_ON_ENTRY: u32 = 2;
    /// Below `distance::batch_from` dimensions, one distance at a time even where a
    /// four-at-once form exists (AVX-512's makes four single calls there).
    pub const BATCH_FLOOR: u32 = 4;
    /// With `LINKS_ON_ENTRY`: only for a node entering fewer than [`super::NEAR_FRONT`]
    /// places behind the next to expand (one farther back is rarely expanded before its
    /// prefetched lines are gone, or at all).
    pub const NEAR_FRONT_ONLY: u32 = 8;
    /// The greedy descent through the upper layers prefetches the vectors of a node's
    /// neighbours ahead of their distances, as the beam does (before: none).
    pub const GREEDY_PREFETCH: u32 = 16;
    /// All of them.
    pub const ALL: u32 =
        ALL_LINK_LINES | LINKS_ON_ENTRY | BATCH_FLOOR | NEAR_FRONT_ONLY | GREEDY_PREFETCH;
}

/// How far behind the next node to expand a node may enter the beam and still have its links
/// prefetched on entry (`levers::NEAR_FRONT_ONLY`): glove50 f32 searched 1-4 % faster with 4
/// than with no limit (docs/benchmarks-history.md, speed10).
const NEAR_FRONT: usize = 4;

/// The [`levers`] in use, all but for `needle-ab`.
pub(crate) static WALK_LEVERS: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(levers::ALL);

#[inline(always)]
fn lever(bit: u32) -> bool {
    WALK_LEVERS.load(std::sync::atomic::Ordering::Relaxed) & bit != 0
}

impl Query for crate::sq8::Sq8Query<'_> {
    #[inline(always)]
    fn dist(&self, slot: u32) -> f32 {
        crate::sq8::Sq8Query::dist(self, slot)
    }

    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        crate::sq8::Sq8Query::prefetch(self, slot);
    }

    #[inline(always)]
    fn lookahead(&self) -> usize {
        crate::sq8::Sq8Query::lookahead(self)
    }
}

impl Space<'_> {
    /// Hints the CPU to fetch every cache line of a vector (for exact passes, where the next
    /// vectors are known well ahead).
    #[inline(always)]
    pub(crate) fn prefetch_all(&self, slot: u32) {
        let (run, start) = self.locate(slot);
        if let Some(v) = run.get(start..start + self.dim) {
            let bytes = std::mem::size_of_val(v);
            let first = v.as_ptr().cast::<u8>();
            let lines = (first as usize % 64 + bytes).div_ceil(64);
            for line in 0..lines {
                prefetch(first.wrapping_add(line * 64));
            }
        }
    }
}

/// Slots a chunk of [`Graph::upper_base`]: finding a node's upper blocks adds the levels of
/// at most this many − 1 nodes before it.
pub(crate) const UPPER_CHUNK: usize = 32;

/// Per chunk of [`UPPER_CHUNK`] slots, where the first upper block of its nodes starts in
/// `upper` ([`Graph::upper_base`]), from the nodes' levels.
pub(crate) fn upper_bases(levels: &[u8], m: usize) -> Vec<u32> {
    let mut bases = Vec::with_capacity(levels.len().div_ceil(UPPER_CHUNK));
    let mut next = 0usize;
    for chunk in levels.chunks(UPPER_CHUNK) {
        bases.push(next as u32);
        next += chunk.iter().map(|&l| l as usize).sum::<usize>() * (1 + m);
    }
    bases
}

/// The links of every node on every layer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Graph {
    pub m: usize,
    pub ef_construction: usize,
    /// Top layer of each slot.
    pub levels: Vec<u8>,
    /// Layer 0: per slot a count and up to `2·m` links (on huge pages where the system allows).
    pub links0: Links0,
    /// Per chunk of [`UPPER_CHUNK`] slots, where the first upper block of its nodes starts in
    /// `upper`: a node's blocks follow those of the nodes before it in its chunk (their
    /// `levels` say how many), so the ~94 % of nodes without upper layers (m 16) cost nothing
    /// here (a `u32` a slot did: 0.8 MB at 200,000 slots).
    pub upper_base: Vec<u32>,
    /// Upper layers: per node with level L > 0, L blocks of `[count, n_1 .. n_m]` (layer 1
    /// first), as `u32` words or bit-packed like layer 0 ([`Upper`]).
    pub upper: Upper,
    pub entry: u32,
    pub max_level: u8,
}

impl Graph {
    pub fn new(m: usize, ef_construction: usize, kind: Links0Kind) -> Self {
        Graph {
            m,
            ef_construction,
            levels: Vec::new(),
            links0: Links0::new(m, kind),
            upper_base: Vec::new(),
            upper: Upper::new(m, kind),
            entry: NONE,
            max_level: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    fn stride_up(&self) -> usize {
        1 + self.m
    }

    fn max_links(&self, layer: usize) -> usize {
        if layer == 0 { 2 * self.m } else { self.m }
    }

    /// The level of a record, from a hash of the collection seed and its id: `floor(-ln(U)·mL)`
    /// with `mL = 1/ln(m)`, so the graph is the same on every run and every replica.
    pub fn level_for(seed: u64, id: &str, m: usize) -> u8 {
        let h = hash_id(seed, id);
        // 53 random bits in (0, 1].
        let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let ml = 1.0 / (m as f64).ln();
        let level = (-u.ln() * ml).floor();
        level.min(MAX_LEVEL as f64) as u8
    }

    /// Appends an unlinked node at `level`; returns its slot.
    pub fn push_node(&mut self, level: u8) -> u32 {
        let slot = self.levels.len() as u32;
        self.levels.push(level);
        self.links0.push_empty();
        if slot as usize % UPPER_CHUNK == 0 {
            self.upper_base.push(self.upper.word_len() as u32);
        }
        self.upper.fit_nodes(self.levels.len());
        if level > 0 {
            self.upper.push_blocks(level as usize);
        }
        slot
    }

    /// Where the upper blocks of `slot` start in `upper` (whatever its level).
    #[inline(always)]
    fn upper_start(&self, slot: u32) -> usize {
        let slot = slot as usize;
        let first = slot - slot % UPPER_CHUNK;
        let before: usize = self.levels[first..slot].iter().map(|&l| l as usize).sum();
        self.upper_base[slot / UPPER_CHUNK] as usize + before * self.stride_up()
    }

    /// Per slot, where its upper layers start in `upper`, `NONE` for level-0 nodes: the
    /// checkpoint's `upper_start` section and the state checksum.
    pub fn upper_starts(&self) -> impl Iterator<Item = u32> + '_ {
        let stride = self.stride_up() as u32;
        self.levels.iter().scan(0u32, move |next, &level| {
            let start = *next;
            *next += u32::from(level) * stride;
            Some(if level == 0 { NONE } else { start })
        })
    }

    /// Where (the word offset) the block of `slot` on upper layer `layer` (≥ 1) starts.
    fn upper_block(&self, slot: u32, layer: usize) -> usize {
        self.upper_start(slot) + (layer - 1) * self.stride_up()
    }

    /// The links of `slot` on an upper layer (≥ 1): read in place, or decoded into `buf`.
    #[inline(always)]
    fn upper_neighbors<'a>(
        &'a self,
        slot: u32,
        layer: usize,
        buf: &'a mut [u32; MAX_LINKS],
    ) -> &'a [u32] {
        self.upper.get(self.upper_block(slot, layer), buf)
    }

    /// The links of `slot` on `layer`: read in place, or (packed layer-0 links) decoded into
    /// `buf`.
    #[inline(always)]
    pub fn neighbors<'a>(
        &'a self,
        slot: u32,
        layer: usize,
        buf: &'a mut [u32; MAX_LINKS],
    ) -> &'a [u32] {
        if layer == 0 {
            self.links0.get(slot, buf)
        } else {
            self.upper_neighbors(slot, layer, buf)
        }
    }

    /// Hints the CPU to fetch the link block of `slot` on `layer` (layer 0 only: the upper
    /// layers are walked by few nodes): every line it spans, up to [`PREFETCH_LINES`].
    #[inline(always)]
    fn prefetch_links(&self, slot: u32, layer: usize) {
        if layer != 0 {
            return;
        }
        if let Some((first, bytes)) = self.links0.span(slot) {
            let lines = if lever(levers::ALL_LINK_LINES) {
                lines_spanned(first, bytes).min(PREFETCH_LINES)
            } else {
                1
            };
            for line in 0..lines {
                let at = first.wrapping_add(line * 64);
                #[cfg(test)]
                tests::log(tests::Event::Prefetch(at as usize));
                prefetch(at);
            }
        }
    }

    /// Marks the not yet visited neighbours of `slot` on `layer`, copies them into `fresh` and
    /// prefetches the vectors of the first [`LOOKAHEAD`]; returns how many there are. Only
    /// these need a distance, so only their vectors are worth fetching. Packed links are
    /// checked as they are decoded.
    #[inline(always)]
    fn fresh_neighbors<Q: Query>(
        &self,
        query: &Q,
        visited: &mut VisitedSet,
        slot: u32,
        layer: usize,
        fresh: &mut [u32; MAX_LINKS],
    ) -> usize {
        let mut count = 0;
        let ahead = query.lookahead();
        let check = |n: u32| {
            if count < MAX_LINKS && visited.insert(n) {
                fresh[count] = n;
                count += 1;
                if count <= ahead {
                    query.prefetch(n);
                }
            }
        };
        if layer == 0 {
            self.links0.for_each(slot, check);
        } else {
            self.upper.for_each(self.upper_block(slot, layer), check);
        }
        count
    }

    fn set_neighbors(&mut self, slot: u32, layer: usize, ids: &[u32]) {
        if layer == 0 {
            self.links0.set(slot, ids);
            return;
        }
        let start = self.upper_block(slot, layer);
        self.upper.set(start, ids);
    }

    /// Greedy walk on one upper layer: move to a closer neighbour while there is one. The
    /// neighbours' distances go through [`distances`], so their vectors are prefetched ahead
    /// (glove50 f32 0-6 % less CPU a query, most at small ef; docs/benchmarks-history.md,
    /// speed10); the order and the distances are the same as one by one.
    fn greedy<Q: Query>(&self, query: &Q, mut cur: Cand, layer: usize) -> Cand {
        debug_assert!(layer > 0, "the greedy walk is for the upper layers");
        let mut buf = [0u32; MAX_LINKS];
        loop {
            let mut moved = false;
            if lever(levers::GREEDY_PREFETCH) {
                let links = self.upper_neighbors(cur.id, layer, &mut buf);
                for &n in links.iter().take(query.lookahead()) {
                    query.prefetch(n);
                }
                distances(query, links, |n, d| {
                    if d < cur.d {
                        cur = Cand { d, id: n };
                        moved = true;
                    }
                });
            } else {
                for &n in self.upper_neighbors(cur.id, layer, &mut buf) {
                    let d = query.dist(n);
                    if d < cur.d {
                        cur = Cand { d, id: n };
                        moved = true;
                    }
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Beam search of width `ef` on one layer, every node a possible result. Returns up to `ef`
    /// nodes, nearest first.
    pub fn beam<Q: Query>(&self, query: &Q, entry: &[Cand], ef: usize, layer: usize) -> Vec<Cand> {
        with_visited(self.len(), |visited| {
            let mut nearest = Nearest::new(ef);
            for &e in entry {
                if visited.insert(e.id) {
                    nearest.insert(e);
                }
            }
            let mut fresh = [0u32; MAX_LINKS];
            while let Some(c) = nearest.next_unexpanded() {
                #[cfg(test)]
                tests::log(tests::Event::Expand(c.id));
                let count = self.fresh_neighbors(query, visited, c.id, layer, &mut fresh);
                if let Some(next) = nearest.peek_unexpanded() {
                    self.prefetch_links(next, layer);
                }
                let on_entry = lever(levers::LINKS_ON_ENTRY);
                let near = if lever(levers::NEAR_FRONT_ONLY) {
                    NEAR_FRONT
                } else {
                    usize::MAX
                };
                distances(query, &fresh[..count], |n, d| {
                    if d < nearest.bound() {
                        let behind = nearest.insert(Cand { d, id: n });
                        #[cfg(test)]
                        if let Some(behind) = behind {
                            tests::log(tests::Event::Enter(n, behind));
                        }
                        if on_entry && behind.is_some_and(|b| b < near) {
                            // It may be expanded soon, perhaps next: fetch its links now.
                            self.prefetch_links(n, layer);
                        }
                    }
                });
            }
            nearest.into_sorted_vec()
        })
    }

    /// Beam search of width `ef` on one layer. Every node is walked through; only nodes that
    /// `accept` are returned. Returns up to `ef` nodes, nearest first.
    pub fn search_layer<Q: Query, F: Fn(u32) -> bool>(
        &self,
        query: &Q,
        entry: &[Cand],
        ef: usize,
        layer: usize,
        accept: F,
    ) -> Vec<Cand> {
        with_visited(self.len(), |visited| {
            let mut candidates: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
            for &e in entry {
                if visited.insert(e.id) {
                    candidates.push(Reverse(e));
                    if accept(e.id) {
                        results.push(e);
                    }
                }
            }
            while results.len() > ef {
                results.pop();
            }
            let mut bound = if results.len() >= ef {
                results.peek().map_or(f32::INFINITY, |c| c.d)
            } else {
                f32::INFINITY
            };
            let mut fresh = [0u32; MAX_LINKS];
            while let Some(Reverse(c)) = candidates.pop() {
                if c.d > bound {
                    break;
                }
                let count = self.fresh_neighbors(query, visited, c.id, layer, &mut fresh);
                if let Some(Reverse(next)) = candidates.peek() {
                    self.prefetch_links(next.id, layer);
                }
                distances(query, &fresh[..count], |n, d| {
                    if d < bound {
                        let cand = Cand { d, id: n };
                        candidates.push(Reverse(cand));
                        if accept(n) {
                            results.push(cand);
                            if results.len() > ef {
                                results.pop();
                            }
                            if results.len() >= ef {
                                bound = results.peek().map_or(f32::INFINITY, |c| c.d);
                            }
                        }
                    }
                });
            }
            results.into_sorted_vec()
        })
    }

    /// Greedy descent through the upper layers to the entry point of layer 0.
    fn descend<Q: Query>(&self, query: &Q) -> Cand {
        let mut ep = Cand {
            d: query.dist(self.entry),
            id: self.entry,
        };
        for layer in (1..=self.max_level as usize).rev() {
            ep = self.greedy(query, ep, layer);
        }
        ep
    }

    /// Searches the whole graph, every node a possible result: greedy descent, then a beam of
    /// `max(ef, k)` on layer 0.
    pub fn search<Q: Query>(&self, query: &Q, k: usize, ef: usize) -> Vec<Cand> {
        if self.entry == NONE {
            return Vec::new();
        }
        let ep = self.descend(query);
        let mut found = self.beam(query, &[ep], ef.max(k), 0);
        found.truncate(k);
        found
    }

    /// Like [`search`](Self::search), but only nodes that `accept` are returned (all are walked
    /// through).
    pub fn search_filtered<Q: Query, F: Fn(u32) -> bool>(
        &self,
        query: &Q,
        k: usize,
        ef: usize,
        accept: F,
    ) -> Vec<Cand> {
        if self.entry == NONE {
            return Vec::new();
        }
        let ep = self.descend(query);
        let mut found = self.search_layer(query, &[ep], ef.max(k), 0, accept);
        found.truncate(k);
        found
    }

    /// Filtered search for restrictive filters, after ACORN-1 (Patel et al., 2024): the walk
    /// moves only through nodes that `accept`, and a node's neighbourhood is widened by two hops
    /// (the accepted neighbours of its rejected neighbours) so the accepted subgraph stays
    /// connected when the filter removes most nodes. Distances are computed for accepted nodes
    /// only. Up to `2·m` nodes are taken per expansion; two-hop neighbours are looked at only
    /// when the direct ones give fewer than `m`.
    pub fn search_two_hop<Q: Query, F: Fn(u32) -> bool>(
        &self,
        query: &Q,
        k: usize,
        ef: usize,
        accept: F,
    ) -> Vec<Cand> {
        if self.entry == NONE {
            return Vec::new();
        }
        let ep = self.descend(query);
        let ef = ef.max(k);
        let cap = (2 * self.m).min(MAX_LINKS);
        let mut found = with_visited(self.len(), |visited| {
            let mut candidates: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
            visited.insert(ep.id);
            candidates.push(Reverse(ep));
            if accept(ep.id) {
                results.push(ep);
            }
            let mut bound = f32::INFINITY;
            let mut fresh = [0u32; MAX_LINKS];
            let (mut direct, mut second) = ([0u32; MAX_LINKS], [0u32; MAX_LINKS]);
            while let Some(Reverse(c)) = candidates.pop() {
                if c.d > bound {
                    break;
                }
                let mut count = 0;
                let links = self.neighbors(c.id, 0, &mut direct);
                for &n in links {
                    if count == cap {
                        break;
                    }
                    if accept(n) && visited.insert(n) {
                        fresh[count] = n;
                        count += 1;
                        if count <= LOOKAHEAD {
                            query.prefetch(n);
                        }
                    }
                }
                if count < self.m {
                    'outer: for &n in links {
                        if accept(n) {
                            continue;
                        }
                        for &nn in self.neighbors(n, 0, &mut second) {
                            if count == cap {
                                break 'outer;
                            }
                            if accept(nn) && visited.insert(nn) {
                                fresh[count] = nn;
                                count += 1;
                                if count <= LOOKAHEAD {
                                    query.prefetch(nn);
                                }
                            }
                        }
                    }
                }
                distances(query, &fresh[..count], |n, d| {
                    if d < bound {
                        let cand = Cand { d, id: n };
                        candidates.push(Reverse(cand));
                        results.push(cand);
                        if results.len() > ef {
                            results.pop();
                        }
                        if results.len() >= ef {
                            bound = results.peek().map_or(f32::INFINITY, |c| c.d);
                        }
                    }
                });
            }
            results.into_sorted_vec()
        });
        found.truncate(k);
        found
    }

    /// The read-only half of an insert: the candidate neighbours of `slot` on each of its layers
    /// that exist in the graph now (index = layer), nearest first.
    #[cfg(test)]
    pub fn plan_insert(&self, space: &Space, slot: u32) -> Vec<Vec<Cand>> {
        self.plan_for(space, space.vector(slot), self.levels[slot as usize])
    }

    /// The candidate neighbours, on each layer up to `level` that exists in the graph now
    /// (index = layer), nearest first, of a vector `q` not (or not yet reachably) in the graph.
    pub fn plan_for<P: Points>(&self, space: &P, q: &[f32], level: u8) -> Vec<Vec<Cand>> {
        if self.entry == NONE {
            return Vec::new();
        }
        let query = space.exact(q);
        let mut ep = Cand {
            d: query.dist(self.entry),
            id: self.entry,
        };
        for layer in (level as usize + 1..=self.max_level as usize).rev() {
            ep = self.greedy(&query, ep, layer);
        }
        let top = level.min(self.max_level) as usize;
        let mut plan = vec![Vec::new(); top + 1];
        let mut entry = vec![ep];
        // The new node has no links yet and is not the entry point, so no walk can reach it.
        for layer in (0..=top).rev() {
            entry = self.beam(&query, &entry, self.ef_construction, layer);
            plan[layer].clone_from(&entry);
        }
        plan
    }

    /// The mutating half of an insert: links `slot` to the heuristic's choice among its planned
    /// candidates (skipping `excluded` ones, e.g. tombstones, unless nothing else is there) and
    /// links them back.
    pub fn apply_insert<P: Points, X: Fn(u32) -> bool>(
        &mut self,
        space: &P,
        slot: u32,
        plan: &[Vec<Cand>],
        excluded: X,
    ) {
        let level = self.levels[slot as usize];
        for (layer, cands) in plan.iter().enumerate() {
            let mut usable: Vec<Cand> = cands
                .iter()
                .copied()
                .filter(|c| c.id != slot && !excluded(c.id))
                .collect();
            if usable.is_empty() {
                // Only excluded nodes nearby: link to them anyway, or the node would be unreachable.
                usable = cands.iter().copied().filter(|c| c.id != slot).collect();
            }
            let chosen = select_neighbors(space, &usable, self.m);
            let ids: Vec<u32> = chosen.iter().map(|c| c.id).collect();
            self.set_neighbors(slot, layer, &ids);
            for c in chosen {
                self.link_back(space, c.id, slot, c.d, layer);
            }
        }
        if self.entry == NONE || level > self.max_level {
            self.entry = slot;
            self.max_level = level;
        }
    }

    /// Adds `new` to `node`'s links on `layer`; when full, keeps the heuristic's choice.
    fn link_back<P: Points>(&mut self, space: &P, node: u32, new: u32, d: f32, layer: usize) {
        let max = self.max_links(layer);
        let mut buf = [0u32; MAX_LINKS];
        let current = self.neighbors(node, layer, &mut buf);
        if current.contains(&new) {
            return;
        }
        if current.len() < max {
            let mut ids = current.to_vec();
            ids.push(new);
            self.set_neighbors(node, layer, &ids);
            return;
        }
        let base = space.point(node);
        let kernel = space.kernel();
        let mut cands: Vec<Cand> = current
            .iter()
            .map(|&n| Cand {
                d: kernel(base, space.point(n)),
                id: n,
            })
            .collect();
        cands.push(Cand { d, id: new });
        cands.sort();
        let chosen = select_neighbors(space, &cands, max);
        let ids: Vec<u32> = chosen.iter().map(|c| c.id).collect();
        self.set_neighbors(node, layer, &ids);
    }
}

/// Calls `f(n, distance(q, n))` for each node of `fresh` in order, prefetching the vector
/// [`LOOKAHEAD`] nodes ahead ([`Graph::fresh_neighbors`] prefetched the first ones).
///
/// Where the query has a four-at-once kernel ([`Query::batched`]: f32 on AVX2), the distances
/// are computed four nodes at a time, each block of the query loaded once for the four and the
/// four vectors' loads in flight together (faiss's batch of four in its HNSW search), and the
/// next four prefetched before; `f` still sees the nodes one by one, in order, with the same
/// distances bit for bit. Measured on words-minilm (384 dims, AVX2, `needle-ab`): 17-24% less
/// CPU per query at ef 32 and 96, same ids (`docs/benchmarks-history.md`, round three).
#[inline(always)]
fn distances<Q: Query>(query: &Q, fresh: &[u32], mut f: impl FnMut(u32, f32)) {
    let lookahead = query.lookahead();
    if !query.batched() {
        for (j, &n) in fresh.iter().enumerate() {
            if let Some(&ahead) = fresh.get(j + lookahead) {
                query.prefetch(ahead);
            }
            f(n, query.dist(n));
        }
        return;
    }
    let mut groups = fresh.chunks_exact(4);
    for (g, four) in groups.by_ref().enumerate() {
        for k in 0..4 {
            if let Some(&ahead) = fresh.get(4 * g + k + lookahead) {
                query.prefetch(ahead);
            }
        }
        let slots = [four[0], four[1], four[2], four[3]];
        let d = query.dist4(slots);
        for k in 0..4 {
            f(slots[k], d[k]);
        }
    }
    let done = fresh.len() - groups.remainder().len();
    for (j, &n) in fresh.iter().enumerate().skip(done) {
        if let Some(&ahead) = fresh.get(j + lookahead) {
            query.prefetch(ahead);
        }
        f(n, query.dist(n));
    }
}

/// Algorithm 4 of the paper (without extending candidates, keeping no pruned ones): walk the
/// candidates nearest first and keep one only if it is nearer to the base than to every kept one.
/// This keeps links pointing in diverse directions, which is what makes the graph navigable.
pub(crate) fn select_neighbors<P: Points>(space: &P, sorted: &[Cand], m: usize) -> Vec<Cand> {
    let mut kept: Vec<Cand> = Vec::with_capacity(m);
    let kernel = space.kernel();
    for &c in sorted {
        if kept.len() >= m {
            break;
        }
        let v = space.point(c.id);
        let diverse = kept.iter().all(|k| kernel(v, space.point(k.id)) >= c.d);
        if diverse {
            kept.push(c);
        }
    }
    kept
}

/// The cache lines that `bytes` bytes from `first` touch.
fn lines_spanned(first: *const u8, bytes: usize) -> usize {
    (first as usize % 64 + bytes).div_ceil(64)
}

/// FNV-1a over the id, then a splitmix64 finaliser mixed with the seed.
fn hash_id(seed: u64, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Distance;
    use crate::distance::kernel_for;
    use std::cell::RefCell;

    /// What a layer-0 walk did, in order, while [`recording`].
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub(super) enum Event {
        /// A prefetch of the cache line holding this address.
        Prefetch(usize),
        /// The links of this node were read.
        Expand(u32),
        /// This node entered the beam this many places behind the next to expand.
        Enter(u32, usize),
        /// A prefetch of this node's vector.
        PrefetchVector(u32),
        /// A distance to this node's vector.
        Dist(u32),
    }

    thread_local! {
        static EVENTS: RefCell<Option<Vec<Event>>> = const { RefCell::new(None) };
    }

    pub(super) fn log(e: Event) {
        EVENTS.with(|l| {
            if let Some(v) = l.borrow_mut().as_mut() {
                v.push(e);
            }
        });
    }

    fn recording<R>(f: impl FnOnce() -> R) -> (R, Vec<Event>) {
        EVENTS.with(|l| *l.borrow_mut() = Some(Vec::new()));
        let r = f();
        (
            r,
            EVENTS.with(|l| l.borrow_mut().take().unwrap_or_default()),
        )
    }

    fn grid(n: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| [i as f32, (i * 7 % 13) as f32])
            .collect()
    }

    /// Upper-layer blocks found from the per-chunk bases and the levels: every node's links on
    /// every one of its layers come back as set, across chunks of all level-0 nodes and of
    /// several upper nodes; the per-slot starts (the checkpoint's section) are the running sum
    /// of the levels, `NONE` at level 0; the bases are the same when rebuilt from the levels.
    #[test]
    fn upper_blocks_are_found_from_the_chunk_bases() {
        let m = 3;
        let mut g = Graph::new(m, 8, Links0Kind::U32);
        let levels: Vec<u8> = (0..5 * UPPER_CHUNK + 3)
            .map(|i| match i / UPPER_CHUNK {
                1 => 0,
                2 => (i % 4) as u8,
                _ => [0, 0, 2, 0, 1, 0, 0, 3][i % 8],
            })
            .collect();
        for &l in &levels {
            g.push_node(l);
        }
        let links = |slot: usize, layer: usize| -> Vec<u32> {
            (0..(slot + layer) % (m + 1))
                .map(|k| (slot * 7 + layer * 3 + k) as u32)
                .collect()
        };
        for (slot, &l) in levels.iter().enumerate() {
            for layer in 1..=l as usize {
                g.set_neighbors(slot as u32, layer, &links(slot, layer));
            }
        }
        let mut buf = [0u32; MAX_LINKS];
        for (slot, &l) in levels.iter().enumerate() {
            for layer in 1..=l as usize {
                assert_eq!(
                    g.neighbors(slot as u32, layer, &mut buf),
                    links(slot, layer).as_slice(),
                    "slot {slot} layer {layer}"
                );
            }
        }
        let mut next = 0u32;
        let starts: Vec<u32> = levels
            .iter()
            .map(|&l| {
                let s = if l == 0 { NONE } else { next };
                next += u32::from(l) * (1 + m as u32);
                s
            })
            .collect();
        assert_eq!(g.upper_starts().collect::<Vec<_>>(), starts);
        assert_eq!(next as usize, g.upper.word_len());
        assert_eq!(upper_bases(&levels, m), g.upper_base);
    }

    fn build(data: &[f32], m: usize) -> Graph {
        build_as(data, m, Links0Kind::U32)
    }

    fn build_as(data: &[f32], m: usize, kind: Links0Kind) -> Graph {
        let space = Space::flat(data, 2, kernel_for(Distance::Euclidean));
        let mut g = Graph::new(m, 64, kind);
        for i in 0..data.len() / 2 {
            let slot = g.push_node(Graph::level_for(7, &i.to_string(), m));
            let plan = g.plan_insert(&space, slot);
            g.apply_insert(&space, slot, &plan, |_| false);
        }
        g
    }

    #[test]
    fn finds_exact_neighbours_on_small_grid() {
        let data = grid(300);
        let g = build(&data, 8);
        let space = Space::flat(&data, 2, kernel_for(Distance::Euclidean));
        for target in [0u32, 17, 150, 299] {
            let q = space.vector(target).to_vec();
            let found = g.search(&Exact { space, q: &q }, 1, 32);
            assert_eq!(found[0].id, target);
            assert_eq!(found[0].d, 0.0);
        }
    }

    #[test]
    fn links_respect_capacity_and_never_self() {
        let data = grid(500);
        let g = build(&data, 4);
        let mut buf = [0u32; MAX_LINKS];
        for slot in 0..g.len() as u32 {
            let n0 = g.neighbors(slot, 0, &mut buf);
            assert!(n0.len() <= 8);
            assert!(!n0.contains(&slot));
            for layer in 1..=g.levels[slot as usize] as usize {
                assert!(g.neighbors(slot, layer, &mut buf).len() <= 4);
            }
        }
    }

    #[test]
    fn levels_are_deterministic_and_geometric() {
        assert_eq!(
            Graph::level_for(1, "abc", 16),
            Graph::level_for(1, "abc", 16)
        );
        let n = 100_000;
        let above0 = (0..n)
            .filter(|i| Graph::level_for(3, &i.to_string(), 16) > 0)
            .count();
        // P(level > 0) = 1/m.
        let expected = n / 16;
        assert!(
            above0.abs_diff(expected) < expected / 10,
            "{above0} vs {expected}"
        );
    }

    #[test]
    fn accept_filters_results_but_not_navigation() {
        let data = grid(400);
        let g = build(&data, 8);
        let space = Space::flat(&data, 2, kernel_for(Distance::Euclidean));
        let q = [200.0, 3.0];
        let found = g.search_filtered(&Exact { space, q: &q }, 5, 64, |id| id % 2 == 1);
        assert_eq!(found.len(), 5);
        assert!(found.iter().all(|c| c.id % 2 == 1));
    }

    /// The two-hop walk moves through accepted nodes only, yet finds the exact neighbours when
    /// one node in five is accepted (points scattered in a square, not on a line, where the
    /// heuristic keeps two links per node and no number of hops of two crosses a gap).
    #[test]
    fn two_hop_walk_finds_exact_neighbours_under_a_restrictive_filter() {
        let mut x = 12345u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 40) as f32 / (1u64 << 24) as f32 * 100.0
        };
        let data: Vec<f32> = (0..4000).map(|_| next()).collect();
        let g = build(&data, 8);
        let space = Space::flat(&data, 2, kernel_for(Distance::Euclidean));
        let accept = |id: u32| id % 5 == 3;
        for q in [[20.0, 30.0], [99.0, 1.0], [50.0, 50.0]] {
            let found = g.search_two_hop(&Exact { space, q: &q }, 5, 32, accept);
            let mut truth: Vec<Cand> = (0..2000u32)
                .filter(|&id| accept(id))
                .map(|id| Cand {
                    d: space.dist(&q, id),
                    id,
                })
                .collect();
            truth.sort();
            truth.truncate(5);
            assert_eq!(found, truth, "query {q:?}");
        }
    }

    /// A node entering the beam near the next to expand (fewer than [`NEAR_FRONT`] places
    /// behind) has every cache line of its link block prefetched at once
    /// (`levers::LINKS_ON_ENTRY`, `levers::ALL_LINK_LINES`: a 132-byte block is three lines);
    /// one entering farther back has none (`levers::NEAR_FRONT_ONLY`). Packed links (32 bytes
    /// a block here: 11 bits a link, 6 of them low bits) likewise, every line their shorter block spans.
    #[test]
    fn links_are_prefetched_whole_for_nodes_entering_near_the_front() {
        for kind in [Links0Kind::U32, Links0Kind::Packed] {
            links_are_prefetched_whole_when(kind);
        }
    }

    fn links_are_prefetched_whole_when(kind: Links0Kind) {
        let data: Vec<f32> = (0..1500)
            .flat_map(|i| [(i * 37 % 101) as f32, (i * 53 % 97) as f32])
            .collect();
        let g = build_as(&data, 16, kind);
        let block_bytes = g.links0.span(0).expect("a node").1;
        let expected = if kind == Links0Kind::U32 { 132 } else { 32 };
        assert_eq!(block_bytes, expected, "{kind:?}");
        let space = Space::flat(&data, 2, kernel_for(Distance::Euclidean));
        let line = |a: usize| a / 64;
        let (mut near, mut far) = (0, 0);
        for q in [[3.5f32, 7.0], [50.0, 50.0], [99.0, 1.0], [20.5, 80.5]] {
            let (found, events) = recording(|| g.search(&Exact { space, q: &q }, 10, 32));
            assert_eq!(found.len(), 10);
            for (i, e) in events.iter().enumerate() {
                let Event::Enter(slot, behind) = *e else {
                    continue;
                };
                // The prefetches made for this entry: the events up to the next entry or
                // expansion.
                let fetched: std::collections::HashSet<usize> = events[i + 1..]
                    .iter()
                    .map_while(|e| match e {
                        Event::Prefetch(a) => Some(line(*a)),
                        _ => None,
                    })
                    .collect();
                if behind < NEAR_FRONT {
                    near += 1;
                    let (first, bytes) = g.links0.span(slot).expect("a node");
                    let start = first as usize;
                    let end = start + bytes;
                    for l in line(start)..=line(end - 1) {
                        assert!(
                            fetched.contains(&l),
                            "node {slot} entered {behind} behind: line {} of its links not prefetched",
                            l - line(start)
                        );
                    }
                } else {
                    far += 1;
                    assert!(
                        fetched.is_empty(),
                        "node {slot} entered {behind} behind, links prefetched"
                    );
                }
            }
        }
        assert!(
            near > 40 && far > 40,
            "{near} entries near the front, {far} far"
        );
    }

    /// Every distance a search computes, in the greedy descent through the upper layers
    /// (`levers::GREEDY_PREFETCH`) as in the beam, is to a vector prefetched before it (but
    /// the entry point's, the first).
    #[test]
    fn every_distance_of_a_search_reads_a_prefetched_vector() {
        let data: Vec<f32> = (0..1500)
            .flat_map(|i| [(i * 37 % 101) as f32, (i * 53 % 97) as f32])
            .collect();
        let g = build(&data, 16);
        assert!(g.max_level >= 2, "upper layers to descend");
        let space = Space::flat(&data, 2, kernel_for(Distance::Euclidean));
        let mut upper = 0;
        for q in [[3.5f32, 7.0], [50.0, 50.0], [99.0, 1.0], [20.5, 80.5]] {
            let (_, events) = recording(|| g.search(&Exact { space, q: &q }, 10, 16));
            let mut fetched = std::collections::HashSet::new();
            let mut in_beam = false;
            for (i, e) in events.iter().enumerate() {
                match *e {
                    Event::PrefetchVector(s) => {
                        fetched.insert(s);
                    }
                    Event::Expand(_) => in_beam = true,
                    Event::Dist(s) if i > 0 => {
                        upper += usize::from(!in_beam);
                        assert!(
                            fetched.contains(&s),
                            "distance to {s} ({}) not prefetched",
                            if in_beam { "beam" } else { "descent" }
                        );
                    }
                    _ => {}
                }
            }
        }
        assert!(upper > 20, "{upper} distances in the descents");
    }

    /// Below the four-at-once floor (64 floats for AVX-512) a walk computes one distance at a
    /// time; from it on, four at once where the set has the form.
    #[test]
    fn short_vectors_skip_a_four_at_once_kernel_with_a_floor() {
        for dim in [2, 50, 63, 64, 384] {
            let kernel = kernel_for(Distance::Cosine);
            let data = vec![0.0; dim];
            let space = Space::flat(&data, dim, kernel);
            let expect = batch_for(kernel).is_some() && dim >= batch_from(kernel);
            assert_eq!(space.kernel4.is_some(), expect, "dim {dim}");
            if crate::distance::kernel_names().0 == "avx512" {
                assert_eq!(space.kernel4.is_some(), dim >= 64, "dim {dim}");
            }
        }
    }

    /// Packed layer-0 links give the very graph and searches of `u32` ones: the same links in
    /// the same order on every layer, the same ids and distances from plain, filtered and
    /// two-hop searches, for random data of several dimensions, m 2-128, growth past several
    /// powers of two (the links re-packed with more bits each time) and inserts that skip
    /// deleted nodes. `NEEDLE_SEED` replays one seed.
    #[test]
    fn packed_links_give_the_same_graphs_and_searches() {
        let seeds: Vec<u64> = match std::env::var("NEEDLE_SEED") {
            Ok(s) => vec![s.parse().expect("NEEDLE_SEED is a number")],
            Err(_) => (1..=4).collect(),
        };
        let cases = [
            (2usize, 2usize, 1_500usize),
            (5, 3, 2_300),
            (17, 8, 2_100),
            (50, 16, 2_200),
            (3, 48, 1_100),
            (8, 128, 1_100),
        ];
        for seed in seeds {
            eprintln!("NEEDLE_SEED={seed}");
            for (dim, m, n) in cases {
                same_graphs_and_searches(seed, dim, m, n);
            }
        }
    }

    fn same_graphs_and_searches(seed: u64, dim: usize, m: usize, n: usize) {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (dim * 1000 + m) as u64;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let data: Vec<f32> = (0..n * dim)
            .map(|_| (next() % 10_000) as f32 / 100.0)
            .collect();
        let deleted: Vec<bool> = (0..n).map(|_| next() % 9 == 0).collect();
        let space = Space::flat(&data, dim, kernel_for(Distance::Euclidean));
        let mut graphs = [
            Graph::new(m, 40, Links0Kind::U32),
            Graph::new(m, 40, Links0Kind::Packed),
        ];
        let mut widths = std::collections::BTreeSet::new();
        for i in 0..n {
            let level = Graph::level_for(seed, &i.to_string(), m);
            for g in &mut graphs {
                let slot = g.push_node(level);
                let plan = g.plan_insert(&space, slot);
                g.apply_insert(&space, slot, &plan, |s| deleted[s as usize]);
            }
            widths.extend(graphs[1].links0.packed_bits());
        }
        let case = format!("seed {seed} dim {dim} m {m} n {n}");
        assert!(widths.len() >= 2, "{case}: widths {widths:?}");
        assert_eq!(graphs[0], graphs[1], "{case}: graphs");
        let (mut a, mut b) = ([0u32; MAX_LINKS], [0u32; MAX_LINKS]);
        for s in 0..n as u32 {
            let mut wide = graphs[0].neighbors(s, 0, &mut a).to_vec();
            wide.sort_unstable();
            assert_eq!(
                wide,
                graphs[1].neighbors(s, 0, &mut b),
                "{case}: links of {s} (packed: sorted)"
            );
        }
        for _ in 0..20 {
            let q: Vec<f32> = (0..dim).map(|_| (next() % 10_000) as f32 / 100.0).collect();
            let query = Exact { space, q: &q };
            let live = |s: u32| !deleted[s as usize];
            let [u, p] = &graphs;
            assert_eq!(u.search(&query, 10, 32), p.search(&query, 10, 32), "{case}");
            assert_eq!(
                u.search_filtered(&query, 10, 32, live),
                p.search_filtered(&query, 10, 32, live),
                "{case}"
            );
            let rare = |s: u32| s % 7 == 2;
            assert_eq!(
                u.search_two_hop(&query, 5, 24, rare),
                p.search_two_hop(&query, 5, 24, rare),
                "{case}"
            );
        }
    }
}
