//! [`Tombstones`]: which slots hold a deleted record (kept until compaction), one bit a slot.
//!
//! A `Vec<bool>` took a byte a slot (0.2 MB at glove50's 200,000 slots); the bits take 25 KB.
//! Read as `deleted[slot]` (a `&bool`), as the vector was. Knows nothing of what a slot holds.

use std::ops::Index;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tombstones {
    /// Bit `s % 64` of word `s / 64`: slot `s` is deleted.
    words: Vec<u64>,
    /// Slots.
    len: usize,
}

impl Tombstones {
    pub fn new() -> Self {
        Tombstones::default()
    }

    /// Slots (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends the next slot.
    pub fn push(&mut self, deleted: bool) {
        if self.len % 64 == 0 {
            self.words.push(0);
        }
        self.len += 1;
        if deleted {
            self.set(self.len - 1);
        }
    }

    /// Marks `slot` deleted. Panics if there is no such slot, like indexing a `Vec`.
    pub fn set(&mut self, slot: usize) {
        assert!(slot < self.len, "no slot {slot} of {}", self.len);
        self.words[slot / 64] |= 1 << (slot % 64);
    }

    /// Each slot's flag, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.len).map(|s| self[s])
    }
}

impl Index<usize> for Tombstones {
    type Output = bool;

    /// Panics if there is no such slot, like indexing a `Vec`.
    #[inline]
    fn index(&self, slot: usize) -> &bool {
        assert!(slot < self.len, "no slot {slot} of {}", self.len);
        if self.words[slot / 64] & (1 << (slot % 64)) != 0 {
            &true
        } else {
            &false
        }
    }
}

impl FromIterator<bool> for Tombstones {
    fn from_iter<I: IntoIterator<Item = bool>>(iter: I) -> Self {
        let mut t = Tombstones::new();
        for d in iter {
            t.push(d);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_like_a_vec_of_bools() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut model = Vec::new();
        let mut t = Tombstones::new();
        for i in 0..1000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let d = seed >> 61 == 0;
            model.push(d);
            t.push(d);
            if i % 7 == 3 {
                let s = (seed >> 20) as usize % model.len();
                model[s] = true;
                t.set(s);
            }
        }
        assert_eq!(t.len(), model.len());
        assert!((0..model.len()).all(|s| t[s] == model[s]));
        assert_eq!(t.iter().collect::<Vec<_>>(), model);
        assert_eq!(model.iter().copied().collect::<Tombstones>(), t);
        assert_eq!(t.words.len(), 1000usize.div_ceil(64));
    }

    #[test]
    #[should_panic(expected = "no slot 64 of 64")]
    fn reading_past_the_slots_panics() {
        let t: Tombstones = std::iter::repeat_n(false, 64).collect();
        let _ = t[64];
    }
}
