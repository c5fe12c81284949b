//! Filling the caches with whole objects ahead of reads (`inputfs warm`,
//! `mount --copy-to-local`).
//!
//! Warming is not a second read path: every block that is missing from a target
//! tier is loaded through [`Engine::block`]'s single-flight point and `load`, so
//! it is taken from the nearest tier that has it, else from the origin under the
//! cross-worker claims and the in-flight memory budget, exactly as a read would.
//! The differences are only about *publishing*: a read copies blocks into the
//! tiers in the background and skips the copy when a tier is busy, while a warm
//! publishes into its target tiers synchronously and waits for the result, so
//! that when it returns every block is durable in every target (or it failed).
//! Blocks already in every target cost one verified lookup and nothing else.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use super::tiers::Op;
use super::{Engine, Object};
use crate::block::BlockId;
use crate::error::{Error, Result};

/// Which cache tiers a warm fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmTarget {
    /// The tier named `local`.
    Local,
    /// The tier named `shared`.
    Shared,
    /// Both.
    LocalAndShared,
}

impl WarmTarget {
    fn names(self) -> &'static [&'static str] {
        match self {
            WarmTarget::Local => &["local"],
            WarmTarget::Shared => &["shared"],
            WarmTarget::LocalAndShared => &["local", "shared"],
        }
    }
}

/// What a warm did.
#[derive(Debug, Clone, Default)]
pub struct WarmSummary {
    /// Objects and blocks visited.
    pub objects: u64,
    pub blocks: u64,
    /// Bytes of all objects visited.
    pub bytes: u64,
    /// Bytes fetched from the origin by this warm.
    pub origin_bytes: u64,
    /// Bytes that were already in every target tier (nothing to do), by the
    /// nearest target tier holding them.
    pub present_bytes: BTreeMap<String, u64>,
    /// Bytes copied into a target from another tier (or from this process's
    /// memory, as `memory`), by where they were taken from.
    pub copied_bytes: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl WarmSummary {
    /// Bytes that did not come from the origin.
    pub fn cached_bytes(&self) -> u64 {
        self.present_bytes.values().sum::<u64>() + self.copied_bytes.values().sum::<u64>()
    }
}

/// Where `load` found a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// In the tier at this depth (also when another worker's claimed fetch
    /// published it there while we waited).
    Tier(usize),
    Origin,
}

/// What a warm's own `load` did, filled in by `load`: where the block came from
/// and how its synchronous publishes into the target tiers ended. Stays empty
/// when the single-flight point served the block from memory or from a load
/// another caller started.
#[derive(Debug, Default)]
pub(super) struct Trace {
    /// Depths of the tiers to publish into synchronously.
    targets: Vec<usize>,
    inner: Mutex<TraceInner>,
}

#[derive(Debug, Default)]
struct TraceInner {
    found: Option<Found>,
    /// Depth of each tier published into, and how it ended.
    published: Vec<(usize, Result<()>)>,
}

impl Trace {
    fn found(&self, found: Found) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.found = Some(found);
        }
    }
}

/// How one block ended.
enum Outcome {
    Present(usize),
    Copied(Option<usize>),
    Origin,
}

impl Engine {
    /// Make every block of `obj` present in the tiers of `to`. See [`warm_all`](Self::warm_all).
    pub async fn warm(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        to: WarmTarget,
        progress: impl Fn(u64),
    ) -> Result<WarmSummary> {
        self.warm_all(std::slice::from_ref(obj), to, progress).await
    }

    /// Make every block of every object present in the tiers of `to`, taking
    /// each from the nearest tier that has it, else the origin, a bounded number
    /// of blocks at a time. Publishes into the targets are waited for. `progress`
    /// is called with the bytes done so far after each block. The first error
    /// (origin failure, or a target tier that cannot store a block) stops new
    /// work, lets the blocks in flight finish, and is returned naming the URL.
    pub async fn warm_all(
        self: &Arc<Self>,
        objs: &[Arc<Object>],
        to: WarmTarget,
        progress: impl Fn(u64),
    ) -> Result<WarmSummary> {
        let start = Instant::now();
        let mut targets = Vec::new();
        for name in to.names() {
            match self.tiers.iter().position(|t| t.store.name() == *name) {
                Some(depth) => targets.push(depth),
                None => {
                    return Err(Error::Tier {
                        tier: name.to_string(),
                        message: "no such cache tier to warm".into(),
                    });
                }
            }
        }
        let mut summary = WarmSummary {
            objects: objs.len() as u64,
            bytes: objs.iter().map(|o| o.id.size).sum(),
            ..WarmSummary::default()
        };
        let parallel = (self.config.memory_budget / 2 / self.config.block_size / 2).clamp(1, 16);
        let failed = AtomicBool::new(false);
        let (targets, failed) = (&targets, &failed);
        let work = objs
            .iter()
            .flat_map(|o| (0..o.layout.block_count()).map(move |i| (o, i)));
        let mut blocks = futures::stream::iter(work)
            .map(|(obj, index)| async move {
                if failed.load(Ordering::Relaxed) {
                    return (obj, index, None);
                }
                let r = self.warm_block(obj, index, targets).await;
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                (obj, index, Some(r))
            })
            .buffer_unordered(parallel as usize);
        let mut first_error = None;
        let mut done = 0u64;
        while let Some((obj, index, result)) = blocks.next().await {
            let outcome = match result {
                None => continue,
                Some(Err(e)) => {
                    first_error.get_or_insert_with(|| naming_url(e, &obj.id.url));
                    continue;
                }
                Some(Ok(o)) => o,
            };
            let len = obj.layout.block_len(index);
            let name = |depth: usize| self.tiers[depth].store.name().to_string();
            match outcome {
                Outcome::Present(d) => *summary.present_bytes.entry(name(d)).or_default() += len,
                Outcome::Copied(from) => {
                    let from = from.map_or_else(|| "memory".to_string(), name);
                    *summary.copied_bytes.entry(from).or_default() += len;
                }
                Outcome::Origin => summary.origin_bytes += len,
            }
            summary.blocks += 1;
            done += len;
            progress(done);
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        summary.elapsed = start.elapsed();
        Ok(summary)
    }

    /// Make one block present in the target tiers (given by depth).
    async fn warm_block(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        index: u64,
        targets: &[usize],
    ) -> Result<Outcome> {
        let len = obj.layout.block_len(index);
        let id = BlockId {
            key: obj.key,
            index,
        };
        let mut missing = Vec::new();
        let mut have: Option<(usize, Bytes)> = None;
        for &depth in targets {
            match self.tier_get(&self.tiers[depth], id, len, true).await {
                Some(data) if have.is_none() => have = Some((depth, data)),
                Some(_) => {}
                None => missing.push(depth),
            }
        }
        if missing.is_empty() {
            let nearest = have.map_or(targets[0], |(d, _)| d);
            return Ok(Outcome::Present(nearest));
        }
        let (data, outcome, published) = match have {
            Some((depth, data)) => (data, Outcome::Copied(Some(depth)), Vec::new()),
            None => {
                let trace = Arc::new(Trace {
                    targets: missing.clone(),
                    ..Trace::default()
                });
                let data = self
                    .memory
                    .try_get_with(
                        id,
                        self.clone()
                            .load(obj.clone(), index, Some(trace.clone()), false, None),
                    )
                    .await
                    .map_err(Error::from)?;
                let (found, published) = trace
                    .inner
                    .lock()
                    .map(|mut i| (i.found, std::mem::take(&mut i.published)))
                    .unwrap_or_default();
                let outcome = match found {
                    Some(Found::Origin) => Outcome::Origin,
                    Some(Found::Tier(d)) => Outcome::Copied(Some(d)),
                    None => Outcome::Copied(None),
                };
                (data, outcome, published)
            }
        };
        for depth in missing {
            let result = match published.iter().find(|(d, _)| *d == depth) {
                Some((_, r)) => r.clone(),
                None => self.publish_now(depth, id, data.clone(), false).await,
            };
            result?;
        }
        Ok(outcome)
    }

    /// Publish a block into the tier at `depth`: in the background as reads do,
    /// or, for a warm's load that targets that tier, now, recording the result.
    pub(super) async fn publish_to(
        &self,
        depth: usize,
        id: BlockId,
        data: Bytes,
        holds_claim: bool,
        trace: Option<&Trace>,
    ) {
        match trace.filter(|t| t.targets.contains(&depth)) {
            None => self.tiers[depth].publish(id, data, holds_claim),
            Some(trace) => {
                let result = self.publish_now(depth, id, data, holds_claim).await;
                if let Ok(mut inner) = trace.inner.lock() {
                    inner.published.push((depth, result));
                }
            }
        }
    }

    /// Note where a warm's load found its block.
    pub(super) fn trace_found(trace: Option<&Trace>, found: Found) {
        if let Some(t) = trace {
            t.found(found);
        }
    }

    /// Publish a block into the tier at `depth` and wait for it: a publish slot
    /// is waited for rather than skipped, and a failure is returned (and counted
    /// and logged like any tier failure).
    async fn publish_now(
        &self,
        depth: usize,
        id: BlockId,
        data: Bytes,
        holds_claim: bool,
    ) -> Result<()> {
        let tier = &self.tiers[depth];
        // The semaphore is never closed, so acquiring cannot fail.
        let _slot = tier.publish_slots.clone().acquire_owned().await.ok();
        let stamp = tier.stamp();
        let result = self
            .tier_call(tier, "publish", move |s| {
                let r = s.put(&id, &data);
                if holds_claim {
                    s.release(&id);
                }
                r
            })
            .await;
        match &result {
            Ok(placed) => {
                if *placed == crate::store::Placed::AlreadyThere {
                    tier.stats.publish_found.fetch_add(1, Ordering::Relaxed);
                }
                tier.stats.publishes.fetch_add(1, Ordering::Relaxed);
                tier.succeeded(Op::Put, stamp);
            }
            Err(e) => {
                tier.failed(Op::Put, stamp, e);
                tier.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result.map(drop)
    }
}

/// An error that names `url`, for errors that do not already.
fn naming_url(e: Error, url: &str) -> Error {
    if e.to_string().contains(url) {
        return e;
    }
    match e {
        Error::Tier { tier, message } => Error::Tier {
            tier,
            message: format!("cannot store a block of {url}: {message}"),
        },
        other => Error::Origin {
            url: url.to_string(),
            message: other.to_string(),
            retryable: false,
            throttled: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::WarmTarget;
    use crate::engine::{Engine, EngineConfig, Object};
    use crate::store::BlockStore;
    use crate::testing::{Fault, FaultySource, FaultyStore, MemorySource, MemoryStore, StoreFault};

    const KIB: u64 = 1024;
    const BLOCK: u64 = 64 * KIB;

    fn config() -> EngineConfig {
        EngineConfig {
            block_size: BLOCK,
            memory_budget: 2048 * KIB,
            // Few publish slots, so a read's background publish would be skipped:
            // warm must not depend on them.
            publish_slots: 1,
            ..EngineConfig::default()
        }
    }

    struct Rig {
        origin: Arc<FaultySource<MemorySource>>,
        objects: Vec<crate::ObjectId>,
        size: u64,
        blocks: usize,
    }

    /// Three objects: several blocks with a partial last one, one block, empty.
    fn rig() -> Rig {
        let mem = MemorySource::new();
        let sizes = [5 * BLOCK + 123, BLOCK, 0];
        let objects = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let data: Vec<u8> = (0..n).map(|b| (b as usize * 31 + i) as u8).collect();
                mem.insert(&format!("mem://warm/obj{i}"), data)
            })
            .collect();
        Rig {
            origin: Arc::new(FaultySource::new(mem)),
            objects,
            size: sizes.iter().sum(),
            blocks: 7,
        }
    }

    impl Rig {
        fn engine(&self, tiers: Vec<Arc<dyn BlockStore>>) -> (Arc<Engine>, Vec<Arc<Object>>) {
            let engine = Engine::new(self.origin.clone(), tiers, config()).unwrap();
            let objs = self
                .objects
                .iter()
                .map(|id| engine.object(id.clone()))
                .collect();
            (engine, objs)
        }

        fn origin_bytes(&self) -> u64 {
            self.origin.inner().bytes()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_warm_reads_nothing_from_the_origin() {
        let r = rig();
        let local = Arc::new(MemoryStore::new("local"));
        let shared = Arc::new(MemoryStore::with_claims("shared"));
        let tiers: Vec<Arc<dyn BlockStore>> = vec![local.clone(), shared.clone()];
        let (engine, objs) = r.engine(tiers.clone());
        let last = AtomicU64::new(0);
        let s = engine
            .warm_all(&objs, WarmTarget::LocalAndShared, |done| {
                assert!(done > last.swap(done, Ordering::Relaxed));
            })
            .await
            .unwrap();
        assert_eq!(last.load(Ordering::Relaxed), r.size);
        assert_eq!(
            (s.bytes, s.origin_bytes, s.cached_bytes()),
            (r.size, r.size, 0)
        );
        assert_eq!((s.objects, s.blocks), (3, r.blocks as u64));
        assert_eq!(r.origin_bytes(), r.size);
        // Durable when warm returns: no waiting for background publishes.
        assert_eq!((local.len(), shared.len()), (r.blocks, r.blocks));

        // Again, in this process and in a fresh one over the same caches.
        let (fresh, fresh_objs) = r.engine(tiers);
        for (e, o) in [(&engine, &objs), (&fresh, &fresh_objs)] {
            let s = e
                .warm_all(o, WarmTarget::LocalAndShared, |_| {})
                .await
                .unwrap();
            assert_eq!(s.origin_bytes, 0);
            assert_eq!(s.present_bytes.get("local"), Some(&r.size));
            assert_eq!(s.cached_bytes(), r.size);
        }
        assert_eq!(r.origin_bytes(), r.size);
        // And the bytes are the object's bytes.
        let got = fresh.read(&fresh_objs[0], 0, r.size).await.unwrap();
        let want: Vec<u8> = (0..5 * BLOCK + 123)
            .map(|b| (b as usize * 31) as u8)
            .collect();
        assert!(got[..] == want[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn warm_from_shared_copies_into_local() {
        let r = rig();
        let shared = Arc::new(MemoryStore::with_claims("shared"));
        let (a, objs) = r.engine(vec![shared.clone()]);
        let s = a.warm_all(&objs, WarmTarget::Shared, |_| {}).await.unwrap();
        assert_eq!(s.origin_bytes, r.size);
        assert_eq!(shared.len(), r.blocks);

        let local = Arc::new(MemoryStore::new("local"));
        let (b, objs) = r.engine(vec![local.clone(), shared.clone()]);
        let s = b.warm_all(&objs, WarmTarget::Local, |_| {}).await.unwrap();
        assert_eq!(s.origin_bytes, 0);
        assert_eq!(s.copied_bytes.get("shared"), Some(&r.size));
        assert_eq!(local.len(), r.blocks);
        assert_eq!(r.origin_bytes(), r.size, "origin read again");

        // The other way round: a block only in local is copied up to shared.
        let shared2 = Arc::new(MemoryStore::with_claims("shared"));
        let (c, objs) = r.engine(vec![local.clone(), shared2.clone()]);
        let s = c.warm(&objs[0], WarmTarget::Shared, |_| {}).await.unwrap();
        assert_eq!(s.copied_bytes.get("local"), Some(&(5 * BLOCK + 123)));
        assert_eq!(shared2.len(), 6);
        assert_eq!(r.origin_bytes(), r.size);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn origin_errors_fail_the_warm_naming_the_url() {
        let r = rig();
        let local = Arc::new(MemoryStore::new("local"));
        let (engine, objs) = r.engine(vec![local.clone()]);
        r.origin.fail_next(1, Fault::Permanent);
        let e = engine
            .warm(&objs[1], WarmTarget::Local, |_| {})
            .await
            .unwrap_err();
        assert!(e.to_string().contains("mem://warm/obj1"), "{e}");
        assert!(local.is_empty());
        // Nothing is left poisoned: the next warm works.
        engine
            .warm(&objs[1], WarmTarget::Local, |_| {})
            .await
            .unwrap();
        assert_eq!(local.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_that_cannot_store_fails_the_warm_naming_the_url() {
        let r = rig();
        let local = Arc::new(FaultyStore::new(MemoryStore::new("local")));
        local.fail_puts(100, StoreFault::Errno(libc::ENOSPC));
        let (engine, objs) = r.engine(vec![local.clone()]);
        let e = engine
            .warm_all(&objs, WarmTarget::Local, |_| {})
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("mem://warm/obj") && text.contains("No space"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn warming_a_missing_tier_is_an_error() {
        let r = rig();
        let (engine, objs) = r.engine(vec![Arc::new(MemoryStore::new("local"))]);
        let e = engine
            .warm_all(&objs, WarmTarget::Shared, |_| {})
            .await
            .unwrap_err();
        assert!(e.to_string().contains("shared"), "{e}");
    }
}
