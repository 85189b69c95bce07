//! [`IdIndex`]: which slot holds each live id, and the live ids in id order, without a second
//! copy of the ids (they stay in [`Ids`]; this holds slot numbers only).
//!
//! A `BTreeMap<Box<str>, u32>` cost ~60 bytes a record on glove50 (the boxed key, its heap
//! block, the nodes). Here a record costs ~6 bytes in the hash table (a `u32` and a control
//! byte at most 7/8 full) and 4 in the order (`docs/benchmarks-history.md`, "ids11").
//!
//! Point lookups hash the id and compare against `ids[slot]`. The id order is a sorted
//! array of slots plus a short sorted tail of recent inserts, merged into the array when it
//! grows past ~2·√n (a merge costs one pass over the array and `tail · log n` comparisons,
//! so an insert costs `O(√n)` moves and `O(log n)` comparisons amortised). Removing an id
//! leaves its slot in the order: readers skip dead slots, merges drop them, and a pass drops
//! them all once they are a quarter of the order. The hash is XXH3 with a fixed seed and no
//! result depends on the table's layout, so replicas agree.
//!
//! Not stored: derived from the records at open (the file format does not know it).

use hashbrown::HashTable;

use crate::ids::Ids;

/// Fewest entries the tail may hold before it is merged.
const TAIL_MIN: usize = 64;

#[derive(Debug, Clone, Default)]
pub(crate) struct IdIndex {
    /// Live slots, found by the hash of their id.
    table: HashTable<u32>,
    /// Slots in id order (bytes; equal ids in any order), live or dead.
    sorted: Vec<u32>,
    /// Recently inserted slots in id order, live or dead; merged into `sorted` when long.
    tail: Vec<u32>,
    /// Dead slots still in `sorted` or `tail`.
    dead: usize,
    /// Inserts the tail may take before a merge beyond its usual length: set when the order was
    /// merged ahead of a batch ([`IdIndex::install_order`]), so that the batch does not merge
    /// it again under the write lock; back to 0 at the next merge.
    allowance: usize,
}

/// The order of an [`IdIndex`] merged ahead of a batch ([`IdIndex::merged_ahead`]), for
/// [`IdIndex::install_order`]; or, returned by it, the array it replaced.
#[derive(Debug)]
pub(crate) struct MergedOrder {
    sorted: Vec<u32>,
    /// The lengths of `sorted` and `tail`, and the dead count, it was merged from.
    from: (usize, usize, usize),
    /// Whether it dropped the dead slots.
    purged: bool,
    /// The inserts of the batch it was merged for.
    batch: usize,
}

/// The hash table of an [`IdIndex`] copied with room to grow ([`IdIndex::try_grown_table`]),
/// or the one it replaced ([`IdIndex::install_table`]).
#[derive(Debug)]
pub(crate) struct GrownTable(HashTable<u32>);

fn hash(id: &str) -> u64 {
    twox_hash::XxHash3_64::oneshot(id.as_bytes())
}

impl IdIndex {
    pub fn new() -> Self {
        IdIndex::default()
    }

    /// Live ids.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot holding `id`, if it is live.
    pub fn get(&self, ids: &Ids, id: &str) -> Option<u32> {
        self.table
            .find(hash(id), |&s| &ids[s as usize] == id)
            .copied()
    }

    pub fn contains(&self, ids: &Ids, id: &str) -> bool {
        self.get(ids, id).is_some()
    }

    /// Room in the hash table for `more` ids, so that inserting them does not allocate it.
    pub fn try_reserve(&mut self, ids: &Ids, more: usize) -> Result<(), std::io::Error> {
        self.table
            .try_reserve(more, |&s| hash(&ids[s as usize]))
            .map_err(|e| std::io::Error::other(format!("{e:?}")))
    }

    /// A copy of the hash table with room for `more` ids, where [`IdIndex::try_reserve`] would
    /// otherwise grow or rehash the table (`None` where it has the room): the rehash of every
    /// id, made by a caller that holds the collection's read lock only, so that searches go
    /// on (at 3.7 million ids it took 0.5–1.2 s inside `try_reserve`: tidy12). The new table
    /// holds what this one holds, laid out afresh; [`IdIndex::install_table`] swaps it in.
    pub fn try_grown_table(
        &self,
        ids: &Ids,
        more: usize,
    ) -> Result<Option<GrownTable>, std::io::Error> {
        let (len, room) = (self.table.len(), self.table.capacity());
        if room - len >= more {
            return Ok(None);
        }
        // hashbrown's own growth: at least one more bucket's worth than it has now.
        let want = len.saturating_add(more).max(room + 1);
        let mut table = HashTable::new();
        table
            .try_reserve(want, |&s| hash(&ids[s as usize]))
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        for &s in self.table.iter() {
            table.insert_unique(hash(&ids[s as usize]), s, |&s| hash(&ids[s as usize]));
        }
        Ok(Some(GrownTable(table)))
    }

    /// Swaps in a table that [`IdIndex::try_grown_table`] copied, if it still holds as many
    /// ids as this one; the caller must be the only writer since the copy (the database's
    /// writer lock), so that it then holds the same ids. Returns the table it replaced, or
    /// the copy where it did not, for the caller to free when it no longer holds a lock.
    pub fn install_table(&mut self, ids: &Ids, grown: GrownTable) -> GrownTable {
        if grown.0.len() != self.table.len() {
            return grown;
        }
        debug_assert!(
            grown
                .0
                .iter()
                .all(|&s| self.get(ids, &ids[s as usize]) == Some(s)),
            "a write came between the copy and its install"
        );
        GrownTable(std::mem::replace(&mut self.table, grown.0))
    }

    /// Slots in the tail (not merged into the sorted array yet).
    #[cfg(test)]
    pub fn tail_len(&self) -> usize {
        self.tail.len()
    }

    /// Ids the hash table takes before it must grow (or rehash away removed entries).
    #[cfg(test)]
    pub fn room(&self) -> usize {
        self.table.capacity() - self.table.len()
    }

    /// Makes `slot` (its id already in `ids`) the live slot of its id. Returns false, and
    /// changes nothing, when the id is live in another slot (the caller removes that first).
    /// `dead` tells which slots are tombstoned (consulted by a merge).
    pub fn insert(&mut self, ids: &Ids, slot: u32, dead: impl Fn(u32) -> bool) -> bool {
        if !self.insert_in_table(ids, slot) {
            return false;
        }
        let id = &ids[slot as usize];
        let at = self.tail.partition_point(|&s| &ids[s as usize] <= id);
        self.tail.insert(at, slot);
        if self.tail.len() > self.tail_limit().max(self.allowance) {
            self.merge(ids, &dead);
        }
        true
    }

    /// The tail's usual longest: ~2·√n, at least [`TAIL_MIN`].
    fn tail_limit(&self) -> usize {
        TAIL_MIN.max(2 * self.sorted.len().isqrt())
    }

    /// The order merged into one array where a batch of `more` inserts would merge it: made
    /// by a caller that holds the collection's read lock only, so that searches go on (a merge
    /// is one pass over the order: 23–32 ms at 3–4 million ids under the write lock, tidy12).
    /// [`IdIndex::install_order`] swaps it in and lets the tail take the whole batch (up to
    /// 4× its usual length), so that the batch does not merge under the write lock either.
    /// `None` where the batch would not merge.
    pub fn merged_ahead(
        &self,
        ids: &Ids,
        more: usize,
        dead: impl Fn(u32) -> bool,
    ) -> Result<Option<MergedOrder>, std::io::Error> {
        let limit = self.tail_limit();
        if self.tail.len() + more <= limit {
            return Ok(None);
        }
        let mut sorted = Vec::new();
        sorted
            .try_reserve_exact(self.sorted.len() + self.tail.len())
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let purged = self.merge_into(ids, &dead, &mut sorted);
        Ok(Some(MergedOrder {
            sorted,
            from: (self.sorted.len(), self.tail.len(), self.dead),
            purged,
            batch: more.min(4 * limit),
        }))
    }

    /// Swaps in an order [`IdIndex::merged_ahead`] merged, if the order is still the one it
    /// was merged from; the caller must be the only writer since (the database's writer lock),
    /// so that it is. Returns the array it replaced, or the copy where it did not, for the
    /// caller to free when it no longer holds a lock.
    pub fn install_order(&mut self, mut merged: MergedOrder) -> MergedOrder {
        if merged.from != (self.sorted.len(), self.tail.len(), self.dead) {
            return merged;
        }
        std::mem::swap(&mut self.sorted, &mut merged.sorted);
        self.tail.clear();
        if merged.purged {
            self.dead = 0;
        }
        self.allowance = merged.batch;
        merged
    }

    /// At open: makes live `slot` (its id already in `ids`) the slot of its id, like
    /// [`IdIndex::insert`], but leaves the order to [`IdIndex::sort_order`], which must come
    /// before any other use. Returns false when the id is live in another slot.
    pub fn insert_unordered(&mut self, ids: &Ids, slot: u32) -> bool {
        if !self.insert_in_table(ids, slot) {
            return false;
        }
        self.sorted.push(slot);
        true
    }

    /// Puts `slot` in the hash table unless its id is live in another slot (then false, and
    /// nothing changed).
    fn insert_in_table(&mut self, ids: &Ids, slot: u32) -> bool {
        let id = &ids[slot as usize];
        let h = hash(id);
        if self.table.find(h, |&s| &ids[s as usize] == id).is_some() {
            return false;
        }
        self.table
            .insert_unique(h, slot, |&s| hash(&ids[s as usize]));
        true
    }

    /// At open, after the last [`IdIndex::insert_unordered`]: puts the slots in id order.
    pub fn sort_order(&mut self, ids: &Ids) {
        // Live ids are distinct, so the order does not depend on the sort's stability.
        self.sorted
            .sort_unstable_by(|&a, &b| ids[a as usize].cmp(&ids[b as usize]));
        self.sorted.shrink_to_fit();
    }

    /// Forgets `id`; returns the slot that held it. The caller tombstones that slot (marks it
    /// dead for the `dead` functions) before its next call, and may then call
    /// [`IdIndex::tidy`].
    pub fn remove(&mut self, ids: &Ids, id: &str) -> Option<u32> {
        let slot = self
            .table
            .find_entry(hash(id), |&s| &ids[s as usize] == id)
            .ok()?
            .remove()
            .0;
        self.dead += 1;
        Some(slot)
    }

    /// Drops the dead slots from the order once they are a quarter of it.
    pub fn tidy(&mut self, ids: &Ids, dead: impl Fn(u32) -> bool) {
        if self.dead > TAIL_MIN.max((self.sorted.len() + self.tail.len()) / 4) {
            self.merge(ids, &dead);
        }
    }

    /// Merges the tail into the sorted array, dropping dead slots if they are many.
    fn merge(&mut self, ids: &Ids, dead: &impl Fn(u32) -> bool) {
        let mut out = Vec::with_capacity(self.sorted.len() + self.tail.len());
        if self.merge_into(ids, dead, &mut out) {
            self.dead = 0;
        }
        self.sorted = out;
        self.tail.clear();
        self.allowance = 0;
    }

    /// Writes the sorted array and the tail merged into `out`, without the dead slots if they
    /// are many (then returns true).
    fn merge_into(&self, ids: &Ids, dead: &impl Fn(u32) -> bool, out: &mut Vec<u32>) -> bool {
        let purge = self.dead > (self.sorted.len() + self.tail.len()) / 4;
        let mut rest = &self.sorted[..];
        let copy = |out: &mut Vec<u32>, block: &[u32]| {
            if purge {
                out.extend(block.iter().copied().filter(|&s| !dead(s)));
            } else {
                out.extend_from_slice(block);
            }
        };
        for &t in &self.tail {
            let id = &ids[t as usize];
            let k = rest.partition_point(|&s| &ids[s as usize] <= id);
            copy(out, &rest[..k]);
            rest = &rest[k..];
            copy(out, &[t]);
        }
        copy(out, rest);
        purge
    }

    /// The live slots whose ids sort after `after` (all without it), in id order.
    pub fn ordered_after<'a, D: Fn(u32) -> bool + 'a>(
        &'a self,
        ids: &'a Ids,
        after: Option<&str>,
        dead: D,
    ) -> impl Iterator<Item = u32> + 'a {
        let start = |v: &[u32]| match after {
            Some(a) => v.partition_point(|&s| &ids[s as usize] <= a),
            None => 0,
        };
        Ordered {
            ids,
            a: &self.sorted[start(&self.sorted)..],
            b: &self.tail[start(&self.tail)..],
            dead,
        }
    }
}

/// Two sorted slot lists merged, dead slots skipped.
struct Ordered<'a, D> {
    ids: &'a Ids,
    a: &'a [u32],
    b: &'a [u32],
    dead: D,
}

impl<D: Fn(u32) -> bool> Iterator for Ordered<'_, D> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            let take_a = match (self.a.first(), self.b.first()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(&x), Some(&y)) => self.ids[x as usize] <= self.ids[y as usize],
            };
            let side = if take_a { &mut self.a } else { &mut self.b };
            let s = side[0];
            *side = &side[1..];
            if !(self.dead)(s) {
                return Some(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ops::Bound::{Excluded, Unbounded};

    /// A collection's bookkeeping in miniature: ids appended per slot, tombstones.
    struct Model {
        ids: Ids,
        deleted: Vec<bool>,
        index: IdIndex,
        /// What the index must say: live id → slot.
        model: BTreeMap<String, u32>,
    }

    impl Model {
        fn new() -> Self {
            Model {
                ids: Ids::new(),
                deleted: Vec::new(),
                index: IdIndex::new(),
                model: BTreeMap::new(),
            }
        }

        fn upsert(&mut self, id: &str) {
            if let Some(old) = self.index.remove(&self.ids, id) {
                self.deleted[old as usize] = true;
            }
            let slot = self.ids.len() as u32;
            self.ids.push(id);
            self.deleted.push(false);
            let deleted = &self.deleted;
            assert!(self.index.insert(&self.ids, slot, |s| deleted[s as usize]));
            self.model.insert(id.to_string(), slot);
        }

        fn delete(&mut self, id: &str) {
            let got = self.index.remove(&self.ids, id);
            assert_eq!(got, self.model.remove(id), "delete {id}");
            if let Some(s) = got {
                self.deleted[s as usize] = true;
            }
            let deleted = &self.deleted;
            self.index.tidy(&self.ids, |s| deleted[s as usize]);
        }

        /// The room a batch of `more` inserts gets before it (`Collection::prepared_room` and
        /// `install_room`): the order merged ahead where the batch would merge it. With
        /// `stale`, an upsert comes between the merge and its install (only a second writer
        /// could do that): the copy must not be installed.
        fn prepare(&mut self, more: usize, stale: Option<&str>) {
            let deleted = &self.deleted;
            let merged = self
                .index
                .merged_ahead(&self.ids, more, |s| deleted[s as usize])
                .expect("memory for a test");
            if let Some(id) = stale {
                self.upsert(id);
            }
            if let Some(merged) = merged {
                drop(self.index.install_order(merged));
            }
        }

        /// Compaction: the live records, densely, in slot order, into a fresh index.
        fn compact(&mut self) {
            let mut fresh = Model::new();
            let live: Vec<String> = (0..self.ids.len())
                .filter(|&s| !self.deleted[s])
                .map(|s| self.ids[s].to_string())
                .collect();
            for id in live {
                fresh.upsert(&id);
            }
            *self = fresh;
        }

        /// Point lookups of `probe`, then a scroll in pages of random size, each after the
        /// last id seen: from the start to the end when `whole`, else a few pages from a
        /// random id.
        fn check(&self, probe: &[String], whole: bool, rng: &mut u64) {
            assert_eq!(self.index.len(), self.model.len());
            for id in probe {
                assert_eq!(
                    self.index.get(&self.ids, id),
                    self.model.get(id).copied(),
                    "get {id}"
                );
            }
            let deleted = &self.deleted;
            let mut after: Option<String> = if whole { None } else { probe.first().cloned() };
            let want: Vec<u32> = match &after {
                None => self.model.values().copied().collect(),
                Some(a) => self
                    .model
                    .range::<str, _>((Excluded(a.as_str()), Unbounded))
                    .map(|(_, &s)| s)
                    .take(120)
                    .collect(),
            };
            let mut seen = Vec::new();
            while seen.len() < want.len() || whole {
                let limit = 1 + (next(rng) % 40) as usize;
                let page: Vec<u32> = self
                    .index
                    .ordered_after(&self.ids, after.as_deref(), |s| deleted[s as usize])
                    .take(limit)
                    .collect();
                if page.is_empty() {
                    break;
                }
                after = Some(self.ids[*page.last().unwrap() as usize].to_string());
                seen.extend(page);
            }
            seen.truncate(want.len());
            assert_eq!(seen, want, "scroll order");
        }
    }

    fn next(state: &mut u64) -> u64 {
        // SplitMix64.
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Random inserts, deletes, re-inserts, compactions and scroll pages against a
    /// `BTreeMap` model. Replays with `NEEDLE_SEED`.
    #[test]
    fn the_index_agrees_with_a_btreemap_model() {
        let seed = needle_testkit::seed("the_index_agrees_with_a_btreemap_model");
        let mut rng = seed;
        for round in 0..4 {
            // Few distinct ids in some rounds (many re-inserts), many in others.
            let universe = [50u64, 400, 3000, 20_000][round];
            let ids: Vec<String> = (0..universe)
                .map(|i| match i % 3 {
                    0 => format!("{i}"),
                    1 => format!("doc-{i:05}"),
                    _ => format!("ü{}", i * 7),
                })
                .collect();
            let mut m = Model::new();
            let steps = 6000;
            for step in 0..steps {
                let id = &ids[(next(&mut rng) % universe) as usize];
                match next(&mut rng) % 100 {
                    0..=54 => m.upsert(id),
                    55..=58 => m.prepare((next(&mut rng) % 2000) as usize, None),
                    59 => m.prepare((next(&mut rng) % 2000) as usize, Some(id)),
                    60..=89 => m.delete(id),
                    90 => m.compact(),
                    _ => {
                        let probe: Vec<String> = (0..20)
                            .map(|_| ids[(next(&mut rng) % universe) as usize].clone())
                            .collect();
                        m.check(&probe, false, &mut rng);
                    }
                }
                if step % 1000 == 999 {
                    m.check(&ids[..50.min(ids.len())], true, &mut rng);
                }
            }
            m.check(&ids, true, &mut rng);
        }
    }

    #[test]
    fn a_live_id_is_not_inserted_twice() {
        let mut ids = Ids::new();
        ids.push("a");
        ids.push("a");
        let mut index = IdIndex::new();
        assert!(index.insert(&ids, 0, |_| false));
        assert!(!index.insert(&ids, 1, |_| false));
        assert_eq!(index.get(&ids, "a"), Some(0));
        assert_eq!(index.ordered_after(&ids, None, |_| false).count(), 1);
    }

    /// The order merged ahead of a batch (under the read lock) is installed whole, and the
    /// batch then does not merge it again (under the write lock): at 66,667 live ids a batch
    /// of 2,000 would merge it three times as it goes (the tail's usual longest is 516). A copy merged
    /// before an insert is not installed after it, and a merge that dropped the dead slots
    /// leaves none counted.
    #[test]
    fn an_order_merged_ahead_spares_the_batch_its_merge() {
        let mut ids = Ids::new();
        let mut deleted = Vec::new();
        let mut index = IdIndex::new();
        let push = |ids: &mut Ids, deleted: &mut Vec<bool>, index: &mut IdIndex, i: usize| {
            ids.push(&format!("id-{:07}", (i * 7919) % 1_000_003));
            deleted.push(false);
            let d = &*deleted;
            assert!(index.insert(ids, i as u32, |s| d[s as usize]));
        };
        for i in 0..100_000 {
            push(&mut ids, &mut deleted, &mut index, i);
        }
        // A quarter and more of the slots dead: the merge ahead drops them.
        for i in (0..100_000).step_by(3) {
            let id = ids[i].to_string();
            assert_eq!(index.remove(&ids, &id), Some(i as u32));
            deleted[i] = true;
        }
        let d = &deleted;
        let merged = index
            .merged_ahead(&ids, 2_000, |s| d[s as usize])
            .unwrap()
            .expect("the batch would merge");
        // Merged before an insert: not installed.
        push(&mut ids, &mut deleted, &mut index, 100_000);
        let (sorted, tail) = (index.sorted.len(), index.tail.len());
        drop(index.install_order(merged));
        assert_eq!((index.sorted.len(), index.tail.len()), (sorted, tail));
        let d = &deleted;
        let merged = index
            .merged_ahead(&ids, 2_000, |s| d[s as usize])
            .unwrap()
            .expect("the batch would merge");
        drop(index.install_order(merged));
        assert_eq!(index.tail.len(), 0, "installed");
        assert_eq!(index.dead, 0, "the dead slots dropped");
        assert_eq!(index.sorted.len(), index.len());
        for i in 100_001..102_001 {
            push(&mut ids, &mut deleted, &mut index, i);
        }
        assert_eq!(index.tail.len(), 2_000, "the batch merged the order");
        let d = &deleted;
        let order: Vec<&str> = index
            .ordered_after(&ids, None, |s| d[s as usize])
            .map(|s| &ids[s as usize])
            .collect();
        assert_eq!(order.len(), index.len());
        assert!(order.windows(2).all(|w| w[0] < w[1]), "in id order");
        // The allowance ends with the next merge ahead: the next batch's.
        let d = &deleted;
        assert!(
            index
                .merged_ahead(&ids, 1, |s| d[s as usize])
                .unwrap()
                .is_some()
        );
    }

    /// A table grown outside the write lock holds every id and the room asked for, so that
    /// `try_reserve` then moves nothing; one copied before an insert is not installed after it.
    #[test]
    fn a_grown_table_holds_every_id_and_the_room() {
        let mut ids = Ids::new();
        let mut index = IdIndex::new();
        for i in 0..3000u32 {
            ids.push(&format!("id-{i}"));
            assert!(index.insert(&ids, i, |_| false));
        }
        let removed = index.remove(&ids, "id-7").expect("live");
        assert!(index.try_grown_table(&ids, index.room()).unwrap().is_none());
        let more = 20_000;
        let grown = index
            .try_grown_table(&ids, more)
            .unwrap()
            .expect("must grow");
        index.install_table(&ids, grown);
        assert!(index.room() >= more, "room {}", index.room());
        let room = index.room();
        index.try_reserve(&ids, more).unwrap();
        assert_eq!(index.room(), room, "reserve found the room");
        for i in (0..3000u32).filter(|&i| i != removed) {
            assert_eq!(index.get(&ids, &format!("id-{i}")), Some(i));
        }
        assert_eq!(index.get(&ids, "id-7"), None);
        // A copy made before an insert: dropped, the insert stays.
        let stale = index
            .try_grown_table(&ids, 100_000)
            .unwrap()
            .expect("must grow");
        ids.push("late");
        assert!(index.insert(&ids, 3000, |_| false));
        index.install_table(&ids, stale);
        assert_eq!(index.get(&ids, "late"), Some(3000));
        assert_eq!(index.len(), 3000);
    }

    /// Not a test: the index's share of a collection's write-lock hold as it grows by batches
    /// (tidy12, docs/benchmarks-history.md). For each batch, the table's room made as
    /// `Collection::reserve` makes it under the write lock (`try_reserve`, which rehashes every
    /// id when the table is full), and beside it on a second index the room made as the read
    /// lock's `prepared_room` makes it (a grown copy, and the order merged ahead) and installed
    /// under the write lock. Prints the batches at which either table grew and, per million ids,
    /// the slowest single insert of each (on the first, a merge of the order), and the slowest
    /// merge ahead on the second (outside the lock), all in the thread's CPU time. `NEEDLE_IDS` ids (4,200,000),
    /// `NEEDLE_BATCH` a batch (5,000):
    /// `cargo test --release -p needle-core --lib id_index::tests::growth_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing program: run it in release with --ignored --nocapture"]
    fn growth_timing() {
        use std::time::Duration;
        // The thread's CPU time, not the wall clock: on a shared core a single insert is
        // descheduled for whole time slices (10-25 ms), which hid what the merge costs.
        #[derive(Clone, Copy)]
        struct Instant(Duration);
        impl Instant {
            fn now() -> Self {
                let mut t = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: a valid out-pointer for the call.
                unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
                Instant(Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
            }
            fn elapsed(self) -> Duration {
                Instant::now().0.saturating_sub(self.0)
            }
        }
        let total = needle_testkit::knob("NEEDLE_IDS", 4_200_000) as usize;
        let batch = needle_testkit::knob("NEEDLE_BATCH", 5_000) as usize;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (mut ids, mut locked, mut copied) = (Ids::new(), IdIndex::new(), IdIndex::new());
        // The slowest insert (a merge of the order) per million ids.
        let mut slowest = vec![(Duration::ZERO, 0); total / 1_000_000 + 1];
        let mut slowest_copied = slowest.clone();
        let mut slowest_ahead = slowest.clone();
        println!(
            "ids before | buckets' room before -> after | reserve under the lock ms | copy outside ms | install + reserve under the lock ms"
        );
        while ids.len() < total {
            let (len, room) = (ids.len(), locked.table.capacity());
            let t = Instant::now();
            locked.try_reserve(&ids, batch).expect("memory");
            let under = t.elapsed();
            let t = Instant::now();
            let grown = copied.try_grown_table(&ids, batch).expect("memory");
            let outside = t.elapsed();
            let grew = grown.is_some();
            let t = Instant::now();
            let replaced = grown.map(|g| copied.install_table(&ids, g));
            copied.try_reserve(&ids, batch).expect("memory");
            let install = t.elapsed();
            let t = Instant::now();
            drop(replaced);
            let freed = t.elapsed();
            let t = Instant::now();
            let merged = copied.merged_ahead(&ids, batch, |_| false).expect("memory");
            let ahead = t.elapsed();
            let s = &mut slowest_ahead[(len / 1_000_000).min(total / 1_000_000)];
            if ahead > s.0 {
                *s = (ahead, len);
            }
            drop(merged.map(|m| copied.install_order(m)));
            if grew || locked.table.capacity() != room {
                println!(
                    "{len} | {room} -> {} | {:.2} | {:.2} | {:.3} | {:.3}",
                    locked.table.capacity(),
                    ms(under),
                    ms(outside),
                    ms(install),
                    ms(freed)
                );
            }
            for i in len..len + batch {
                ids.push(&format!("{i}"));
                let t = Instant::now();
                assert!(locked.insert(&ids, i as u32, |_| false));
                let took = t.elapsed();
                let s = &mut slowest[(i / 1_000_000).min(total / 1_000_000)];
                if took > s.0 {
                    *s = (took, i);
                }
                let t = Instant::now();
                assert!(copied.insert(&ids, i as u32, |_| false));
                let took = t.elapsed();
                let s = &mut slowest_copied[(i / 1_000_000).min(total / 1_000_000)];
                if took > s.0 {
                    *s = (took, i);
                }
            }
        }
        for ((took, at), ((copied, at_c), (ahead, at_a))) in slowest
            .into_iter()
            .zip(slowest_copied.into_iter().zip(slowest_ahead))
        {
            println!(
                "slowest insert of its million: {:.2} ms at {at} ids; with the order merged ahead {:.3} ms at {at_c} (the merge ahead, outside the lock: {:.2} ms at {at_a})",
                ms(took),
                ms(copied),
                ms(ahead)
            );
        }
    }
}
