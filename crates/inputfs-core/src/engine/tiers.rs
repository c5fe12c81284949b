//! Talking to one cache tier from the async engine: lookups and publishes run on
//! the blocking pool (they are file I/O, possibly on a network mount), lookups
//! are bounded by a timeout, and every failure is absorbed and counted — a cache
//! never fails a read, it only stops speeding it up.
//!
//! Whether the tier is degraded, and so when to warn and when to say it
//! recovered, is `tier_health`'s state machine: every call is stamped when it
//! starts and its outcome is judged against that stamp, with no time window.
//! A publish that fails, or is put off because the tier is busy, is not
//! forgotten: the block is kept (its data too: a reference to the same buffer
//! while the in-memory cache also holds it) and published again — all at once
//! when the tier recovers, and as many as there are free publish slots after
//! each publish that worked. The latter matters on a tier that flaps (a
//! directory taken away every second or two under slow network calls): its
//! episode may not end for many removals, because some kind of call keeps
//! failing, yet publishes work between removals, and copies kept until the
//! whole tier recovered would pass their bound and be dropped. The kept
//! blocks are bounded in bytes (a quarter of the memory budget, besides it);
//! past that a copy is kept by its id alone ([`OWED_MAX`] of them, a few
//! bytes each), and its bytes are looked for in the in-memory cache when it
//! is published again: blocks loaded during an outage are the most recently
//! used, so the in-memory cache usually still has them. Only one it no
//! longer has (or past the bound on ids) is dropped, and counted. So every
//! copy due is made, pending, or counted dropped.
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::Engine;
use crate::block::BlockId;
use crate::error::{Error, Result};
use crate::store::{BlockStore, Lookup, Placed, TierStats};

use super::stats::TierSnapshot;
pub(super) use super::tier_health::Op;
use super::tier_health::{Stamp, TierHealth, Transition};

/// One tier as the engine holds it.
pub(super) struct Tier {
    pub(super) store: Arc<dyn BlockStore>,
    pub(super) stats: TierStats,
    pub(super) publish_slots: Arc<Semaphore>,
    /// Objects being made plain at once (one: it is a background copy).
    pub(super) plain_slot: Arc<Semaphore>,
    /// Publishes waiting for a slot (bounded by [`QUEUED_PUBLISHES`]).
    queued: std::sync::atomic::AtomicUsize,
    /// Calls past the timeout that have not returned yet (at most about
    /// [`HUNG_MAX`]: calls stuck in the kernel cannot take every thread).
    hung: Arc<std::sync::atomic::AtomicU64>,
    /// Degraded or not, judged per call (see `tier_health`).
    pub(super) health: TierHealth,
    /// Blocks whose publish failed or was put off, to publish again.
    pending: Mutex<Pending>,
    /// Bytes `pending` may hold; past that copies are kept by id only.
    pending_cap: u64,
    /// The engine's in-memory cache, where the bytes of a copy kept by id
    /// are looked for.
    memory: moka::future::Cache<BlockId, Bytes>,
    /// The engine's background tasks (publishes run there).
    background: tokio_util::task::TaskTracker,
}

/// Copies waiting to be made, oldest first, with their bytes where they fit
/// the bound (`None`: owed by id, the bytes to be found in memory), and the
/// bytes held.
#[derive(Default)]
struct Pending {
    blocks: std::collections::VecDeque<(BlockId, Option<Bytes>)>,
    bytes: u64,
}

/// Copies kept by their id alone, past the bound on kept bytes, at most.
pub(super) const OWED_MAX: usize = 4096;

impl Tier {
    pub(super) fn new(
        store: Arc<dyn BlockStore>,
        publish_slots: usize,
        pending_cap: u64,
        background: tokio_util::task::TaskTracker,
        memory: moka::future::Cache<BlockId, Bytes>,
    ) -> Self {
        Tier {
            store,
            stats: TierStats::default(),
            publish_slots: Arc::new(Semaphore::new(publish_slots)),
            plain_slot: Arc::new(Semaphore::new(1)),
            queued: Default::default(),
            hung: Default::default(),
            health: TierHealth::default(),
            pending: Mutex::default(),
            pending_cap,
            memory,
            background,
        }
    }

    /// Stamp a call about to start (see `tier_health`).
    pub(super) fn stamp(&self) -> Stamp {
        self.health.stamp()
    }

    /// A call of kind `op` stamped `stamp` failed: the first failure of an
    /// episode is a warning, the rest are debug.
    pub(super) fn failed(&self, op: Op, stamp: Stamp, e: &Error) {
        let name = self.store.name();
        match self.health.failed(op, stamp) {
            Transition::Degraded => {
                self.stats.degradations.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tier = name, error = %e,
                    "cache tier {name} failing; reads fall through to the next tier or the origin");
            }
            Transition::Stale => {
                tracing::debug!(tier = name, ?op, error = %e,
                    "cache tier error of a call from before it recovered");
            }
            Transition::None | Transition::Recovered => {
                tracing::debug!(tier = name, ?op, error = %e, "cache tier error");
            }
        }
    }

    /// A call of kind `op` stamped `stamp` succeeded. When that ends the
    /// episode, say so and publish what failed meanwhile. One atomic load
    /// when the tier is healthy.
    pub(super) fn succeeded(self: &Arc<Self>, op: Op, stamp: Stamp) {
        if self.health.succeeded(op, stamp) == Transition::Recovered {
            let name = self.store.name();
            tracing::info!(tier = name, "cache tier {name} recovered");
            self.republish();
        }
    }

    /// Whether some kind of call to this tier is failing right now.
    pub(super) fn degraded(&self) -> bool {
        self.health.degraded()
    }

    /// A copy of this tier's counters and state.
    pub(super) fn snapshot(&self) -> TierSnapshot {
        TierSnapshot {
            degraded: self.degraded(),
            publish_pending: self.pending_len(),
            calls_hung: self.hung.load(Ordering::Relaxed),
            ..TierSnapshot::of(&self.stats)
        }
    }

    /// The publish of `id` failed: keep it for when the tier works (and retry
    /// at once if it works now: the failure was of a call from before a
    /// recovery).
    fn publish_failed(self: &Arc<Self>, id: BlockId, data: Bytes) {
        self.keep(id, data);
        if !self.health.failing(Op::Put) {
            self.republish_some();
        }
    }

    /// Keep a copy to make later: with its bytes while they fit the bound,
    /// else by its id (see the module docs), else count it dropped. A second
    /// copy of a block already kept is not kept again (it would only hold the
    /// same bytes twice against the bound, and crowd other blocks out): it is
    /// counted as made and found already there, as its publish would have
    /// been after the first one's, which is how a duplicate fetch is counted.
    /// (Finding a twin is a scan of the kept copies, at most [`OWED_MAX`]
    /// ids, and runs only when a publish failed or was put off.)
    fn keep(&self, id: BlockId, data: Bytes) {
        let len = data.len() as u64;
        let kept = self
            .pending
            .lock()
            .map(|mut pending| {
                if pending.blocks.iter().any(|(kept, _)| *kept == id) {
                    return Keeping::Twin;
                }
                if pending.bytes + len <= self.pending_cap {
                    pending.bytes += len;
                    pending.blocks.push_back((id, Some(data)));
                    return Keeping::Kept;
                }
                if pending.blocks.len() < OWED_MAX {
                    pending.blocks.push_back((id, None));
                    return Keeping::Kept;
                }
                Keeping::Dropped
            })
            .unwrap_or(Keeping::Dropped);
        match kept {
            Keeping::Kept => {}
            Keeping::Twin => {
                self.stats.publishes.fetch_add(1, Ordering::Relaxed);
                self.stats.publish_found.fetch_add(1, Ordering::Relaxed);
            }
            Keeping::Dropped => {
                self.stats.publish_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Publish every kept copy again (in the background).
    pub(super) fn republish(self: &Arc<Self>) {
        self.republish_up_to(usize::MAX);
    }

    /// Publish again as many kept copies as the tier has free publish slots,
    /// and one more (for the slot of the publish that calls this): publishes
    /// work now, but the tier may still be busy.
    fn republish_some(self: &Arc<Self>) {
        self.republish_up_to(self.publish_slots.available_permits() + 1);
    }

    /// Whether publishes to this tier work (as far as the last ones tell).
    pub(super) fn publishes_work(&self) -> bool {
        !self.health.failing(Op::Put)
    }

    /// [`republish`](Self::republish) for the `n` oldest kept copies.
    fn republish_up_to(self: &Arc<Self>, n: usize) {
        let copies: Vec<(BlockId, Option<Bytes>)> = self
            .pending
            .lock()
            .map(|mut pending| {
                let n = n.min(pending.blocks.len());
                let taken: Vec<_> = pending.blocks.drain(..n).collect();
                pending.bytes -= taken
                    .iter()
                    .filter_map(|(_, d)| d.as_ref())
                    .map(|d| d.len() as u64)
                    .sum::<u64>();
                taken
            })
            .unwrap_or_default();
        for (id, data) in copies {
            match data {
                Some(data) => self.publish_again(id, data),
                // Owed by id: its bytes from memory, if they are still there.
                None => {
                    let tier = self.clone();
                    self.background.spawn(async move {
                        match tier.memory.get(&id).await {
                            Some(data) => tier.publish_again(id, data),
                            None => {
                                tier.stats.publish_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
        }
    }

    /// Publish a kept copy again.
    fn publish_again(self: &Arc<Self>, id: BlockId, data: Bytes) {
        self.stats.publish_retried.fetch_add(1, Ordering::Relaxed);
        self.publish(id, data, false);
    }

    /// Copies kept and not made yet.
    fn pending_len(&self) -> u64 {
        self.pending.lock().map(|p| p.blocks.len()).unwrap_or(0) as u64
    }

    /// Copy a block into this tier in the background. Skipped when the
    /// publish slots are busy — unless this worker holds the block's claim
    /// here: other workers are waiting for exactly this block, so it is
    /// published (and the claim released) whatever the load.
    pub(super) fn publish(self: &Arc<Self>, id: BlockId, data: Bytes, holds_claim: bool) {
        let slot = match self.publish_slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) if holds_claim => None,
            // Busy: wait for a slot in the background, up to a few blocks
            // (a skipped publish is a block fetched again next time).
            Err(_) if self.queued.fetch_add(1, Ordering::Relaxed) < QUEUED_PUBLISHES => {
                let tier = self.clone();
                self.background.spawn(async move {
                    let slot = tier.publish_slots.clone().acquire_owned().await.ok();
                    tier.queued.fetch_sub(1, Ordering::Relaxed);
                    let background = tier.background.clone();
                    background.spawn_blocking(move || {
                        let _slot = slot;
                        put(&tier, id, &data, holds_claim);
                    });
                });
                return;
            }
            Err(_) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.publish_skipped.fetch_add(1, Ordering::Relaxed);
                self.keep(id, data);
                return;
            }
        };
        let tier = self.clone();
        self.background.spawn_blocking(move || {
            let _slot = slot;
            put(&tier, id, &data, holds_claim);
        });
    }
}

impl Engine {
    /// Run a blocking tier call on the blocking pool, bounded by the tier
    /// timeout. A call past the timeout is abandoned, not stopped (a thread
    /// the kernel holds in an uninterruptible call cannot be): it is counted
    /// as hung until it returns, and while [`HUNG_MAX`] calls are hung the
    /// tier is not called at all (a failure: reads go to the next tier or the
    /// origin). Only hung calls count: a tier that is merely busy (many slow
    /// calls within the timeout) is called as much as the reads need.
    pub(super) async fn tier_call<T: Send + 'static>(
        &self,
        tier: &Tier,
        what: &str,
        call: impl FnOnce(&dyn BlockStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let failed = |message: String| Error::Tier {
            tier: tier.store.name().into(),
            message,
        };
        let hung_now = tier.hung.load(Ordering::Relaxed);
        if hung_now >= HUNG_MAX {
            return Err(failed(format!(
                "{what} not tried: {hung_now} calls to this tier are past the timeout and have not returned (a hung mount?)"
            )));
        }
        let store = tier.store.clone();
        // RUNNING, then FINISHED by the call or ABANDONED by the timeout,
        // whichever comes first: a hung call is counted once and uncounted
        // once, in that order.
        let state = Arc::new(std::sync::atomic::AtomicU8::new(RUNNING));
        let (seen, hung) = (state.clone(), tier.hung.clone());
        let task = tokio::task::spawn_blocking(move || {
            let result = call(&*store);
            if seen.swap(FINISHED, Ordering::AcqRel) == ABANDONED {
                hung.fetch_sub(1, Ordering::Relaxed);
            }
            result
        });
        match tokio::time::timeout(self.config.tier_timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(failed(format!("{what} task failed: {join}"))),
            Err(_) => {
                tier.hung.fetch_add(1, Ordering::Relaxed);
                let marked =
                    state.compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire);
                if marked.is_err() {
                    // It returned just now after all.
                    tier.hung.fetch_sub(1, Ordering::Relaxed);
                }
                Err(failed(format!(
                    "{what} took longer than {:?}",
                    self.config.tier_timeout
                )))
            }
        }
    }
}

/// States of a tier call, for counting hung ones.
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

impl Engine {
    /// Look a block up in one tier; every failure is absorbed into a miss.
    /// `count_miss` is false for the polls of a claim wait, which are not misses
    /// of the application's reads.
    pub(super) async fn tier_get(
        &self,
        tier: &Arc<Tier>,
        id: BlockId,
        len: u64,
        count_miss: bool,
    ) -> Option<Bytes> {
        let stamp = tier.stamp();
        match self
            .tier_call(tier, "lookup", move |s| s.get(&id, len))
            .await
        {
            Ok(Lookup::Hit(data)) => {
                tier.succeeded(Op::Get, stamp);
                tier.stats.hits.fetch_add(1, Ordering::Relaxed);
                tier.stats
                    .bytes_read
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Some(data)
            }
            Ok(Lookup::Miss) => {
                tier.succeeded(Op::Get, stamp);
                if count_miss {
                    tier.stats.misses.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            Ok(Lookup::Corrupt(reason)) => {
                tier.succeeded(Op::Get, stamp);
                tier.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tier = tier.store.name(), block = id.index, %reason,
                    "corrupt cache block discarded");
                None
            }
            Err(e) => {
                tier.stats.errors.fetch_add(1, Ordering::Relaxed);
                tier.failed(Op::Get, stamp, &e);
                None
            }
        }
    }
}

/// What [`Tier::keep`] did with a copy.
enum Keeping {
    Kept,
    /// A copy of the same block was kept already.
    Twin,
    Dropped,
}

/// Publishes that may wait for a busy tier's slot before further ones are
/// skipped: the blocks they hold are memory outside the budget.
const QUEUED_PUBLISHES: usize = 8;

/// Hung lookups and claims of one tier past which it is not called: far
/// below the blocking pool's 512 threads, which the origin's file reads and
/// the other tier share. (Calls started before the first one timed out may
/// hang too: the count can pass this by the reads in flight then.)
pub(super) const HUNG_MAX: u64 = 32;

/// Publish one block now and count it (on the blocking pool).
fn put(tier: &Arc<Tier>, id: BlockId, data: &Bytes, holds_claim: bool) {
    let stamp = tier.stamp();
    match tier.store.put(&id, data) {
        Ok(placed) => {
            if placed == Placed::AlreadyThere {
                tier.stats.publish_found.fetch_add(1, Ordering::Relaxed);
            }
            tier.stats.publishes.fetch_add(1, Ordering::Relaxed);
            tier.succeeded(Op::Put, stamp);
            // Publishes work (whatever other kinds of call do) and a slot is
            // about to free: kept copies may take the free ones.
            if tier.publishes_work() {
                tier.republish_some();
            }
        }
        Err(e) => {
            tier.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
            tier.failed(Op::Put, stamp, &e);
            tier.publish_failed(id, data.clone());
        }
    }
    if holds_claim {
        tier.store.release(&id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use bytes::Bytes;
    use moka::future::Cache;
    use tokio_util::task::TaskTracker;

    use super::Tier;
    use crate::BlockId;
    use crate::store::{BlockStore, Lookup};
    use crate::testing::MemoryStore;

    fn id(index: u64) -> BlockId {
        BlockId {
            key: crate::CacheKey::new(crate::SourceKind::S3, "s3://b/k", "etag:1", 1 << 20, 4),
            index,
        }
    }

    fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// A tier over `store` keeping at most 8 bytes of copies.
    fn tier(store: Arc<MemoryStore>, memory: &Cache<BlockId, Bytes>) -> (Arc<Tier>, TaskTracker) {
        let background = TaskTracker::new();
        let tier = Tier::new(store, 4, 8, background.clone(), memory.clone());
        (Arc::new(tier), background)
    }

    /// A block fetched twice while its first copy waits is kept once, and
    /// the second copy is counted as found (its duplicate fetch is seen).
    #[test]
    fn a_second_copy_of_a_kept_block_is_counted_not_kept() {
        let (tier, _) = tier(Arc::new(MemoryStore::new("shared")), &Cache::new(1));
        let four = Bytes::from_static(b"four");
        tier.keep(id(0), four.clone());
        tier.keep(id(0), four.clone());
        tier.keep(id(1), four);
        assert_eq!(tier.pending_len(), 2);
        assert_eq!(count(&tier.stats.publish_found), 1);
        assert_eq!(count(&tier.stats.publishes), 1);
        assert_eq!(count(&tier.stats.publish_dropped), 0);
    }

    /// Past the bound on kept bytes a copy is kept by its id; made again, its
    /// bytes come from the in-memory cache, and one no longer there is
    /// counted dropped. Past the bound on ids a copy is dropped at once.
    #[tokio::test]
    async fn past_the_bound_copies_are_owed_by_id_and_made_from_memory() {
        let memory = Cache::new(16);
        let store = Arc::new(MemoryStore::new("shared"));
        let (tier, background) = tier(store.clone(), &memory);
        let four = Bytes::from_static(b"four");
        for i in 0..4 {
            tier.keep(id(i), four.clone());
        }
        assert_eq!(tier.pending_len(), 4, "two with their bytes, two by id");
        memory.insert(id(2), four.clone()).await;
        tier.republish();
        background.close();
        background.wait().await;
        let made = |i| matches!(store.get(&id(i), 4), Ok(Lookup::Hit(_)));
        for i in 0..3 {
            assert!(made(i), "block {i} made");
        }
        assert!(!made(3), "block 3 was no longer in memory");
        assert_eq!(count(&tier.stats.publish_retried), 3);
        assert_eq!(count(&tier.stats.publish_dropped), 1);
        assert_eq!(tier.pending_len(), 0);
        for i in 0..super::OWED_MAX as u64 + 3 {
            tier.keep(id(100 + i), four.clone());
        }
        assert_eq!(tier.pending_len(), super::OWED_MAX as u64);
        assert_eq!(count(&tier.stats.publish_dropped), 1 + 3);
    }
}
