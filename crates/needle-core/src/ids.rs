//! [`Ids`]: the id of every slot of a collection, all in one byte array.
//!
//! A `Vec<String>` costs 24 bytes a slot plus a heap block of at least 32 bytes for each id
//! (glibc's smallest), so short ids ("doc-123") cost ~56 bytes where their text is 7. Here a
//! slot costs its bytes plus the 8-byte end offset: on glove50 (200,000 ids of up to 6
//! characters) ~9 MB less in both f32 and sq8 (`docs/benchmarks-history.md`, round three).

use std::ops::Index;

/// The ids of slots `0..len()`, in slot order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ids {
    /// Every id's UTF-8 bytes, one after the other.
    bytes: Vec<u8>,
    /// Per slot, where its id ends in `bytes` (it starts where the previous one ends).
    ends: Vec<u64>,
}

impl Ids {
    pub fn new() -> Self {
        Ids::default()
    }

    /// Room for `slots` ids of `bytes` bytes in all.
    pub fn with_capacity(slots: usize, bytes: usize) -> Self {
        Ids {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(slots),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Appends the id of the next slot.
    pub fn push(&mut self, id: &str) {
        self.bytes.extend_from_slice(id.as_bytes());
        self.ends.push(self.bytes.len() as u64);
    }

    /// The id of `slot`. Panics if there is no such slot, like indexing a `Vec`.
    pub fn get(&self, slot: usize) -> &str {
        let end = self.ends[slot] as usize;
        let start = if slot == 0 {
            0
        } else {
            self.ends[slot - 1] as usize
        };
        // SAFETY: `bytes` only grows by whole `&str`s (`push`), and `ends` marks where each
        // ends, so `start..end` is exactly one of them: valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[start..end]) }
    }
}

impl Index<usize> for Ids {
    type Output = str;

    fn index(&self, slot: usize) -> &str {
        self.get(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_back_in_slot_order() {
        let mut ids = Ids::new();
        for id in ["a", "", "ünïcödé", "doc-123", "a"] {
            ids.push(id);
        }
        assert_eq!(ids.len(), 5);
        let back: Vec<&str> = (0..ids.len()).map(|s| &ids[s]).collect();
        assert_eq!(back, ["a", "", "ünïcödé", "doc-123", "a"]);
        assert_eq!(ids, ids.clone());
    }
}
