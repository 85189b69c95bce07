//! [`Flat`]: a growable array of plain numbers (`f32`, `u32`) for the data every search walks at
//! random (vectors, layer-0 links), kept in an anonymous memory map that Linux is asked to back
//! with transparent huge pages (`MADV_HUGEPAGE`).
//!
//! Why: a search touches a few thousand scattered cache lines of a 40-80 MB array. With 4 KB
//! pages nearly each of them also misses the TLB (Zen 4's 3072-entry L2 TLB covers 12 MB); with
//! 2 MB pages the whole array is a few dozen entries. Measured on glove50 (200k × 50) and
//! words-minilm (50k × 384): see `docs/benchmarks-history.md`. Where the advice is not available (other
//! systems, THP disabled) this is just a plain array. Knows nothing of what the numbers mean.
//!
//! The map's room past the items is not touched, except by the huge page that holds the last
//! items: that one is faulted in whole, up to 2 MB past them, and how far past depends on
//! where the map happens to start (glove50 sq8: 0.3-2.1 MB on one array, the run-to-run spread
//! of the process's RSS; docs/benchmarks-history.md, mem12). [`Flat::release_tail`], called
//! after large one-off work (a checkpoint, an open), gives that part back and keeps huge pages
//! off the room until the array grows into it again.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::MmapMut;

/// Numbers for which every bit pattern, including all zeros, is a valid value.
pub(crate) trait Plain: Copy + 'static {}
impl Plain for f32 {}
impl Plain for u32 {}
impl Plain for u8 {}

/// A `Vec<T>` look-alike in an anonymous memory map (zero-filled, page-aligned).
pub(crate) struct Flat<T: Plain> {
    map: Option<MmapMut>,
    len: usize,
    /// The room past the items was given back and advised off huge pages
    /// ([`Flat::release_tail`]); the next growth into it advises them again.
    tail_released: AtomicBool,
    _items: PhantomData<T>,
}

impl<T: Plain> Flat<T> {
    pub fn new() -> Self {
        Flat {
            map: None,
            len: 0,
            tail_released: AtomicBool::new(false),
            _items: PhantomData,
        }
    }

    pub fn capacity(&self) -> usize {
        self.map
            .as_ref()
            .map_or(0, |m| m.len() / std::mem::size_of::<T>())
    }

    /// Makes room for `additional` more items, at least doubling when it must grow. An error
    /// (the system refused the memory) leaves the array as it was.
    pub fn try_reserve(&mut self, additional: usize) -> std::io::Result<()> {
        if let Some(grown) = self.try_grown(additional)? {
            *self = grown;
        }
        Ok(())
    }

    /// A copy with room for `additional` more items, or `None` where there is room already:
    /// the growth of [`Flat::try_reserve`] made from a shared borrow, so that a collection can
    /// copy its big arrays under its read lock (searches go on) and only swap them in under its
    /// write lock. An error (the system refused the memory) changes nothing.
    pub fn try_grown(&self, additional: usize) -> std::io::Result<Option<Self>> {
        let too_big =
            || std::io::Error::new(std::io::ErrorKind::OutOfMemory, "array size overflows");
        let needed = self.len.checked_add(additional).ok_or_else(too_big)?;
        if needed <= self.capacity() {
            return Ok(None);
        }
        let cap = needed.max(self.capacity().saturating_mul(2)).max(4096);
        let bytes = cap
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(too_big)?;
        let mut map = map_anon(bytes)?;
        #[cfg(target_os = "linux")]
        {
            // Only advice: without transparent huge pages the map works the same.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        if let Some(old) = &self.map {
            let used = self.len * std::mem::size_of::<T>();
            map[..used].copy_from_slice(&old[..used]);
        }
        Ok(Some(Flat {
            map: Some(map),
            len: self.len,
            tail_released: AtomicBool::new(false),
            _items: PhantomData,
        }))
    }

    /// As [`Flat::try_reserve`], for growth whose room was reserved before: writes reserve the
    /// room they need before they are logged, so applying them never allocates here.
    fn reserve(&mut self, additional: usize) {
        if let Err(e) = self.try_reserve(additional) {
            panic!("room for every logged write is reserved before it is logged: {e}");
        }
        self.restore_tail();
    }

    /// Gives back the memory of the room past the items and keeps the room off huge pages
    /// (Linux: `MADV_NOHUGEPAGE`, then `MADV_DONTNEED`, from the page after the last item to
    /// the map's end; elsewhere nothing happens): the huge page holding the last items had
    /// been faulted in whole, and would be again (khugepaged collapses a 2 MB range around a
    /// single used page here). The items' own pages stay; those on the last huge page are
    /// split into small ones. Only the room is touched, which no reader reads, so this may
    /// run beside searches. Growth into the room ([`Flat::populate`], or the writes) advises
    /// huge pages again.
    pub fn release_tail(&self) {
        #[cfg(target_os = "linux")]
        if let Some(map) = &self.map {
            let page = 4096;
            let start = (self.len * std::mem::size_of::<T>()).next_multiple_of(page);
            if start < map.len() {
                self.tail_released.store(true, Ordering::SeqCst);
                // Only advice: refused, the room stays as it was (zeroed memory either way).
                let _ = map.advise_range(memmap2::Advice::NoHugePage, start, map.len() - start);
                // SAFETY: the range lies past the page of the last item: it holds no item (the
                // room is written before `len` grows over it), so dropping its pages (they read
                // back as zeros) loses nothing, and no slice handed out covers it.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        map.len() - start,
                    )
                };
            }
        }
    }

    /// Whether the room is released and advised off huge pages (tests).
    #[cfg(test)]
    pub fn tail_is_released(&self) -> bool {
        self.tail_released.load(Ordering::SeqCst)
    }

    /// Undoes [`Flat::release_tail`]'s advice before the array grows into its room.
    fn restore_tail(&self) {
        #[cfg(target_os = "linux")]
        if self.tail_released.load(Ordering::Relaxed)
            && self.tail_released.swap(false, Ordering::SeqCst)
        {
            if let Some(map) = &self.map {
                // Only advice, as in `try_grown`.
                let _ = map.advise(memmap2::Advice::HugePage);
            }
        }
    }

    /// Asks the system to back the room for the next `additional` items with memory now
    /// (Linux's `MADV_POPULATE_WRITE`; elsewhere, or where refused, nothing happens): the page
    /// faults of the writes that fill it, a few milliseconds where a huge page must first be
    /// compacted, are then taken here, where the caller holds no write lock. The room must
    /// have been reserved; only pages the writes will touch anyway are populated.
    pub fn populate(&self, additional: usize) {
        self.restore_tail();
        #[cfg(target_os = "linux")]
        if let Some(map) = &self.map {
            let size = std::mem::size_of::<T>();
            let start = self.len * size;
            let end = self
                .len
                .saturating_add(additional)
                .saturating_mul(size)
                .min(map.len());
            if start < end {
                // Only advice: the room is zeroed memory either way, mapped now or at first write.
                let _ = map.advise_range(memmap2::Advice::PopulateWrite, start, end - start);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = additional;
    }

    /// A copy of `items`, or the error of a refused allocation.
    pub fn try_from_slice(items: &[T]) -> std::io::Result<Self> {
        let mut flat = Flat::new();
        flat.try_reserve(items.len())?;
        flat.extend_from_slice(items);
        Ok(flat)
    }

    pub fn extend_from_slice(&mut self, items: &[T]) {
        self.reserve(items.len());
        let start = self.len;
        self.len += items.len();
        self[start..].copy_from_slice(items);
    }

    /// Grows or shrinks to `len` items; new items are `value`.
    pub fn resize(&mut self, len: usize, value: T) {
        if len > self.len {
            self.reserve(len - self.len);
            let start = self.len;
            self.len = len;
            self[start..].fill(value);
        } else {
            self.len = len;
        }
    }
}

/// Anonymous maps refused on purpose by tests (see `__private::refuse_anonymous_maps`).
static REFUSE_MAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Maps let through before the refused ones (see [`refuse_anonymous_maps_after`]).
static ALLOW_MAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes the next `n` anonymous maps fail as if the system had refused the memory.
pub(crate) fn refuse_anonymous_maps(n: u64) {
    refuse_anonymous_maps_after(0, n)
}

/// Lets the next `allowed` anonymous maps through, then makes `n` fail.
pub(crate) fn refuse_anonymous_maps_after(allowed: u64, n: u64) {
    REFUSE_MAPS.store(0, std::sync::atomic::Ordering::SeqCst);
    ALLOW_MAPS.store(allowed, std::sync::atomic::Ordering::SeqCst);
    REFUSE_MAPS.store(n, std::sync::atomic::Ordering::SeqCst);
}

fn map_anon(bytes: usize) -> std::io::Result<MmapMut> {
    use std::sync::atomic::Ordering;
    if ALLOW_MAPS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return MmapMut::map_anon(bytes);
    }
    if REFUSE_MAPS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            "anonymous map refused (test hook)",
        ));
    }
    MmapMut::map_anon(bytes)
}

impl<T: Plain> Default for Flat<T> {
    fn default() -> Self {
        Flat::new()
    }
}

impl<T: Plain> Deref for Flat<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.map {
            // SAFETY: the map is page-aligned (so aligned for T), holds at least `len` items
            // (`reserve` guarantees it), is initialised (zero-filled, then written only as T),
            // and every bit pattern is a valid T (`Plain`).
            Some(map) => unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<T>(), self.len) },
            None => &[],
        }
    }
}

impl<T: Plain> DerefMut for Flat<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.map {
            // SAFETY: as in `deref`; `&mut self` makes the access exclusive.
            Some(map) => unsafe {
                std::slice::from_raw_parts_mut(map.as_mut_ptr().cast::<T>(), self.len)
            },
            None => &mut [],
        }
    }
}

#[cfg(test)]
impl<T: Plain> From<Vec<T>> for Flat<T> {
    fn from(items: Vec<T>) -> Self {
        let mut flat = Flat::new();
        flat.extend_from_slice(&items);
        flat
    }
}

#[cfg(test)]
impl<T: Plain> FromIterator<T> for Flat<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Flat::from(iter.into_iter().collect::<Vec<T>>())
    }
}

impl<T: Plain> Clone for Flat<T> {
    fn clone(&self) -> Self {
        let mut flat = Flat::new();
        flat.extend_from_slice(self);
        flat
    }
}

impl<T: Plain + PartialEq> PartialEq for Flat<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for Flat<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flat(len {})", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_vec() {
        let mut f: Flat<u32> = Flat::new();
        assert!(f.is_empty());
        let mut v = Vec::new();
        for i in 0..10_000u32 {
            f.extend_from_slice(&[i, i * 2]);
            v.extend_from_slice(&[i, i * 2]);
        }
        f.resize(25_000, 7);
        v.resize(25_000, 7);
        assert_eq!(&f[..], &v[..]);
        f.resize(3, 0);
        assert_eq!(&f[..], &[0, 0, 1]);
        let g = f.clone();
        assert_eq!(f, g);
        let h: Flat<f32> = [1.5f32, 2.5].into_iter().collect();
        assert_eq!(&h[..], &[1.5, 2.5]);
        assert_eq!(h[0..2].to_vec(), vec![1.5, 2.5]);
    }

    /// Which pages of `f`'s map are resident (`mincore`).
    #[cfg(target_os = "linux")]
    fn resident_pages(f: &Flat<u32>) -> Vec<bool> {
        let map = f.map.as_ref().expect("a map");
        let mut v = vec![0u8; map.len().div_ceil(4096)];
        // SAFETY: the map is page-aligned and `map.len()` bytes long; `v` has a byte per page.
        let r =
            unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, map.len(), v.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        v.iter().map(|b| b & 1 == 1).collect()
    }

    /// The `VmFlags` of the mapping holding `addr` (`/proc/self/smaps`).
    #[cfg(target_os = "linux")]
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
                let at = |h: &str| usize::from_str_radix(h, 16).unwrap_or(0);
                inside = at(lo) <= addr && addr < at(hi);
            } else if inside && first == "VmFlags:" {
                return line.to_string();
            }
        }
        panic!("no mapping holds {addr:#x}")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn release_tail_gives_back_the_room_and_keeps_the_items() {
        let mut f: Flat<u32> = Flat::new();
        f.try_reserve(1 << 20).unwrap();
        let items: Vec<u32> = (1..=100_000).collect();
        f.extend_from_slice(&items);
        // The room for 500,000 more items faulted in, as the huge page holding the last items
        // would be (up to 2 MB past them).
        f.populate(500_000);
        let used_pages = (items.len() * 4).div_ceil(4096);
        let room_pages = (600_000 * 4) / 4096;
        let before = resident_pages(&f);
        if !before[used_pages..room_pages].iter().all(|&r| r) {
            eprintln!("MADV_POPULATE_WRITE refused here: nothing to release");
            return;
        }
        let tail = f.map.as_ref().unwrap().as_ptr() as usize + used_pages * 4096;
        assert!(vm_flags(tail).contains(" hg"), "{}", vm_flags(tail));

        f.release_tail();
        let after = resident_pages(&f);
        assert!(
            after[..used_pages].iter().all(|&r| r),
            "an item's page was dropped"
        );
        let kept = after[used_pages..].iter().filter(|&&r| r).count();
        assert_eq!(kept, 0, "{kept} pages of the room still resident");
        assert_eq!(&f[..], &items[..]);
        assert!(f.tail_is_released());
        assert!(vm_flags(tail).contains(" nh"), "{}", vm_flags(tail));

        // Growing into the room advises huge pages again, and reads what was written.
        f.extend_from_slice(&[7; 1000]);
        assert!(!f.tail_is_released());
        assert!(vm_flags(tail).contains(" hg"), "{}", vm_flags(tail));
        assert_eq!(&f[..100_000], &items[..]);
        assert!(f[100_000..].iter().all(|&x| x == 7));
        f.resize(700_000, 0);
        assert!(f[101_000..].iter().all(|&x| x == 0));
        assert_eq!(
            f.iter().map(|&x| u64::from(x)).sum::<u64>(),
            5_000_050_000 + 7_000
        );
    }
}
