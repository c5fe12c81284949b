//! The names of every Prometheus metric inputfs exports, in one place.
//!
//! Metric names are an interface: dashboards and alerts are written against
//! them. Every place that records a metric (the FUSE adapter, the binary's
//! exporter) takes its name from here, and [`ALL`] lists each one with its kind
//! and help text so the exporter describes them and a test can check the README
//! documents them all.

/// The label that says which cache tier a per-tier metric is about.
pub const TIER: &str = "tier";
/// `tier` label value of the in-memory block cache.
pub const TIER_MEMORY: &str = "memory";
/// `tier` label value of the local cache directory.
pub const TIER_LOCAL: &str = "local";
/// `tier` label value of the shared cache directory.
pub const TIER_SHARED: &str = "shared";

pub const TIER_HITS: &str = "inputfs_tier_hits_total";
pub const TIER_MISSES: &str = "inputfs_tier_misses_total";
pub const TIER_READ_BYTES: &str = "inputfs_tier_read_bytes_total";
pub const TIER_ERRORS: &str = "inputfs_tier_errors_total";
pub const TIER_CORRUPT_BLOCKS: &str = "inputfs_tier_corrupt_blocks_total";
pub const TIER_PUBLISHES: &str = "inputfs_tier_publishes_total";
pub const TIER_PUBLISH_ERRORS: &str = "inputfs_tier_publish_errors_total";
pub const TIER_PUBLISH_SKIPPED: &str = "inputfs_tier_publish_skipped_total";
pub const TIER_PUBLISH_FOUND: &str = "inputfs_tier_publish_found_total";
pub const TIER_PUBLISH_RETRIED: &str = "inputfs_tier_publish_retried_total";
pub const TIER_PUBLISH_DROPPED: &str = "inputfs_tier_publish_dropped_total";
pub const TIER_PUBLISH_PENDING: &str = "inputfs_tier_publish_pending";
pub const TIER_CALLS_HUNG: &str = "inputfs_tier_calls_hung";
pub const TIER_DEGRADED: &str = "inputfs_tier_degraded";
pub const TIER_DEGRADATIONS: &str = "inputfs_tier_degradations_total";
pub const CLAIM_WAITS: &str = "inputfs_claim_waits_total";
pub const CLAIM_WAIT_HITS: &str = "inputfs_claim_wait_hits_total";
pub const CLAIM_WAIT_TIMEOUTS: &str = "inputfs_claim_wait_timeouts_total";
pub const ORIGIN_REQUESTS: &str = "inputfs_origin_requests_total";
pub const ORIGIN_BYTES: &str = "inputfs_origin_bytes_total";
pub const ORIGIN_ERRORS: &str = "inputfs_origin_errors_total";
pub const ORIGIN_THROTTLED: &str = "inputfs_origin_throttled_total";
pub const ORIGIN_RETRIES: &str = "inputfs_origin_retries_total";
pub const READAHEAD_BLOCKS: &str = "inputfs_readahead_blocks_total";
pub const READAHEAD_CANCELLED: &str = "inputfs_readahead_cancelled_total";
pub const READAHEAD_LENT: &str = "inputfs_readahead_lent_total";
pub const EVICTIONS: &str = "inputfs_evictions_total";
pub const EVICTED_BYTES: &str = "inputfs_evicted_bytes_total";
pub const CACHE_USED_BYTES: &str = "inputfs_cache_used_bytes";
pub const STORE_OPS: &str = "inputfs_store_ops_total";
/// The label of [`STORE_OPS`] that says which kind of operation.
pub const OP: &str = "op";
pub const READ_SECONDS: &str = "inputfs_read_seconds";
pub const READ_BYTES: &str = "inputfs_read_bytes_total";
pub const MEMORY_INFLIGHT_BYTES: &str = "inputfs_memory_inflight_bytes";
pub const MEMORY_CACHED_BYTES: &str = "inputfs_memory_cached_bytes";

/// Buckets of [`READ_SECONDS`]: from a page-cache-speed 50 µs to a slow
/// origin's 10 s.
pub const READ_SECONDS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// What kind of Prometheus metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its name, kind, whether it carries the `tier` label,
/// and its help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub per_tier: bool,
    pub help: &'static str,
}

const fn m(name: &'static str, kind: Kind, per_tier: bool, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        per_tier,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

/// Every metric inputfs exports.
pub const ALL: &[Metric] = &[
    m(
        TIER_HITS,
        Counter,
        true,
        "Block lookups a tier answered (memory: served without a load)",
    ),
    m(
        TIER_MISSES,
        Counter,
        true,
        "Block lookups a tier could not answer",
    ),
    m(
        TIER_READ_BYTES,
        Counter,
        true,
        "Bytes of blocks served by a tier",
    ),
    m(
        TIER_ERRORS,
        Counter,
        true,
        "Tier lookups that failed (I/O error, timeout) and fell through",
    ),
    m(
        TIER_CORRUPT_BLOCKS,
        Counter,
        true,
        "Blocks that failed their integrity check and were discarded",
    ),
    m(TIER_PUBLISHES, Counter, true, "Blocks copied into a tier"),
    m(
        TIER_PUBLISH_ERRORS,
        Counter,
        true,
        "Copies into a tier that failed",
    ),
    m(
        TIER_PUBLISH_SKIPPED,
        Counter,
        true,
        "Copies into a tier skipped because its publish slots were busy",
    ),
    m(
        TIER_PUBLISH_FOUND,
        Counter,
        true,
        "Copies into a tier that found the block already there (on a shared tier: a block another worker fetched too)",
    ),
    m(
        TIER_PUBLISH_RETRIED,
        Counter,
        true,
        "Failed or put-off copies into a tier made later (kept in memory meanwhile)",
    ),
    m(
        TIER_PUBLISH_DROPPED,
        Counter,
        true,
        "Failed or put-off copies into a tier never made: past the bound on kept copies",
    ),
    m(
        TIER_PUBLISH_PENDING,
        Gauge,
        true,
        "Failed or skipped copies into a tier waiting to be made again once it works",
    ),
    m(
        TIER_CALLS_HUNG,
        Gauge,
        true,
        "Calls to a tier past its timeout that have not returned yet (stuck in the kernel: a hung network mount)",
    ),
    m(
        TIER_DEGRADED,
        Gauge,
        true,
        "1 while some kind of call to the tier is failing, else 0",
    ),
    m(
        TIER_DEGRADATIONS,
        Counter,
        true,
        "Degraded episodes: times the tier went from working to failing",
    ),
    m(
        CLAIM_WAITS,
        Counter,
        false,
        "Times this worker waited for another worker's claimed origin fetch",
    ),
    m(
        CLAIM_WAIT_HITS,
        Counter,
        false,
        "Claim waits that ended with the other worker's block",
    ),
    m(
        CLAIM_WAIT_TIMEOUTS,
        Counter,
        false,
        "Claim waits that timed out and fetched from the origin",
    ),
    m(
        ORIGIN_REQUESTS,
        Counter,
        false,
        "Block reads sent to the origin (retries not counted)",
    ),
    m(
        ORIGIN_BYTES,
        Counter,
        false,
        "Bytes read from the origin by requests that completed",
    ),
    m(
        ORIGIN_ERRORS,
        Counter,
        false,
        "Block reads from the origin that failed after retries",
    ),
    m(
        ORIGIN_THROTTLED,
        Counter,
        false,
        "Origin responses that asked to slow down (HTTP 429, 503 / SlowDown), retries included",
    ),
    m(
        ORIGIN_RETRIES,
        Counter,
        false,
        "Origin requests made again for a range already asked for (after an error or a timeout)",
    ),
    m(
        READAHEAD_BLOCKS,
        Counter,
        false,
        "Blocks loaded ahead of a reader's stream (found in a tier or fetched)",
    ),
    m(
        READAHEAD_CANCELLED,
        Counter,
        false,
        "Readahead loads cancelled in flight because their stream was abandoned",
    ),
    m(
        READAHEAD_LENT,
        Counter,
        false,
        "Readahead loads that found their block claimed by another worker (the window reached further)",
    ),
    m(
        EVICTIONS,
        Counter,
        true,
        "Objects this worker evicted from a cache directory",
    ),
    m(
        EVICTED_BYTES,
        Counter,
        true,
        "Bytes this worker evicted from a cache directory",
    ),
    m(
        CACHE_USED_BYTES,
        Gauge,
        true,
        "Bytes of blocks in a cache directory, as this worker last estimated",
    ),
    m(
        STORE_OPS,
        Counter,
        true,
        "Operations this worker made on a cache directory, by kind (op: open, create, link, rename, unlink, stat, readdir, mkdir, rmdir)",
    ),
    m(
        READ_SECONDS,
        Histogram,
        false,
        "Latency of FUSE reads answered by the daemon",
    ),
    m(
        READ_BYTES,
        Counter,
        false,
        "Bytes returned to applications by FUSE reads",
    ),
    m(
        MEMORY_INFLIGHT_BYTES,
        Gauge,
        false,
        "Memory budget held by block loads in flight",
    ),
    m(
        MEMORY_CACHED_BYTES,
        Gauge,
        false,
        "Bytes of blocks in the in-memory cache",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for metric in ALL {
            assert!(seen.insert(metric.name), "{} listed twice", metric.name);
            assert!(metric.name.starts_with("inputfs_"), "{}", metric.name);
            assert!(
                metric
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                metric.name
            );
            // Prometheus convention: counters end in _total, nothing else does.
            assert_eq!(
                metric.kind == Kind::Counter,
                metric.name.ends_with("_total"),
                "{}",
                metric.name
            );
        }
        assert!(READ_SECONDS_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
