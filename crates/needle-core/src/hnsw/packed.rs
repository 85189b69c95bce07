//! [`Shape`]: the one writer and reader of a bit-packed link block, behind the packed forms of
//! both layer-0 links ([`super::Links0`]) and upper-layer links ([`super::Upper`]).
//!
//! A block of [`Shape::stride`] bytes holds, from its first bit on (least significant bit of
//! each byte first), a count in `count_bits` bits and then up to `max` links in `bits` bits
//! each; its unused bits are 0. Every field is read with one unaligned 8-byte load, moved back
//! to end at the block's end where it would run past it, so a read never touches the next
//! block. Knows nothing of nodes, layers or where the blocks live.

/// Bits needed to write every value below `n` (at least 1).
pub(crate) fn bits_below(n: usize) -> u32 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(1)
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

    /// Bits the count takes.
    #[cfg(test)]
    pub fn count_bits(&self) -> u32 {
        self.count_bits
    }

    /// The `width`-bit field at bit `at` of `block`.
    #[inline(always)]
    fn field(&self, block: &[u8], at: usize, width: u32) -> u32 {
        let byte = (at / 8).min(self.stride - 8);
        let shift = at - byte * 8;
        debug_assert!(block.len() == self.stride && self.stride >= 8);
        // SAFETY: `block` is one whole block (`stride` bytes, at least 8: the callers slice it
        // so), and `byte + 8 <= stride` by the `min` above, so the 8 bytes read lie inside it;
        // any bytes are a valid u64.
        let word = unsafe { block.as_ptr().add(byte).cast::<u64>().read_unaligned() };
        ((u64::from_le(word) >> shift) & ((1u64 << width) - 1)) as u32
    }

    /// Calls `f` with each link of `block` (one whole block) in order, as it is decoded; a
    /// count above `max` is read as `max`.
    #[inline(always)]
    pub fn for_each(&self, block: &[u8], mut f: impl FnMut(u32)) {
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
        let stride = self.stride;
        let block = &mut block[..stride];
        block.fill(0);
        let mut put = |at: usize, value: u32| {
            let byte = (at / 8).min(stride - 8);
            let shift = at - byte * 8;
            let range = byte..byte + 8;
            let word = u64::from_le_bytes(block[range.clone()].try_into().expect("8 bytes"));
            let word = word | (u64::from(value) << shift);
            block[range].copy_from_slice(&word.to_le_bytes());
        };
        put(0, ids.len() as u32);
        let mut at = self.count_bits as usize;
        for &n in ids {
            put(at, n);
            at += self.bits as usize;
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
}
