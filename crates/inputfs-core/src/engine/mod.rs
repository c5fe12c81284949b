//! The read engine: memory → local tier → shared tier → origin.
//!
//! Every block goes through one single-flight point (a `moka` cache whose
//! `try_get_with` coalesces concurrent loads of the same key), so however many
//! readers want a block, one load per process happens. Loads hold permits of a
//! global in-flight memory budget; finished blocks live in a weighted in-memory
//! cache of bounded size. Blocks found at a lower tier are copied to the higher
//! ones, and blocks from the origin are published to every tier, off the read path
//! and never blocking it: when a tier's publish slots are busy a few publishes
//! wait, and past that the copy is skipped. With a shared tier, blocks loaded
//! ahead of a sequential reader skip the local tier: an object read whole is
//! copied there once afterwards, as the plain file kernel passthrough reads
//! (`plain`).
//!
//! Tier calls are blocking file I/O: they run on tokio's blocking pool and are
//! bounded by a timeout, so a hung network mount degrades to the origin instead of
//! hanging the application.

mod claim_wait;
mod claims;
mod plain;
mod readahead;
mod reader;
mod stats;
mod tier_health;
#[cfg(all(test, feature = "shuttle"))]
mod tier_health_model;
mod tiers;
mod warm;

use tiers::Tier;
#[cfg(test)]
mod observe_tests;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::block::{BlockId, BlockLayout};
use crate::episode::Episode;
use crate::error::{Error, Result};
use crate::object::{CacheKey, ObjectId};
use crate::source::Source;
use crate::store::BlockStore;

pub use readahead::{MAX_STREAMS, Plan, Readahead, StreamId, WASTE_DIVISOR};
pub use reader::FileReader;
pub use stats::{
    MemorySnapshot, MemoryStats, OriginStats, ReadaheadStats, StatsSnapshot, TierSnapshot,
};
pub use warm::{WarmSummary, WarmTarget};

const MIB: u64 = 1 << 20;

/// Tunables of the read path.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Size of a cache block and of an origin request.
    pub block_size: u64,
    /// Memory for block data in all: three quarters bound data in flight
    /// (loads, readahead), one quarter the in-memory cache of finished blocks.
    /// Besides it, each tier may keep up to a quarter of it in copies that
    /// failed or were put off, until they are made (`tiers`).
    pub memory_budget: u64,
    /// Largest readahead window per open file.
    pub max_readahead: u64,
    /// Longest any single cache-tier call may take before it counts as failed.
    pub tier_timeout: Duration,
    /// Publishes that may run at once per tier before further ones are skipped.
    pub publish_slots: usize,
    /// How long a claim on a shared tier lasts, and so the longest this worker
    /// waits for another worker's claimed fetch before fetching itself. Zero
    /// turns cross-worker claims off.
    pub claim_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            block_size: 4 * MIB,
            memory_budget: 256 * MIB,
            max_readahead: 64 * MIB,
            tier_timeout: Duration::from_secs(10),
            publish_slots: 8,
            claim_timeout: Duration::from_secs(20),
        }
    }
}

impl EngineConfig {
    /// Check the tunables fit together; the message names the offending one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.block_size < 4096 || self.block_size > 256 * MIB {
            return Err(format!(
                "block size {} is out of range (4 KiB to 256 MiB)",
                self.block_size
            ));
        }
        if self.memory_budget < 4 * self.block_size {
            return Err(format!(
                "memory budget {} must be at least 4 blocks ({})",
                self.memory_budget,
                4 * self.block_size
            ));
        }
        Ok(())
    }
}

/// One object as the engine reads it: its pinned identity, cache key and layout.
#[derive(Debug)]
pub struct Object {
    pub id: ObjectId,
    pub key: CacheKey,
    pub layout: BlockLayout,
    /// Bytes returned to readers of this object in this mount (all handles):
    /// whether it was read whole decides if its local copy may be completed
    /// from the shared tier (`make_plain_locally`).
    served: std::sync::atomic::AtomicU64,
}

/// The read path. Shared by every open file of a mount.
pub struct Engine {
    source: Arc<dyn Source>,
    tiers: Vec<Arc<Tier>>,
    memory: moka::future::Cache<BlockId, Bytes>,
    inflight: Arc<Semaphore>,
    inflight_kib: u32,
    config: EngineConfig,
    origin: OriginStats,
    memory_stats: MemoryStats,
    readahead: ReadaheadStats,
    /// How long this worker's origin fetches of a block take: when to look
    /// for a block another worker fetches (`claim_wait`).
    fetch_time: claim_wait::FetchTime,
    background: TaskTracker,
    /// URLs already reported as changed since they were pinned.
    changed: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Origin reads failing (after retries): one warning per episode.
    origin_failing: Episode,
}

impl Engine {
    /// An engine over `source` with cache `tiers` in lookup order (local first).
    pub fn new(
        source: Arc<dyn Source>,
        tiers: Vec<Arc<dyn BlockStore>>,
        config: EngineConfig,
    ) -> std::result::Result<Arc<Self>, String> {
        config.validate()?;
        // In flight is what keeps many origin requests going (bandwidth x
        // latency); the in-memory cache only has to hold the few blocks that
        // readers are in the middle of (the kernel's page cache holds the rest).
        let cached = config.memory_budget / 4;
        let inflight_kib =
            u32::try_from((config.memory_budget - cached) / 1024).unwrap_or(u32::MAX);
        let memory = moka::future::Cache::builder()
            .weigher(|_k: &BlockId, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .max_capacity(cached)
            // LRU, not TinyLFU: a prefetched block is inserted once and read
            // soon; TinyLFU's admission filter turned such blocks away when the
            // cache was full, and the reader then loaded them again from disk.
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        let background = TaskTracker::new();
        let tiers = tiers
            .into_iter()
            .map(|store| {
                let pending_cap = config.memory_budget / 4;
                Arc::new(Tier::new(
                    store,
                    config.publish_slots,
                    pending_cap,
                    background.clone(),
                    memory.clone(),
                ))
            })
            .collect();
        Ok(Arc::new(Engine {
            source,
            tiers,
            memory,
            inflight: Arc::new(Semaphore::new(inflight_kib as usize)),
            inflight_kib,
            config,
            origin: OriginStats::default(),
            memory_stats: MemoryStats::default(),
            readahead: ReadaheadStats::default(),
            fetch_time: claim_wait::FetchTime::default(),
            background,
            changed: Default::default(),
            origin_failing: Episode::default(),
        }))
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Wrap a resolved object for reading.
    pub fn object(&self, id: ObjectId) -> Arc<Object> {
        let key = id.cache_key(self.config.block_size);
        let layout = BlockLayout::new(self.config.block_size, id.size);
        Arc::new(Object {
            id,
            key,
            layout,
            served: Default::default(),
        })
    }

    /// A reader with its own readahead state, one per open file handle.
    pub fn reader(self: &Arc<Self>, object: Arc<Object>) -> FileReader {
        // Prefetched blocks wait in the in-memory cache (a quarter of the
        // budget) until read: a window larger than the cache evicts them before
        // the reader gets there (at 128 MiB over a 64 MiB cache the sweep lost
        // a third of the throughput, docs/PERFORMANCE.md).
        let window = self.config.max_readahead.min(self.config.memory_budget / 4);
        FileReader::new(self.clone(), object, window)
    }

    /// Read `len` bytes at `offset` (clamped to the object's end) with no readahead.
    pub async fn read(self: &Arc<Self>, obj: &Arc<Object>, offset: u64, len: u64) -> Result<Bytes> {
        let blocks = obj.layout.blocks_for(offset, len);
        if blocks.is_empty() {
            return Ok(Bytes::new());
        }
        let end = offset.saturating_add(len).min(obj.id.size);
        let bs = obj.layout.block_size;
        if blocks.end - blocks.start == 1 {
            let (block, hit) = self.block_entry(obj, blocks.start, false, None).await?;
            self.count_memory(hit, end - offset);
            let start = (offset - blocks.start * bs) as usize;
            return Ok(block.slice(start..start + (end - offset) as usize));
        }
        let parts = futures::future::try_join_all(
            blocks
                .clone()
                .map(|i| self.block_entry(obj, i, false, None)),
        )
        .await?;
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for (i, (part, hit)) in blocks.zip(parts) {
            let range = obj.layout.block_range(i);
            let from = offset.max(range.start) - range.start;
            let to = end.min(range.end) - range.start;
            self.count_memory(hit, to - from);
            out.extend_from_slice(&part[from as usize..to as usize]);
        }
        Ok(out.freeze())
    }

    /// Fetch a whole block through the single-flight point.
    pub async fn block(self: &Arc<Self>, obj: &Arc<Object>, index: u64) -> Result<Bytes> {
        self.block_entry(obj, index, false, None)
            .await
            .map(|(data, _)| data)
    }

    /// [`block`](Self::block), and whether this request was served without a
    /// load of its own (the block was in memory, or another request — a
    /// readahead, say — was already loading it). `sequential`: the load is
    /// for a sequential reader's readahead; `elsewhere` is told if another
    /// worker holds the block's claim.
    async fn block_entry(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        index: u64,
        sequential: bool,
        elsewhere: Option<claims::OnClaimedElsewhere>,
    ) -> Result<(Bytes, bool)> {
        let id = BlockId {
            key: obj.key,
            index,
        };
        let entry = self
            .memory
            .entry(id)
            .or_try_insert_with(
                self.clone()
                    .load(obj.clone(), index, None, sequential, elsewhere),
            )
            .await
            .map_err(Error::from)?;
        let hit = !entry.is_fresh();
        Ok((entry.into_value(), hit))
    }

    /// Load a block ahead of a sequential reader, through the single-flight
    /// point; errors are the demand read's to report. `elsewhere` is told if
    /// another worker holds the block's claim.
    async fn prefetch(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        index: u64,
        elsewhere: claims::OnClaimedElsewhere,
    ) {
        let _ = self.block_entry(obj, index, true, Some(elsewhere)).await;
    }

    /// Count one block's part of an application read against the memory tier.
    fn count_memory(&self, hit: bool, bytes: u64) {
        let stats = &self.memory_stats;
        if hit {
            stats.hits.fetch_add(1, Ordering::Relaxed);
            stats.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        } else {
            stats.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wait (bounded) for background publishes to finish, so a clean unmount
    /// leaves every fetched block in the caches. Failed publishes waiting for
    /// a tier whose publishes work now are retried first; those of a tier
    /// still failing stay pending (`publish_pending` in the stats).
    pub async fn shutdown(&self, limit: Duration) -> bool {
        self.background.close();
        let done = tokio::time::timeout(limit, async {
            self.background.wait().await;
            for tier in self.tiers.iter().filter(|t| t.publishes_work()) {
                tier.republish();
            }
            self.background.wait().await;
        })
        .await
        .is_ok();
        self.background.reopen();
        done
    }

    /// Log, per tier, what became of the copies due to it (at unmount): made,
    /// skipped while busy then retried, never made (past the bound on kept copies
    /// first), or still waiting for a tier that fails. One line per tier,
    /// `cache tier NAME copies: N made, N found already there, N skipped
    /// while busy, N retried, N dropped, N pending` ("made" includes "found").
    pub fn report_copies(&self) {
        for (name, t) in self.stats().tiers {
            tracing::info!(
                "cache tier {name} copies: {} made, {} found already there, {} skipped while busy, {} retried, {} dropped, {} pending",
                t.publishes,
                t.publish_found,
                t.publish_skipped,
                t.publish_retried,
                t.publish_dropped,
                t.publish_pending
            );
        }
    }

    /// Log what was asked of the origin (at unmount), in one line: `origin:
    /// N block reads, N bytes, N requests repeated, N failed` (the reads
    /// include a read's lead-in, part of one block: `reader`). `repeated` is what the
    /// source's retry wrapper counted ([`Retries`](crate::Retries)): each is
    /// one more request for a range already asked for.
    pub fn report_origin(&self, repeated: u64) {
        let stats = self.stats();
        tracing::info!(
            "origin: {} block reads, {} bytes, {repeated} requests repeated, {} failed",
            stats.origin_requests,
            stats.origin_bytes,
            stats.origin_errors
        );
    }

    /// [`stats`](Self::stats) with the in-memory cache's size brought up to
    /// date first (it is otherwise updated lazily, as the cache is used).
    pub async fn stats_now(&self) -> StatsSnapshot {
        self.memory.run_pending_tasks().await;
        self.stats()
    }

    /// A copy of every counter.
    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            origin_requests: self.origin.requests.load(Ordering::Relaxed),
            origin_bytes: self.origin.bytes.load(Ordering::Relaxed),
            origin_errors: self.origin.errors.load(Ordering::Relaxed),
            readahead_blocks: self.readahead.blocks.load(Ordering::Relaxed),
            readahead_cancelled: self.readahead.cancelled.load(Ordering::Relaxed),
            readahead_lent: self.readahead.lent.load(Ordering::Relaxed),
            memory: MemorySnapshot {
                hits: self.memory_stats.hits.load(Ordering::Relaxed),
                misses: self.memory_stats.misses.load(Ordering::Relaxed),
                bytes_read: self.memory_stats.bytes_read.load(Ordering::Relaxed),
                inflight_bytes: u64::from(self.inflight_kib)
                    .saturating_sub(self.inflight.available_permits() as u64)
                    * 1024,
                cached_bytes: self.memory.weighted_size(),
            },
            tiers: self
                .tiers
                .iter()
                .map(|t| (t.store.name().to_string(), t.snapshot()))
                .collect(),
        }
    }

    /// Report a failure of the tier called `tier` found outside a read, such as
    /// a cache directory that is unusable when the mount starts: it opens a
    /// degraded episode just as a failed read would (one warning, and an info
    /// line once the tier works again). Unknown names are ignored.
    pub fn report_tier_error(&self, tier: &str, error: &Error) {
        if let Some(t) = self.tiers.iter().find(|t| t.store.name() == tier) {
            t.failed(tiers::Op::Outside, t.stamp(), error);
        }
    }

    /// KiB of in-flight budget free right now.
    fn inflight_free_kib(&self) -> usize {
        self.inflight.available_permits()
    }

    /// Load a block that is not in memory: tiers, then claims, then the origin.
    /// `trace` is set by a warm: its target tiers are published synchronously
    /// and it learns where the block came from. `elsewhere` is told if
    /// another worker holds the block's claim (this load then waits for it).
    async fn load(
        self: Arc<Self>,
        obj: Arc<Object>,
        index: u64,
        trace: Option<Arc<warm::Trace>>,
        sequential: bool,
        elsewhere: Option<claims::OnClaimedElsewhere>,
    ) -> Result<Bytes> {
        let trace = trace.as_deref();
        let len = obj.layout.block_len(index);
        let kib = u32::try_from(len.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.inflight_kib);
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self.inflight.acquire_many(kib).await.ok();
        let id = BlockId {
            key: obj.key,
            index,
        };
        for (depth, tier) in self.tiers.iter().enumerate() {
            if let Some(data) = self.tier_get(tier, id, len, true).await {
                Self::trace_found(trace, warm::Found::Tier(depth));
                self.publish_above(depth, id, &data, trace, sequential)
                    .await;
                return Ok(data);
            }
        }
        let claimed = match self.coordinate(id, len, elsewhere).await {
            claims::Outcome::Published { depth, data } => {
                Self::trace_found(trace, warm::Found::Tier(depth));
                self.publish_above(depth, id, &data, trace, sequential)
                    .await;
                return Ok(data);
            }
            claims::Outcome::Fetch { claimed } => claimed,
        };
        let asked = tokio::time::Instant::now();
        let fetched = self.fetch_origin(&obj, index).await;
        if fetched.is_ok() {
            self.fetch_time.record(asked.elapsed());
        }
        // A claim not handed over is released as it is dropped.
        if let Ok(data) = &fetched {
            Self::trace_found(trace, warm::Found::Origin);
            let claimed = claimed.and_then(claims::HeldClaim::hand_over);
            for (depth, tier) in self.tiers.iter().enumerate() {
                let holds_claim = claimed.as_ref().is_some_and(|c| Arc::ptr_eq(c, tier));
                // A block fetched ahead of a sequential reader, with this
                // worker's claim on the shared tier (so its publish there
                // is never skipped): the local copy waits for the plain
                // file (`local_copy_deferred`).
                if sequential && claimed.is_some() && self.local_copy_deferred(depth) {
                    continue;
                }
                self.publish_to(depth, id, data.clone(), holds_claim, trace)
                    .await;
            }
        }
        fetched
    }

    /// Read a block from the origin, counting it.
    async fn fetch_origin(&self, obj: &Object, index: u64) -> Result<Bytes> {
        self.get_origin(obj, index, obj.layout.block_range(index))
            .await
    }

    /// Read `range` of block `index` (all of it, or a lead-in) from the
    /// origin, counting it; a response of another length is an error.
    async fn get_origin(&self, obj: &Object, index: u64, range: Range<u64>) -> Result<Bytes> {
        let len = range.end - range.start;
        self.origin.requests.fetch_add(1, Ordering::Relaxed);
        let data = match self.source.get_range(&obj.id, range).await {
            Ok(d) => {
                if self.origin_failing.succeeded() {
                    tracing::info!("origin reads succeed again");
                }
                d
            }
            Err(e) => {
                self.origin.errors.fetch_add(1, Ordering::Relaxed);
                if let Error::VersionChanged { url, version } = &e {
                    self.report_changed(url, version, index);
                } else if self.origin_failing.occurred() {
                    tracing::warn!(url = %obj.id.url, block = index, error = %e,
                        "origin read failed (EIO to the application); further failures are logged at debug level until reads succeed again");
                } else {
                    tracing::debug!(url = %obj.id.url, block = index, error = %e, "origin read failed");
                }
                return Err(e);
            }
        };
        self.origin
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if data.len() as u64 != len {
            return Err(Error::ShortRead {
                url: obj.id.url.clone(),
                want: len,
                got: data.len() as u64,
            });
        }
        Ok(data)
    }

    /// Say once per URL (not once per read) that a pinned object changed at the
    /// origin: every later read needing the origin fails the same way.
    fn report_changed(&self, url: &str, version: &str, index: u64) {
        let first = self
            .changed
            .lock()
            .map(|mut seen| seen.insert(url.to_string()))
            .unwrap_or(true);
        if first {
            tracing::error!(
                "{url} changed since it was pinned ({version}): reads of its blocks that are not in a cache fail with EIO"
            );
        } else {
            tracing::debug!(url, block = index, "pinned object changed: read failed");
        }
    }

    /// Copy a block found at tier `depth` into the tiers above it. A block
    /// found ahead of a sequential reader skips the local tier, like
    /// one from the origin (`local_copy_deferred`): the local copy is made
    /// once, as the plain file, if the object is read whole.
    async fn publish_above(
        &self,
        depth: usize,
        id: BlockId,
        data: &Bytes,
        trace: Option<&warm::Trace>,
        sequential: bool,
    ) {
        for upper in 0..depth {
            if sequential && self.local_copy_deferred(upper) {
                continue;
            }
            self.publish_to(upper, id, data.clone(), false, trace).await;
        }
    }
}
