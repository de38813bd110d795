//! The allocator of the end-to-end binaries (`e2e`, `e2e_postgres`), one
//! definition for both.

/// The gateways these tests serve in-process allocate as the gateway binary
/// does (mimalloc, which also serves SQLite's malloc): memory measured here
/// (`fuzz_grpc`) is then the service's. Under glibc's malloc, SQLite's page
/// caches spread over its per-thread arenas, each kept at its peak, and a
/// 10-minute fuzz run's RSS still rose at its end.
#[cfg(not(feature = "alloc-stats"))]
#[global_allocator]
static ALLOCATOR: gateway::Allocator = gateway::Allocator {};

/// `--features alloc-stats`: the same allocator, counting the bytes Rust code
/// holds from it, so that a fuzz run tells live heap from what the allocator
/// keeps (RSS). SQLite's allocations do not pass through it.
#[cfg(feature = "alloc-stats")]
#[global_allocator]
static ALLOCATOR: stats_alloc::StatsAlloc<gateway::Allocator> =
    stats_alloc::StatsAlloc::new(gateway::Allocator {});

/// Bytes Rust code holds from the allocator now, where they are counted
/// (`alloc-stats`).
pub fn live_heap_bytes() -> Option<u64> {
    #[cfg(feature = "alloc-stats")]
    return {
        let s = ALLOCATOR.stats();
        Some(s.bytes_allocated.saturating_sub(s.bytes_deallocated) as u64)
    };
    #[cfg(not(feature = "alloc-stats"))]
    None
}
