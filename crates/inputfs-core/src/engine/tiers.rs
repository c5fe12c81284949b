//! Talking to one cache tier from the async engine: lookups and publishes run on
//! the blocking pool (they are file I/O, possibly on a network mount), lookups
//! are bounded by a timeout, and every failure is absorbed and counted — a cache
//! never fails a read, it only stops speeding it up.
//!
//! A tier that fails (full, read-only, gone, permission denied) usually fails on
//! every call until someone fixes it, so the log gets one line per degraded
//! *episode*, not one per read: the first failure after the tier was healthy is a
//! warning, later ones are debug, and the first time every kind of call that
//! failed has succeeded again an info line says the tier recovered and re-arms
//! the warning. Kinds are tracked apart because a full or read-only directory
//! still answers lookups: a miss must not count as "recovered" while every
//! publish still fails, or the log would flap once per block.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::Engine;
use crate::block::BlockId;
use crate::error::{Error, Result};
use crate::store::{BlockStore, Lookup, TierStats};

use super::stats::TierSnapshot;

/// One tier as the engine holds it.
pub(super) struct Tier {
    pub(super) store: Arc<dyn BlockStore>,
    pub(super) stats: TierStats,
    pub(super) publish_slots: Arc<Semaphore>,
    /// Objects being made plain at once (one: it is a background copy).
    pub(super) plain_slot: Arc<Semaphore>,
    /// Publishes waiting for a slot (bounded by [`QUEUED_PUBLISHES`]).
    queued: std::sync::atomic::AtomicUsize,
    /// One bit per kind of call ([`Op`]) whose last attempt failed; non-zero
    /// means the tier is degraded.
    failing: AtomicU8,
    /// When the last degraded episode ended (ms on [`clock_ms`]; 0: never).
    recovered_at: std::sync::atomic::AtomicU64,
}

/// Failures this soon after a recovery are of calls that started before it
/// (a directory being re-created while other reads were in flight): they do
/// not open a new episode, or one condition would log two.
const AFTER_RECOVERY_MS: u64 = 1_000;

/// Milliseconds since the first call (monotonic).
fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// A kind of tier call, for telling when a degraded tier has recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Get,
    Put,
    Claim,
    /// A failure found outside the read path (opening the tier at mount); any
    /// successful call clears it.
    Outside,
}

impl Op {
    fn bit(self) -> u8 {
        match self {
            Op::Get => 1,
            Op::Put => 2,
            Op::Claim => 4,
            Op::Outside => 8,
        }
    }
}

impl Tier {
    pub(super) fn new(store: Arc<dyn BlockStore>, publish_slots: usize) -> Self {
        Tier {
            store,
            stats: TierStats::default(),
            publish_slots: Arc::new(Semaphore::new(publish_slots)),
            plain_slot: Arc::new(Semaphore::new(1)),
            queued: Default::default(),
            failing: AtomicU8::new(0),
            recovered_at: Default::default(),
        }
    }

    /// A call of kind `op` failed. The first failure of an episode is a
    /// warning, the rest are debug: one line per degraded condition, not one
    /// per read.
    pub(super) fn failed(&self, op: Op, e: &Error) {
        let name = self.store.name();
        let recovered_at = self.recovered_at.load(Ordering::Relaxed);
        if recovered_at != 0
            && clock_ms().saturating_sub(recovered_at) < AFTER_RECOVERY_MS
            && self.failing.load(Ordering::Relaxed) == 0
        {
            tracing::debug!(tier = name, ?op, error = %e, "cache tier error just after it recovered");
            return;
        }
        if self.failing.fetch_or(op.bit(), Ordering::AcqRel) == 0 {
            self.stats.degradations.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(tier = name, error = %e,
                "cache tier {name} failing; reads fall through to the next tier or the origin");
        } else {
            tracing::debug!(tier = name, ?op, error = %e, "cache tier error");
        }
    }

    /// A call of kind `op` succeeded. When that was the last kind still
    /// failing, the episode is over: say so, and re-arm the warning. One atomic
    /// load when the tier is healthy.
    pub(super) fn succeeded(&self, op: Op) {
        let bits = op.bit() | Op::Outside.bit();
        if self.failing.load(Ordering::Relaxed) & bits == 0 {
            return;
        }
        let before = self.failing.fetch_and(!bits, Ordering::AcqRel);
        if before != 0 && before & !bits == 0 {
            self.recovered_at.store(clock_ms(), Ordering::Relaxed);
            let name = self.store.name();
            tracing::info!(tier = name, "cache tier {name} recovered");
        }
    }

    /// Whether some kind of call to this tier is failing right now.
    pub(super) fn degraded(&self) -> bool {
        self.failing.load(Ordering::Relaxed) != 0
    }

    /// A copy of this tier's counters and state.
    pub(super) fn snapshot(&self) -> TierSnapshot {
        TierSnapshot {
            degraded: self.degraded(),
            ..TierSnapshot::of(&self.stats)
        }
    }
}

impl Engine {
    /// Run a blocking tier call on the blocking pool, bounded by the tier timeout.
    pub(super) async fn tier_call<T: Send + 'static>(
        &self,
        tier: &Tier,
        what: &str,
        call: impl FnOnce(&dyn BlockStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = tier.store.clone();
        let task = tokio::task::spawn_blocking(move || call(&*store));
        let failed = |message: String| Error::Tier {
            tier: tier.store.name().into(),
            message,
        };
        match tokio::time::timeout(self.config.tier_timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(failed(format!("{what} task failed: {join}"))),
            Err(_) => Err(failed(format!(
                "{what} took longer than {:?}",
                self.config.tier_timeout
            ))),
        }
    }

    /// Look a block up in one tier; every failure is absorbed into a miss.
    /// `count_miss` is false for the polls of a claim wait, which are not misses
    /// of the application's reads.
    pub(super) async fn tier_get(
        &self,
        tier: &Tier,
        id: BlockId,
        len: u64,
        count_miss: bool,
    ) -> Option<Bytes> {
        match self
            .tier_call(tier, "lookup", move |s| s.get(&id, len))
            .await
        {
            Ok(Lookup::Hit(data)) => {
                tier.succeeded(Op::Get);
                tier.stats.hits.fetch_add(1, Ordering::Relaxed);
                tier.stats
                    .bytes_read
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Some(data)
            }
            Ok(Lookup::Miss) => {
                tier.succeeded(Op::Get);
                if count_miss {
                    tier.stats.misses.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            Ok(Lookup::Corrupt(reason)) => {
                tier.succeeded(Op::Get);
                tier.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tier = tier.store.name(), block = id.index, %reason,
                    "corrupt cache block discarded");
                None
            }
            Err(e) => {
                tier.stats.errors.fetch_add(1, Ordering::Relaxed);
                tier.failed(Op::Get, &e);
                None
            }
        }
    }

    /// Copy a block into a tier in the background. Skipped when the tier's
    /// publish slots are busy — unless this worker holds the block's claim there:
    /// other workers are waiting for exactly this block, so it is published (and
    /// the claim released) whatever the load.
    pub(super) fn publish(&self, tier: &Arc<Tier>, id: BlockId, data: Bytes, holds_claim: bool) {
        let slot = match tier.publish_slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) if holds_claim => None,
            // Busy: wait for a slot in the background, up to a few blocks
            // (a skipped publish is a block fetched again next time).
            Err(_) if tier.queued.fetch_add(1, Ordering::Relaxed) < QUEUED_PUBLISHES => {
                let (engine_tier, slots) = (tier.clone(), tier.publish_slots.clone());
                let background = self.background.clone();
                self.background.spawn(async move {
                    let slot = slots.acquire_owned().await.ok();
                    engine_tier.queued.fetch_sub(1, Ordering::Relaxed);
                    background.spawn_blocking(move || {
                        let _slot = slot;
                        put(&engine_tier, id, &data, holds_claim);
                    });
                });
                return;
            }
            Err(_) => {
                tier.queued.fetch_sub(1, Ordering::Relaxed);
                tier.stats.publish_skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let tier = tier.clone();
        self.background.spawn_blocking(move || {
            let _slot = slot;
            put(&tier, id, &data, holds_claim);
        });
    }
}

/// Publishes that may wait for a busy tier's slot before further ones are
/// skipped: the blocks they hold are memory outside the budget.
const QUEUED_PUBLISHES: usize = 8;

/// Publish one block now and count it (on the blocking pool).
fn put(tier: &Tier, id: BlockId, data: &Bytes, holds_claim: bool) {
    match tier.store.put(&id, data) {
        Ok(()) => {
            tier.succeeded(Op::Put);
            tier.stats.publishes.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tier.failed(Op::Put, &e);
            tier.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    if holds_claim {
        tier.store.release(&id);
    }
}

impl Engine {
    /// Give up a claim in the background (the fetch failed).
    pub(super) fn release(&self, tier: &Arc<Tier>, id: BlockId) {
        let tier = tier.clone();
        self.background
            .spawn_blocking(move || tier.store.release(&id));
    }
}
