//! [`Metadata`]: each slot's metadata (a JSON object, or none), 4 bytes a slot without.
//!
//! A `Vec<Option<Value>>` costs 32 bytes a slot even when a record has no metadata (as in
//! many ANN uses, and glove50's benchmark). Here a slot holds a `u32` position in a dense
//! array of the values that exist (36 bytes a slot with metadata, 4 without); a freed
//! position is reused by the next value. Read as `metadata[slot]` (an `&Option<Value>`), as
//! the vector was. Positions depend only on the order of writes, and no result or file
//! depends on them.

use std::ops::Index;

use serde_json::Value;

/// A slot without metadata.
const NONE: u32 = u32::MAX;

static NO_VALUE: Option<Value> = None;

#[derive(Debug, Clone, Default)]
pub(crate) struct Metadata {
    /// Per slot, its position in `values`, or [`NONE`].
    at: Vec<u32>,
    /// The values; `None` at a free position.
    values: Vec<Option<Value>>,
    /// Free positions in `values`, reused last freed first.
    free: Vec<u32>,
}

impl Metadata {
    pub fn new() -> Self {
        Metadata::default()
    }

    /// Room for `slots` slots (not for their values).
    pub fn with_capacity(slots: usize) -> Self {
        Metadata {
            at: Vec::with_capacity(slots),
            ..Metadata::default()
        }
    }

    /// Slots.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Appends the metadata of the next slot.
    pub fn push(&mut self, m: Option<Value>) {
        let at = self.store(m);
        self.at.push(at);
    }

    /// Replaces the metadata of `slot`. Panics if there is no such slot, like indexing a `Vec`.
    pub fn set(&mut self, slot: usize, m: Option<Value>) {
        let old = self.at[slot];
        if old != NONE {
            self.values[old as usize] = None;
            self.free.push(old);
        }
        self.at[slot] = self.store(m);
    }

    fn store(&mut self, m: Option<Value>) -> u32 {
        let Some(v) = m else {
            return NONE;
        };
        match self.free.pop() {
            Some(at) => {
                self.values[at as usize] = Some(v);
                at
            }
            None => {
                // At most one position per slot, and slots are u32.
                let at = u32::try_from(self.values.len()).expect("slots fit in u32");
                self.values.push(Some(v));
                at
            }
        }
    }
}

impl Index<usize> for Metadata {
    type Output = Option<Value>;

    #[inline]
    fn index(&self, slot: usize) -> &Option<Value> {
        // `NONE` is past the end of `values` (it holds fewer than u32::MAX), so one bounds
        // check serves both cases: a filtered search without an index reads this per candidate.
        self.values.get(self.at[slot] as usize).unwrap_or(&NO_VALUE)
    }
}

impl FromIterator<Option<Value>> for Metadata {
    fn from_iter<I: IntoIterator<Item = Option<Value>>>(iter: I) -> Self {
        let mut m = Metadata::new();
        for v in iter {
            m.push(v);
        }
        m
    }
}

/// Slot by slot, not by layout: two stores holding the same metadata per slot are equal
/// whatever positions their writes left the values in.
impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && (0..self.len()).all(|s| self[s] == other[s])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slots_read_back_what_was_set_and_free_positions_are_reused() {
        let mut m: Metadata = [None, Some(json!({"a": 1})), None].into_iter().collect();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], None);
        assert_eq!(m[1], Some(json!({"a": 1})));
        m.set(1, None);
        assert_eq!(m[1], None);
        m.set(0, Some(json!({"b": 2})));
        m.push(Some(json!({"c": 3})));
        // The position slot 1 freed went to slot 0; slot 3 needed a new one.
        assert_eq!(m.values.len(), 2);
        assert_eq!(m[0], Some(json!({"b": 2})));
        assert_eq!(m[3], Some(json!({"c": 3})));
        m.set(3, Some(json!({"d": 4})));
        assert_eq!(m[3], Some(json!({"d": 4})));
        assert_eq!(m.values.len(), 2);
        let same: Metadata = [Some(json!({"b": 2})), None, None, Some(json!({"d": 4}))]
            .into_iter()
            .collect();
        assert_eq!(m, same);
    }
}
