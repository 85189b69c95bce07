//! The bit-packed link blocks behind the packed forms of layer-0 links ([`super::Links0`]) and
//! upper-layer links ([`super::Upper`]); each is the one reader and writer of its form:
//!
//! - [`Shape`] (upper layers): a count in `count_bits` bits, then up to `max` links of `bits`
//!   bits each, in the order given.
//! - [`Sorted`] (layer 0): the links sorted by slot, in Elias-Fano form: the high parts as a
//!   unary bit vector (link `i` sets bit `(link >> low_bits) + i`), then the low `low_bits` bits
//!   of each link; the count is the number of bits set. At 32 links of 18 bits a block is 60
//!   bytes instead of [`Shape`]'s 73 (`docs/benchmarks-history.md`, ef15).
//!
//! Blocks are read from their first bit on (least significant bit of each byte first); unused
//! bits are 0. Every field is read with one unaligned 8-byte load, moved back to end at the
//! block's end where it would run past it, so a read never touches the next block. Knows
//! nothing of nodes, layers or where the blocks live.

/// Bits needed to write every value below `n` (at least 1).
pub(crate) fn bits_below(n: usize) -> u32 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(1)
}

/// The `width`-bit field (1 to 64 bits) at bit `at` of `block`, a block of `stride` bytes (at
/// least 8) holding the field: one unaligned 8-byte load at the field's byte, or at
/// `stride - 8` where that would run past the block.
#[inline(always)]
fn read_bits(block: &[u8], stride: usize, at: usize, width: u32) -> u64 {
    let block = &block[..stride];
    let byte = (at / 8).min(stride - 8);
    let shift = at - byte * 8;
    debug_assert!(stride >= 8 && width >= 1 && shift + width as usize <= 64);
    // SAFETY: `block` is exactly `stride` bytes (sliced above: a shorter one panics there),
    // and `byte + 8 <= stride` by the `min`, so the 8 bytes read lie inside it; any bytes are
    // a valid u64.
    let word = unsafe { block.as_ptr().add(byte).cast::<u64>().read_unaligned() };
    let word = u64::from_le(word) >> shift;
    if width >= 64 {
        word
    } else {
        word & ((1u64 << width) - 1)
    }
}

/// ORs the `width`-bit `value` into `block` (a block of at least 8 bytes) at bit `at`, the
/// write of [`read_bits`].
fn or_bits(block: &mut [u8], at: usize, value: u64) {
    let stride = block.len();
    let byte = (at / 8).min(stride - 8);
    let shift = at - byte * 8;
    let range = byte..byte + 8;
    let word = u64::from_le_bytes(block[range.clone()].try_into().expect("8 bytes"));
    let word = word | (value << shift);
    block[range].copy_from_slice(&word.to_le_bytes());
}

/// The layout of a packed block: up to `max` links of `bits` bits each after a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    max: usize,
    bits: u32,
    count_bits: u32,
    /// Bytes a block; at least 8, so every 8-byte read of a field lies inside its block.
    stride: usize,
}

impl Shape {
    /// Blocks of up to `max` links of `bits` bits each.
    pub fn new(max: usize, bits: u32) -> Self {
        let count_bits = bits_below(max + 1);
        let stride = ((count_bits as usize + max * bits as usize).div_ceil(8)).max(8);
        Shape {
            max,
            bits,
            count_bits,
            stride,
        }
    }

    /// Bytes a block takes.
    #[inline(always)]
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Bits a link takes.
    #[inline(always)]
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The `width`-bit field at bit `at` of `block`.
    #[inline(always)]
    fn field(&self, block: &[u8], at: usize, width: u32) -> u32 {
        read_bits(block, self.stride, at, width) as u32
    }

    /// Calls `f` with each link of `block` (one whole block) in order, as it is decoded; a
    /// count above `max` is read as `max`.
    #[inline(always)]
    pub fn for_each(&self, block: &[u8], mut f: impl FnMut(u32)) {
        let block = &block[..self.stride];
        let count = (self.field(block, 0, self.count_bits) as usize).min(self.max);
        let bits = self.bits as usize;
        let mut at = self.count_bits as usize;
        for _ in 0..count {
            f(self.field(block, at, self.bits));
            at += bits;
        }
    }

    /// Writes `ids` (at most `max`, each below `2^bits`) as the links of `block` (one whole
    /// block), clearing what it held.
    pub fn write(&self, block: &mut [u8], ids: &[u32]) {
        debug_assert!(ids.len() <= self.max, "at most max links");
        debug_assert!(
            ids.iter().all(|&n| (n as u64) < (1u64 << self.bits)),
            "a link fits the packed width"
        );
        let block = &mut block[..self.stride];
        block.fill(0);
        or_bits(block, 0, ids.len() as u64);
        let mut at = self.count_bits as usize;
        for &n in ids {
            or_bits(block, at, u64::from(n));
            at += self.bits as usize;
        }
    }
}

/// The layout of a sorted block (Elias-Fano): up to `max` links below `2^bits`, sorted, each
/// split into its low `low_bits` bits and a high part (`link >> low_bits`). The low parts come
/// first, `low_bits` bits each; then, from the next byte on, a unary code of the high parts
/// in `high_bits` bits (link `i` of the sorted list sets bit `high + i`). The count is the
/// number of bits set there. `low_bits` is `bits` less the bits of `max`, so that the high
/// parts take at most `max + 2^(bits - low_bits)` bits (64 at 32 links): at 32 links of 18 bits
/// a block is 60 bytes where [`Shape`] takes 73 (and `4 + 8·m` for `u32` words: 132).
///
/// A block is at least 8 bytes longer than its low parts, so a low part is read with one
/// 8-byte load at its own byte, never moved back.
///
/// The order of the links given is not kept: a reader gets them sorted by slot. The walk over
/// layer 0 does not depend on it (its candidates and results are ordered by distance, then
/// slot), nor does linking (the heuristic sorts by distance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sorted {
    max: usize,
    bits: u32,
    low_bits: u32,
    /// Where the high parts start: `max · low_bits` rounded up to a byte, so that each 64-bit
    /// word of them is one read.
    high_at: usize,
    high_bits: usize,
    /// Bytes a block: at least `high_at / 8 + 8`, so every 8-byte read of a low part lies
    /// inside its block.
    stride: usize,
}

impl Sorted {
    /// Blocks of up to `max` (at least 1) sorted links below `2^bits`.
    pub fn new(max: usize, bits: u32) -> Self {
        let max = max.max(1);
        let low_bits = bits.saturating_sub(bits_below(max)).max(1);
        let high_bits = max + (1usize << (bits.saturating_sub(low_bits)));
        let high_at = (max * low_bits as usize).next_multiple_of(8);
        let stride = (high_at + high_bits).div_ceil(8).max(high_at / 8 + 8);
        Sorted {
            max,
            bits,
            low_bits,
            high_at,
            high_bits,
            stride,
        }
    }

    /// Bytes a block takes.
    #[inline(always)]
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Bits a link may take (tests).
    #[cfg(test)]
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Calls `f` with each link of `block` (one whole block) in ascending order, as it is
    /// decoded; at most `max`.
    #[inline(always)]
    pub fn for_each(&self, block: &[u8], mut f: impl FnMut(u32)) {
        let block = &block[..self.stride];
        let low = self.low_bits;
        let mask = (1u64 << low) - 1;
        let mut left = self.max;
        let mut done = 0usize;
        let mut at_low = 0usize;
        let mut base = 0usize;
        while base < self.high_bits && left > 0 {
            let width = (self.high_bits - base).min(64) as u32;
            let mut word = read_bits(block, self.stride, self.high_at + base, width);
            let ones = (word.count_ones() as usize).min(left);
            left -= ones;
            for _ in 0..ones {
                // The bits set before this one are the links before it, so the link's high part
                // is its position less their count (never below 0).
                let high = base + word.trailing_zeros() as usize - done;
                word &= word - 1;
                done += 1;
                let low_part = {
                    let byte = at_low / 8;
                    debug_assert!(
                        byte + 8 <= block.len(),
                        "a low part's read lies in its block"
                    );
                    // SAFETY: `at_low < high_at` (one low part per link, at most `max`), and
                    // `stride >= high_at / 8 + 8` (`Sorted::new`), so the 8 bytes from `byte`
                    // lie inside `block`, which is exactly `stride` bytes (sliced above).
                    let w = unsafe { block.as_ptr().add(byte).cast::<u64>().read_unaligned() };
                    (u64::from_le(w) >> (at_low % 8)) & mask
                };
                f(((high << low) | low_part as usize) as u32);
                at_low += low as usize;
            }
            base += 64;
        }
    }

    /// Writes `ids` (at most `max`, each below `2^bits`, in any order) as the links of `block`
    /// (one whole block), clearing what it held.
    pub fn write(&self, block: &mut [u8], ids: &[u32]) {
        debug_assert!(ids.len() <= self.max, "at most max links");
        debug_assert!(
            ids.iter().all(|&n| (n as u64) < (1u64 << self.bits)),
            "a link fits the packed width"
        );
        let mut sorted = [0u32; super::MAX_LINKS];
        let count = ids.len().min(self.max).min(sorted.len());
        sorted[..count].copy_from_slice(&ids[..count]);
        let sorted = &mut sorted[..count];
        sorted.sort_unstable();
        let block = &mut block[..self.stride];
        block.fill(0);
        let low = self.low_bits;
        let mask = (1u64 << low) - 1;
        for (i, &n) in sorted.iter().enumerate() {
            let high = (n as usize) >> low;
            or_bits(block, self.high_at + high + i, 1);
            or_bits(block, i * low as usize, u64::from(n) & mask);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_below_is_the_width_of_the_largest_value() {
        assert_eq!(bits_below(0), 1);
        assert_eq!(bits_below(1), 1);
        assert_eq!(bits_below(2), 1);
        assert_eq!(bits_below(3), 2);
        assert_eq!(bits_below(4), 2);
        assert_eq!(bits_below(5), 3);
        assert_eq!(bits_below(200_000), 18);
        assert_eq!(bits_below(1 << 18), 18);
        assert_eq!(bits_below((1 << 18) + 1), 19);
    }

    /// Every count and every width from 1 to 32 bits, with the largest value of the width in
    /// the last field (which the writer and reader move back to end at the block's end).
    #[test]
    fn a_block_reads_back_what_was_written_at_every_width() {
        for max in [1usize, 2, 3, 16, 32] {
            for bits in 1..=32u32 {
                let shape = Shape::new(max, bits);
                let top = if bits == 32 {
                    u32::MAX
                } else {
                    (1u32 << bits) - 1
                };
                let mut block = vec![0xffu8; shape.stride()];
                for count in 0..=max {
                    let ids: Vec<u32> = (0..count)
                        .map(|i| {
                            if i + 1 == count {
                                top
                            } else {
                                (i as u32) & top
                            }
                        })
                        .collect();
                    shape.write(&mut block, &ids);
                    let mut back = Vec::new();
                    shape.for_each(&block, |n| back.push(n));
                    assert_eq!(back, ids, "max {max} bits {bits}");
                }
            }
        }
    }

    /// Every count and width (1 to 32 bits) at several maxima, with duplicates, the largest
    /// value of the width and random orders: a sorted block reads back the links sorted, and
    /// no more than `max` of them.
    #[test]
    fn a_sorted_block_reads_back_the_links_sorted_at_every_width() {
        let seed = std::env::var("NEEDLE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x15_2026u64);
        eprintln!("NEEDLE_SEED={seed}");
        let mut x = seed;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for max in [1usize, 2, 3, 5, 16, 32, 33, 48, 64, 256] {
            for bits in 1..=32u32 {
                let shape = Sorted::new(max, bits);
                let top = if bits == 32 {
                    u32::MAX
                } else {
                    (1u32 << bits) - 1
                };
                let mut block = vec![0xffu8; shape.stride()];
                for count in 0..=max {
                    let ids: Vec<u32> = (0..count)
                        .map(|i| match (i, next() % 4) {
                            (0, _) => top,
                            (_, 0) => 0,
                            (_, 1) => top,
                            _ => (next() as u32) & top,
                        })
                        .collect();
                    shape.write(&mut block, &ids);
                    let mut back = Vec::new();
                    shape.for_each(&block, |n| back.push(n));
                    let mut sorted = ids.clone();
                    sorted.sort_unstable();
                    assert_eq!(back, sorted, "max {max} bits {bits} count {count}");
                }
                // Every bit of the high part set (not a block the writer makes): still at most
                // `max` links, and no panic.
                block.iter_mut().for_each(|b| *b = 0xff);
                let mut n = 0;
                shape.for_each(&block, |_| n += 1);
                assert!(n <= max, "max {max} bits {bits}: {n} links");
            }
        }
        let s = Sorted::new(32, 18);
        assert_eq!(
            (s.low_bits, s.high_at, s.high_bits, s.stride()),
            (13, 416, 64, 60)
        );
    }
}
