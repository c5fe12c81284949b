//! Talking to one cache tier from the async engine: lookups and publishes run on
//! the blocking pool (they are file I/O, possibly on a network mount), lookups
//! are bounded by a timeout, and every failure is absorbed and counted — a cache
//! never fails a read, it only stops speeding it up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::Engine;
use crate::block::BlockId;
use crate::error::{Error, Result};
use crate::store::{BlockStore, Lookup, TierStats};

/// One tier as the engine holds it.
pub(super) struct Tier {
    pub(super) store: Arc<dyn BlockStore>,
    pub(super) stats: TierStats,
    pub(super) publish_slots: Arc<Semaphore>,
    pub(super) warned: AtomicBool,
}

impl Tier {
    pub(super) fn new(store: Arc<dyn BlockStore>, publish_slots: usize) -> Self {
        Tier {
            store,
            stats: TierStats::default(),
            publish_slots: Arc::new(Semaphore::new(publish_slots)),
            warned: AtomicBool::new(false),
        }
    }

    /// Log the first failure of this tier as a warning and the rest at debug:
    /// one line per degraded condition, not one per read.
    pub(super) fn warn_once(&self, e: &Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(tier = self.store.name(), error = %e,
                "cache tier failing; reads fall through to the next tier or the origin");
        } else {
            tracing::debug!(tier = self.store.name(), error = %e, "cache tier error");
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
                tier.stats.hits.fetch_add(1, Ordering::Relaxed);
                tier.stats
                    .bytes_read
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Some(data)
            }
            Ok(Lookup::Miss) => {
                if count_miss {
                    tier.stats.misses.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            Ok(Lookup::Corrupt(reason)) => {
                tier.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tier = tier.store.name(), block = id.index, %reason,
                    "corrupt cache block discarded");
                None
            }
            Err(e) => {
                tier.stats.errors.fetch_add(1, Ordering::Relaxed);
                tier.warn_once(&e);
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
            Err(_) => {
                tier.stats.publish_skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let tier = tier.clone();
        self.background.spawn_blocking(move || {
            let _slot = slot;
            match tier.store.put(&id, &data) {
                Ok(()) => tier.stats.publishes.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tier.warn_once(&e);
                    tier.stats.publish_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
            if holds_claim {
                tier.store.release(&id);
            }
        });
    }

    /// Give up a claim in the background (the fetch failed).
    pub(super) fn release(&self, tier: &Arc<Tier>, id: BlockId) {
        let tier = tier.clone();
        self.background
            .spawn_blocking(move || tier.store.release(&id));
    }
}
