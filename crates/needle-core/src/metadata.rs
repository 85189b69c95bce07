//! [`Metadata`]: each slot's metadata (a JSON object, or none), 4 bytes a slot without, and
//! nothing at all while no slot has had any.
//!
//! A `Vec<Option<Value>>` costs 32 bytes a slot even when a record has no metadata (as in
//! many ANN uses, and glove50's benchmark). Here a slot holds a `u32` position in a dense
//! array of the values that exist (36 bytes a slot with metadata, 4 without); a freed
//! position is reused by the next value. Until the first value arrives the positions are not
//! kept at all (all would say "none": 0.8 MB at glove50's 200,000 slots). Read as
//! `metadata[slot]` (an `&Option<Value>`), as the vector was. Positions depend only on the
//! order of writes, and no result or file depends on them.

use std::ops::Index;

use serde_json::Value;

/// A slot without metadata.
const NONE: u32 = u32::MAX;

static NO_VALUE: Option<Value> = None;

#[derive(Debug, Clone, Default)]
pub(crate) struct Metadata {
    /// Slots.
    slots: usize,
    /// Per slot, its position in `values`, or [`NONE`]; empty while no slot has had a value
    /// (every slot reads none), `slots` long from the first value on.
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

    /// Slots.
    pub fn len(&self) -> usize {
        self.slots
    }

    /// Appends the metadata of the next slot.
    pub fn push(&mut self, m: Option<Value>) {
        let at = self.store(m);
        if at != NONE || !self.at.is_empty() {
            self.keep_positions();
            self.at.push(at);
        }
        self.slots += 1;
    }

    /// Replaces the metadata of `slot`. Panics if there is no such slot, like indexing a `Vec`.
    pub fn set(&mut self, slot: usize, m: Option<Value>) {
        assert!(slot < self.slots, "no slot {slot} of {}", self.slots);
        let old = self.at.get(slot).copied().unwrap_or(NONE);
        if old != NONE {
            self.values[old as usize] = None;
            self.free.push(old);
        }
        let at = self.store(m);
        if at != NONE || !self.at.is_empty() {
            self.keep_positions();
            self.at[slot] = at;
        }
    }

    /// Starts keeping a position per slot (the first value arrives): all none so far.
    fn keep_positions(&mut self) {
        if self.at.is_empty() {
            self.at.resize(self.slots, NONE);
        }
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
        match self.at.get(slot) {
            Some(&at) => self.values.get(at as usize).unwrap_or(&NO_VALUE),
            None => {
                assert!(slot < self.slots, "no slot {slot} of {}", self.slots);
                &NO_VALUE
            }
        }
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

    #[test]
    fn no_positions_are_kept_until_a_slot_has_a_value() {
        let mut m: Metadata = std::iter::repeat_n(None, 1000).collect();
        m.set(7, None);
        m.push(None);
        assert_eq!(m.len(), 1001);
        assert!(
            m.at.is_empty(),
            "a position per slot kept without any value"
        );
        assert_eq!(m[1000], None);
        assert_eq!(m, std::iter::repeat_n(None, 1001).collect::<Metadata>());

        // The first value (set on an old slot, or pushed) starts them, every other slot none.
        let mut set = m.clone();
        set.set(3, Some(json!({"a": 1})));
        assert_eq!(set.at.len(), 1001);
        assert_eq!(set[3], Some(json!({"a": 1})));
        assert!((0..1001).filter(|&s| s != 3).all(|s| set[s].is_none()));
        set.push(None);
        assert_eq!((set.len(), set.at.len()), (1002, 1002));
        assert_eq!(set[1001], None);

        let mut pushed = m.clone();
        pushed.push(Some(json!({"b": 2})));
        assert_eq!(pushed.at.len(), 1002);
        assert_eq!(pushed[1001], Some(json!({"b": 2})));
        assert!((0..1001).all(|s| pushed[s].is_none()));
        assert_ne!(pushed, m);
    }

    #[test]
    #[should_panic(expected = "no slot 3 of 3")]
    fn reading_past_the_slots_panics_without_positions_too() {
        let m: Metadata = [None, None, None].into_iter().collect();
        let _ = &m[3];
    }
}
