//! One collection in memory: records (id → dense slot), vectors in one flat array, metadata,
//! tombstones, and the HNSW graph over the slots. Validation of everything a caller hands in
//! happens here, in `prepare_*`, before anything is logged or changed; the `apply_*` methods
//! work only on prepared (valid) values and cannot fail, so a write is all or nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::{RwLock, RwLockWriteGuard};
use rayon::prelude::*;
use serde_json::Value;

use crate::codes::{CodesQuery, InlineCodes};
use crate::config::{CollectionConfig, Distance, Quantization, SearchOptions};
use crate::distance::{Kernel, kernel_for, normalize};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::hnsw::{Cand, Exact, Graph, Links0Kind, Query, Space};
use crate::id_index::IdIndex;
use crate::ids::Ids;
use crate::metadata::Metadata;
use crate::ordered_codes::OrderedCodes;
use crate::payload::plan::{COp, KeySet, Pred, set_bits};
use crate::payload::{IndexKind, PayloadIndex};
use crate::sq8::{Sq8, Sq8Query, Sq8Ranges};
use crate::tombstones::Tombstones;
use crate::value_graphs::{MappedQuery, ValueGraph};
use crate::vectors::Vectors;

/// Longest id accepted, in bytes.
pub(crate) const MAX_ID_BYTES: usize = 1024;
/// Longest collection name accepted, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 128;
/// Largest dimension accepted.
pub(crate) const MAX_DIMENSIONS: usize = 65_536;
/// Batches are linked in chunks of this size: planned in parallel against the graph as it was
/// before the chunk, then linked in order. Fixed (not tied to the thread count) so the graph is
/// the same however many threads build it.
const BATCH_CHUNK: usize = 128;
/// How long one hold of the collection's write lock goes on linking a batch's records while
/// searches may wait (`apply_batch_shared`): the hold ends after the record that passes it
/// (a record takes 20-60 µs at 128 dims and m 16). Was 16 records a hold (200-900 µs, growing
/// with the graph). With the fair unlock of `apply_batch_in_holds`, searches during batch
/// inserts went from p99 7-8x idle to about 3x on a quiet machine; 100 µs holds without it
/// measured 8.6x (docs/benchmarks-history.md, lock10).
const LINK_BUDGET: Duration = Duration::from_micros(100);
/// A hold's budget in microseconds if not [`LINK_BUDGET`] (`u64::MAX`: the default), set by
/// `__private::set_link_budget` so that tests can apply the same writes in steps of one record
/// and of whole chunks and compare the states.
pub(crate) static LINK_BUDGET_MICROS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(u64::MAX);
/// Below this many live records a filtered search simply scans.
const SCAN_ALWAYS_BELOW: usize = 4096;
/// A filter estimated to match less than this fraction of records is answered by an exact scan.
const SCAN_SELECTIVITY: f64 = 0.05;
/// Below this share of matches an indexed filter may walk the graph through matches only, two
/// hops at a time (when the cost model prefers it); above it through every node (non-matches
/// route but are never returned).
const TWO_HOP_BELOW: f64 = 0.12;
/// The planner's cost model, in cache lines moved (so that it holds at any dimension, not only
/// at the one it was measured on). An exact pass streams each match's vector: `L` lines, where
/// `L = 4 · dim / 64`. A walk visits about `WALK_VISITS · ef · m` nodes, each costing its
/// vector (`L` lines, fetched at random) and its link block and visited mark (`H = 4 · (2m + 1)
/// / 64 + 1` lines): at ef 64 and m 16 a walk costs as much as about 4,300 exact distances at 50
/// dims and 2,400 at 384 — measured on glove50 and words-minilm (docs/benchmarks-history.md, "Filtered
/// search"), which `WALK_VISITS` fits within 15 % on both.
const WALK_VISITS: f64 = 2.1;
/// A filtered walk whose beam keeps `ef · selectivity^WALK_BEAM_EXP` matches explores about
/// `beam / selectivity` nodes: it costs `selectivity^(WALK_BEAM_EXP - 1)` unfiltered walks.
/// 0.4 (not 0.5): at 0.5, glove50's `or_6.9%` had recall 0.947, at 0.4 0.964 (unfiltered 0.956).
const WALK_BEAM_EXP: f64 = 0.4;
/// A two-hop walk reads the link blocks of the rejected neighbours to reach accepted ones: it
/// costs about `TWO_HOP_WALKS · (L + 3H) / (L + H)` unfiltered walks whatever the selectivity
/// (measured 2.3–2.9 at 384 dims, 3.2–5.5 at 50).
const TWO_HOP_WALKS: f64 = 2.3;
/// What a match of an exact pass on the int8 codes ([`crate::codes`]) costs besides its block's
/// lines, in the same units: the re-rank, the query's quantization and the bookkeeping, which
/// the f32 pass's model folds into its `L`. Fitted on glove50 (docs/benchmarks-history.md, "int8 codes
/// for the exact passes"): the pass over 19,891 matches of `lt_10%` measured slower than the
/// filtered walk it replaced at 1 line a match, faster for 2,000–13,700 matches.
const CODES_MATCH_LINES: f64 = 1.7;
/// An indexed filter whose posting lists bound its matches below this share of the records is
/// resolved to its exact matches first (cost in proportion to the bound), and the plan chosen
/// on their number.
const GATHER_BELOW: f64 = 0.3;
/// Under `quantization: sq8`, ranges are first trained once the collection holds this many
/// slots (searches use the f32 vectors until then), and trained again, from every slot's
/// vector, whenever the slots have doubled since (and from the live records at compaction).
pub(crate) const SQ8_TRAIN_MIN: usize = 1_000;
/// Records sampled to estimate a filter's selectivity.
const SELECTIVITY_SAMPLE: usize = 256;
/// How many posting-list entries a bitmap may read per node a filtered walk is expected to test.
const BITMAP_PER_VISIT: f64 = 8.0;

/// The threads that plan batch inserts. Needle's own pool, not rayon's global one: the planning
/// runs while the database's writer lock and the collection's write lock are held, and if it
/// borrowed the global pool, a caller whose own rayon tasks block on this database (searching or
/// writing from a `par_iter`) would leave no thread to run it — a deadlock. Sized like the
/// caller's rayon pool at the time of the call (the global one, so `RAYON_NUM_THREADS` applies,
/// or the pool of a caller's `ThreadPool::install`); the graph does not depend on the size.
/// `None` for one thread, or when the threads cannot be spawned: batches are then planned on the
/// caller's thread.
fn build_pool() -> Option<&'static rayon::ThreadPool> {
    // One pool per size asked for, made on first use and kept: a process asks for one or two
    // sizes (its global pool's, and 1 where a caller builds on one thread). Keyed by the size
    // the caller's context has *now*, so that a first insert made on a one-thread pool does
    // not leave every later batch, on any pool, planning on one thread.
    static POOLS: std::sync::Mutex<Vec<(usize, &'static rayon::ThreadPool)>> =
        std::sync::Mutex::new(Vec::new());
    let threads = rayon::current_num_threads();
    if threads <= 1 {
        return None;
    }
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&(_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Some(pool);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("needle-build-{i}"))
        .build()
        .ok()?;
    let pool: &'static rayon::ThreadPool = Box::leak(Box::new(pool));
    pools.push((threads, pool));
    Some(pool)
}

/// A record ready to be applied: id checked, vector checked (and normalised under cosine),
/// metadata checked to be an object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prepared {
    pub id: String,
    pub vector: Vec<f32>,
    pub metadata: Option<Value>,
}

#[derive(Debug)]
pub(crate) struct Collection {
    pub name: String,
    pub dim: usize,
    pub config: CollectionConfig,
    pub kernel: Kernel,
    /// `dim` floats per slot, including tombstoned slots (they still route searches); on huge
    /// pages where the system allows (see `hnsw::Flat`).
    pub vectors: Vectors,
    /// The id of each slot (tombstoned slots keep theirs until compaction).
    pub ids: Ids,
    /// Each slot's metadata (none for tombstoned slots).
    pub metadata: Metadata,
    pub deleted: Tombstones,
    pub live: usize,
    pub graph: Graph,
    /// The slot of each live id, and the live ids in id order (bytes): a scroll page starts
    /// with a range lookup. Holds slots only (the ids are in `ids`); derived, never stored.
    pub index: IdIndex,
    /// Payload indexes by dotted path, kept exact by every write.
    pub indexes: BTreeMap<String, PayloadIndex>,
    /// Under `quantization: sq8`, the int8 codes of every slot, once trained (see
    /// [`Collection::sq8_due`]); `None` otherwise.
    pub sq8: Option<Sq8>,
    /// Without quantization, once the collection has a payload index: every slot's vector as
    /// int8 codes in one cache-line-aligned block, for the exact passes of filtered searches
    /// (see [`crate::codes`] and [`Collection::sync_codes`]); derived, never stored.
    pub codes: Option<InlineCodes>,
    /// Per indexed path (keyword, integer and bool indexes), per key: the graph over the
    /// records holding that value, for values held by many (see [`crate::value_graphs`]).
    /// Kept by every write; rebuilt by compaction; dropped with the index.
    pub value_graphs: BTreeMap<String, BTreeMap<u64, ValueGraph>>,
    /// Per indexed path, the values held by at least `value_graphs::min_records` live records
    /// that have no graph yet (held by more than half the live records, or not checked yet): after every write each is checked
    /// again and gets its graph once eligible (see [`Collection::build_due_value_graphs`]).
    /// Derived from the indexes and the graphs (never stored; computed again at open), so a
    /// replica that restarted checks the same values as one that did not. May hold values
    /// that fell below the threshold since: the next check drops them.
    pub waiting_value_graphs: BTreeMap<String, BTreeSet<u64>>,
    /// Empty graphs with room reserved (by [`Collection::reserve_value_graphs`] or
    /// [`Collection::reserve_index_value_graphs`], before a write or an index declaration is
    /// logged) for the values that it may make eligible; taken by the build. Never stored.
    pub spare_value_graphs: BTreeMap<(String, u64), ValueGraph>,
    /// Per integer or float index (dotted path), a value-ordered copy of its records' int8
    /// codes ([`crate::ordered_codes`]), while the collection has codes. Derived, never stored.
    pub ordered: BTreeMap<String, OrderedCodes>,
}

pub(crate) fn validate_collection_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidCollectionName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("name is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return bad("name is longer than 128 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return bad("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    if name.starts_with('.') {
        return bad("name must not start with '.'");
    }
    Ok(())
}

pub(crate) fn validate_dimensions(dimensions: usize) -> Result<()> {
    if dimensions == 0 || dimensions > MAX_DIMENSIONS {
        return Err(Error::InvalidArgument {
            what: "dimensions".into(),
            reason: format!("must be in 1..={MAX_DIMENSIONS}, got {dimensions}"),
        });
    }
    Ok(())
}

impl Collection {
    pub fn new(name: &str, dim: usize, config: CollectionConfig) -> Self {
        Collection {
            name: name.to_string(),
            dim,
            kernel: kernel_for(config.distance),
            graph: Graph::new(
                config.m,
                config.ef_construction,
                Links0Kind::for_collection(config.quantization, dim, config.m),
            ),
            config,
            vectors: Vectors::new(),
            ids: Ids::new(),
            metadata: Metadata::new(),
            deleted: Tombstones::new(),
            live: 0,
            index: IdIndex::new(),
            indexes: BTreeMap::new(),
            sq8: None,
            codes: None,
            value_graphs: BTreeMap::new(),
            waiting_value_graphs: BTreeMap::new(),
            spare_value_graphs: BTreeMap::new(),
            ordered: BTreeMap::new(),
        }
    }

    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    fn space(&self) -> Space<'_> {
        Space::of(&self.vectors, self.dim, self.kernel)
    }

    // ---- validation -------------------------------------------------------------------------

    pub fn check_id(&self, id: &str) -> Result<()> {
        let reason = if id.is_empty() {
            "id is empty".to_string()
        } else if id.len() > MAX_ID_BYTES {
            format!("id is {} bytes, the limit is {MAX_ID_BYTES}", id.len())
        } else {
            return Ok(());
        };
        Err(Error::InvalidId {
            collection: self.name.clone(),
            reason,
        })
    }

    /// Checks a vector's length and values; under cosine returns it normalised.
    pub fn prepare_vector(&self, mut vector: Vec<f32>, what: &str) -> Result<Vec<f32>> {
        if vector.len() != self.dim {
            return Err(Error::DimensionMismatch {
                collection: self.name.clone(),
                expected: self.dim,
                got: vector.len(),
            });
        }
        if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidVector {
                collection: self.name.clone(),
                reason: format!("{what} component {i} is {}", vector[i]),
            });
        }
        if self.config.distance == Distance::Cosine && !normalize(&mut vector) {
            return Err(Error::InvalidVector {
                collection: self.name.clone(),
                reason: format!("{what} has zero length, which has no direction under cosine"),
            });
        }
        Ok(vector)
    }

    fn check_metadata(&self, id: &str, metadata: Option<Value>) -> Result<Option<Value>> {
        match metadata {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Value::Object(map))),
            Some(other) => Err(Error::InvalidMetadata {
                collection: self.name.clone(),
                id: id.to_string(),
                reason: format!("metadata must be a JSON object, got {}", json_kind(&other)),
            }),
        }
    }

    pub fn prepare(&self, id: &str, vector: Vec<f32>, metadata: Option<Value>) -> Result<Prepared> {
        self.check_id(id)?;
        let vector = self.prepare_vector(vector, &format!("vector of '{id}'"))?;
        let metadata = self.check_metadata(id, metadata)?;
        Ok(Prepared {
            id: id.to_string(),
            vector,
            metadata,
        })
    }

    /// Validates an update and turns it into the record that will replace the current one.
    /// Returns `None` when only the metadata changes (no new slot is needed).
    pub fn prepare_update(
        &self,
        id: &str,
        vector: Option<Vec<f32>>,
        metadata: Option<Value>,
    ) -> Result<(Option<Vec<f32>>, Option<Value>)> {
        self.check_id(id)?;
        if !self.index.contains(&self.ids, id) {
            return Err(Error::RecordNotFound {
                collection: self.name.clone(),
                id: id.to_string(),
            });
        }
        let vector = match vector {
            Some(v) => Some(self.prepare_vector(v, &format!("vector of '{id}'"))?),
            None => None,
        };
        let metadata = self.check_metadata(id, metadata)?;
        Ok((vector, metadata))
    }

    // ---- writes (infallible: inputs are prepared) --------------------------------------------

    fn tombstone(&mut self, slot: u32) {
        let s = slot as usize;
        if !self.deleted[s] {
            self.leave_value_graphs(slot);
            self.mark_written(slot);
            for idx in self.indexes.values_mut() {
                idx.remove(slot);
            }
            self.deleted.set(s);
            self.metadata.set(s, None);
            self.live -= 1;
        }
    }

    /// Appends a record's storage (not yet linked); tombstones the old version of the id.
    /// `level` is the record's level ([`Collection::level_of`], drawn once when the chunk
    /// was planned).
    fn push_record(&mut self, rec: Prepared, level: u8) -> u32 {
        if let Some(old) = self.index.remove(&self.ids, &rec.id) {
            self.tombstone(old);
        }
        let slot = self.graph.push_node(level);
        self.vectors.extend_from_slice(&rec.vector);
        if let Some(sq8) = &mut self.sq8 {
            sq8.push(&rec.vector);
        }
        if let Some(codes) = &mut self.codes {
            codes.push(&rec.vector);
        }
        self.mark_written(slot);
        self.ids.push(&rec.id);
        for idx in self.indexes.values_mut() {
            idx.insert(slot, rec.metadata.as_ref());
        }
        self.metadata.push(rec.metadata);
        self.deleted.push(false);
        let deleted = &self.deleted;
        let fresh = self.index.insert(&self.ids, slot, |s| deleted[s as usize]);
        debug_assert!(fresh, "the id's old slot was removed above");
        self.live += 1;
        slot
    }

    pub fn apply_upsert(&mut self, rec: Prepared) {
        self.apply_batch(vec![rec]);
    }

    /// Inserts records in order. Candidates are searched in parallel per chunk; links are made in
    /// order, so the result does not depend on the number of threads.
    pub fn apply_batch(&mut self, records: Vec<Prepared>) {
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<Prepared> = records.by_ref().take(BATCH_CHUNK).collect();
            let planned = self.plan_chunk(chunk);
            self.link_chunk(planned);
            if let Some(sq8) = self.sq8_due() {
                self.sq8 = Some(sq8);
            }
        }
    }

    /// Under `quantization: sq8`, freshly trained codes when training is due: the first time
    /// the collection holds [`SQ8_TRAIN_MIN`] slots, then whenever the slots have doubled since
    /// the last training. Ranges come from every slot's vector (tombstoned ones too: they
    /// still route searches). Read-only, so it can run under a read lock; a function of the
    /// state alone, so replicas and replays train alike.
    fn sq8_due(&self) -> Option<Sq8> {
        if self.config.quantization != Quantization::Sq8 || self.slots() < SQ8_TRAIN_MIN {
            return None;
        }
        let due = self
            .sq8
            .as_ref()
            .is_none_or(|q| (self.slots() as u64) >= q.trained_slots.saturating_mul(2));
        if !due {
            return None;
        }
        Sq8::build(self.vectors.chunks(self.dim), self.dim)
    }

    /// [`apply_batch`](Self::apply_batch) on a shared collection, holding its write lock only in
    /// short steps: each chunk's candidates are searched under a read lock, then its records
    /// are stored and linked under the write lock a few at a time ([`LINK_BUDGET`] a hold), so
    /// searches go on meanwhile. Each hold ends with a fair unlock, which hands the lock to a
    /// search waiting for it: a plain unlock lets this loop take it back before the woken
    /// search runs, which then waits for parking_lot's next fair unlock (forced about every
    /// 0.5 ms). The caller must be the only writer (the database's writer lock): then nothing
    /// changes between a chunk's planning and its linking, and the graph is the one
    /// `apply_batch` builds. Readers see the batch appear a few records at a time, each record
    /// only once it is linked (and an upserted id's old version only until then).
    pub fn apply_batch_shared(shared: &RwLock<Collection>, records: Vec<Prepared>) {
        let budget = match LINK_BUDGET_MICROS.load(std::sync::atomic::Ordering::Relaxed) {
            u64::MAX => LINK_BUDGET,
            micros => Duration::from_micros(micros),
        };
        Self::apply_batch_in_holds(shared, records, budget);
    }

    /// [`apply_batch_shared`](Self::apply_batch_shared) with `budget` a hold.
    fn apply_batch_in_holds(shared: &RwLock<Collection>, records: Vec<Prepared>, budget: Duration) {
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<Prepared> = records.by_ref().take(BATCH_CHUNK).collect();
            let mut planned = shared.read().plan_chunk(chunk);
            loop {
                let mut c = shared.write();
                let more = c.link_some(&mut planned, budget);
                RwLockWriteGuard::unlock_fair(c);
                if !more {
                    break;
                }
            }
            let retrained = shared.read().sq8_due();
            if let Some(sq8) = retrained {
                shared.write().sq8 = Some(sq8);
            }
        }
    }

    /// The read-only half of inserting a chunk: the candidate neighbours of each record, found
    /// in parallel against the graph as it is, plus the chunk's earlier records (which cannot
    /// be found through the graph, as they are not in it yet) on the layers they share.
    fn plan_chunk(&self, records: Vec<Prepared>) -> PlannedChunk {
        let space = self.space();
        let graph = &self.graph;
        let levels: Vec<u8> = records.iter().map(|r| self.level_of(&r.id)).collect();
        let plan_one = |i: usize| graph.plan_for(&space, &records[i].vector, levels[i]);
        let plan_all = || (0..records.len()).into_par_iter().map(plan_one).collect();
        let pool = if records.len() > 1 {
            build_pool()
        } else {
            None
        };
        let mut plans: Vec<Vec<Vec<Cand>>> = if let Some(pool) = pool {
            if rayon::current_thread_index().is_some() {
                // Called from a rayon worker (a caller's `par_iter`): `install` would let this
                // thread run other queued tasks of its pool while it waits — tasks that may
                // block on the locks this write holds. A plain thread waits without stealing.
                let spawned = std::thread::Builder::new().name("needle-plan".into());
                std::thread::scope(
                    |s| match spawned.spawn_scoped(s, || pool.install(plan_all)) {
                        Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                        Err(_) => (0..records.len()).map(plan_one).collect(),
                    },
                )
            } else {
                pool.install(plan_all)
            }
        } else {
            (0..records.len()).map(plan_one).collect()
        };
        // The slots the records will get: nothing else writes between planning and linking.
        let first = self.slots() as u32;
        for i in 1..records.len() {
            let level = levels[i] as usize;
            for j in 0..i {
                let shared = level.min(levels[j] as usize);
                let d = (space.kernel)(&records[i].vector, &records[j].vector);
                let plan = &mut plans[i];
                if plan.len() <= shared {
                    plan.resize(shared + 1, Vec::new());
                }
                for layer in plan.iter_mut().take(shared + 1) {
                    layer.push(Cand {
                        d,
                        id: first + j as u32,
                    });
                }
            }
            // The `ef_construction` nearest, as a search of a graph holding the earlier
            // records would return. Kept whole (up to `ef_construction + BATCH_CHUNK − 1`
            // candidates), the graph was not the one a record-by-record build makes: glove50,
            // 8 level seeds, same draws, recall +0.0003 at ef 32 and −0.0003 at ef 128 against
            // one record per batch, on every seed (likely: the heuristic, which keeps fewer
            // than `m` of the nearest where they crowd, went on into the chunk's far records
            // and linked some). Truncated, ef 128 is the record-by-record build's on 8 of 8
            // seeds, and no longer below hnswlib's (docs/benchmarks-history.md, issue 12, speed7).
            for layer in plans[i].iter_mut() {
                layer.sort();
                layer.truncate(graph.ef_construction);
            }
        }
        // The slots the chunk tombstones: older versions of its ids, in the collection or
        // earlier in the chunk. Every record is linked as if all of them were tombstoned
        // already, as when the whole chunk is stored before its first record is linked.
        let mut doomed: Vec<u32> = Vec::new();
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for (j, r) in records.iter().enumerate() {
            let slot = first + j as u32;
            if let Some(old) = seen.insert(&r.id, slot) {
                doomed.push(old);
            } else if let Some(old) = self.index.get(&self.ids, &r.id) {
                doomed.push(old);
            }
        }
        doomed.sort_unstable();
        PlannedChunk {
            first,
            linked: 0,
            doomed,
            records: records
                .into_iter()
                .zip(levels)
                .zip(plans)
                .map(|((r, level), plan)| (r, level, plan))
                .collect(),
        }
    }

    /// The mutating half: stores and links more records of the chunk, in order, until `budget`
    /// has passed (at least one record). Returns whether some are left.
    fn link_some(&mut self, planned: &mut PlannedChunk, budget: Duration) -> bool {
        let start = Instant::now();
        if planned.first as usize + planned.linked != self.slots() {
            // Only a second writer could cause this; plan the rest again rather than link wrongly.
            debug_assert!(false, "collection changed between planning and linking");
            let rest: Vec<Prepared> = planned.records.drain(..).map(|(r, ..)| r).collect();
            *planned = self.plan_chunk(rest);
        }
        while let Some((rec, level, plan)) = planned.records.pop_front() {
            let slot = self.push_record(rec, level);
            let space = Space::of(&self.vectors, self.dim, self.kernel);
            let (deleted, doomed) = (&self.deleted, &planned.doomed);
            self.graph.apply_insert(&space, slot, &plan, |n| {
                deleted[n as usize] || doomed.binary_search(&n).is_ok()
            });
            self.enter_value_graphs(slot);
            self.build_due_value_graphs();
            self.refresh_ordered();
            planned.linked += 1;
            if start.elapsed() >= budget {
                break;
            }
        }
        !planned.records.is_empty()
    }

    /// Stores and links a whole planned chunk.
    fn link_chunk(&mut self, mut planned: PlannedChunk) {
        self.link_some(&mut planned, Duration::MAX);
    }

    /// Replaces a record's vector and/or metadata. A new vector gets a new slot (the old one is
    /// tombstoned), so the record stays reachable through fresh links.
    pub fn apply_update(&mut self, id: &str, vector: Option<Vec<f32>>, metadata: Option<Value>) {
        let Some(slot) = self.index.get(&self.ids, id) else {
            return;
        };
        match vector {
            Some(vector) => {
                let metadata = metadata.or_else(|| self.metadata[slot as usize].clone());
                self.apply_upsert(Prepared {
                    id: id.to_string(),
                    vector,
                    metadata,
                });
            }
            None => {
                if metadata.is_some() {
                    self.metadata.set(slot as usize, metadata);
                    self.leave_value_graphs(slot);
                    self.mark_written(slot);
                    for idx in self.indexes.values_mut() {
                        idx.remove(slot);
                        idx.insert(slot, self.metadata[slot as usize].as_ref());
                    }
                    self.enter_value_graphs(slot);
                    self.build_due_value_graphs();
                    self.refresh_ordered();
                }
            }
        }
    }

    pub fn apply_delete(&mut self, id: &str) -> bool {
        match self.index.remove(&self.ids, id) {
            Some(slot) => {
                self.tombstone(slot);
                let deleted = &self.deleted;
                self.index.tidy(&self.ids, |s| deleted[s as usize]);
                self.build_due_value_graphs();
                self.refresh_ordered();
                true
            }
            None => false,
        }
    }

    /// The two biggest arrays, vectors and layer-0 links, made ready for `slots` more records
    /// without the write lock: copied with room where they must grow (tens of milliseconds at
    /// a few hundred thousand records), and the pages the records will fill faulted in
    /// ([`Flat::populate`](crate::hnsw::Flat::populate)). Done under the read lock while
    /// searches go on; [`install_room`](Self::install_room) swaps the copies in under the
    /// write lock, and [`reserve`](Self::reserve) then finds the room made. An error (the
    /// system refused the memory) changes nothing.
    pub fn prepared_room(&self, slots: usize) -> Result<GrownRoom> {
        let floats = slots.saturating_mul(self.dim);
        let vectors = self
            .vectors
            .try_grown_tail(floats)
            .map_err(|e| no_memory(&self.name, slots, "vectors", e))?;
        match &vectors {
            Some(grown) => grown.populate(floats),
            None => self.vectors.populate_tail(floats),
        }
        let links0 = self
            .graph
            .links0
            .try_grown(slots)
            .map_err(|e| no_memory(&self.name, slots, "layer-0 links", e))?;
        links0
            .as_ref()
            .unwrap_or(&self.graph.links0)
            .populate(slots);
        let index = self
            .index
            .try_grown_table(&self.ids, slots)
            .map_err(|e| no_memory(&self.name, slots, "id index", e))?;
        let deleted = &self.deleted;
        let order = self
            .index
            .merged_ahead(&self.ids, slots, |s| deleted[s as usize])
            .map_err(|e| no_memory(&self.name, slots, "id order", e))?;
        Ok(GrownRoom {
            vectors,
            links0,
            index,
            order,
        })
    }

    /// Swaps in the arrays [`prepared_room`](Self::prepared_room) copied. The caller must be the only
    /// writer since the copy (the database's writer lock), so that they hold what the arrays
    /// hold now; a copy whose length no longer matches is not installed (`reserve` grows in
    /// place). Returns the arrays replaced and the copies not installed, which the caller frees
    /// after the write lock (unmapping them is work a waiting search need not wait for).
    #[must_use = "the replaced arrays are freed by dropping them, after the write lock"]
    pub fn install_room(&mut self, room: GrownRoom) -> GrownRoom {
        let vectors = room.vectors.map(|v| self.vectors.install_tail(v));
        let links0 = room.links0.map(|links0| {
            if links0.len() == self.graph.links0.len() {
                debug_assert!(links0 == self.graph.links0, "a write came between");
                std::mem::replace(&mut self.graph.links0, links0)
            } else {
                links0
            }
        });
        let index = room.index.map(|t| self.index.install_table(&self.ids, t));
        let order = room.order.map(|o| self.index.install_order(o));
        GrownRoom {
            vectors,
            links0,
            index,
            order,
        }
    }

    /// Makes room for `slots` more records in the arrays that grow by anonymous maps, so that
    /// applying a write of that many records cannot fail. Called before the write is logged.
    pub fn reserve(&mut self, slots: usize) -> Result<()> {
        let refused = |what: &str, e| no_memory(&self.name, slots, what, e);
        self.vectors
            .try_reserve(slots.saturating_mul(self.dim))
            .map_err(|e| refused("vectors", e))?;
        self.graph
            .links0
            .try_reserve(slots)
            .map_err(|e| refused("layer-0 links", e))?;
        if let Some(sq8) = &mut self.sq8 {
            sq8.try_reserve(slots)
                .map_err(|e| refused("sq8 codes", std::io::Error::other(e)))?;
        }
        if let Some(codes) = &mut self.codes {
            codes
                .try_reserve(slots)
                .map_err(|e| refused("int8 codes", e))?;
        }
        self.index
            .try_reserve(&self.ids, slots)
            .map_err(|e| refused("id index", e))?;
        Ok(())
    }

    /// A record's level in the graph, drawn from a hash of its id ([`Graph::level_for`]).
    pub fn level_of(&self, id: &str) -> u8 {
        Graph::level_for(self.config.seed, id, self.config.m)
    }

    /// The upper-layer blocks records with these ids take: the sum of their levels.
    pub fn upper_levels<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> usize {
        ids.into_iter().map(|id| self.level_of(id) as usize).sum()
    }

    /// Makes room in the upper-layer links for records with these ids (their levels follow
    /// from the ids), and widens packed links for the slots they take, so that applying the
    /// write cannot fail for memory. Called before the write is logged; an error (the system
    /// refused the memory) changes nothing.
    /// `levels` is the sum of their levels ([`Collection::upper_levels`], which needs only a
    /// read lock).
    pub fn reserve_upper(&mut self, records: usize, levels: usize) -> Result<()> {
        let nodes = self.graph.len().saturating_add(records);
        self.graph
            .upper
            .try_reserve(nodes, levels)
            .map_err(|e| no_memory(&self.name, records, "upper-layer links", e))
    }

    /// Makes room in the value graphs for a write, so that applying it cannot fail for memory:
    /// `joining` are the metadata the write gives records (new records, or new metadata), and
    /// `changed` the records it writes (each may add a live record or take one from a value).
    /// Every graph a record joins gets room for its nodes, and every value without a graph
    /// that the write may make eligible (see [`Collection::build_due_value_graphs`]) gets an
    /// empty graph with room for all its records, which the build takes. Called before the
    /// write is logged; an error (the system refused the memory) changes nothing a search or
    /// the file sees.
    pub fn reserve_value_graphs<'v>(
        &mut self,
        joining: &[Option<&'v Value>],
        changed: usize,
    ) -> Result<()> {
        let mut spares = std::mem::take(&mut self.spare_value_graphs);
        if self.indexes.is_empty() {
            return Ok(());
        }
        // The nodes each value may gain.
        let mut gain: BTreeMap<(&str, u64), usize> = BTreeMap::new();
        for (path, idx) in &self.indexes {
            if idx.kind == IndexKind::Float || !idx.value_graphs {
                continue;
            }
            // A keyword the index has not seen gets the next dictionary position when the
            // write interns it (in record order, an array's items in order up to the first
            // that is not a string): predicted alike, so that a value first seen in this write
            // and brought past the threshold by it has its room too.
            let mut unseen: HashMap<&str, u64> = HashMap::new();
            let mut next = idx.strings.len() as u64;
            let mut key_of = |v: &'v Value| -> Option<u64> {
                match (idx.kind, v) {
                    (IndexKind::Keyword, Value::String(w)) if !idx.dict.contains_key(w) => {
                        Some(*unseen.entry(w.as_str()).or_insert_with(|| {
                            next += 1;
                            next - 1
                        }))
                    }
                    _ => idx.scalar_key(v),
                }
            };
            for &meta in joining {
                let mut keys: Vec<u64> = match idx.path.lookup(meta) {
                    Some(Value::Array(items)) => items.iter().map_while(&mut key_of).collect(),
                    Some(v) => key_of(v).into_iter().collect(),
                    None => Vec::new(),
                };
                keys.sort_unstable();
                keys.dedup();
                for k in keys {
                    *gain.entry((path.as_str(), k)).or_default() += 1;
                }
            }
        }
        let min = crate::value_graphs::min_records();
        let mut grow: Vec<(String, u64, usize)> = Vec::new();
        let mut shells: Vec<(String, u64, usize)> = Vec::new();
        let mut candidates: BTreeSet<(&str, u64)> = gain.keys().copied().collect();
        for (path, keys) in &self.waiting_value_graphs {
            candidates.extend(keys.iter().map(|&k| (path.as_str(), k)));
        }
        for (path, key) in candidates {
            let more = gain.get(&(path, key)).copied().unwrap_or(0);
            if self
                .value_graphs
                .get(path)
                .is_some_and(|g| g.contains_key(&key))
            {
                if more > 0 {
                    grow.push((path.to_string(), key, more));
                }
                continue;
            }
            let count = self.indexes[path].postings.get(&key).map_or(0, Vec::len);
            // Eligible at some point of the write: at least the threshold then, and at most
            // half the live records (the write may take `changed` from the value and add as
            // many live records).
            let most = count + more;
            let least = count.saturating_sub(changed);
            if most >= min && least.saturating_mul(2) <= self.live + changed {
                shells.push((path.to_string(), key, most));
            }
        }
        let no_memory = |e| {
            Error::io(
                format!(
                    "allocating room in the value graphs of collection '{}'",
                    self.name
                ),
                e,
            )
        };
        let (m, efc) = (
            self.config.m,
            crate::value_graphs::ef_construction(self.config.ef_construction),
        );
        for (path, key, nodes) in shells {
            let mut shell = spares
                .remove(&(path.clone(), key))
                .unwrap_or_else(|| ValueGraph::new(m, efc));
            shell.try_reserve(nodes).map_err(no_memory)?;
            self.spare_value_graphs.insert((path, key), shell);
        }
        for (path, key, nodes) in grow {
            if let Some(g) = self
                .value_graphs
                .get_mut(&path)
                .and_then(|g| g.get_mut(&key))
            {
                g.try_reserve(nodes).map_err(no_memory)?;
            }
        }
        Ok(())
    }

    /// A copy holding only live records, densely, with a freshly built graph.
    pub fn compacted(&self) -> Result<Collection> {
        let mut fresh = Collection::new(&self.name, self.dim, self.config.clone());
        for (path, idx) in &self.indexes {
            let mut empty = PayloadIndex::new(idx.path.clone(), idx.kind);
            empty.value_graphs = idx.value_graphs;
            fresh.indexes.insert(path.clone(), empty);
        }
        fresh.sync_codes();
        // The value-ordered codes are built once, after the inserts (not again and again as
        // the inserts' delta grows).
        fresh.ordered.clear();
        fresh.reserve(self.live)?;
        let records: Vec<Prepared> = (0..self.slots())
            .filter(|&s| !self.deleted[s])
            .map(|s| Prepared {
                id: self.ids[s].to_string(),
                vector: self.vectors.get(s * self.dim, self.dim).to_vec(),
                metadata: self.metadata[s].clone(),
            })
            .collect();
        let levels = fresh.upper_levels(records.iter().map(|r| r.id.as_str()));
        fresh.reserve_upper(records.len(), levels)?;
        if self.config.quantization == Quantization::Sq8 && records.len() >= SQ8_TRAIN_MIN {
            // Compaction trains the ranges again, on the live records only.
            let live: Vec<f32> = records
                .iter()
                .flat_map(|r| r.vector.iter().copied())
                .collect();
            fresh.sq8 = Sq8Ranges::train(&live, self.dim)
                .map(|ranges| Sq8::reencoded(ranges, std::iter::empty(), records.len() as u64));
        }
        // The value graphs are built after the records, over room reserved first (a refused
        // map is an error here, before anything is logged): the graph of each value eligible
        // then, over its records in slot order — the graph the inserts would have made for it,
        // as nothing leaves a value during them.
        let wanted: Vec<String> = fresh
            .indexes
            .iter()
            .filter(|(_, i)| i.value_graphs)
            .map(|(p, _)| p.clone())
            .collect();
        for p in &wanted {
            if let Some(i) = fresh.indexes.get_mut(p) {
                i.value_graphs = false;
            }
        }
        fresh.apply_batch(records);
        for p in &wanted {
            if let Some(i) = fresh.indexes.get_mut(p) {
                i.value_graphs = true;
            }
            fresh.build_value_graphs_reserved(p)?;
        }
        fresh.sync_codes();
        Ok(fresh)
    }

    /// [`build_value_graphs`](Self::build_value_graphs) into room reserved first for every
    /// graph: an error (the system refused the memory) leaves the path without graphs.
    fn build_value_graphs_reserved(&mut self, path: &str) -> Result<()> {
        self.value_graphs.remove(path);
        let Some(idx) = self.indexes.get(path) else {
            return Ok(());
        };
        if idx.kind == IndexKind::Float || !idx.value_graphs {
            return Ok(());
        }
        let shells = self.value_graph_shells(idx, path)?;
        let mut graphs = BTreeMap::new();
        for (key, g) in shells {
            graphs.insert(key, self.value_graph_of(path, key, Some(g)));
        }
        if !graphs.is_empty() {
            self.value_graphs.insert(path.to_string(), graphs);
        }
        self.find_waiting_value_graphs(path);
        Ok(())
    }

    // ---- reads --------------------------------------------------------------------------------

    pub fn get(&self, id: &str) -> Option<(Vec<f32>, Option<Value>)> {
        let slot = self.index.get(&self.ids, id)? as usize;
        Some((
            self.vectors.get(slot * self.dim, self.dim).to_vec(),
            self.metadata[slot].clone(),
        ))
    }

    /// The distance a caller sees: Euclidean is reported as the true distance, not its square.
    fn reported(&self, d: f32) -> f32 {
        match self.config.distance {
            Distance::Euclidean => d.max(0.0).sqrt(),
            _ => d,
        }
    }

    pub fn search(&self, query: &[f32], k: usize, opts: &SearchOptions) -> Result<Vec<Hit>> {
        if k == 0 {
            return Err(Error::InvalidArgument {
                what: "k".into(),
                reason: "must be at least 1".into(),
            });
        }
        let ef = opts.ef_search.unwrap_or(self.config.ef_search);
        if ef == 0 {
            return Err(Error::InvalidArgument {
                what: "ef_search".into(),
                reason: "must be at least 1".into(),
            });
        }
        let q = self.prepare_vector(query.to_vec(), "query")?;
        // Allocations are sized by k and ef: bound both by what the collection holds, so a huge
        // k or ef from a caller costs no more than asking for everything. (A beam wider than
        // the graph finds nothing more.)
        if self.live == 0 {
            return Ok(Vec::new());
        }
        let k = k.min(self.live);
        let ef = ef.min(self.slots()).max(1);
        let space = self.space();
        let hits = match &opts.filter {
            // Asked for every record (or more): a scan is exact and no slower than the walk.
            None if k >= self.live || self.slots() <= ef.max(k) => {
                self.scan(&Exact { space, q: &q }, k, |s| !self.deleted[s])
            }
            // Quantized: walk on the int8 codes, keep the whole beam, re-rank its best exactly.
            None if self.sq8.is_some() => {
                let sq8 = self.sq8.as_ref().expect("matched Some");
                let query = sq8.query(&q, self.config.distance);
                let wide = ef.max(k);
                let beam = if self.live == self.slots() {
                    self.graph.search(&query, wide, ef)
                } else {
                    let deleted = &self.deleted;
                    self.graph
                        .search_filtered(&query, wide, ef, |s| !deleted[s as usize])
                };
                self.rerank(&space, &q, &query, beam, k)?
            }
            // No tombstones: every node may be returned, so the faster unfiltered walk applies.
            None if self.live == self.slots() => self.graph.search(&Exact { space, q: &q }, k, ef),
            None => {
                let deleted = &self.deleted;
                self.graph
                    .search_filtered(&Exact { space, q: &q }, k, ef, |s| !deleted[s as usize])
            }
            Some(filter) => self.filtered_search(&space, &q, k, ef, filter)?,
        };
        Ok(hits
            .into_iter()
            .map(|c| Hit {
                slot: c.id,
                distance: self.reported(c.d),
            })
            .filter(|h| opts.score_threshold.is_none_or(|t| h.distance <= t))
            .collect())
    }

    fn matches(&self, filter: &Filter, slot: usize) -> bool {
        !self.deleted[slot] && filter.matches(self.metadata[slot].as_ref())
    }

    /// Estimates the share of live records that match, from a fixed, evenly spaced sample.
    fn estimate_selectivity(&self, filter: &Filter) -> f64 {
        self.sample(|s| filter.matches(self.metadata[s].as_ref()))
    }

    /// Filtered search. Under sq8 every distance it computes (walks, exact passes, scans) is
    /// on the int8 codes, keeping the `RERANK_FACTOR · k` nearest, and those are re-ranked by
    /// their f32 vectors as the unfiltered sq8 search does ([`Collection::rerank`]): the f32
    /// vectors, mapped from the checkpoint, stay out of memory, and a match costs a quarter
    /// of the bytes.
    fn filtered_search(
        &self,
        space: &Space,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: &Filter,
    ) -> Result<Vec<Cand>> {
        match &self.sq8 {
            Some(sq8) => {
                let query = sq8.query(q, self.config.distance);
                let keep = k.saturating_mul(RERANK_FACTOR).min(self.live);
                let m = Metrics::one(&query, keep);
                let cands = self.filtered_on(&m, k, ef, filter);
                self.rerank(space, q, &query, cands, k)
            }
            None => {
                let exact = Exact { space: *space, q };
                match self.active_codes() {
                    // Walks and long exact passes on the int8 codes, their best re-ranked by
                    // the f32 vectors; short exact passes on the f32 vectors.
                    Some(codes) => {
                        let query = codes.query(q, self.config.distance);
                        let m = Metrics {
                            walk: &query,
                            keep: k.saturating_mul(RERANK_FACTOR).min(self.live),
                            exact: &query,
                            keep_exact: crate::codes::keep(k).min(self.live),
                            few: &exact,
                            keep_few: k,
                            // Re-ranking all of a walk's beam (≤ ef) costs little with the
                            // vectors in memory, and keeps the f32 walk's recall.
                            whole_beam: true,
                        };
                        let cands = self.filtered_on(&m, k, ef, filter);
                        Ok(rerank_in_memory(space, q, cands, k))
                    }
                    None => Ok(self.filtered_on(&Metrics::one(&exact, k), k, ef, filter)),
                }
            }
        }
    }

    /// The nearest matches of `filter` (at least `k`, fewer only when fewer match), by the
    /// metric of `m` that the plan uses, as many as it keeps.
    fn filtered_on<W: Metric, E: Metric, F: Metric>(
        &self,
        m: &Metrics<W, E, F>,
        k: usize,
        ef: usize,
        filter: &Filter,
    ) -> Vec<Cand> {
        let pred = Pred::compile(filter, &self.indexes);
        if pred.uses_index() {
            return self.planned_search(m, k, ef, &pred);
        }
        if self.live <= SCAN_ALWAYS_BELOW || self.estimate_selectivity(filter) < SCAN_SELECTIVITY {
            return self.scan(m.walk, m.keep, |s| self.matches(filter, s));
        }
        let found = self
            .graph
            .search_filtered(m.walk, m.walk_keep(ef), ef, |s| {
                self.matches(filter, s as usize)
            });
        if found.len() < k {
            // The walk ran out before finding k matches: an exact scan finds them if they exist.
            return self.scan(m.walk, m.keep, |s| self.matches(filter, s));
        }
        found
    }

    /// Whether live slot `slot` matches a compiled filter.
    #[inline]
    fn pred_matches(&self, pred: &Pred, slot: usize) -> bool {
        !self.deleted[slot] && pred.matches(slot as u32, &self.metadata)
    }

    /// Filtered search with payload indexes: candidates from the posting lists and exact
    /// distances when few may match; else a graph walk with a membership test on typed columns
    /// (or on a bitmap of the matches), moving through matches only and two hops at a time when
    /// the filter is restrictive.
    fn planned_search<W: Metric, E: Metric, F: Metric>(
        &self,
        m: &Metrics<W, E, F>,
        k: usize,
        ef: usize,
        pred: &Pred,
    ) -> Vec<Cand> {
        let estimate = pred.estimate();
        let small = self.live <= SCAN_ALWAYS_BELOW;
        let unions = union_plans();
        if unions != UnionPlans::Never && (!small || unions == UnionPlans::Always) {
            if let Some(b) = self.union_branches(pred) {
                if unions == UnionPlans::Always
                    || self.union_cost(ef, b.parts()) < self.whole_cost(ef, pred)
                {
                    return self.union_search(m, k, ef, b.parts());
                }
            }
        }
        if !small {
            if let Some(found) = self.value_graph_search(m, k, ef, pred) {
                return found;
            }
        }
        if let Some(found) = self.ordered_search(m, ef, pred, small) {
            return found;
        }
        let words = self.slots().div_ceil(64);
        let gatherable =
            estimate.is_some_and(|e| small || e as f64 <= GATHER_BELOW * self.live as f64);
        let mut bits: Option<(Vec<u64>, usize)> = None;
        // The exact matches, by the cheapest of: the posting list when one list names exactly
        // the matches; a bitmap built from the lists when several do (no sort), or when an
        // `$and` or `$or` of indexed parts combines several; the lists' candidates tested one
        // by one.
        let exact_gather = gatherable && pred.gather_is_exact();
        let one_list = exact_gather && pred.is_one_list();
        if let Some(n) = estimate.filter(|_| exact_gather && !one_list && disjoint_lists()) {
            // Several lists, no slot in two: when the exact pass wins, it reads them in place,
            // one after the other, with no bitmap built and scanned. (With disjoint lists the
            // estimate is the number of matches; the plan is chosen before the lists are
            // collected, as a range may span thousands of lists that a walk would not read.)
            let selectivity = n as f64 / self.live.max(1) as f64;
            if small || self.cheapest_plan(ef, n, selectivity) == Plan::Exact {
                // Long lists only: many short ones (a float range over few records a value)
                // are read in value order, i.e. scattered over the slots, where the bitmap's
                // slot order streams (words-minilm `lt_10%`, 4,954 matches in 992 lists: 0.85x
                // in place).
                if let Some(lists) = pred
                    .disjoint_lists()
                    .filter(|l| l.len().saturating_mul(DISJOINT_LIST_MIN) <= n)
                {
                    let n = lists.iter().map(|l| l.len()).sum();
                    return self.exact_pass(m, n, lists.into_iter().flatten().copied());
                }
            }
        }
        let bitmap_cost = (!one_list && (exact_gather || !small))
            .then(|| pred.bitmap_cost())
            .flatten()
            .filter(|&c| exact_gather || c <= self.bitmap_limit(ef, estimate.unwrap_or(self.live)));
        if let Some(b) = bitmap_cost
            .is_some()
            .then(|| pred.bitmap(&|| self.live_bits(), words))
            .flatten()
        {
            let n = b.iter().map(|w| w.count_ones() as usize).sum();
            if small {
                return self.exact_pass(m, n, bit_slots(&b));
            }
            bits = Some((b, n));
        } else if let Some(list) = one_list.then(|| pred.one_list()).flatten() {
            // One posting list names exactly the matches: read in place.
            let selectivity = list.len() as f64 / self.live.max(1) as f64;
            if small || self.cheapest_plan(ef, list.len(), selectivity) == Plan::Exact {
                return self.exact_pass(m, list.len(), list.iter().copied());
            }
            let mut b = vec![0u64; words];
            set_bits(&mut b, list);
            bits = Some((b, list.len()));
        } else if let Some(cands) = gatherable.then(|| pred.gather()).flatten() {
            let matches: Vec<u32> = if exact_gather {
                cands
            } else {
                cands
                    .into_iter()
                    .filter(|&s| self.pred_matches(pred, s as usize))
                    .collect()
            };
            let selectivity = matches.len() as f64 / self.live.max(1) as f64;
            if small || self.cheapest_plan(ef, matches.len(), selectivity) == Plan::Exact {
                return self.exact_pass(m, matches.len(), matches.into_iter());
            }
            let mut b = vec![0u64; words];
            set_bits(&mut b, &matches);
            bits = Some((b, matches.len()));
        }
        let found = if let Some((bits, n)) = bits {
            let selectivity = n as f64 / self.live.max(1) as f64;
            match self.cheapest_plan(ef, n, selectivity) {
                Plan::Exact => {
                    return self.exact_pass(m, n, bit_slots(&bits));
                }
                Plan::TwoHop => self.graph.search_two_hop(m.walk, m.walk_keep(ef), ef, |s| {
                    bits[s as usize / 64] & (1 << (s % 64)) != 0
                }),
                Plan::Walk => {
                    let ef = walk_ef(ef, m.keep, selectivity);
                    self.graph
                        .search_filtered(m.walk, m.walk_keep(ef), ef, |s| {
                            bits[s as usize / 64] & (1 << (s % 64)) != 0
                        })
                }
            }
        } else {
            if small {
                return self.scan(m.walk, m.keep, |s| self.pred_matches(pred, s));
            }
            let selectivity = match estimate {
                Some(e) => e as f64 / self.live.max(1) as f64,
                None => self.sample(|s| pred.matches(s as u32, &self.metadata)),
            };
            if selectivity < SCAN_SELECTIVITY {
                return self.scan(m.walk, m.keep, |s| self.pred_matches(pred, s));
            }
            let (filtered, two_hop) = self.filtered_costs(selectivity);
            if two_hop < filtered {
                self.graph.search_two_hop(m.walk, m.walk_keep(ef), ef, |s| {
                    self.pred_matches(pred, s as usize)
                })
            } else {
                let ef = walk_ef(ef, m.keep, selectivity);
                self.graph
                    .search_filtered(m.walk, m.walk_keep(ef), ef, |s| {
                        self.pred_matches(pred, s as usize)
                    })
            }
        };
        if found.len() < k {
            return self.scan(m.walk, m.keep, |s| self.pred_matches(pred, s));
        }
        found
    }

    /// An exact pass over the value-ordered codes of an integer or float index (see
    /// [`crate::ordered_codes`]), when the filter is one range on it, the pass runs on the
    /// int8 codes, and the modelled cost (its entries streamed at [`ORDERED_LINE`] of a
    /// scattered line each, its delta gathered) puts it below the exact pass that gathers the
    /// matches and below the walks. `None`: not such a filter, or a cheaper plan.
    fn ordered_search<W: Metric, E: Metric, F: Metric>(
        &self,
        m: &Metrics<W, E, F>,
        ef: usize,
        pred: &Pred,
        small: bool,
    ) -> Option<Vec<Cand>> {
        let mode = ordered_passes();
        if mode == OrderedPasses::Never {
            return None;
        }
        let query = m.exact.as_codes()?;
        let (index, lo, hi) = pred.numeric_range()?;
        let column = self.ordered.get(&index.path.dotted())?;
        if mode == OrderedPasses::Model {
            let entries = column.range(lo, hi).len();
            let delta = column.len().1;
            if small || entries < crate::codes::MIN_MATCHES {
                return None;
            }
            let (vector, _) = self.line_costs();
            let cost = entries as f64 * vector * ORDERED_LINE + delta as f64 * (vector + 1.0);
            let selectivity = entries as f64 / self.live.max(1) as f64;
            let (walk, per_match) = self.walk_cost(ef);
            let (filtered, two_hop) = self.filtered_costs(selectivity);
            if cost > (walk * filtered.min(two_hop)).min(entries as f64 * per_match) {
                return None;
            }
        }
        let mut best = TopK::new(m.keep_exact);
        column.pass(
            query,
            lo,
            hi,
            |s| self.pred_matches(pred, s as usize),
            &mut best,
        );
        Some(best.into_vec())
    }

    /// The walk of a value's own graph (see [`crate::value_graphs`]), when the filter is
    /// that value (`{"tags": "c"}`, `$in` of one) or an `$and` with such a part, and the
    /// modelled cost says it beats both an exact pass over the matches and a walk of the main
    /// graph. The other parts of an `$and` are tested inside the walk (a filtered walk of the
    /// value's graph, its beam widened by the share of the value's records that pass them, from
    /// a sample). `None`: no such graph, a cheaper plan, or fewer than `k` found (the caller's
    /// plans then answer).
    fn value_graph_search<W: Metric, E: Metric, F: Metric>(
        &self,
        m: &Metrics<W, E, F>,
        k: usize,
        ef: usize,
        pred: &Pred,
    ) -> Option<Vec<Cand>> {
        let plan = self.value_graph_plan(ef, pred)?;
        if !plan.wins {
            return None;
        }
        let ValuePlan {
            graph,
            rest,
            within,
            ..
        } = plan;
        let query = MappedQuery {
            inner: m.walk,
            slots: &graph.slots,
        };
        let ef = if rest.is_empty() {
            ef
        } else {
            walk_ef(ef, m.keep, within)
        };
        let found = graph
            .graph
            .search_filtered(&query, m.walk_keep(ef), ef, |id| {
                !graph.dead[id as usize]
                    && rest
                        .iter()
                        .all(|p| p.matches(graph.slots[id as usize], &self.metadata))
            });
        (found.len() >= k).then(|| crate::value_graphs::to_slots(found, &graph.slots))
    }

    /// The walk of a value's graph a filter could take (see [`Self::value_graph_search`]): the
    /// graph, the filter's other parts, the share of the value's records that pass them (from a
    /// sample), the walk's modelled cost in cache lines and whether it beats the other plans.
    fn value_graph_plan<'q, 'p>(
        &'p self,
        ef: usize,
        pred: &'q Pred<'p>,
    ) -> Option<ValuePlan<'q, 'p>> {
        if self.value_graphs.is_empty() {
            return None;
        }
        let parts: Vec<&'q Pred<'p>> = match pred {
            Pred::And(c) => c.iter().collect(),
            p => vec![p],
        };
        let (at, graph, list) = parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.value_graph_of_part(p).map(|(g, l)| (i, g, l)))
            .min_by_key(|(_, _, l)| l.len())?;
        let rest: Vec<&'q Pred<'p>> = parts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, p)| *p)
            .collect();
        let within = if rest.is_empty() {
            1.0
        } else {
            let step = (list.len() / SELECTIVITY_SAMPLE).max(1);
            let (mut seen, mut hit) = (0usize, 0usize);
            for &s in list.iter().step_by(step) {
                seen += 1;
                if rest.iter().all(|p| p.matches(s, &self.metadata)) {
                    hit += 1;
                }
            }
            hit as f64 / seen.max(1) as f64
        };
        let matches = within * list.len() as f64;
        let (walk, exact_per_match) = self.walk_cost(ef);
        let exact = matches * exact_per_match;
        let value_walk = walk * within.clamp(1e-9, 1.0).powf(WALK_BEAM_EXP - 1.0);
        let (filtered, two_hop) = self.filtered_costs(matches / self.live.max(1) as f64);
        let wins = value_walk < exact && value_walk < walk * filtered.min(two_hop);
        Some(ValuePlan {
            graph,
            rest,
            within,
            cost: value_walk,
            wins,
        })
    }

    /// The branches a filter may be searched as a union of (see [`Self::union_search`]): the
    /// parts of an `$or` (at least two), or the values of an `$in` on an index with value graphs
    /// when one of them has a graph (each such value a branch, the others together one).
    fn union_branches<'q, 'p>(&self, pred: &'q Pred<'p>) -> Option<Branches<'q, 'p>> {
        match pred {
            Pred::Or(c) if c.len() >= 2 => Some(Branches::Parts(c)),
            Pred::And(c) if c.len() == 1 => self.union_branches(&c[0]),
            Pred::Field {
                index,
                ops,
                missing: false,
                path,
                raw,
            } if index.irregular.is_empty() => {
                let [COp::Any(KeySet::Keys(keys))] = ops.as_slice() else {
                    return None;
                };
                if keys.len() < 2 {
                    return None;
                }
                let graphs = self.value_graphs.get(&index.path.dotted())?;
                let (own, others): (Vec<u64>, Vec<u64>) =
                    keys.iter().partition(|k| graphs.contains_key(k));
                if own.is_empty() {
                    return None;
                }
                let branch = |keys: Vec<u64>| Pred::Field {
                    index,
                    ops: vec![COp::Any(KeySet::Keys(keys))],
                    missing: false,
                    path,
                    raw,
                };
                let mut parts: Vec<Pred<'p>> = own.into_iter().map(|k| branch(vec![k])).collect();
                if !others.is_empty() {
                    parts.push(branch(others));
                }
                Some(Branches::Owned(parts))
            }
            _ => None,
        }
    }

    /// The modelled cost, in cache lines, of the plan [`Self::planned_search`] would take for
    /// `pred` as a whole (not as a union): an exact pass over the matches when the posting
    /// lists can name them, a scan when they cannot and few match, a filtered or two-hop walk of
    /// the main graph, a value graph's walk — the cheapest.
    fn whole_cost(&self, ef: usize, pred: &Pred) -> f64 {
        let live = self.live.max(1) as f64;
        let (walk, per_match) = self.walk_cost(ef);
        let estimate = pred.estimate();
        let matches = match estimate {
            Some(e) => e as f64,
            None => self.sample(|s| pred.matches(s as u32, &self.metadata)) * live,
        };
        let selectivity = (matches / live).min(1.0);
        let (filtered, two_hop) = self.filtered_costs(selectivity);
        let mut cost = walk * filtered.min(two_hop);
        if estimate.is_some_and(|e| e as f64 <= GATHER_BELOW * live) {
            cost = cost.min(matches * per_match);
        } else if estimate.is_none() && selectivity < SCAN_SELECTIVITY {
            cost = live * per_match;
        }
        if let Some(v) = self.value_graph_plan(ef, pred) {
            cost = cost.min(v.cost);
        }
        cost
    }

    /// The modelled cost of the plan [`Self::planned_search`] would take for `pred`: as a
    /// whole, or as a union of its branches when that costs less.
    fn plan_cost(&self, ef: usize, pred: &Pred) -> f64 {
        let whole = self.whole_cost(ef, pred);
        match self.union_branches(pred) {
            Some(b) => whole.min(self.union_cost(ef, b.parts())),
            None => whole,
        }
    }

    /// The modelled cost of a union: each branch's plan, and the merge (each branch's
    /// candidates re-ranked: a walk's `ef` distances).
    fn union_cost(&self, ef: usize, parts: &[Pred]) -> f64 {
        let (vector, _) = self.line_costs();
        parts
            .iter()
            .map(|p| self.plan_cost(ef, p) + ef as f64 * vector)
            .sum()
    }

    /// A filter searched as the union of its branches (an `$or`'s parts, an `$in`'s values):
    /// each branch planned on its own ([`Self::planned_search`]: a value graph's walk, an exact
    /// pass over its matches, a walk of the main graph) for its `k` nearest (or all it keeps),
    /// merged, a record found by several branches kept once. Every branch's matches match the
    /// filter, and each gives its `k` nearest when it has `k`: the merge holds the filter's `k`
    /// nearest (as well as each branch's plan finds them) and `k` whenever `k` match.
    fn union_search<W: Metric, E: Metric, F: Metric>(
        &self,
        m: &Metrics<W, E, F>,
        k: usize,
        ef: usize,
        parts: &[Pred],
    ) -> Vec<Cand> {
        let mut all = Vec::new();
        for p in parts {
            all.extend(self.planned_search(m, k, ef, p));
        }
        // A record in several branches: kept once, at its smallest distance.
        all.sort_unstable_by(|a, b| a.id.cmp(&b.id).then(a.d.total_cmp(&b.d)));
        all.dedup_by_key(|c| c.id);
        all.sort_unstable();
        if !m.whole_beam {
            // One metric throughout (the caller keeps what it is given): the nearest `keep`.
            all.truncate(m.keep.max(k));
        }
        all
    }

    /// The graph of the value a filter part is (an equality or `$in` of one on an index with
    /// value graphs and no irregular slots), and the value's posting list.
    fn value_graph_of_part<'p>(&'p self, part: &Pred<'p>) -> Option<(&'p ValueGraph, &'p [u32])> {
        let Pred::Field { index, ops, .. } = part else {
            return None;
        };
        if !index.irregular.is_empty() {
            return None;
        }
        let [COp::Any(KeySet::Keys(keys))] = ops.as_slice() else {
            return None;
        };
        let [key] = keys.as_slice() else {
            return None;
        };
        let graph = self.value_graphs.get(&index.path.dotted())?.get(key)?;
        let list = index.postings.get(key)?;
        Some((graph, list))
    }

    /// The live slots as a bitmap.
    fn live_bits(&self) -> Vec<u64> {
        let mut b = vec![0u64; self.slots().div_ceil(64)];
        for (s, _) in self.deleted.iter().enumerate().filter(|(_, d)| !d) {
            b[s / 64] |= 1 << (s % 64);
        }
        b
    }

    /// The most posting-list entries worth reading into a bitmap for a walk expected to test
    /// about `ef · 2m / selectivity` nodes (a bit set costs a few times less than a test on
    /// the typed columns).
    fn bitmap_limit(&self, ef: usize, estimate: usize) -> usize {
        let visits =
            (ef.max(16) * 2 * self.config.m) as f64 * self.live as f64 / estimate.max(1) as f64;
        (BITMAP_PER_VISIT * visits) as usize
    }

    /// The plan of least modelled cost for `matches` known matches (see [`WALK_VISITS`]).
    fn cheapest_plan(&self, ef: usize, matches: usize, selectivity: f64) -> Plan {
        let (walk, exact_per_match) = self.walk_cost(ef);
        let exact = matches as f64 * exact_per_match;
        let (filtered, two_hop) = self.filtered_costs(selectivity);
        if exact <= walk * filtered.min(two_hop) {
            Plan::Exact
        } else if two_hop < filtered {
            Plan::TwoHop
        } else {
            Plan::Walk
        }
    }

    /// The modelled cost of an unfiltered walk at `ef`, and of one exact distance, in cache
    /// lines (see [`WALK_VISITS`]).
    fn walk_cost(&self, ef: usize) -> (f64, f64) {
        let (vector, node) = self.line_costs();
        let walk = WALK_VISITS * (ef.max(16) * self.config.m) as f64 * (vector + node);
        let exact = match self.active_codes() {
            Some(_) => vector + CODES_MATCH_LINES,
            None => vector,
        };
        (walk, exact)
    }

    /// The int8 codes filtered searches use, if any (see [`crate::codes`]).
    fn active_codes(&self) -> Option<&InlineCodes> {
        self.codes.as_ref().filter(|_| crate::codes::enabled())
    }

    /// Cache lines per vector (`L`: what a filtered search's distance reads, the f32 vector or,
    /// with int8 codes, the slot's block of `ceil((dim + 8) / 64)` lines) and per visited node
    /// besides its vector (`H`).
    fn line_costs(&self) -> (f64, f64) {
        let vector = match self.active_codes() {
            Some(codes) => codes.lines() as f64,
            None => (4 * self.dim) as f64 / 64.0,
        };
        let node = (4 * (2 * self.config.m + 1)) as f64 / 64.0 + 1.0;
        (vector, node)
    }

    /// The modelled costs, in unfiltered walks, of a filtered walk (beam
    /// [`walk_ef`]) and of a two-hop walk (infinite at or above [`TWO_HOP_BELOW`]).
    fn filtered_costs(&self, selectivity: f64) -> (f64, f64) {
        let (vector, node) = self.line_costs();
        let filtered = selectivity.clamp(1e-9, 1.0).powf(WALK_BEAM_EXP - 1.0);
        let two_hop = if selectivity < TWO_HOP_BELOW {
            TWO_HOP_WALKS * (vector + 3.0 * node) / (vector + node)
        } else {
            f64::INFINITY
        };
        (filtered, two_hop)
    }

    /// The share of live records a sample of evenly spaced slots says pass `test`.
    fn sample(&self, test: impl Fn(usize) -> bool) -> f64 {
        let n = self.slots();
        let step = (n / SELECTIVITY_SAMPLE).max(1);
        let (mut seen, mut hit) = (0usize, 0usize);
        for s in (0..n).step_by(step) {
            if self.deleted[s] {
                continue;
            }
            seen += 1;
            if test(s) {
                hit += 1;
            }
        }
        if seen == 0 {
            0.0
        } else {
            hit as f64 / seen as f64
        }
    }

    /// An exact pass over `n` matches: by `m.exact` keeping `m.keep_exact`, or by `m.few`
    /// keeping `m.keep_few` below [`crate::codes::MIN_MATCHES`] (where a re-rank of the codes'
    /// best costs more than the codes save).
    fn exact_pass<W: Metric, E: Metric, F: Metric>(
        &self,
        m: &Metrics<W, E, F>,
        n: usize,
        slots: impl Iterator<Item = u32>,
    ) -> Vec<Cand> {
        if n >= crate::codes::MIN_MATCHES {
            self.exact(m.exact, m.keep_exact, slots)
        } else {
            self.exact(m.few, m.keep_few, slots)
        }
    }

    /// The `keep` nearest of the given slots (ascending) by `query`, fetching every cache
    /// line of each slot's vector (or codes) [`Metric::AHEAD`] slots ahead: the slots are
    /// scattered, so without it each is a string of cache misses.
    fn exact<M: Metric>(
        &self,
        query: &M,
        keep: usize,
        slots: impl Iterator<Item = u32>,
    ) -> Vec<Cand> {
        let ahead = const {
            if M::AHEAD < EXACT_AHEAD {
                M::AHEAD
            } else {
                EXACT_AHEAD
            }
        };
        let mut best = TopK::new(keep);
        let mut window = [0u32; EXACT_AHEAD];
        let mut n = 0usize;
        for s in slots {
            query.fetch_all(s);
            let at = n % ahead;
            if n >= ahead {
                let due = window[at];
                best.offer(Cand {
                    d: query.dist(due),
                    id: due,
                });
            }
            window[at] = s;
            n += 1;
        }
        for i in n.saturating_sub(ahead)..n {
            let due = window[i % ahead];
            best.offer(Cand {
                d: query.dist(due),
                id: due,
            });
        }
        best.into_vec()
    }

    // ---- payload indexes and set operations ---------------------------------------------------

    /// Checks an index declaration and fills the new index from every live record (what
    /// [`Collection::reserve_index_value_graphs`] and [`Collection::apply_create_index`] take).
    pub fn prepare_index(&self, path: &str, kind: IndexKind) -> Result<PayloadIndex> {
        let parsed = crate::payload::parse_path(&self.name, path)?;
        let dotted = parsed.dotted();
        if let Some(existing) = self.indexes.get(&dotted) {
            return Err(Error::IndexExists {
                collection: self.name.clone(),
                path: dotted,
                kind: existing.kind.name().to_string(),
            });
        }
        let mut idx = PayloadIndex::new(parsed, kind);
        for s in 0..self.slots() {
            if !self.deleted[s] {
                idx.insert(s as u32, self.metadata[s].as_ref());
            }
        }
        idx.grow(self.slots());
        Ok(idx)
    }

    /// Makes room for the value graphs that adding `idx` (filled by
    /// [`Collection::prepare_index`]) will build: an empty graph with room for all its records
    /// for every eligible value, kept as a spare that [`Collection::build_value_graphs`] takes.
    /// Called before the declaration is logged; an error (the system refused the memory)
    /// changes nothing.
    pub fn reserve_index_value_graphs(&mut self, idx: &PayloadIndex) -> Result<()> {
        self.spare_value_graphs.clear();
        if idx.kind == IndexKind::Float || !idx.value_graphs {
            return Ok(());
        }
        let path = idx.path.dotted();
        let shells = self.value_graph_shells(idx, &path)?;
        self.spare_value_graphs = shells
            .into_iter()
            .map(|(key, g)| ((path.clone(), key), g))
            .collect();
        Ok(())
    }

    /// An empty graph with room for all its records for every value of `idx` (on `path`) that
    /// `value_graphs::eligible` says should have one, in value order; an error if the system
    /// refuses the memory of any.
    fn value_graph_shells(&self, idx: &PayloadIndex, path: &str) -> Result<Vec<(u64, ValueGraph)>> {
        let (m, efc) = (
            self.config.m,
            crate::value_graphs::ef_construction(self.config.ef_construction),
        );
        let mut shells = Vec::new();
        for (&key, list) in &idx.postings {
            if crate::value_graphs::eligible(list.len(), self.live) {
                let mut g = ValueGraph::new(m, efc);
                g.try_reserve(list.len()).map_err(|e| {
                    Error::io(
                        format!(
                            "allocating room for the value graphs of '{path}' in collection '{}'",
                            self.name
                        ),
                        e,
                    )
                })?;
                shells.push((key, g));
            }
        }
        Ok(shells)
    }

    /// Adds a new index, filled by [`Collection::prepare_index`], and builds its value graphs
    /// (into the room [`Collection::reserve_index_value_graphs`] made).
    pub fn apply_create_index(&mut self, idx: PayloadIndex) {
        let path = idx.path.dotted();
        self.indexes.insert(path.clone(), idx);
        self.sync_codes();
        self.build_value_graphs(&path);
    }

    /// Builds the graph of every value of the index on `path` that
    /// `value_graphs::eligible` says should have one (keyword, integer and bool indexes), in
    /// key order, each over its records in slot order; replaces any graphs the path had. (The
    /// planner walks them only while the index has no irregular slot: a record whose value the
    /// index cannot hold may still match by its JSON, and is in no graph.)
    pub fn build_value_graphs(&mut self, path: &str) {
        self.value_graphs.remove(path);
        self.waiting_value_graphs.remove(path);
        let Some(idx) = self.indexes.get(path) else {
            return;
        };
        if idx.kind == IndexKind::Float || !idx.value_graphs {
            return;
        }
        let keys: Vec<u64> = idx
            .postings
            .iter()
            .filter(|(_, list)| crate::value_graphs::eligible(list.len(), self.live))
            .map(|(&k, _)| k)
            .collect();
        let mut graphs = BTreeMap::new();
        for key in keys {
            let spare = self.spare_value_graphs.remove(&(path.to_string(), key));
            graphs.insert(key, self.value_graph_of(path, key, spare));
        }
        if !graphs.is_empty() {
            self.value_graphs.insert(path.to_string(), graphs);
        }
        self.find_waiting_value_graphs(path);
    }

    /// Fills [`Collection::waiting_value_graphs`] for `path` from its index and graphs: every
    /// value held by at least `value_graphs::min_records` live records with no graph.
    pub fn find_waiting_value_graphs(&mut self, path: &str) {
        self.waiting_value_graphs.remove(path);
        let Some(idx) = self.indexes.get(path) else {
            return;
        };
        if idx.kind == IndexKind::Float || !idx.value_graphs {
            return;
        }
        let graphs = self.value_graphs.get(path);
        let min = crate::value_graphs::min_records();
        let waiting: BTreeSet<u64> = idx
            .postings
            .iter()
            .filter(|(k, list)| list.len() >= min && !graphs.is_some_and(|g| g.contains_key(k)))
            .map(|(&k, _)| k)
            .collect();
        if !waiting.is_empty() {
            self.waiting_value_graphs.insert(path.to_string(), waiting);
        }
    }

    /// Gives every waiting value (see [`Collection::waiting_value_graphs`]) that is now
    /// [`eligible`](crate::value_graphs::eligible) its graph, in path and key order, and drops
    /// the values that fell below the threshold. Called after every write (each record of a
    /// batch, each delete, each metadata change), so a value gets its graph at the first write
    /// after which it is held by at least the threshold and at most half the live records —
    /// also when it crossed the threshold while held by more than half (a load sorted by the
    /// field) — at the same command on every replica. A graph, once made, is kept while its
    /// index lives, even if its value later falls below the threshold or rises above half the
    /// records: the planner's cost model decides whether to walk it, and dropping and building
    /// again as a count wavers around a bound would cost a build per crossing.
    fn build_due_value_graphs(&mut self) {
        if self.waiting_value_graphs.is_empty() {
            return;
        }
        let min = crate::value_graphs::min_records();
        let live = self.live;
        let mut due: Vec<(String, u64)> = Vec::new();
        for (path, keys) in self.waiting_value_graphs.iter_mut() {
            let postings = self.indexes.get(path).map(|i| &i.postings);
            keys.retain(|k| {
                let count = postings.and_then(|p| p.get(k)).map_or(0, Vec::len);
                if count < min {
                    return false;
                }
                if crate::value_graphs::eligible(count, live) {
                    due.push((path.clone(), *k));
                    return false;
                }
                true
            });
        }
        self.waiting_value_graphs.retain(|_, keys| !keys.is_empty());
        for (path, key) in due {
            let spare = self.spare_value_graphs.remove(&(path.clone(), key));
            let g = self.value_graph_of(&path, key, spare);
            self.value_graphs.entry(path).or_default().insert(key, g);
        }
    }

    /// A fresh graph over the live records holding `key` in the index on `path`, in `spare`
    /// (empty, its room reserved) if given.
    fn value_graph_of(&self, path: &str, key: u64, spare: Option<ValueGraph>) -> ValueGraph {
        let mut g = spare.unwrap_or_else(|| {
            ValueGraph::new(
                self.config.m,
                crate::value_graphs::ef_construction(self.config.ef_construction),
            )
        });
        let space = self.space();
        if let Some(list) = self.indexes.get(path).and_then(|i| i.postings.get(&key)) {
            for &slot in list {
                let level =
                    Graph::level_for(self.config.seed, &self.ids[slot as usize], self.config.m);
                g.insert(&space, slot, level);
            }
        }
        g
    }

    /// The keys live slot `slot` holds in the index on `path` (none if irregular or missing).
    fn slot_key_list(&self, path: &str, slot: u32) -> Vec<u64> {
        match self.indexes.get(path).map(|i| i.slot_keys(slot)) {
            Some(crate::payload::SlotKeys::Keys(keys)) => keys.to_vec(),
            _ => Vec::new(),
        }
    }

    /// `slot` (live, its index entries made) joins the graphs of the values it holds; a value
    /// without a graph held by at least the threshold waits for one
    /// ([`Collection::build_due_value_graphs`], after the write) — so the graphs depend on the
    /// writes and their order alone.
    fn enter_value_graphs(&mut self, slot: u32) {
        let paths: Vec<String> = self
            .indexes
            .iter()
            .filter(|(_, i)| i.kind != IndexKind::Float && i.value_graphs)
            .map(|(p, _)| p.clone())
            .collect();
        for path in paths {
            for key in self.slot_key_list(&path, slot) {
                let exists = self
                    .value_graphs
                    .get(&path)
                    .is_some_and(|g| g.contains_key(&key));
                if exists {
                    let level =
                        Graph::level_for(self.config.seed, &self.ids[slot as usize], self.config.m);
                    let space = Space::of(&self.vectors, self.dim, self.kernel);
                    if let Some(g) = self
                        .value_graphs
                        .get_mut(&path)
                        .and_then(|g| g.get_mut(&key))
                    {
                        g.insert(&space, slot, level);
                    }
                    continue;
                }
                let count = self.indexes[&path].postings.get(&key).map_or(0, Vec::len);
                if count >= crate::value_graphs::min_records() {
                    // Checked (and maybe built) by `build_due_value_graphs` after the write.
                    self.waiting_value_graphs
                        .entry(path.clone())
                        .or_default()
                        .insert(key);
                }
            }
        }
    }

    /// `slot` (still holding its index entries) leaves the graphs of the values it holds.
    fn leave_value_graphs(&mut self, slot: u32) {
        if self.value_graphs.is_empty() {
            return;
        }
        let paths: Vec<String> = self.value_graphs.keys().cloned().collect();
        for path in paths {
            for key in self.slot_key_list(&path, slot) {
                if let Some(g) = self
                    .value_graphs
                    .get_mut(&path)
                    .and_then(|g| g.get_mut(&key))
                {
                    g.leave(slot);
                }
            }
        }
    }

    /// Bytes of memory the value graphs of the index on `path` take.
    pub fn value_graphs_memory_bytes(&self, path: &str) -> usize {
        self.value_graphs
            .get(path)
            .map_or(0, |g| g.values().map(ValueGraph::memory_bytes).sum())
    }

    /// Drops the index on `path` (if any), and the int8 codes with the last index.
    pub fn apply_drop_index(&mut self, path: &str) {
        self.indexes.remove(path);
        self.value_graphs.remove(path);
        self.waiting_value_graphs.remove(path);
        self.sync_codes();
    }

    /// Builds the int8 codes of [`crate::codes`] when the collection should have them (no
    /// quantization — sq8 has codes of its own — and at least one payload index) and does not,
    /// and drops them when it should not. Called when an index is created or dropped and when
    /// a checkpoint is opened; every write keeps existing codes (`push_record`).
    pub fn sync_codes(&mut self) {
        let wanted = self.config.quantization == Quantization::None && !self.indexes.is_empty();
        match (wanted, self.codes.is_some()) {
            (true, false) => {
                let (vectors, dim) = (&self.vectors, self.dim);
                // None if the memory is refused: searches then read the f32 vectors.
                self.codes = InlineCodes::build(dim, |s| vectors.get(s * dim, dim), self.slots());
            }
            (false, true) => self.codes = None,
            _ => {}
        }
        self.sync_ordered();
    }

    /// Builds the value-ordered codes ([`crate::ordered_codes`]) of every integer and float
    /// index that has none, and drops those of indexes that are gone (all of them without
    /// codes). A column the system refuses the memory for is not built (searches use the
    /// other plans) until the next call.
    fn sync_ordered(&mut self) {
        let Some(codes) = &self.codes else {
            self.ordered.clear();
            return;
        };
        let indexes = &self.indexes;
        self.ordered.retain(|path, _| indexes.contains_key(path));
        for (path, idx) in indexes {
            if crate::ordered_codes::wanted(idx) && !self.ordered.contains_key(path) {
                if let Some(column) = OrderedCodes::build(idx, codes) {
                    self.ordered.insert(path.clone(), column);
                }
            }
        }
    }

    /// Marks `slot` written in every value-ordered column (see [`crate::ordered_codes`]).
    fn mark_written(&mut self, slot: u32) {
        for column in self.ordered.values_mut() {
            column.mark(slot);
        }
    }

    /// After a write: builds again each value-ordered column whose delta has grown past its
    /// bound, builds the missing column of an index that can have one (its records hold one
    /// value each again), and drops the column of one that cannot. So whether an index has a
    /// column is a function of the state (as after an open), unless a map was refused: a
    /// refused map keeps the column as it was (exact still, with a longer delta) or none, and
    /// the next write tries again.
    fn refresh_ordered(&mut self) {
        let Some(codes) = &self.codes else {
            return;
        };
        for (path, idx) in &self.indexes {
            if !crate::ordered_codes::wanted(idx) {
                continue;
            }
            let usable = idx.many.is_empty();
            match self.ordered.get_mut(path) {
                Some(_) if !usable => {
                    self.ordered.remove(path);
                }
                Some(column) if column.rebuild_due() => {
                    if let Some(fresh) = OrderedCodes::build(idx, codes) {
                        *column = fresh;
                    }
                }
                None if usable => {
                    if let Some(fresh) = OrderedCodes::build(idx, codes) {
                        self.ordered.insert(path.clone(), fresh);
                    }
                }
                _ => {}
            }
        }
    }

    /// Approximate bytes of memory the value-ordered codes of the index on `path` take (0
    /// without them): what a column built now takes, a block and 12 bytes a record, so that
    /// the figure is a function of the state (the same after a reopen), not of how long the
    /// delta has grown since the last build.
    pub fn ordered_memory_bytes(&self, path: &str) -> usize {
        match (self.ordered.get(path), &self.codes, self.indexes.get(path)) {
            (Some(_), Some(codes), Some(idx)) => {
                let records: usize = idx.postings.values().map(Vec::len).sum();
                records * (64 * codes.lines() + 12)
            }
            _ => 0,
        }
    }

    /// Whether the int8 codes are what [`Collection::sync_codes`] would build now: present
    /// exactly when wanted, and equal to the codes of every slot's vector. `None` when the
    /// collection has none and should have none.
    pub fn codes_are_fresh(&self) -> Option<bool> {
        let wanted = self.config.quantization == Quantization::None && !self.indexes.is_empty();
        match &self.codes {
            None if !wanted => None,
            None => Some(false),
            Some(_) if !wanted => Some(false),
            Some(codes) => {
                let (vectors, dim) = (&self.vectors, self.dim);
                Some(codes.encode_the_same(|s| vectors.get(s * dim, dim), self.slots()))
            }
        }
    }

    /// Bytes of memory the int8 codes of [`crate::codes`] take (0 without them).
    pub fn codes_memory_bytes(&self) -> usize {
        self.codes.as_ref().map_or(0, InlineCodes::memory_bytes)
    }

    /// Gives back the memory past the items of each huge-page array (vectors, layer-0 links,
    /// codes; see [`Flat::release_tail`](crate::hnsw::Flat::release_tail)): after large
    /// one-off work, with the database's writer lock held (no write grows them meanwhile).
    pub fn release_tails(&self) {
        self.vectors.release_tail();
        self.graph.links0.release_tail();
        self.graph.upper.release_tail();
        if let Some(codes) = &self.codes {
            codes.release_tail();
        }
        for graphs in self.value_graphs.values() {
            for g in graphs.values() {
                g.graph.links0.release_tail();
            }
        }
    }

    /// The live slots matching `filter` (all live slots without one), in slot order.
    pub fn matching_slots(&self, filter: Option<&Filter>) -> Vec<u32> {
        let Some(filter) = filter else {
            return (0..self.slots() as u32)
                .filter(|&s| !self.deleted[s as usize])
                .collect();
        };
        let pred = Pred::compile(filter, &self.indexes);
        if let Some(cands) = pred.gather() {
            return cands
                .into_iter()
                .filter(|&s| self.pred_matches(&pred, s as usize))
                .collect();
        }
        (0..self.slots() as u32)
            .filter(|&s| self.pred_matches(&pred, s as usize))
            .collect()
    }

    /// Up to `limit` live records matching `filter` whose ids sort after `after`, in id order
    /// (bytes), as `(id, slot)`. Walks the ids in order from `after` (a range lookup), testing
    /// each against the filter (typed columns for indexed paths) until `limit` match: a page
    /// costs `O(log n + limit / selectivity)`, `O(log n + limit)` unfiltered. When the posting
    /// lists bound the matches to fewer than that walk would test, they are gathered and
    /// sorted instead (`O(matches · log matches)`).
    pub fn scroll(
        &self,
        filter: Option<&Filter>,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, u32)> {
        let deleted = &self.deleted;
        let ordered = self
            .index
            .ordered_after(&self.ids, after, |s| deleted[s as usize]);
        let Some(filter) = filter else {
            return ordered
                .take(limit)
                .map(|s| (self.ids[s as usize].to_string(), s))
                .collect();
        };
        let pred = Pred::compile(filter, &self.indexes);
        let few = pred
            .estimate()
            .is_some_and(|e| (e as f64) * (e as f64) <= limit as f64 * self.live.max(1) as f64);
        if let Some(cands) = few.then(|| pred.gather()).flatten() {
            let mut page: Vec<(&str, u32)> = cands
                .into_iter()
                .filter(|&s| self.pred_matches(&pred, s as usize))
                .map(|s| (&self.ids[s as usize], s))
                .filter(|(id, _)| after.is_none_or(|a| *id > a))
                .collect();
            if page.len() > limit {
                page.select_nth_unstable(limit);
                page.truncate(limit);
            }
            page.sort_unstable();
            return page
                .into_iter()
                .map(|(id, s)| (id.to_string(), s))
                .collect();
        }
        // `ordered` yields live slots only.
        ordered
            .filter(|&s| pred.matches(s, &self.metadata))
            .take(limit)
            .map(|s| (self.ids[s as usize].to_string(), s))
            .collect()
    }

    /// The `keep` nearest of the slots `accept` lets through, by `query`.
    fn scan<M: Metric>(&self, query: &M, keep: usize, accept: impl Fn(usize) -> bool) -> Vec<Cand> {
        let mut best = TopK::new(keep);
        for s in 0..self.slots() {
            if accept(s) {
                best.offer(Cand {
                    d: query.dist(s as u32),
                    id: s as u32,
                });
            }
        }
        best.into_vec()
    }
}

/// Under sq8, the candidates re-ranked by their exact f32 distance: the `RERANK_FACTOR · k`
/// nearest of the beam by their int8 distance (the beam is `max(ef, k)` wide). On words-minilm
/// (k = 10, ef 32-128, `needle-ann`) recall@10 was the same to four decimals re-ranking 14,
/// 20, 32 or the whole beam, and 0.007-0.009 lower re-ranking only 10; glove50: see
/// docs/benchmarks-history.md. Each re-ranked vector costs a positioned read (below), so fewer is faster.
const RERANK_FACTOR: usize = 2;

/// Re-rank `ceil(tenths · k / 10)` candidates instead of `RERANK_FACTOR · k` where not 0: only
/// `needle-ab sq8` sets it (`__private::set_rerank_tenths`), to measure the re-rank.
pub(crate) static RERANK_TENTHS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Re-ranking stops at the first candidate whose int8 distance is more than this many standard
/// deviations of the quantization error ([`Sq8Query::error_sigma`]) beyond the `k`-th exact
/// distance found so far: the rest cannot be nearer unless an error is that large. glove50
/// (300 queries, the 20 best by int8 distance): 4σ skipped 6.3 of the 20 reads a query and
/// returned the same ten as re-ranking all 20; largest error seen 4.4σ (docs/benchmarks-history.md, issue
/// 12 round five).
const RERANK_SIGMAS: f32 = 4.0;

/// `RERANK_SIGMAS` in tenths where not `u32::MAX` (0: no cut): only `needle-ab sq8` sets it
/// (`__private::set_rerank_sigma_tenths`).
pub(crate) static RERANK_SIGMA_TENTHS: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(u32::MAX);

fn rerank_sigmas() -> f32 {
    match RERANK_SIGMA_TENTHS.load(std::sync::atomic::Ordering::Relaxed) {
        u32::MAX => RERANK_SIGMAS,
        t => t as f32 / 10.0,
    }
}

/// How many of the nearest candidates by int8 distance are re-ranked for `k` results.
fn rerank_count(k: usize) -> usize {
    match RERANK_TENTHS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => k.saturating_mul(RERANK_FACTOR),
        t => k.saturating_mul(t).div_ceil(10),
    }
}

impl Collection {
    /// The `k` nearest of `cands` (nearest first by their approximate distance, `query`'s) by
    /// their exact distance to `q`, looking at the first [`rerank_count`] only, and skipping
    /// those whose approximate distance is more than [`RERANK_SIGMAS`] standard deviations of
    /// the quantization error beyond the `k`-th exact distance so far. Vectors in memory are
    /// read in place (prefetching ahead); vectors mapped from the checkpoint are copied by
    /// positioned reads into one buffer ([`Vectors::read_into`]), so re-ranking never maps
    /// their pages into the process: under sq8 the f32 vectors stay out of its resident memory.
    fn rerank(
        &self,
        space: &Space,
        q: &[f32],
        query: &Sq8Query,
        mut cands: Vec<Cand>,
        k: usize,
    ) -> Result<Vec<Cand>> {
        const AHEAD: usize = 4;
        cands.truncate(rerank_count(k));
        let sigmas = rerank_sigmas();
        let mut buf = vec![0.0f32; self.dim];
        // The k smallest exact distances so far, largest first once there are k.
        let mut best = TopK::new(k);
        let mut ranked = Vec::with_capacity(cands.len());
        for (i, &c) in cands.iter().enumerate() {
            let beyond = sigmas > 0.0
                && best.full_worst().is_some_and(|worst| {
                    query
                        .error_sigma(c.id, c.d)
                        .is_some_and(|sigma| c.d - sigmas * sigma > worst.d)
                });
            if beyond {
                // Not read. The candidates after it are farther by int8 distance, but one whose
                // error is unknown (a vector outside the trained ranges) may still be nearer.
                continue;
            }
            let start = c.id as usize * self.dim;
            let d = if self.vectors.is_mapped(start, self.dim) {
                self.vectors.read_into(start, &mut buf).map_err(|e| {
                    Error::io(
                        format!("reading vectors of collection '{}' to re-rank", self.name),
                        e,
                    )
                })?;
                (space.kernel)(q, &buf)
            } else {
                if let Some(c) = cands.get(i + AHEAD) {
                    space.prefetch(c.id);
                }
                (space.kernel)(q, space.vector(c.id))
            };
            let c = Cand { d, id: c.id };
            best.offer(c);
            ranked.push(c);
        }
        let mut cands = ranked;
        cands.sort_unstable();
        cands.truncate(k);
        Ok(cands)
    }
}

/// What a filtered search measures distances with, by plan, and how many candidates each
/// keeps (more than `k` where the metric is approximate and the caller re-ranks).
struct Metrics<'a, W, E, F> {
    /// Walks and scans.
    walk: &'a W,
    keep: usize,
    /// Exact passes over at least [`crate::codes::MIN_MATCHES`] matches.
    exact: &'a E,
    keep_exact: usize,
    /// Exact passes over fewer.
    few: &'a F,
    keep_few: usize,
    /// Whether walks return their whole beam (at least `keep`), for the caller to re-rank.
    whole_beam: bool,
}

impl<W, E, F> Metrics<'_, W, E, F> {
    /// How many candidates a walk with a beam of `beam` returns.
    fn walk_keep(&self, beam: usize) -> usize {
        if self.whole_beam {
            self.keep.max(beam)
        } else {
            self.keep
        }
    }
}

impl<'a, M> Metrics<'a, M, M, M> {
    /// One metric for every plan.
    fn one(metric: &'a M, keep: usize) -> Self {
        Metrics {
            walk: metric,
            keep,
            exact: metric,
            keep_exact: keep,
            few: metric,
            keep_few: keep,
            whole_beam: false,
        }
    }
}

/// The `k` nearest of `cands` by their f32 distance to `q`, the vectors read in place.
fn rerank_in_memory(space: &Space, q: &[f32], mut cands: Vec<Cand>, k: usize) -> Vec<Cand> {
    const AHEAD: usize = 4;
    for i in 0..cands.len() {
        if let Some(c) = cands.get(i + AHEAD) {
            space.prefetch(c.id);
        }
        cands[i].d = (space.kernel)(q, space.vector(cands[i].id));
    }
    cands.sort_unstable();
    cands.truncate(k);
    cands
}

/// The error of a refused allocation of room for `slots` more records.
fn no_memory(collection: &str, slots: usize, what: &str, e: std::io::Error) -> Error {
    Error::io(
        format!("allocating room for {slots} more records ({what}) in collection '{collection}'"),
        e,
    )
}

/// Vectors, layer-0 links and the id index's hash table copied with room for a write, and the
/// id order merged where the write would merge it ([`Collection::prepared_room`]), `None` where
/// one has room already; or, returned by [`Collection::install_room`], what the copies replaced.
pub(crate) struct GrownRoom {
    vectors: Option<crate::hnsw::Flat<f32>>,
    links0: Option<crate::hnsw::Links0>,
    index: Option<crate::id_index::GrownTable>,
    order: Option<crate::id_index::MergedOrder>,
}

/// A chunk of a batch with its planned candidates, ready to be linked.
struct PlannedChunk {
    /// The slot the chunk's first record gets.
    first: u32,
    /// Records of the chunk linked so far.
    linked: usize,
    /// The slots the chunk tombstones, sorted.
    doomed: Vec<u32>,
    /// The records not linked yet, each with its level and its candidates per layer,
    /// nearest first.
    records: std::collections::VecDeque<(Prepared, u8, Vec<Vec<Cand>>)>,
}

/// A value graph's walk a filter could take ([`Collection::value_graph_plan`]).
struct ValuePlan<'q, 'p> {
    graph: &'p ValueGraph,
    /// The filter's parts besides the value, tested inside the walk.
    rest: Vec<&'q Pred<'p>>,
    /// The share of the value's records that pass `rest` (sampled).
    within: f64,
    /// The walk's modelled cost, in cache lines.
    cost: f64,
    /// Whether it costs less than an exact pass over the matches and the main graph's walks.
    wins: bool,
}

/// The branches of a union plan ([`Collection::union_branches`]).
enum Branches<'q, 'p> {
    /// An `$or`'s parts.
    Parts(&'q [Pred<'p>]),
    /// An `$in`'s values, split.
    Owned(Vec<Pred<'p>>),
}

impl<'p> Branches<'_, 'p> {
    fn parts(&self) -> &[Pred<'p>] {
        match self {
            Branches::Parts(p) => p,
            Branches::Owned(p) => p,
        }
    }
}

/// When filtered searches take union plans (an `$or` or a split `$in` searched branch by
/// branch): by the cost model (the default), always where one applies, or never — for tests
/// and benches that reach or compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnionPlans {
    Model = 0,
    Always = 1,
    Never = 2,
}

static UNION_PLANS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The union-plan mode in force (see [`UnionPlans`]).
fn union_plans() -> UnionPlans {
    match UNION_PLANS.load(std::sync::atomic::Ordering::Relaxed) {
        1 => UnionPlans::Always,
        2 => UnionPlans::Never,
        _ => UnionPlans::Model,
    }
}

/// When filtered searches run a range as an exact pass over its index's value-ordered codes
/// ([`crate::ordered_codes`]): by the cost model, wherever one applies (small collections
/// too), or never. For tests and benches that reach or compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderedPasses {
    Model = 0,
    Always = 1,
    Never = 2,
}

static ORDERED_PASSES: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The ordered-pass mode in force (see [`OrderedPasses`]).
fn ordered_passes() -> OrderedPasses {
    match ORDERED_PASSES.load(std::sync::atomic::Ordering::Relaxed) {
        1 => OrderedPasses::Always,
        2 => OrderedPasses::Never,
        _ => OrderedPasses::Model,
    }
}

pub(crate) fn set_ordered_passes(mode: OrderedPasses) {
    ORDERED_PASSES.store(mode as u8, std::sync::atomic::Ordering::Relaxed)
}

/// The modelled cost of a cache line an ordered pass streams, in scattered lines (the
/// hardware prefetcher runs ahead of a contiguous slice).
const ORDERED_LINE: f64 = 0.25;

/// The fewest entries a posting list holds on average for an exact pass to read disjoint lists
/// in place rather than in slot order through a bitmap (16: a cache line of slots).
const DISJOINT_LIST_MIN: usize = 16;

static DISJOINT_LISTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether exact passes read disjoint posting lists in place (see `Pred::disjoint_lists`;
/// on unless a bench turned it off to compare with the bitmap).
fn disjoint_lists() -> bool {
    DISJOINT_LISTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Turns the in-place pass over disjoint posting lists off or on, process-wide (benches).
pub(crate) fn set_disjoint_lists(on: bool) {
    DISJOINT_LISTS.store(on, std::sync::atomic::Ordering::Relaxed)
}

/// Sets the union-plan mode, process-wide (tests and benches only).
pub(crate) fn set_union_plans(mode: UnionPlans) {
    UNION_PLANS.store(mode as u8, std::sync::atomic::Ordering::Relaxed)
}

/// How a filtered search with a bitmap of its matches finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Exact distances to every match.
    Exact,
    /// ACORN-1: through matches only, two hops at a time.
    TwoHop,
    /// Through every node, a beam of matches.
    Walk,
}

/// The beam of a filtered walk through every node at `selectivity`: the walk explores about
/// `beam / selectivity` nodes, a neighbourhood wider than an unfiltered walk's for the same
/// beam, and its recall at `ef` is above the unfiltered one's (words-minilm: 0.996 at 25 %
/// against 0.985 unfiltered); a beam of `ef · selectivity^0.4` ([`WALK_BEAM_EXP`]) keeps recall
/// at the unfiltered level (glove50: 0.964–0.975 at 5–25 % against 0.956 unfiltered) while the
/// cost grows as `selectivity^-0.6` instead of `1 / selectivity`.
fn walk_ef(ef: usize, k: usize, selectivity: f64) -> usize {
    ((ef as f64 * selectivity.clamp(0.0, 1.0).powf(WALK_BEAM_EXP)).ceil() as usize).max(k)
}

/// The most slots ahead an exact pass fetches ([`Metric::AHEAD`]): 8 for f32 vectors (4, 8
/// and 16 measured the same on glove50, docs/benchmarks-history.md: that pass is bandwidth-bound), 16
/// for the int8 codes, one line a match.
const EXACT_AHEAD: usize = 16;

/// What a filtered search measures distances with: the f32 vectors ([`Exact`]) or the int8
/// codes of an sq8 collection. The walks need [`Query`]; the exact passes also fetch all of
/// a slot's vector ahead.
trait Metric: Query {
    /// How many slots ahead an exact pass fetches (at most [`EXACT_AHEAD`], a power of two).
    const AHEAD: usize = 8;
    /// Hints the CPU to fetch every cache line `dist(slot)` reads.
    fn fetch_all(&self, slot: u32);
    /// The query when it is one of the collection's int8 codes ([`crate::codes`]).
    fn as_codes(&self) -> Option<&CodesQuery<'_>> {
        None
    }
}

impl Metric for Exact<'_> {
    #[inline(always)]
    fn fetch_all(&self, slot: u32) {
        self.space.prefetch_all(slot);
    }
}

impl Metric for CodesQuery<'_> {
    /// One line a match: more in flight than for four-line f32 vectors (docs/benchmarks-history.md).
    const AHEAD: usize = 16;
    #[inline(always)]
    fn fetch_all(&self, slot: u32) {
        CodesQuery::prefetch_all(self, slot);
    }
    fn as_codes(&self) -> Option<&CodesQuery<'_>> {
        Some(self)
    }
}

impl Metric for Sq8Query<'_> {
    #[inline(always)]
    fn fetch_all(&self, slot: u32) {
        Sq8Query::prefetch_all(self, slot);
    }
}

/// The `k` nearest candidates offered so far, nearest first: a sorted array (k is small), a
/// candidate no nearer than the `k`-th tested before anything moves.
pub(crate) struct TopK {
    best: Vec<Cand>,
    k: usize,
    /// The k-th distance once `k` are held (infinite before): a candidate farther is out.
    bound: f32,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            best: Vec::with_capacity(k + 1),
            k,
            bound: f32::INFINITY,
        }
    }

    #[inline(always)]
    pub(crate) fn offer(&mut self, c: Cand) {
        // Most candidates of a long pass are farther than the k-th: one float comparison.
        if c.d > self.bound {
            return;
        }
        if self.best.len() >= self.k {
            match self.best.last() {
                Some(worst) if c < *worst => {
                    self.best.pop();
                }
                _ => return,
            }
        }
        let at = self.best.partition_point(|e| *e < c);
        self.best.insert(at, c);
        if let Some(worst) = self.best.last().filter(|_| self.best.len() >= self.k) {
            self.bound = worst.d;
        }
    }

    fn into_vec(self) -> Vec<Cand> {
        self.best
    }

    /// The `k`-th nearest, once `k` were offered.
    fn full_worst(&self) -> Option<Cand> {
        if self.best.len() >= self.k {
            self.best.last().copied()
        } else {
            None
        }
    }
}

/// The slots whose bits are set, ascending.
fn bit_slots(bits: &[u64]) -> impl Iterator<Item = u32> + '_ {
    bits.iter().enumerate().flat_map(|(w, &word)| {
        let mut word = word;
        std::iter::from_fn(move || {
            (word != 0).then(|| {
                let b = word.trailing_zeros();
                word &= word - 1;
                (w * 64) as u32 + b
            })
        })
    })
}

/// A search result by slot; the database turns it into a `SearchResult`.
pub(crate) struct Hit {
    pub slot: u32,
    pub distance: f32,
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_pool_follows_the_callers_thread_count_every_time() {
        // Before: the first call fixed the size for the process, so a first insert on a
        // one-thread pool left every later batch planning on one thread.
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("a test pool")
        };
        assert!(pool(1).install(build_pool).is_none());
        let two = pool(2)
            .install(build_pool)
            .expect("threads can be spawned here");
        assert_eq!(two.current_num_threads(), 2);
        let three = pool(3)
            .install(build_pool)
            .expect("threads can be spawned here");
        assert_eq!(three.current_num_threads(), 3);
        let again = pool(2)
            .install(build_pool)
            .expect("threads can be spawned here");
        assert!(std::ptr::eq(two, again), "one pool per size, kept");
    }

    fn records(n: usize, dim: usize, seed: u64, ids: impl Fn(usize) -> String) -> Vec<Prepared> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                let vector = (0..dim)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (x >> 40) as f32 / (1u64 << 24) as f32
                    })
                    .collect();
                Prepared {
                    id: ids(i),
                    vector,
                    metadata: None,
                }
            })
            .collect()
    }

    /// The reference: each chunk stored whole, then linked, every tombstone already in place.
    fn whole_chunks(c: &mut Collection, records: Vec<Prepared>) {
        for chunk in records.chunks(BATCH_CHUNK) {
            let planned = c.plan_chunk(chunk.to_vec());
            let mut plans = Vec::new();
            let mut slots = Vec::new();
            for (r, level, plan) in planned.records {
                slots.push(c.push_record(r, level));
                plans.push(plan);
            }
            let space = Space::of(&c.vectors, c.dim, c.kernel);
            let deleted = &c.deleted;
            for (slot, plan) in slots.iter().zip(plans) {
                c.graph
                    .apply_insert(&space, *slot, &plan, |n| deleted[n as usize]);
            }
        }
    }

    /// Linking a batch record by record in short locked steps (what the database does, so
    /// searches go on) builds the same graph as storing each chunk whole and then linking it —
    /// also when the batch replaces records of
    /// the collection and repeats its own ids, whose old slots every record of the chunk must
    /// see as tombstoned. Steps of one record each (a zero budget) and of the database's
    /// budget (as many as fit in its time, so varying with the machine) alike.
    #[test]
    fn stepwise_linking_builds_the_same_graph_as_whole_chunks() {
        let seed =
            needle_testkit::seed_or("stepwise_linking_builds_the_same_graph_as_whole_chunks", 7);
        let config = CollectionConfig {
            distance: Distance::Euclidean,
            m: 4,
            ef_construction: 16,
            ..CollectionConfig::default()
        };
        let first = records(300, 4, seed, |i| format!("r{i}"));
        // Replaces every third record, and repeats some ids inside a chunk.
        let second = records(400, 4, seed ^ 0xabc, |i| format!("r{}", i % 100 * 2));
        let mut whole = Collection::new("c", 4, config.clone());
        whole_chunks(&mut whole, first.clone());
        whole_chunks(&mut whole, second.clone());
        for budget in [Duration::ZERO, LINK_BUDGET] {
            let shared = RwLock::new(Collection::new("c", 4, config.clone()));
            Collection::apply_batch_in_holds(&shared, first.clone(), budget);
            Collection::apply_batch_in_holds(&shared, second.clone(), budget);
            let stepwise = shared.into_inner();
            assert_eq!(stepwise.deleted, whole.deleted);
            assert_eq!(stepwise.ids, whole.ids);
            assert_eq!(
                stepwise.graph, whole.graph,
                "seed {seed}, budget {budget:?}"
            );
        }
    }

    /// A hold of the write lock links records only until its budget has passed (at least one,
    /// so that a batch always advances): 16 records a hold made searches wait up to 0.9 ms.
    #[test]
    fn a_link_step_ends_once_its_budget_has_passed() {
        let seed = needle_testkit::seed_or("a_link_step_ends_once_its_budget_has_passed", 5);
        let config = CollectionConfig {
            distance: Distance::Euclidean,
            m: 4,
            ef_construction: 16,
            ..CollectionConfig::default()
        };
        let mut c = Collection::new("c", 4, config);
        c.apply_batch(records(50, 4, seed, |i| format!("a{i}")));
        let mut planned = c.plan_chunk(records(20, 4, seed ^ 1, |i| format!("b{i}")));
        assert!(c.link_some(&mut planned, Duration::ZERO), "seed {seed}");
        assert_eq!((planned.linked, c.slots()), (1, 51), "seed {seed}");
        assert!(c.link_some(&mut planned, Duration::ZERO), "seed {seed}");
        assert_eq!((planned.linked, c.slots()), (2, 52), "seed {seed}");
        assert!(!c.link_some(&mut planned, Duration::MAX), "seed {seed}");
        assert_eq!((planned.linked, c.slots()), (20, 70), "seed {seed}");
    }

    /// The arrays a batch grows are copied before the write lock is taken
    /// (`Collection::prepared_room`, under the read lock); under the write lock `reserve` then
    /// finds the room and moves nothing (the copy took up to 27 ms there: lock10; the id
    /// index's rehash, tidy12).
    #[test]
    fn room_prepared_under_the_read_lock_leaves_reserve_nothing_to_copy() {
        let seed = needle_testkit::seed_or(
            "room_prepared_under_the_read_lock_leaves_reserve_nothing_to_copy",
            3,
        );
        let config = CollectionConfig {
            distance: Distance::Euclidean,
            m: 4,
            ef_construction: 16,
            ..CollectionConfig::default()
        };
        let mut c = Collection::new("c", 8, config);
        c.apply_batch(records(100, 8, seed, |i| format!("a{i}")));
        let (vectors, links0) = (c.vectors.get(0, 8).as_ptr(), c.graph.links0.as_ptr());
        let room = c.prepared_room(10_000).expect("memory for a small test");
        drop(c.install_room(room));
        let grown = (c.vectors.get(0, 8).as_ptr(), c.graph.links0.as_ptr());
        assert!(grown.0 != vectors && grown.1 != links0, "both had to grow");
        let index_room = c.index.room();
        assert!(
            index_room >= 10_000,
            "the id index had to grow: {index_room}"
        );
        assert_eq!(c.index.tail_len(), 0, "the id order merged ahead");
        c.reserve(10_000).expect("room made");
        assert_eq!(
            (c.vectors.get(0, 8).as_ptr(), c.graph.links0.as_ptr()),
            grown
        );
        assert_eq!(
            c.index.room(),
            index_room,
            "reserve left the id index as installed"
        );
        // Same contents: the batch then builds what it builds without the prepared room.
        let mut plain = Collection::new("c", 8, c.config.clone());
        plain.apply_batch(records(100, 8, seed, |i| format!("a{i}")));
        let more = records(300, 8, seed ^ 2, |i| format!("b{i}"));
        plain.apply_batch(more.clone());
        c.apply_batch(more);
        assert_eq!(c.graph, plain.graph, "seed {seed}");
        assert!(
            c.vectors.chunks(8).eq(plain.vectors.chunks(8)),
            "seed {seed}"
        );
    }

    /// A room copied before a write (which only a second writer could make: the database's
    /// writer lock rules it out) holds the arrays as they were: `install_room` drops it, and the
    /// write's records stay. Installed anyway, the copy would drop the write's vectors and
    /// links (the arrays back at their old length), though `ids` still named its records.
    #[test]
    fn a_room_copied_before_a_write_is_not_installed_after_it() {
        let seed =
            needle_testkit::seed_or("a_room_copied_before_a_write_is_not_installed_after_it", 9);
        let config = CollectionConfig {
            distance: Distance::Euclidean,
            m: 4,
            ef_construction: 16,
            ..CollectionConfig::default()
        };
        let first = records(100, 8, seed, |i| format!("a{i}"));
        let more = records(60, 8, seed ^ 2, |i| format!("b{i}"));
        let mut c = Collection::new("c", 8, config.clone());
        c.apply_batch(first.clone());
        let room = c.prepared_room(10_000).expect("memory for a small test");
        c.apply_batch(more.clone());
        drop(c.install_room(room));
        c.reserve(10_000).expect("memory for a small test");
        for r in first.iter().chain(&more) {
            assert!(c.index.contains(&c.ids, &r.id), "{} kept", r.id);
        }
        let mut plain = Collection::new("c", 8, config);
        plain.apply_batch(first);
        plain.apply_batch(more);
        assert_eq!(c.graph, plain.graph, "seed {seed}");
        assert!(
            c.vectors.chunks(8).eq(plain.vectors.chunks(8)),
            "seed {seed}"
        );
    }

    /// A record planned in a chunk gets the `ef_construction` nearest of the graph's candidates
    /// and the chunk's earlier records, as a record-by-record build's search would return, not
    /// all of them (which built a different graph: docs/benchmarks-history.md, issue 12, speed7).
    #[test]
    fn chunk_plans_keep_the_ef_construction_nearest() {
        let seed = needle_testkit::seed_or("chunk_plans_keep_the_ef_construction_nearest", 11);
        let config = CollectionConfig {
            distance: Distance::Euclidean,
            m: 4,
            ef_construction: 16,
            ..CollectionConfig::default()
        };
        let mut c = Collection::new("c", 4, config);
        c.apply_batch(records(200, 4, seed, |i| format!("a{i}")));
        let chunk = records(BATCH_CHUNK, 4, seed ^ 0x5eed, |i| format!("b{i}"));
        let planned = c.plan_chunk(chunk);
        let first = planned.first;
        let space = c.space();
        for (i, (rec, _, plan)) in planned.records.iter().enumerate() {
            for (layer, cands) in plan.iter().enumerate() {
                assert!(
                    cands.len() <= 16,
                    "seed {seed}: record {i} has {} candidates on layer {layer}",
                    cands.len()
                );
                assert!(
                    cands.windows(2).all(|w| w[0] <= w[1]),
                    "seed {seed}: sorted"
                );
            }
            // Among its candidates are the chunk's earlier records nearer than the farthest
            // candidate kept (none of them dropped in favour of a farther one).
            if let Some(worst) = plan[0].last() {
                for j in 0..i {
                    let other = &planned.records[j].0;
                    let d = (space.kernel)(&rec.vector, &other.vector);
                    if d < worst.d {
                        let slot = first + j as u32;
                        assert!(
                            plan[0].iter().any(|c| c.id == slot),
                            "seed {seed}: record {i} lacks the nearer record {j}"
                        );
                    }
                }
            }
        }
    }
}
