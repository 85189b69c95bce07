//! The beam of a layer search without a filter: the `ef` nearest nodes seen so far, sorted by
//! distance, each flagged once its links have been expanded.
//!
//! One sorted array does the work of HNSW's two heaps (candidates and results): a node that
//! falls out of the `ef` nearest would never be expanded by the heap version either (it stops
//! at the first candidate farther than the `ef`-th result), so the walk and its result are the
//! same. Insertion is a binary search and a `memmove` of at most `ef` 12-byte entries, which
//! beats three heap operations per accepted node at every `ef` we measured (see `beam` in
//! `mod.rs`). Used only when every node may be returned; filtered searches keep the heaps,
//! because there the candidates and the results are different sets.

use super::Cand;

#[derive(Debug, Clone, Copy)]
struct Entry {
    cand: Cand,
    expanded: bool,
}

#[derive(Debug)]
pub(crate) struct Nearest {
    entries: Vec<Entry>,
    capacity: usize,
    /// Every entry before this index has been expanded.
    cursor: usize,
}

impl Nearest {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Nearest {
            entries: Vec::with_capacity(capacity + 1),
            capacity,
            cursor: 0,
        }
    }

    /// The distance a node must beat to enter: the `capacity`-th nearest, or infinity.
    #[inline(always)]
    pub fn bound(&self) -> f32 {
        if self.entries.len() < self.capacity {
            f32::INFINITY
        } else {
            self.entries[self.capacity - 1].cand.d
        }
    }

    /// Adds `c` if it is among the `capacity` nearest (dropping the farthest when full);
    /// returns `None` if it was not, else how far behind the first unexpanded entry it went
    /// (0: it is the next to expand; expanded entries in between count too).
    #[inline]
    pub fn insert(&mut self, c: Cand) -> Option<usize> {
        let at = self.entries.partition_point(|e| e.cand < c);
        if at >= self.capacity {
            return None;
        }
        let behind = at.saturating_sub(self.cursor);
        if self.entries.len() == self.capacity {
            self.entries.pop();
        }
        self.entries.insert(
            at,
            Entry {
                cand: c,
                expanded: false,
            },
        );
        self.cursor = self.cursor.min(at);
        Some(behind)
    }

    /// The nearest node not expanded yet, now flagged as expanded.
    #[inline]
    pub fn next_unexpanded(&mut self) -> Option<Cand> {
        while let Some(e) = self.entries.get_mut(self.cursor) {
            self.cursor += 1;
            if !e.expanded {
                e.expanded = true;
                return Some(e.cand);
            }
        }
        None
    }

    /// The node [`next_unexpanded`](Self::next_unexpanded) would return now, if any.
    #[inline]
    pub fn peek_unexpanded(&self) -> Option<u32> {
        self.entries[self.cursor.min(self.entries.len())..]
            .iter()
            .find(|e| !e.expanded)
            .map(|e| e.cand.id)
    }

    /// The nodes, nearest first.
    pub fn into_sorted_vec(self) -> Vec<Cand> {
        self.entries.into_iter().map(|e| e.cand).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(d: f32, id: u32) -> Cand {
        Cand { d, id }
    }

    #[test]
    fn keeps_the_nearest_sorted_and_expands_nearest_first() {
        let mut n = Nearest::new(3);
        for (d, id) in [(5.0, 1), (1.0, 2), (3.0, 3), (4.0, 4), (0.5, 5)] {
            n.insert(c(d, id));
        }
        assert_eq!(n.bound(), 3.0);
        assert_eq!(n.next_unexpanded().map(|c| c.id), Some(5));
        assert_eq!(n.next_unexpanded().map(|c| c.id), Some(2));
        // A node nearer than the cursor becomes the next one to expand.
        n.insert(c(0.7, 6));
        assert_eq!(n.peek_unexpanded(), Some(6));
        assert_eq!(n.next_unexpanded().map(|c| c.id), Some(6));
        assert_eq!(n.next_unexpanded(), None, "id 3 fell out of the 3 nearest");
        let ids: Vec<u32> = n.into_sorted_vec().iter().map(|c| c.id).collect();
        assert_eq!(ids, [5, 6, 2]);
    }

    #[test]
    fn ties_are_broken_by_id() {
        let mut n = Nearest::new(2);
        n.insert(c(1.0, 9));
        n.insert(c(1.0, 3));
        n.insert(c(1.0, 5));
        let ids: Vec<u32> = n.into_sorted_vec().iter().map(|c| c.id).collect();
        assert_eq!(ids, [3, 5]);
    }
}
