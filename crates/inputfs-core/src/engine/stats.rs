//! Counters of the read path, kept as plain atomics so the engine has no opinion on
//! how they are exported (the binary turns them into Prometheus metrics).

use std::sync::atomic::{AtomicU64, Ordering};

/// Origin-side counters.
#[derive(Debug, Default)]
pub struct OriginStats {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// Counters of readahead: blocks asked for ahead of a stream, and loads of
/// them cancelled because the stream was abandoned (forgotten or closed), and
/// of them found claimed by another worker (lent: cooperative cold start).
#[derive(Debug, Default)]
pub struct ReadaheadStats {
    pub blocks: AtomicU64,
    pub cancelled: AtomicU64,
    pub lent: AtomicU64,
}

/// Counters of the in-memory block cache.
#[derive(Debug, Default)]
pub struct MemoryStats {
    /// Blocks of application reads answered without a load of their own: the
    /// block was in memory, or another request (a readahead) was loading it.
    pub hits: AtomicU64,
    /// Blocks of application reads that loaded the block themselves (from a
    /// tier or the origin). Readahead and warm loads are in neither.
    pub misses: AtomicU64,
    /// Bytes of application reads served by hits.
    pub bytes_read: AtomicU64,
}

/// A point-in-time copy of the in-memory cache's counters and sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySnapshot {
    pub hits: u64,
    pub misses: u64,
    pub bytes_read: u64,
    /// Bytes of the in-flight budget held by loads right now.
    pub inflight_bytes: u64,
    /// Bytes of blocks held by the in-memory cache (moka's estimate).
    pub cached_bytes: u64,
}

/// A point-in-time copy of one tier's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub corrupt: u64,
    pub errors: u64,
    pub bytes_read: u64,
    pub publishes: u64,
    pub publish_errors: u64,
    pub publish_skipped: u64,
    pub publish_found: u64,
    pub publish_retried: u64,
    pub publish_dropped: u64,
    /// Failed publishes waiting for the tier to work again, to be retried.
    pub publish_pending: u64,
    /// Calls past the tier timeout that have not returned (hung in the kernel).
    pub calls_hung: u64,
    pub claims: u64,
    pub claim_waits: u64,
    pub claim_wait_hits: u64,
    pub claim_wait_timeouts: u64,
    /// Degraded episodes so far: how often the tier went from healthy to failing.
    pub degradations: u64,
    /// Whether the tier is failing right now (some kind of call failed and has
    /// not succeeded since).
    pub degraded: bool,
}

impl TierSnapshot {
    pub(crate) fn of(s: &crate::store::TierStats) -> Self {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TierSnapshot {
            hits: l(&s.hits),
            misses: l(&s.misses),
            corrupt: l(&s.corrupt),
            errors: l(&s.errors),
            bytes_read: l(&s.bytes_read),
            publishes: l(&s.publishes),
            publish_errors: l(&s.publish_errors),
            publish_skipped: l(&s.publish_skipped),
            publish_found: l(&s.publish_found),
            publish_retried: l(&s.publish_retried),
            publish_dropped: l(&s.publish_dropped),
            publish_pending: 0,
            calls_hung: 0,
            claims: l(&s.claims),
            claim_waits: l(&s.claim_waits),
            claim_wait_hits: l(&s.claim_wait_hits),
            claim_wait_timeouts: l(&s.claim_wait_timeouts),
            degradations: l(&s.degradations),
            degraded: false,
        }
    }
}

/// A point-in-time copy of all engine counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub origin_requests: u64,
    pub origin_bytes: u64,
    pub origin_errors: u64,
    /// Blocks asked for ahead of a reader's stream (each is one load, which
    /// finds the block in a tier or fetches it).
    pub readahead_blocks: u64,
    /// Readahead loads cancelled in flight: their stream was abandoned.
    pub readahead_cancelled: u64,
    /// Readahead loads that found their block claimed by another worker,
    /// which let the stream's window reach further (`readahead`).
    pub readahead_lent: u64,
    /// The in-memory block cache, above every tier.
    pub memory: MemorySnapshot,
    /// One entry per tier, in lookup order, with the tier's name.
    pub tiers: Vec<(String, TierSnapshot)>,
}

impl StatsSnapshot {
    /// The snapshot of the tier with this name, if there is one.
    pub fn tier(&self, name: &str) -> Option<TierSnapshot> {
        self.tiers.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }
}
