//! The broker's memory allocator, jemalloc, and the figures it reports for `/metrics`.
//!
//! glibc's malloc keeps what it frees in its arenas: after thousands of connections come
//! and go, the broker held about 46 KiB per closed connection (all of it free, handed back
//! only by `malloc_trim`). jemalloc, configured by [`MALLOC_CONF`], returns pages unused for
//! about a second to the system from a background thread, so the broker's resident memory
//! follows its live data. The `hotline` binary installs it (`#[global_allocator]` in
//! main.rs); a library user keeps their own.

/// jemalloc's configuration, compiled into the binary (the `MALLOC_CONF` environment
/// variable still overrides it):
/// - `background_thread`: purging happens on jemalloc's own thread, not inside the
///   allocations of request handling;
/// - `dirty_decay_ms:1000`: pages freed and unused for about a second go back to the system;
/// - `muzzy_decay_ms:0`: they go back at once with `MADV_DONTNEED` (which lowers RSS), not
///   first with `MADV_FREE` (which leaves them counted in RSS until the system needs them).
pub const MALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// What the allocator holds, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct AllocatorStats {
    /// Allocated by the broker and not yet freed.
    pub allocated: u64,
    /// In pages the allocator holds from the system (allocated, its metadata, and free
    /// pages not yet returned).
    pub resident: u64,
}

/// The allocator's current figures, or `None` if jemalloc does not answer (e.g. a build
/// without its statistics).
pub fn allocator_stats() -> Option<AllocatorStats> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    Some(AllocatorStats {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().ok()? as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().ok()? as u64,
    })
}
