//! [`Vectors`]: a collection's f32 vectors, slot after slot, either all in memory or, under
//! `quantization: sq8`, a prefix read from the checkpoint file through a read-only map and the
//! slots written since that checkpoint in memory.
//!
//! Why: in sq8 mode searches walk the graph on the int8 codes and read f32 vectors only to
//! re-rank the few best candidates, so the f32 array need not occupy anonymous memory: mapped,
//! its pages are clean file pages the kernel can drop and read again. The map is made after a
//! checkpoint is written or opened (`Database::map_vectors`), from bytes whose length and
//! checksum were checked before; the file is replaced only by rename, so the map stays valid
//! until dropped. Knows nothing of files or formats: it is handed a [`ReadOnlyMap`].

use std::fmt;
use std::sync::Arc;

use crate::disk::ReadOnlyMap;
use crate::hnsw::Flat;

/// A mapped run of little-endian f32 values.
struct Mapped {
    map: ReadOnlyMap,
}

impl Mapped {
    /// `None` where the bytes cannot be read as `f32` in place (a big-endian host, a map that
    /// is not 4-byte aligned, or a length that is not a multiple of 4).
    fn new(map: ReadOnlyMap) -> Option<Mapped> {
        let bytes = map.bytes();
        let fits = cfg!(target_endian = "little")
            && (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>())
            && bytes.len().is_multiple_of(4);
        fits.then_some(Mapped { map })
    }

    fn floats(&self) -> &[f32] {
        let bytes = self.map.bytes();
        // SAFETY: `new` checked alignment and length; every bit pattern is a valid f32, and on a
        // little-endian host the file's little-endian bytes are the values.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
    }
}

/// The f32 vectors of a collection: an optional mapped prefix, then the rest in memory.
#[derive(Default)]
pub(crate) struct Vectors {
    mapped: Option<Arc<Mapped>>,
    tail: Flat<f32>,
}

impl Vectors {
    pub fn new() -> Self {
        Vectors::default()
    }

    /// All in memory.
    pub fn from_flat(flat: Flat<f32>) -> Self {
        Vectors {
            mapped: None,
            tail: flat,
        }
    }

    /// The two runs, in slot order: (mapped or in-memory, in-memory after the map).
    #[inline(always)]
    pub fn parts(&self) -> (&[f32], &[f32]) {
        match &self.mapped {
            Some(m) => (m.floats(), &self.tail),
            None => (&self.tail, &[]),
        }
    }

    /// Floats held (slots × dimensions).
    pub fn len(&self) -> usize {
        let (a, b) = self.parts();
        a.len() + b.len()
    }

    /// Floats read from the file map.
    pub fn mapped_len(&self) -> usize {
        self.mapped.as_ref().map_or(0, |m| m.floats().len())
    }

    /// The `len` floats from `start` (within one run: callers ask for whole slots).
    #[inline(always)]
    pub fn get(&self, start: usize, len: usize) -> &[f32] {
        let (head, tail) = self.parts();
        if start < head.len() {
            &head[start..start + len]
        } else {
            let s = start - head.len();
            &tail[s..s + len]
        }
    }

    /// Every vector of `dim` floats, in slot order.
    pub fn chunks(&self, dim: usize) -> impl Iterator<Item = &[f32]> + Clone {
        let (head, tail) = self.parts();
        head.chunks_exact(dim).chain(tail.chunks_exact(dim))
    }

    pub fn try_reserve(&mut self, additional: usize) -> std::io::Result<()> {
        self.tail.try_reserve(additional)
    }

    pub fn extend_from_slice(&mut self, items: &[f32]) {
        self.tail.extend_from_slice(items);
    }

    /// Replaces the whole array by `map`, which must hold exactly the same floats; `false` (and
    /// nothing changed) where it cannot be read in place or its length differs.
    pub fn replace_by_map(&mut self, map: ReadOnlyMap) -> bool {
        let Some(mapped) = Mapped::new(map) else {
            return false;
        };
        if mapped.floats().len() != self.len() {
            return false;
        }
        debug_assert!(
            self.chunks(1)
                .zip(mapped.floats())
                .all(|(a, b)| a[0].to_bits() == b.to_bits()),
            "the map holds the vectors it replaces"
        );
        self.mapped = Some(Arc::new(mapped));
        self.tail = Flat::new();
        true
    }
}

impl Clone for Vectors {
    fn clone(&self) -> Self {
        Vectors {
            mapped: self.mapped.clone(),
            tail: self.tail.clone(),
        }
    }
}

impl PartialEq for Vectors {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .chunks(1)
                .zip(other.chunks(1))
                .all(|(a, b)| a[0].to_bits() == b[0].to_bits())
    }
}

impl fmt::Debug for Vectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Vectors(len {}, mapped {})",
            self.len(),
            self.mapped_len()
        )
    }
}
