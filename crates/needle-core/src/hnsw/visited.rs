//! A generation-stamped visited set: marking is a store, clearing is a counter bump, so a query
//! never pays O(n) to reset it. One set per thread, reused across queries and collections.
//!
//! Stamps are one byte: the set of a 200k-node graph is 200 KB and stays in L2, where `u32`
//! stamps (800 KB) competed with the vectors for it. The price is a full clear every 255
//! queries (a `memset` of n bytes, ~0.05 µs per query amortised at n = 200k).

use std::cell::RefCell;

pub(crate) struct VisitedSet {
    marks: Vec<u8>,
    generation: u8,
}

impl VisitedSet {
    fn new() -> Self {
        VisitedSet {
            marks: Vec::new(),
            generation: 1,
        }
    }

    /// Starts a new query over `n` nodes.
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Wrapped: old stamps could collide with new ones, so clear every 255 queries.
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `i`; returns true if it was not marked in this query yet.
    #[inline(always)]
    pub(crate) fn insert(&mut self, i: u32) -> bool {
        let slot = &mut self.marks[i as usize];
        if *slot == self.generation {
            false
        } else {
            *slot = self.generation;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<VisitedSet> = RefCell::new(VisitedSet::new());
}

/// Runs `f` with this thread's visited set, reset for a graph of `n` nodes.
pub(crate) fn with_visited<R>(n: usize, f: impl FnOnce(&mut VisitedSet) -> R) -> R {
    VISITED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut set) => {
            set.reset(n);
            f(&mut set)
        }
        // Re-entrant use on one thread (never expected): fall back to a fresh set.
        Err(_) => {
            let mut set = VisitedSet::new();
            set.reset(n);
            f(&mut set)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_reset_between_queries() {
        with_visited(10, |v| {
            assert!(v.insert(3));
            assert!(!v.insert(3));
        });
        with_visited(10, |v| assert!(v.insert(3)));
    }

    #[test]
    fn generation_wrap_clears() {
        let mut v = VisitedSet::new();
        v.reset(4);
        v.insert(1);
        v.generation = u8::MAX;
        v.marks[2] = 1;
        v.reset(4);
        assert_eq!(v.generation, 1);
        assert!(
            v.insert(2),
            "stale stamp from before the wrap must not count"
        );
    }

    #[test]
    fn many_queries_never_see_stale_marks() {
        let mut v = VisitedSet::new();
        for q in 0..1000u32 {
            v.reset(8);
            let i = q % 8;
            assert!(v.insert(i), "query {q}");
            assert!(!v.insert(i), "query {q}");
        }
    }
}
