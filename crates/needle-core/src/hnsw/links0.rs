//! [`Links0`]: the layer-0 links of a graph, one block per node holding a count and up to
//! `2·m` neighbour slots, in one of two forms chosen when the graph is made ([`Links0Kind`]):
//!
//! - `U32`: `[count, n_1 .. n_2m]` as `u32` words (`1 + 2·m` words a node): the neighbours are
//!   read in place. f32 collections, where the vectors dwarf the links, and sq8 ones whose
//!   codes outweigh the links ([`Links0Kind::for_collection`]).
//! - `Packed`: one [`super::packed::Sorted`] block: the links sorted by slot, in Elias-Fano
//!   form for links of `bits` bits, where `bits` is what the store's node capacity needs (18 at
//!   200,000 nodes): at m 16, 60 bytes a node instead of 132 (73 with each link in 18 bits,
//!   as before ef15). sq8 collections whose links outweigh the codes (glove50: 2.4× them;
//!   docs/benchmarks-history.md, "glove50: the structural bound", links11 and ef15). A walk
//!   decodes each link as it checks it against the visited set. When the capacity grows past
//!   a power of two, the grown copy re-packs every block with one bit more.
//!
//! Both hold the same links; the `U32` form in the order they were set, the packed one sorted
//! by slot (nothing reads an order into them: see [`super::packed::Sorted`]). Files always
//! hold the `U32` form (see [`Links0::write_words`], [`Links0::from_words`]), in the order
//! held. Knows nothing of distances or of what the slots mean.

use super::packed::{Sorted, bits_below};
use super::{Flat, MAX_LINKS};

/// Which form a graph's layer-0 links take; fixed for the graph's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links0Kind {
    /// `u32` words, read in place.
    U32,
    /// Bit-packed, decoded per expansion.
    Packed,
}

impl Links0Kind {
    /// The form for a collection of `dim`-dimensional vectors at `m`: packed where the walk
    /// reads int8 codes (sq8) and a node's `u32` links (`4 + 8·m` bytes) outweigh its code
    /// block (`4 + dim` bytes), as on glove50 (132 against 54 bytes at m 16): there they
    /// were the largest part of the process and packing cost no speed. Where the codes
    /// dominate (words-minilm, 384 dims: 388 bytes) the links stay `u32` words: packing
    /// saved ~10 % of the memory there, and the walk was 4-12 % slower (CPU time a query,
    /// docs/benchmarks-history.md, links11).
    pub fn for_collection(q: crate::config::Quantization, dim: usize, m: usize) -> Self {
        #[cfg(test)]
        if let Some(kind) = FORCED.with(|f| f.get()) {
            return kind;
        }
        let links_outweigh_codes = 4 + 8 * m > 4 + dim;
        match q {
            crate::config::Quantization::Sq8 if links_outweigh_codes => Links0Kind::Packed,
            _ => Links0Kind::U32,
        }
    }
}

#[cfg(test)]
thread_local! {
    static FORCED: std::cell::Cell<Option<Links0Kind>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with every collection made or opened on this thread holding `kind` links whatever
/// its quantization (tests: the same writes in both forms).
#[cfg(test)]
pub(crate) fn forcing<R>(kind: Links0Kind, f: impl FnOnce() -> R) -> R {
    FORCED.with(|c| c.set(Some(kind)));
    let r = f();
    FORCED.with(|c| c.set(None));
    r
}

/// The layer-0 links of every node (see the module header).
#[derive(Clone)]
pub(crate) enum Links0 {
    U32 { m: usize, words: Flat<u32> },
    Packed(Packed),
}

impl Links0 {
    pub fn new(m: usize, kind: Links0Kind) -> Self {
        match kind {
            Links0Kind::U32 => Links0::U32 {
                m,
                words: Flat::new(),
            },
            Links0Kind::Packed => Links0::Packed(Packed::with_capacity(m, 0)),
        }
    }

    pub fn kind(&self) -> Links0Kind {
        match self {
            Links0::U32 { .. } => Links0Kind::U32,
            Links0::Packed(_) => Links0Kind::Packed,
        }
    }

    fn stride_words(m: usize) -> usize {
        1 + 2 * m
    }

    /// The links of `slot` in the `u32` form's `words`: a count (clamped to the block) and up
    /// to `2m` links.
    #[inline(always)]
    fn u32_links(m: usize, words: &[u32], slot: u32) -> &[u32] {
        let stride = Self::stride_words(m);
        let s = slot as usize * stride;
        let block = &words[s..s + stride];
        let count = (block[0] as usize).min(stride - 1);
        &block[1..1 + count]
    }

    /// Nodes held.
    pub fn len(&self) -> usize {
        match self {
            Links0::U32 { m, words } => words.len() / Self::stride_words(*m),
            Links0::Packed(p) => p.nodes,
        }
    }

    /// The links of `slot`: read in place, or decoded into `buf`.
    #[inline(always)]
    pub fn get<'a>(&'a self, slot: u32, buf: &'a mut [u32; MAX_LINKS]) -> &'a [u32] {
        match self {
            Links0::U32 { m, words } => Self::u32_links(*m, words, slot),
            Links0::Packed(p) => {
                let count = p.decode(slot, buf);
                &buf[..count]
            }
        }
    }

    /// Calls `f` with each link of `slot` in order, as it is read or decoded (the walk's
    /// form of [`Links0::get`]: no buffer written and read back, and the decoding overlaps
    /// what `f` waits for).
    #[inline(always)]
    pub fn for_each(&self, slot: u32, mut f: impl FnMut(u32)) {
        match self {
            Links0::U32 { m, words } => {
                for &n in Self::u32_links(*m, words, slot) {
                    f(n);
                }
            }
            Links0::Packed(p) => p.for_each(slot, f),
        }
    }

    /// Replaces the links of `slot` (at most `2·m`, each a slot below [`Links0::len`]).
    pub fn set(&mut self, slot: u32, ids: &[u32]) {
        match self {
            Links0::U32 { m, words } => {
                let stride = Self::stride_words(*m);
                let s = slot as usize * stride;
                let block = &mut words[s..s + stride];
                block[0] = ids.len() as u32;
                block[1..1 + ids.len()].copy_from_slice(ids);
                block[1 + ids.len()..].iter_mut().for_each(|x| *x = 0);
            }
            Links0::Packed(p) => p.encode(slot, ids),
        }
    }

    /// Appends a node without links. Its room must have been reserved
    /// ([`Links0::try_reserve`]) where the caller cannot afford a panic.
    pub fn push_empty(&mut self) {
        match self {
            Links0::U32 { m, words } => {
                let stride = Self::stride_words(*m);
                words.resize(words.len() + stride, 0);
            }
            Links0::Packed(p) => {
                if p.nodes == p.cap {
                    let grown = p
                        .grown(1)
                        .expect("room for every logged write is reserved before it is logged");
                    *p = grown;
                }
                p.nodes += 1;
                p.bytes.resize(p.nodes * p.shape.stride(), 0);
            }
        }
    }

    /// Makes room for `additional` more nodes. An error (the system refused the memory) leaves
    /// the links as they were.
    pub fn try_reserve(&mut self, additional: usize) -> std::io::Result<()> {
        if let Some(grown) = self.try_grown(additional)? {
            *self = grown;
        }
        Ok(())
    }

    /// A copy with room for `additional` more nodes, or `None` where there is room already (see
    /// [`Flat::try_grown`]: made under a collection's read lock). A packed copy whose capacity
    /// needs more bits is re-packed with them.
    pub fn try_grown(&self, additional: usize) -> std::io::Result<Option<Self>> {
        match self {
            Links0::U32 { m, words } => {
                let more = additional.saturating_mul(Self::stride_words(*m));
                Ok(words
                    .try_grown(more)?
                    .map(|words| Links0::U32 { m: *m, words }))
            }
            Links0::Packed(p) => {
                if p.nodes.saturating_add(additional) <= p.cap {
                    return Ok(None);
                }
                p.grown(additional).map(|p| Some(Links0::Packed(p)))
            }
        }
    }

    /// Faults in the pages the next `additional` nodes will fill (see [`Flat::populate`]).
    pub fn populate(&self, additional: usize) {
        match self {
            Links0::U32 { m, words } => {
                words.populate(additional.saturating_mul(Self::stride_words(*m)))
            }
            Links0::Packed(p) => p
                .bytes
                .populate(additional.saturating_mul(p.shape.stride())),
        }
    }

    /// Gives back the memory past the last node's block ([`Flat::release_tail`]).
    pub fn release_tail(&self) {
        match self {
            Links0::U32 { words, .. } => words.release_tail(),
            Links0::Packed(p) => p.bytes.release_tail(),
        }
    }

    /// Whether [`Links0::release_tail`] gave the room back since the last growth (tests).
    #[cfg(test)]
    pub fn tail_is_released(&self) -> bool {
        match self {
            Links0::U32 { words, .. } => words.tail_is_released(),
            Links0::Packed(p) => p.bytes.tail_is_released(),
        }
    }

    /// Where the block of `slot` starts in memory and how many bytes it spans (to prefetch).
    #[inline(always)]
    pub fn span(&self, slot: u32) -> Option<(*const u8, usize)> {
        match self {
            Links0::U32 { m, words } => {
                let stride = Self::stride_words(*m);
                let start = slot as usize * stride;
                let block = words.get(start..start + stride)?;
                Some((block.as_ptr().cast::<u8>(), stride * 4))
            }
            Links0::Packed(p) => {
                let start = slot as usize * p.shape.stride();
                let block = p.bytes.get(start..start + p.shape.stride())?;
                Some((block.as_ptr(), p.shape.stride()))
            }
        }
    }

    /// The start of the array (tests: whether it moved).
    #[cfg(test)]
    pub fn as_ptr(&self) -> *const u8 {
        match self {
            Links0::U32 { words, .. } => words.as_ptr().cast::<u8>(),
            Links0::Packed(p) => p.bytes.as_ptr(),
        }
    }

    /// Bytes held for the links in use.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Links0::U32 { words, .. } => words.len() * 4,
            Links0::Packed(p) => p.bytes.len(),
        }
    }

    /// Bits a packed neighbour takes (tests).
    #[cfg(test)]
    pub fn packed_bits(&self) -> Option<u32> {
        match self {
            Links0::U32 { .. } => None,
            Links0::Packed(p) => Some(p.shape.bits()),
        }
    }

    /// The `U32` form of every node in slot order (`1 + 2·m` words each, unused slots 0),
    /// handed to `out` a run of nodes at a time: what files hold.
    pub fn write_words<E>(
        &self,
        mut out: impl FnMut(&[u32]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        match self {
            Links0::U32 { words, .. } => out(words),
            Links0::Packed(p) => {
                let stride = Self::stride_words(p.m);
                let per_run = (4096 / stride).max(1);
                let mut run = Vec::with_capacity(per_run * stride);
                let mut buf = [0u32; MAX_LINKS];
                let mut slot = 0;
                while slot < p.nodes {
                    run.clear();
                    for s in slot..(slot + per_run).min(p.nodes) {
                        let count = p.decode(s as u32, &mut buf);
                        run.push(count as u32);
                        run.extend_from_slice(&buf[..count]);
                        run.resize(run.len() + stride - 1 - count, 0);
                    }
                    out(&run)?;
                    slot += per_run;
                }
                Ok(())
            }
        }
    }

    /// The links of `words` in the `U32` form (what files hold), already checked: every count
    /// at most `2·m`, every target below the node count. The words after a node's count are
    /// not kept in the packed form (writers always make them 0).
    pub fn from_words(words: &[u32], m: usize, kind: Links0Kind) -> std::io::Result<Self> {
        let stride = Self::stride_words(m);
        match kind {
            Links0Kind::U32 => Ok(Links0::U32 {
                m,
                words: Flat::try_from_slice(words)?,
            }),
            Links0Kind::Packed => {
                let n = words.len() / stride;
                let mut p = Packed::with_capacity(m, n);
                p.bytes.try_reserve(n * p.shape.stride())?;
                p.bytes.resize(n * p.shape.stride(), 0);
                p.nodes = n;
                for (slot, block) in words.chunks_exact(stride).enumerate() {
                    let count = (block[0] as usize).min(stride - 1);
                    p.encode(slot as u32, &block[1..1 + count]);
                }
                Ok(Links0::Packed(p))
            }
        }
    }
}

/// Equal when they hold the same links for the same nodes, in either form and in any order.
impl PartialEq for Links0 {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let (mut a, mut b) = ([0u32; MAX_LINKS], [0u32; MAX_LINKS]);
        (0..self.len() as u32).all(|s| {
            let mut x = self.get(s, &mut a).to_vec();
            let mut y = other.get(s, &mut b).to_vec();
            x.sort_unstable();
            y.sort_unstable();
            x == y
        })
    }
}

impl std::fmt::Debug for Links0 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Links0({:?}, {} nodes)", self.kind(), self.len())
    }
}

/// The packed form: per node one block of [`Sorted`] (up to `2·m` links).
#[derive(Clone)]
pub(crate) struct Packed {
    m: usize,
    /// Nodes held.
    nodes: usize,
    /// Nodes there is room for; the shape's `bits` is what the largest of their slots needs.
    cap: usize,
    shape: Sorted,
    bytes: Flat<u8>,
}

impl Packed {
    /// Empty, with `bits` for `cap` nodes (no memory reserved yet).
    fn with_capacity(m: usize, cap: usize) -> Self {
        let shape = Sorted::new(2 * m, bits_below(cap));
        Packed {
            m,
            nodes: 0,
            cap,
            shape,
            bytes: Flat::new(),
        }
    }

    /// A copy with room for `additional` more nodes (at least double the capacity), re-packed
    /// if the new capacity needs more bits.
    fn grown(&self, additional: usize) -> std::io::Result<Self> {
        let too_big =
            || std::io::Error::new(std::io::ErrorKind::OutOfMemory, "link array size overflows");
        let needed = self.nodes.checked_add(additional).ok_or_else(too_big)?;
        let cap = needed.max(self.cap.saturating_mul(2)).max(1024);
        let mut p = Packed::with_capacity(self.m, cap);
        let bytes = cap.checked_mul(p.shape.stride()).ok_or_else(too_big)?;
        p.bytes.try_reserve(bytes)?;
        p.nodes = self.nodes;
        if p.shape == self.shape {
            p.bytes.extend_from_slice(&self.bytes);
        } else {
            p.bytes.resize(p.nodes * p.shape.stride(), 0);
            let mut buf = [0u32; MAX_LINKS];
            for slot in 0..self.nodes as u32 {
                let count = self.decode(slot, &mut buf);
                p.encode(slot, &buf[..count]);
            }
        }
        Ok(p)
    }

    /// Decodes the links of `slot` into `buf`; returns their count.
    #[inline(always)]
    fn decode(&self, slot: u32, buf: &mut [u32; MAX_LINKS]) -> usize {
        let mut count = 0;
        self.for_each(slot, |n| {
            buf[count] = n;
            count += 1;
        });
        count
    }

    /// Calls `f` with each link of `slot` in ascending order, as it is decoded.
    #[inline(always)]
    fn for_each(&self, slot: u32, f: impl FnMut(u32)) {
        let start = slot as usize * self.shape.stride();
        self.shape
            .for_each(&self.bytes[start..start + self.shape.stride()], f);
    }

    /// Writes `ids` (at most `2·m`, each a slot below the capacity) as the links of `slot`.
    fn encode(&mut self, slot: u32, ids: &[u32]) {
        let start = slot as usize * self.shape.stride();
        self.shape
            .write(&mut self.bytes[start..start + self.shape.stride()], ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator (splitmix64) for the random links.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// Packed only for sq8, and only where the links outweigh the codes.
    #[test]
    fn links_are_packed_in_sq8_collections_whose_links_outweigh_their_codes() {
        use crate::config::Quantization::{None, Sq8};
        assert_eq!(Links0Kind::for_collection(Sq8, 50, 16), Links0Kind::Packed);
        assert_eq!(Links0Kind::for_collection(Sq8, 127, 16), Links0Kind::Packed);
        assert_eq!(Links0Kind::for_collection(Sq8, 128, 16), Links0Kind::U32);
        assert_eq!(Links0Kind::for_collection(Sq8, 384, 16), Links0Kind::U32);
        assert_eq!(Links0Kind::for_collection(Sq8, 384, 64), Links0Kind::Packed);
        assert_eq!(Links0Kind::for_collection(None, 50, 16), Links0Kind::U32);
    }

    /// At m 16 and 200,000 nodes a block is 60 bytes (64 bits of high parts + 32 × 13 low
    /// bits), against 132 as `u32` words; 64 bytes from 262,145 nodes (19 bits) on.
    #[test]
    fn a_packed_block_at_m_16_and_200k_nodes_is_60_bytes() {
        let p = Packed::with_capacity(16, 200_000);
        assert_eq!((p.shape.bits(), p.shape.stride()), (18, 60));
        let p = Packed::with_capacity(16, (1 << 18) + 1);
        assert_eq!((p.shape.bits(), p.shape.stride()), (19, 64));
    }

    /// Across the 262,144-node boundary (the grown copy re-packs every block from 18 bits a
    /// link to 19, 60 to 64 bytes at m 16) and at m 1 (two links a block, not a size the
    /// config allows but the smallest block): both forms hold the same links, the largest
    /// slot of each width included; read back from the words at exactly 262,144 nodes (18
    /// bits) and grown by one, the packed form widens and keeps them (break15).
    #[test]
    fn packed_links_cross_the_262144_node_boundary_and_m_1() {
        let seed = std::env::var("NEEDLE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x15_b0a7);
        eprintln!("NEEDLE_SEED={seed}");
        let mut next = rng(seed);
        let edge = 1usize << 18;
        for m in [1usize, 16] {
            let mut wide = Links0::new(m, Links0Kind::U32);
            let mut packed = Links0::new(m, Links0Kind::Packed);
            let mut buf = [0u32; MAX_LINKS];
            let total = edge + 3;
            for n in 1..=total {
                wide.push_empty();
                packed.push_empty();
                // Every node near a power of two, and one in 64 elsewhere, gets full links
                // with the largest slot so far among them.
                if n.is_power_of_two() || n + 1 >= edge || n % 64 == 0 {
                    let slot = (n - 1) as u32;
                    let ids: Vec<u32> = (0..2 * m)
                        .map(|i| match i {
                            0 => n as u32 - 1,
                            1 => 0,
                            _ => (next() % n as u64) as u32,
                        })
                        .collect();
                    wide.set(slot, &ids);
                    packed.set(slot, &ids);
                    let mut sorted = ids.clone();
                    sorted.sort_unstable();
                    assert_eq!(packed.get(slot, &mut buf), &sorted[..], "m {m} n {n}");
                }
            }
            assert_eq!(packed.packed_bits(), Some(19), "m {m}");
            assert_eq!(wide, packed, "m {m}: through the re-pack at {edge}");
            let mut words = Vec::new();
            wide.write_words(|run| {
                words.extend_from_slice(run);
                Ok::<(), ()>(())
            })
            .expect("no error");
            // The first 262,144 nodes, read back packed (18 bits), then one more node.
            let stride = 1 + 2 * m;
            let head = &words[..edge * stride];
            let mut back = Links0::from_words(head, m, Links0Kind::Packed).expect("memory");
            assert_eq!(back.packed_bits(), Some(18), "m {m}");
            let top = edge as u32 - 1;
            let mut a = [0u32; MAX_LINKS];
            let mut w = wide.get(top, &mut a).to_vec();
            w.sort_unstable();
            assert_eq!(back.get(top, &mut buf), &w[..], "m {m}: read back");
            back.push_empty();
            assert_eq!(back.packed_bits(), Some(19), "m {m}: grown");
            let ids: Vec<u32> = (0..2 * m as u32).map(|i| edge as u32 - i % 2).collect();
            back.set(edge as u32, &ids);
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            assert_eq!(back.get(edge as u32, &mut buf), &sorted[..], "m {m}");
            for s in (0..edge as u32).step_by(997).chain([top]) {
                let mut w = wide.get(s, &mut a).to_vec();
                w.sort_unstable();
                assert_eq!(
                    back.get(s, &mut buf),
                    &w[..],
                    "m {m} slot {s}: after growth"
                );
            }
        }
    }

    /// Both forms, fed the same random writes while they grow past powers of two, hold the
    /// same links, and write the same words; the packed one read back from them is equal too.
    /// Extreme values (the largest slot, full and empty blocks) are written on purpose.
    #[test]
    fn packed_and_u32_forms_hold_the_same_links_through_growth() {
        let seed = std::env::var("NEEDLE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x11_2026);
        eprintln!("NEEDLE_SEED={seed}");
        let mut next = rng(seed);
        for m in [2usize, 3, 5, 8, 16, 31, 64, 128] {
            let mut wide = Links0::new(m, Links0Kind::U32);
            let mut packed = Links0::new(m, Links0Kind::Packed);
            let total = if m >= 64 { 2_500 } else { 5_000 };
            let mut widths = std::collections::BTreeSet::new();
            let mut buf = [0u32; MAX_LINKS];
            for n in 1..=total {
                if next() % 7 == 0 {
                    let more = (next() % 300) as usize;
                    wide.try_reserve(more).expect("memory for a small test");
                    packed.try_reserve(more).expect("memory for a small test");
                }
                wide.push_empty();
                packed.push_empty();
                widths.insert(packed.packed_bits().expect("packed"));
                for _ in 0..3 {
                    let slot = (next() % n as u64) as u32;
                    let count = match next() % 5 {
                        0 => 0,
                        1 => 2 * m,
                        _ => (next() % (2 * m as u64 + 1)) as usize,
                    };
                    let ids: Vec<u32> = (0..count)
                        .map(|i| {
                            if i == 0 {
                                n as u32 - 1
                            } else {
                                (next() % n as u64) as u32
                            }
                        })
                        .collect();
                    wide.set(slot, &ids);
                    packed.set(slot, &ids);
                    let mut sorted = ids.clone();
                    sorted.sort_unstable();
                    assert_eq!(packed.get(slot, &mut buf), &sorted[..], "m {m} slot {slot}");
                }
            }
            assert!(widths.len() >= 3, "m {m}: widths {widths:?}");
            assert_eq!(wide, packed, "m {m}");
            let mut a = [0u32; MAX_LINKS];
            for s in 0..total as u32 {
                let mut w = wide.get(s, &mut a).to_vec();
                w.sort_unstable();
                assert_eq!(&w[..], packed.get(s, &mut buf), "m {m} slot {s}");
            }
            let words = |l: &Links0| {
                let mut all = Vec::new();
                l.write_words(|run| {
                    all.extend_from_slice(run);
                    Ok::<(), ()>(())
                })
                .expect("no error");
                all
            };
            // The words written: the same blocks, each one's links sorted in the packed form.
            let sorted_blocks = |mut w: Vec<u32>| {
                for block in w.chunks_exact_mut(2 * m + 1) {
                    let count = (block[0] as usize).min(2 * m);
                    block[1..1 + count].sort_unstable();
                }
                w
            };
            let (ww, pw) = (words(&wide), words(&packed));
            assert_eq!(sorted_blocks(ww.clone()), pw, "m {m}: the words written");
            let back = Links0::from_words(&ww, m, Links0Kind::Packed).expect("memory");
            assert_eq!(back.len(), total);
            assert_eq!(words(&back), pw, "m {m}: read back");
            assert!(
                packed.memory_bytes() < wide.memory_bytes(),
                "m {m}: packed {} bytes, u32 {}",
                packed.memory_bytes(),
                wide.memory_bytes()
            );
        }
    }

    /// A grown copy made from a shared borrow holds the same links, re-packed with more bits
    /// when its capacity crosses a power of two, and leaves the original as it was.
    #[test]
    fn a_grown_copy_repacks_without_touching_the_original() {
        let mut p = Links0::new(4, Links0Kind::Packed);
        for n in 0..1024u32 {
            p.push_empty();
            p.set(n, &[n, n / 2, 0, 1023u32.min(n)]);
        }
        let before = p.packed_bits();
        assert_eq!(before, Some(10));
        let grown = p.try_grown(1).expect("memory").expect("full: must grow");
        assert_eq!(grown.packed_bits(), Some(11));
        assert_eq!(p.packed_bits(), before);
        assert_eq!(grown, p);
    }
}
