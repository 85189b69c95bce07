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

use crate::disk::{DiskFile, ReadOnlyMap};
use crate::hnsw::Flat;

/// A mapped run of little-endian f32 values, and the file and offset it maps (for positioned
/// reads that leave the map's pages alone, see [`Vectors::read_into`]).
struct Mapped {
    map: ReadOnlyMap,
    file: Arc<dyn DiskFile>,
    offset: u64,
}

impl Mapped {
    /// `None` where the bytes cannot be read as `f32` in place (a big-endian host, a map that
    /// is not 4-byte aligned, or a length that is not a multiple of 4).
    fn new(map: ReadOnlyMap, file: Arc<dyn DiskFile>, offset: u64) -> Option<Mapped> {
        let bytes = map.bytes();
        let fits = cfg!(target_endian = "little")
            && (bytes.as_ptr() as usize) % std::mem::align_of::<f32>() == 0
            && bytes.len() % 4 == 0;
        fits.then_some(Mapped { map, file, offset })
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

    /// Whether the `len` floats from `start` are in the mapped prefix.
    #[inline(always)]
    pub fn is_mapped(&self, start: usize, len: usize) -> bool {
        start + len <= self.mapped_len()
    }

    /// Copies the `buf.len()` floats from `start` into `buf`: from memory, or, for the mapped
    /// prefix, by a positioned read of the file (`DiskFile::read_exact_at`), which fills `buf`
    /// from the page cache without mapping a page into this process: the vectors stay out of
    /// its resident memory however many are read (a read through the map would map each page
    /// it touches, and the whole file ends up counted in the process's RSS).
    pub fn read_into(&self, start: usize, buf: &mut [f32]) -> std::io::Result<()> {
        match &self.mapped {
            Some(m) if start + buf.len() <= m.floats().len() => {
                // SAFETY: any 4 bytes are a valid f32; `Mapped::new` checked the host is
                // little-endian, the file's byte order.
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(
                        buf.as_mut_ptr().cast::<u8>(),
                        std::mem::size_of_val(buf),
                    )
                };
                m.file.read_exact_at(m.offset + start as u64 * 4, bytes)
            }
            _ => {
                buf.copy_from_slice(self.get(start, buf.len()));
                Ok(())
            }
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

    /// The in-memory run with room for `additional` more floats, or `None` where it has room
    /// ([`Flat::try_grown`]); [`Vectors::install_tail`] swaps it in.
    pub fn try_grown_tail(&self, additional: usize) -> std::io::Result<Option<Flat<f32>>> {
        self.tail.try_grown(additional)
    }

    /// [`Flat::release_tail`] for the in-memory run.
    pub fn release_tail(&self) {
        self.tail.release_tail();
    }

    /// Whether [`Vectors::release_tail`] gave the room back since the last growth (tests).
    #[cfg(test)]
    pub fn tail_is_released(&self) -> bool {
        self.tail.tail_is_released()
    }

    /// [`Flat::populate`] for the in-memory run.
    pub fn populate_tail(&self, additional: usize) {
        self.tail.populate(additional);
    }

    /// Swaps in a grown copy of the in-memory run, if it still holds the same floats (its
    /// length unchanged: nothing was written since the copy). Returns the run it replaced, or
    /// the copy where it did not, for the caller to free when it no longer holds a lock.
    pub fn install_tail(&mut self, grown: Flat<f32>) -> Flat<f32> {
        if grown.len() == self.tail.len() {
            std::mem::replace(&mut self.tail, grown)
        } else {
            grown
        }
    }

    pub fn extend_from_slice(&mut self, items: &[f32]) {
        self.tail.extend_from_slice(items);
    }

    /// Replaces the whole array by `map` (bytes `offset..` of `file`), which must hold exactly
    /// the same floats; `false` (and
    /// nothing changed) where it cannot be read in place or its length differs.
    pub fn replace_by_map(
        &mut self,
        map: ReadOnlyMap,
        file: Arc<dyn DiskFile>,
        offset: u64,
    ) -> bool {
        let Some(mapped) = Mapped::new(map, file, offset) else {
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
        // Whatever read it so far (the check above, in debug builds), no page of the map need
        // be resident: re-ranking reads the vectors with positioned reads (`read_into`).
        mapped.map.release_pages();
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
