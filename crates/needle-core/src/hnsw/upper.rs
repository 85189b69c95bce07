//! [`Upper`]: the upper-layer links of a graph, one block per (node, layer ≥ 1) holding a count
//! and up to `m` neighbour slots, in the form of the graph's layer-0 links ([`Links0Kind`]):
//!
//! - `U32`: `[count, n_1 .. n_m]` as `u32` words (`1 + m` words a block), read in place.
//! - `Packed`: one [`super::packed::Shape`] block: the count in `count_bits` bits, then each
//!   neighbour in `bits` bits, where `bits` is what the graph's node count needs (18 at
//!   200,000 nodes): at m 16, 37 bytes a block instead of 68 (−0.4 MB at glove50's 200,000 nodes). When the node count passes a power of
//!   two ([`Upper::fit_nodes`]), every block is re-packed with one bit more.
//!
//! Blocks are addressed by their *word* offset in the `U32` form (`block × (1 + m)`), which is
//! what [`super::Graph::upper_base`] and the files count in, so both forms are found alike;
//! files and the state checksum always see the `U32` words ([`Upper::for_each_word`]).

use super::packed::{Shape, bits_below};
use super::{Flat, Links0Kind, MAX_LINKS};

/// The upper-layer link blocks of a graph (see the module header).
#[derive(Debug, Clone)]
pub(crate) enum Upper {
    U32 { m: usize, words: Vec<u32> },
    Packed(PackedUpper),
}

/// The packed form: per block one block of [`Shape`] (up to `m` links).
#[derive(Debug, Clone)]
pub(crate) struct PackedUpper {
    m: usize,
    blocks: usize,
    shape: Shape,
    /// In its own map (a [`Flat`]), like layer 0: out of the allocator's heap, whose holes the
    /// blocks' doubling growth would leave behind.
    bytes: Flat<u8>,
}

impl PackedUpper {
    fn new(m: usize, bits: u32) -> Self {
        PackedUpper {
            m,
            blocks: 0,
            shape: Shape::new(m, bits),
            bytes: Flat::new(),
        }
    }

    #[inline(always)]
    fn for_each(&self, block: usize, f: impl FnMut(u32)) {
        let stride = self.shape.stride();
        let start = block * stride;
        self.shape.for_each(&self.bytes[start..start + stride], f);
    }

    fn encode(&mut self, block: usize, ids: &[u32]) {
        let stride = self.shape.stride();
        let start = block * stride;
        self.shape
            .write(&mut self.bytes[start..start + stride], ids);
    }

    /// A copy with `bits` a link and room for `additional` more blocks, every block
    /// re-encoded; or the error of a refused map.
    fn repacked(&self, bits: u32, additional: usize) -> std::io::Result<Self> {
        let mut p = PackedUpper::new(self.m, bits);
        p.blocks = self.blocks;
        p.bytes.try_reserve(
            self.blocks
                .saturating_add(additional)
                .saturating_mul(p.shape.stride()),
        )?;
        p.bytes.resize(self.blocks * p.shape.stride(), 0);
        let mut buf = Vec::with_capacity(self.m);
        for b in 0..self.blocks {
            buf.clear();
            self.for_each(b, |n| buf.push(n));
            p.encode(b, &buf);
        }
        Ok(p)
    }
}

impl Upper {
    /// No blocks, for a graph whose layer-0 links take the form `kind`.
    pub fn new(m: usize, kind: Links0Kind) -> Self {
        match kind {
            Links0Kind::U32 => Upper::U32 {
                m,
                words: Vec::new(),
            },
            Links0Kind::Packed => Upper::Packed(PackedUpper::new(m, 1)),
        }
    }

    fn stride_words(&self) -> usize {
        1 + match self {
            Upper::U32 { m, .. } => *m,
            Upper::Packed(p) => p.m,
        }
    }

    /// Words the blocks take in the `U32` form (what files hold).
    pub fn word_len(&self) -> usize {
        match self {
            Upper::U32 { words, .. } => words.len(),
            Upper::Packed(p) => p.blocks * (1 + p.m),
        }
    }

    /// Appends `n` blocks without links.
    pub fn push_blocks(&mut self, n: usize) {
        match self {
            Upper::U32 { m, words } => words.resize(words.len() + n * (1 + *m), 0),
            Upper::Packed(p) => {
                p.blocks += n;
                p.bytes.resize(p.blocks * p.shape.stride(), 0);
            }
        }
    }

    /// Makes the packed form's links wide enough for every slot below `nodes` (re-packing
    /// every block when that needs more bits; the `U32` form always is). Its room must have
    /// been reserved ([`Upper::try_reserve`]) where the caller cannot afford a panic.
    pub fn fit_nodes(&mut self, nodes: usize) {
        if let Upper::Packed(p) = self {
            let bits = bits_below(nodes);
            if bits > p.shape.bits() {
                *p = p
                    .repacked(bits, 0)
                    .expect("room for every logged write is reserved before it is logged");
            }
        }
    }

    /// Makes room in the packed form for `blocks` more blocks, with links as wide as slots
    /// below `nodes` need (re-packed now if that takes more bits), so that adding them cannot
    /// fail. An error (the system refused the memory) leaves the blocks as they were. The
    /// `U32` form (a `Vec`) reserves nothing, as before.
    pub fn try_reserve(&mut self, nodes: usize, blocks: usize) -> std::io::Result<()> {
        if let Upper::Packed(p) = self {
            let bits = bits_below(nodes).max(p.shape.bits());
            if bits > p.shape.bits() {
                *p = p.repacked(bits, blocks)?;
            } else {
                p.bytes
                    .try_reserve(blocks.saturating_mul(p.shape.stride()))?;
            }
        }
        Ok(())
    }

    /// Calls `f` with each link of the block at word offset `start`, in order.
    #[inline(always)]
    pub fn for_each(&self, start: usize, mut f: impl FnMut(u32)) {
        match self {
            Upper::U32 { m, words } => {
                let block = &words[start..start + 1 + *m];
                let count = (block[0] as usize).min(*m);
                for &n in &block[1..1 + count] {
                    f(n);
                }
            }
            Upper::Packed(p) => p.for_each(start / (1 + p.m), f),
        }
    }

    /// The links of the block at word offset `start`: read in place, or decoded into `buf`.
    #[inline(always)]
    pub fn get<'a>(&'a self, start: usize, buf: &'a mut [u32; MAX_LINKS]) -> &'a [u32] {
        match self {
            Upper::U32 { m, words } => {
                let block = &words[start..start + 1 + *m];
                let count = (block[0] as usize).min(*m);
                &block[1..1 + count]
            }
            Upper::Packed(p) => {
                let mut count = 0;
                p.for_each(start / (1 + p.m), |n| {
                    buf[count] = n;
                    count += 1;
                });
                &buf[..count]
            }
        }
    }

    /// Replaces the links of the block at word offset `start` (at most `m`).
    pub fn set(&mut self, start: usize, ids: &[u32]) {
        match self {
            Upper::U32 { m, words } => {
                let block = &mut words[start..start + 1 + *m];
                block[0] = ids.len() as u32;
                block[1..1 + ids.len()].copy_from_slice(ids);
                block[1 + ids.len()..].iter_mut().for_each(|x| *x = 0);
            }
            Upper::Packed(p) => {
                let b = start / (1 + p.m);
                p.encode(b, ids)
            }
        }
    }

    /// Every word of the `U32` form in order (unused link words 0): what files hold.
    pub fn for_each_word(&self, mut f: impl FnMut(u32)) {
        match self {
            Upper::U32 { words, .. } => words.iter().for_each(|&w| f(w)),
            Upper::Packed(p) => {
                let mut buf = [0u32; MAX_LINKS];
                for b in 0..p.blocks {
                    let mut count = 0;
                    p.for_each(b, |n| {
                        buf[count] = n;
                        count += 1;
                    });
                    f(count as u32);
                    buf[..count].iter().for_each(|&n| f(n));
                    (count..p.m).for_each(|_| f(0));
                }
            }
        }
    }

    /// The words of the `U32` form, in place (`None` for the packed form).
    pub fn words(&self) -> Option<&[u32]> {
        match self {
            Upper::U32 { words, .. } => Some(words),
            Upper::Packed(_) => None,
        }
    }

    /// The `U32` form's words (tests, and callers that want them at once).
    pub fn to_words(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.word_len());
        self.for_each_word(|w| out.push(w));
        out
    }

    /// The blocks of `words` (the `U32` form, already checked: counts at most `m`, every
    /// link a slot below `nodes`) in the form `kind`. Words after a block's count are not kept
    /// in the packed form (writers always make them 0).
    pub fn from_words(
        words: Vec<u32>,
        m: usize,
        kind: Links0Kind,
        nodes: usize,
    ) -> std::io::Result<Self> {
        Ok(match kind {
            Links0Kind::U32 => Upper::U32 { m, words },
            Links0Kind::Packed => {
                let stride = 1 + m;
                let mut p = PackedUpper::new(m, bits_below(nodes));
                p.blocks = words.len() / stride;
                p.bytes.try_reserve(p.blocks * p.shape.stride())?;
                p.bytes.resize(p.blocks * p.shape.stride(), 0);
                for (b, block) in words.chunks_exact(stride).enumerate() {
                    let count = (block[0] as usize).min(m);
                    p.encode(b, &block[1..1 + count]);
                }
                Upper::Packed(p)
            }
        })
    }

    /// Bytes of memory held (capacity).
    pub fn memory_bytes(&self) -> usize {
        match self {
            Upper::U32 { words, .. } => words.capacity() * 4,
            Upper::Packed(p) => p.bytes.capacity(),
        }
    }

    /// Gives back the packed form's room past its blocks ([`Flat::release_tail`]).
    pub fn release_tail(&self) {
        if let Upper::Packed(p) = self {
            p.bytes.release_tail();
        }
    }

    /// Bytes of memory the blocks in use take.
    #[cfg(test)]
    pub fn used_bytes(&self) -> usize {
        match self {
            Upper::U32 { words, .. } => words.len() * 4,
            Upper::Packed(p) => p.blocks * p.shape.stride(),
        }
    }

    /// Bits a packed link takes (tests).
    #[cfg(test)]
    pub fn packed_bits(&self) -> Option<u32> {
        match self {
            Upper::U32 { .. } => None,
            Upper::Packed(p) => Some(p.shape.bits()),
        }
    }

    /// The `U32` form's words, to write by hand (tests of refused files; `U32` form only).
    #[cfg(test)]
    pub fn words_mut(&mut self) -> &mut Vec<u32> {
        match self {
            Upper::U32 { words, .. } => words,
            Upper::Packed(_) => panic!("only the U32 form's words can be written in place"),
        }
    }
}

/// Equal when they hold the same links in the same blocks, in either form.
impl PartialEq for Upper {
    fn eq(&self, other: &Self) -> bool {
        self.stride_words() == other.stride_words() && self.to_words() == other.to_words()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At m 16 and 200,000 nodes a block is 37 bytes (5 + 16 × 18 bits), against 68.
    #[test]
    fn a_packed_block_at_m_16_and_200k_nodes_is_37_bytes() {
        let mut u = Upper::new(16, Links0Kind::Packed);
        u.fit_nodes(200_000);
        u.push_blocks(1);
        assert_eq!((u.packed_bits(), u.used_bytes()), (Some(18), 37));
    }

    /// Both forms, fed the same random writes while the node count grows past powers of two,
    /// hold the same links and write the same words; the packed form read back from them is
    /// equal too.
    #[test]
    fn packed_and_u32_upper_blocks_hold_the_same_links_through_growth() {
        let seed = std::env::var("NEEDLE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x13_2026u64);
        eprintln!("NEEDLE_SEED={seed}");
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for m in [1usize, 2, 3, 5, 16, 31, 128] {
            let mut wide = Upper::new(m, Links0Kind::U32);
            let mut packed = Upper::new(m, Links0Kind::Packed);
            let stride = 1 + m;
            let mut widths = std::collections::BTreeSet::new();
            let mut buf = [0u32; MAX_LINKS];
            let mut blocks = 0usize;
            for nodes in 1..=3_000usize {
                wide.fit_nodes(nodes);
                packed.fit_nodes(nodes);
                widths.insert(packed.packed_bits().expect("packed"));
                if next() % 4 == 0 {
                    let n = 1 + (next() % 3) as usize;
                    wide.push_blocks(n);
                    packed.push_blocks(n);
                    blocks += n;
                }
                if blocks == 0 {
                    continue;
                }
                for _ in 0..2 {
                    let start = (next() % blocks as u64) as usize * stride;
                    let count = match next() % 4 {
                        0 => 0,
                        1 => m,
                        _ => (next() % (m as u64 + 1)) as usize,
                    };
                    let ids: Vec<u32> = (0..count)
                        .map(|i| {
                            if i == 0 {
                                nodes as u32 - 1
                            } else {
                                (next() % nodes as u64) as u32
                            }
                        })
                        .collect();
                    wide.set(start, &ids);
                    packed.set(start, &ids);
                    assert_eq!(packed.get(start, &mut buf), &ids[..], "m {m}");
                }
            }
            assert!(widths.len() >= 10, "m {m}: widths {widths:?}");
            assert_eq!(wide.word_len(), packed.word_len());
            let words = wide.to_words();
            assert_eq!(packed.to_words(), words, "m {m}: the words written");
            assert_eq!(wide, packed, "m {m}");
            let mut a = [0u32; MAX_LINKS];
            for b in 0..blocks {
                let mut each = Vec::new();
                packed.for_each(b * stride, |n| each.push(n));
                assert_eq!(wide.get(b * stride, &mut a), &each[..], "m {m} block {b}");
            }
            let back =
                Upper::from_words(words.clone(), m, Links0Kind::Packed, 3_000).expect("memory");
            assert_eq!(back.to_words(), words, "m {m}: read back");
            if m >= 2 {
                assert!(
                    packed.used_bytes() < wide.used_bytes(),
                    "m {m}: packed {} bytes, u32 {}",
                    packed.used_bytes(),
                    wide.used_bytes()
                );
            }
        }
    }
}
