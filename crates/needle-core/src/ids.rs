//! [`Ids`]: the id of every slot of a collection, all in one byte array.
//!
//! A `Vec<String>` costs 24 bytes a slot plus a heap block of at least 32 bytes for each id
//! (glibc's smallest), so short ids ("doc-123") cost ~56 bytes where their text is 7. Here a
//! slot costs its bytes plus a 2-byte end offset within its chunk of [`CHUNK`] slots and an
//! eighth of the chunk's 8-byte start: on glove50 (200,000 ids of up to 6 characters) ~9 MB
//! less than `Vec<String>` in both f32 and sq8 (`docs/benchmarks-history.md`, round three),
//! and 1.15 MB less than 8-byte end offsets (mem11).

use std::ops::Index;

use crate::collection::MAX_ID_BYTES;

/// Slots a chunk: every chunk's first id starts at a `u64` offset, and each slot keeps where its
/// id ends counted from there, which fits a `u16` because no id is longer than
/// [`MAX_ID_BYTES`] (checked by the collection and by a checkpoint's reader).
const CHUNK: usize = 32;
const _: () = assert!(CHUNK * MAX_ID_BYTES <= u16::MAX as usize);

/// The ids of slots `0..len()`, in slot order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ids {
    /// Every id's UTF-8 bytes, one after the other.
    bytes: Vec<u8>,
    /// Per chunk of [`CHUNK`] slots, where its first id starts in `bytes`.
    starts: Vec<u64>,
    /// Per slot, where its id ends in `bytes`, counted from its chunk's start (an id starts
    /// where the previous one of its chunk ends, or at the chunk's start).
    ends: Vec<u16>,
}

impl Ids {
    pub fn new() -> Self {
        Ids::default()
    }

    /// Room for `slots` ids of `bytes` bytes in all.
    pub fn with_capacity(slots: usize, bytes: usize) -> Self {
        Ids {
            bytes: Vec::with_capacity(bytes),
            starts: Vec::with_capacity(slots.div_ceil(CHUNK)),
            ends: Vec::with_capacity(slots),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Appends the id of the next slot. Panics on an id longer than [`MAX_ID_BYTES`] (every
    /// caller has checked it: a longer one is a typed error before it gets here).
    pub fn push(&mut self, id: &str) {
        assert!(id.len() <= MAX_ID_BYTES, "id of {} bytes", id.len());
        if self.ends.len() % CHUNK == 0 {
            self.starts.push(self.bytes.len() as u64);
        }
        self.bytes.extend_from_slice(id.as_bytes());
        let start = *self.starts.last().expect("pushed above") as usize;
        // At most CHUNK ids of at most MAX_ID_BYTES since `start`: fits (the const assertion).
        self.ends.push((self.bytes.len() - start) as u16);
    }

    /// The id of `slot`. Panics if there is no such slot, like indexing a `Vec`.
    pub fn get(&self, slot: usize) -> &str {
        let base = self.starts[slot / CHUNK] as usize;
        let end = base + usize::from(self.ends[slot]);
        let start = if slot % CHUNK == 0 {
            base
        } else {
            base + usize::from(self.ends[slot - 1])
        };
        // SAFETY: `bytes` only grows by whole `&str`s (`push`), and `starts` and `ends` mark
        // where each begins and ends, so `start..end` is exactly one of them: valid UTF-8.
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

    /// Ids of every length up to the limit, across many chunks (one chunk of only the longest
    /// fills its `u16` end offsets to their bound), come back whole.
    #[test]
    fn ids_of_any_length_come_back_across_chunks() {
        let all: Vec<String> = (0..5 * CHUNK + 7)
            .map(|i| match i % 5 {
                _ if i / CHUNK == 2 => char::from(b'a' + (i % 26) as u8)
                    .to_string()
                    .repeat(MAX_ID_BYTES),
                0 => "é".repeat(MAX_ID_BYTES / 2),
                1 => format!("doc-{i}"),
                2 => String::new(),
                _ => format!("{i}").repeat(i % 40 + 1),
            })
            .collect();
        let mut ids = Ids::with_capacity(all.len(), 0);
        for id in &all {
            ids.push(id);
        }
        assert_eq!(ids.len(), all.len());
        for (slot, id) in all.iter().enumerate() {
            assert_eq!(&ids[slot], id.as_str(), "slot {slot}");
        }
    }
}
