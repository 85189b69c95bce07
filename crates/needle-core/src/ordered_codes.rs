//! A value-ordered copy of the int8 codes ([`crate::codes`]) for each integer and float payload
//! index: the blocks of the index's records sorted by the indexed value (ties in slot order),
//! beside their keys and slots, so that the matches of a range are one contiguous slice. An
//! exact pass over a range then streams those blocks (glove50's `price < 10`: 19,891 records,
//! 1.3 MB in one run) instead of gathering one scattered block a match, and its best are
//! re-ranked by their f32 vectors like every pass on the codes.
//!
//! Kept exact under writes without being rebuilt at each one: every slot a write touches (a
//! new record, a delete, a metadata change; a new vector is a new slot) is marked stale — its
//! entry, if it has one, is skipped, and the pass tests the slot itself from the index and the
//! codes in slot order (the *delta*). When the delta grows past [`rebuild_due`] the column is
//! built again from the index. Derived: never stored (built at open and when an index is
//! created), a function of the index and the codes, so the answers it gives are exact and the
//! same on every replica. Its memory comes from anonymous maps asked for at build time only;
//! a refused map leaves the column as it was (exact still, with a longer delta) or none, and
//! searches then use the other plans: building never fails a write.
//!
//! Knows nothing of filters: the caller gives the key range and the test of a delta slot.

use crate::codes::{CodesQuery, InlineCodes, RUN};
use crate::collection::TopK;
use crate::hnsw::{Cand, Query};
use crate::payload::{IndexKind, PayloadIndex};

/// The stale slots a column keeps before [`rebuild_due`] says to build it again: at least
/// this many, and at least 1/[`DELTA_SHARE`] of its entries (a rebuild costs one pass over
/// the index, amortised over as many writes; each delta slot costs a query a few ns).
const DELTA_MIN: usize = 512;
const DELTA_SHARE: usize = 64;

/// The codes of one numeric index's records, in value order.
pub(crate) struct OrderedCodes {
    /// The index key of each entry, ascending.
    keys: Vec<u64>,
    /// The slot of each entry.
    slots: Vec<u32>,
    /// Entry `i`'s block is a copy of slot `slots[i]`'s.
    codes: InlineCodes,
    /// One bit per slot written since the build: its entry (if any) is stale.
    stale: Vec<u64>,
    /// The stale slots, each once, in the order they were marked.
    delta: Vec<u32>,
}

impl std::fmt::Debug for OrderedCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderedCodes")
            .field("entries", &self.keys.len())
            .field("delta", &self.delta.len())
            .finish()
    }
}

/// Whether an index gets a column: integer and float indexes (the ones ranges are asked of).
pub(crate) fn wanted(index: &PayloadIndex) -> bool {
    matches!(index.kind, IndexKind::Integer | IndexKind::Float)
}

impl OrderedCodes {
    /// The column of `index` over `codes` (every live record the index holds a key of), or
    /// `None` when the index holds several keys for some record (its entries would repeat
    /// records) or the system refuses the memory.
    pub fn build(index: &PayloadIndex, codes: &InlineCodes) -> Option<Self> {
        if !index.many.is_empty() {
            return None;
        }
        let n: usize = index.postings.values().map(Vec::len).sum();
        let mut column = InlineCodes::new(codes.dim());
        column.try_reserve(n).ok()?;
        let (mut keys, mut slots) = (Vec::new(), Vec::new());
        keys.try_reserve_exact(n).ok()?;
        slots.try_reserve_exact(n).ok()?;
        for (&key, list) in &index.postings {
            for &slot in list {
                keys.push(key);
                slots.push(slot);
                column.push_copy(codes, slot);
            }
        }
        Some(OrderedCodes {
            keys,
            slots,
            codes: column,
            stale: Vec::new(),
            delta: Vec::new(),
        })
    }

    /// Marks `slot` written since the build.
    pub fn mark(&mut self, slot: u32) {
        let (w, b) = (slot as usize / 64, slot % 64);
        if self.stale.len() <= w {
            self.stale.resize(w + 1, 0);
        }
        if self.stale[w] & (1 << b) == 0 {
            self.stale[w] |= 1 << b;
            self.delta.push(slot);
        }
    }

    /// Whether the delta has grown enough that the column should be built again.
    pub fn rebuild_due(&self) -> bool {
        self.delta.len() > DELTA_MIN.max(self.keys.len() / DELTA_SHARE)
    }

    /// Entries in the column (stale ones included) and slots in the delta.
    pub fn len(&self) -> (usize, usize) {
        (self.keys.len(), self.delta.len())
    }

    /// The entries whose keys lie in `lo..=hi` (stale ones included).
    pub fn range(&self, lo: u64, hi: u64) -> std::ops::Range<usize> {
        let a = self.keys.partition_point(|&k| k < lo);
        let b = a + self.keys[a..].partition_point(|&k| k <= hi);
        a..b
    }

    /// Offers every match of the key range `lo..=hi` to `best`, by its code distance to
    /// `query` (a query of the collection's codes): the column's entries in the range that
    /// are not stale, streamed, then each delta slot for which `delta_matches` holds (live,
    /// and in the range by the index as it is now), by its block in slot order.
    pub fn pass(
        &self,
        query: &CodesQuery,
        lo: u64,
        hi: u64,
        delta_matches: impl Fn(u32) -> bool,
        best: &mut TopK,
    ) {
        // The distances of up to RUN entries by one call of the run kernel, then their offers
        // (most fail `offer`'s first comparison, against the k-th). One kernel call per
        // entry, even with the offers after a chunk's 32 distances, measured 0.91-0.94x
        // (filters9); the run kernel: see docs/benchmarks-history.md, filt11.
        let range = self.range(lo, hi);
        let on_column = query.on(&self.codes);
        let mut d = [0f32; RUN];
        let mut at = range.start;
        for slots in self.slots[range].chunks(RUN) {
            let d = &mut d[..slots.len()];
            on_column.dist_run(at as u32, d);
            at += slots.len();
            if self.delta.is_empty() {
                for (&d, &slot) in d.iter().zip(slots) {
                    best.offer(Cand { d, id: slot });
                }
            } else {
                for (&d, &slot) in d.iter().zip(slots) {
                    let w = self.stale.get(slot as usize / 64).copied().unwrap_or(0);
                    if w & (1 << (slot % 64)) == 0 {
                        best.offer(Cand { d, id: slot });
                    }
                }
            }
        }
        for &slot in &self.delta {
            if delta_matches(slot) {
                best.offer(Cand {
                    d: query.dist(slot),
                    id: slot,
                });
            }
        }
    }
}
