//! Handing the allocator's free memory back to the system after large, one-off work.
//!
//! A build allocates and frees a great deal: each chunk's candidate lists, the neighbour lists
//! it replaces, growing arrays copied to bigger ones, the codes of an sq8 retraining. glibc's
//! malloc keeps what is freed inside its heaps (one per thread that allocated, so the rayon
//! workers' too) for later use, and only gives back the top of a heap, so after a build the
//! process holds freed memory that a searching process never uses again: measured on
//! words-minilm (50,000 × 384, sq8) 22.4 MB held by one heap with 10.8 MB in use, 17.8 MB
//! resident (`docs/benchmarks-history.md`, "Memory"). [`release_free_memory`] returns the free pages of
//! every heap to the system (`malloc_trim(0)`, which also releases free pages in the middle of
//! a heap); the memory in use is untouched. Called after a checkpoint, an open and a compaction,
//! the one-off operations that follow large builds or copies. Elsewhere (other allocators,
//! other systems) it does nothing.

/// Returns the allocator's free memory to the system where the allocator can (glibc).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks and releases glibc's own free lists; any pad is valid
    // and it is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}
