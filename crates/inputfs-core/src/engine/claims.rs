//! De-duplicating origin fetches across workers that share a tier.
//!
//! Workers never talk to each other; the shared directory is all they share. So
//! before fetching a block from the origin a worker claims it on the shared tier
//! (an exclusive entry with an expiry, in `inputfs-store`). Whoever gets the
//! claim fetches and publishes; the others look for the block on the tier, on a
//! schedule set by how long a fetch takes (`claim_wait`), for at most the claim
//! timeout — then fetch it themselves, so nothing ever waits unbounded. A
//! claim whose holder died is taken over once it expires.
//! Claims only save origin traffic: every race they lose costs a duplicate fetch,
//! never a wrong byte, because blocks are content-addressed and verified.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio_util::task::TaskTracker;

use super::tiers::{Op, Tier};
use super::{Engine, claim_wait};
use crate::block::BlockId;
use crate::store::Claim;

/// Told by a readahead load that another worker holds its block's claim, so
/// the reader's planner stops charging the block to the stream
/// (`Readahead::on_fetched_elsewhere`: cooperative cold start).
pub(super) type OnClaimedElsewhere = Box<dyn FnOnce() + Send>;

/// What to do after every tier missed.
pub(super) enum Outcome {
    /// Another worker published the block to the tier at `depth` while we waited.
    Published { depth: usize, data: Bytes },
    /// Fetch from the origin; `claimed` is the claim we hold, if any.
    Fetch { claimed: Option<HeldClaim> },
}

/// A claim this worker holds on a tier while it fetches. Dropped, it is
/// released in the background, so a load that fails or is cancelled (an
/// abandoned readahead) does not leave the fleet waiting for it to expire;
/// [`hand_over`](Self::hand_over) gives it to the publish that releases it.
pub(super) struct HeldClaim {
    tier: Option<Arc<Tier>>,
    id: BlockId,
    background: TaskTracker,
}

impl HeldClaim {
    /// The tier the claim is on, for the publish that will release it.
    pub(super) fn hand_over(mut self) -> Option<Arc<Tier>> {
        self.tier.take()
    }
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        let Some(tier) = self.tier.take() else {
            return;
        };
        // Outside a runtime (the daemon exiting) the claim expires by itself.
        if tokio::runtime::Handle::try_current().is_ok() {
            let id = self.id;
            self.background
                .spawn_blocking(move || tier.store.release(&id));
        }
    }
}

impl Engine {
    /// Claim the block on the first tier that coordinates, or wait for whoever
    /// holds the claim there.
    pub(super) async fn coordinate(
        &self,
        id: BlockId,
        len: u64,
        elsewhere: Option<OnClaimedElsewhere>,
    ) -> Outcome {
        if self.config.claim_timeout.is_zero() {
            return Outcome::Fetch { claimed: None };
        }
        for (depth, tier) in self.tiers.iter().enumerate() {
            match self.try_claim(tier, id).await {
                Claim::Unsupported => continue,
                Claim::Acquired => {
                    let held = self.held(tier, id);
                    return self.recheck(depth, held, id, len).await;
                }
                Claim::Held => {
                    if let Some(tell) = elsewhere {
                        tell();
                    }
                    return self.wait_for(depth, tier, id, len).await;
                }
            }
        }
        Outcome::Fetch { claimed: None }
    }

    /// A claim just acquired on `tier`, released if dropped.
    fn held(&self, tier: &Arc<Tier>, id: BlockId) -> HeldClaim {
        HeldClaim {
            tier: Some(tier.clone()),
            id,
            background: self.background.clone(),
        }
    }

    /// Having just won the claim, look once more: the previous holder may have
    /// published and released between our miss and our claim (the claim is
    /// released then, by dropping it).
    async fn recheck(&self, depth: usize, held: HeldClaim, id: BlockId, len: u64) -> Outcome {
        let Some(tier) = held.tier.clone() else {
            return Outcome::Fetch { claimed: None };
        };
        match self.tier_get(&tier, id, len, false).await {
            Some(data) => Outcome::Published { depth, data },
            None => Outcome::Fetch {
                claimed: Some(held),
            },
        }
    }

    async fn wait_for(&self, depth: usize, tier: &Arc<Tier>, id: BlockId, len: u64) -> Outcome {
        tier.stats.claim_waits.fetch_add(1, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.claim_timeout;
        loop {
            // Never past the deadline, however long a fetch is expected to take.
            let pause = claim_wait::next_pause(self.fetch_time.estimate(), started.elapsed());
            tokio::time::sleep_until((tokio::time::Instant::now() + pause).min(deadline)).await;
            if let Some(data) = self.tier_get(tier, id, len, false).await {
                tier.stats.claim_wait_hits.fetch_add(1, Ordering::Relaxed);
                return Outcome::Published { depth, data };
            }
            // The holder may have failed (claim gone) or died (claim expired):
            // then take the claim over, so the rest of the fleet waits for us.
            // Not before the block is due: until then the holder is most
            // likely still fetching, and a look is one operation, not three.
            let out_of_time = tokio::time::Instant::now() >= deadline;
            if !out_of_time && !claim_wait::claim_due(self.fetch_time.estimate(), started.elapsed())
            {
                continue;
            }
            match self.try_claim(tier, id).await {
                Claim::Held => {}
                Claim::Acquired => {
                    let held = self.held(tier, id);
                    return self.recheck(depth, held, id, len).await;
                }
                Claim::Unsupported => return Outcome::Fetch { claimed: None },
            }
            if out_of_time {
                tier.stats
                    .claim_wait_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    tier = tier.store.name(),
                    block = id.index,
                    "gave up waiting for another worker's fetch"
                );
                return Outcome::Fetch { claimed: None };
            }
        }
    }

    /// Try to claim; a tier that fails to answer is treated as not coordinating.
    async fn try_claim(&self, tier: &Arc<Tier>, id: BlockId) -> Claim {
        let ttl = self.config.claim_timeout;
        let stamp = tier.stamp();
        match self
            .tier_call(tier, "claim", move |s| s.claim(&id, ttl))
            .await
        {
            Ok(Claim::Acquired) => {
                tier.succeeded(Op::Claim, stamp);
                tier.stats.claims.fetch_add(1, Ordering::Relaxed);
                Claim::Acquired
            }
            Ok(other) => {
                tier.succeeded(Op::Claim, stamp);
                other
            }
            Err(e) => {
                tier.stats.errors.fetch_add(1, Ordering::Relaxed);
                tier.failed(Op::Claim, stamp, &e);
                Claim::Unsupported
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::BlockId;
    use crate::engine::{Engine, EngineConfig, Object};
    use crate::store::{BlockStore, Claim};
    use crate::testing::Fault;
    use crate::testing::{FaultySource, FaultyStore, MemorySource, MemoryStore, StoreFault};

    const KIB: u64 = 1024;

    struct Fleet {
        origin: Arc<FaultySource<MemorySource>>,
        shared: Arc<MemoryStore>,
        data: Vec<u8>,
        id: crate::ObjectId,
    }

    fn fleet(size: usize) -> Fleet {
        let mem = MemorySource::new();
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let id = mem.insert("mem://fleet/obj", data.clone());
        let origin = Arc::new(FaultySource::new(mem));
        origin.set_delay(Duration::from_millis(50));
        Fleet {
            origin,
            shared: Arc::new(MemoryStore::with_claims("shared")),
            data,
            id,
        }
    }

    impl Fleet {
        /// A worker: its own local tier, the fleet's shared tier and origin.
        fn worker(&self, claim_timeout: Duration) -> (Arc<Engine>, Arc<Object>) {
            let config = EngineConfig {
                block_size: 64 * KIB,
                memory_budget: 4096 * KIB,
                claim_timeout,
                ..EngineConfig::default()
            };
            let tiers: Vec<Arc<dyn BlockStore>> =
                vec![Arc::new(MemoryStore::new("local")), self.shared.clone()];
            let engine = Engine::new(self.origin.clone(), tiers, config).unwrap();
            let object = engine.object(self.id.clone());
            (engine, object)
        }

        async fn read_all_concurrently(&self, workers: usize, claim_timeout: Duration) {
            let mut tasks = vec![];
            for _ in 0..workers {
                let (engine, object) = self.worker(claim_timeout);
                let len = self.data.len() as u64;
                tasks.push(tokio::spawn(async move {
                    let got = engine.read(&object, 0, len).await;
                    engine.shutdown(Duration::from_secs(5)).await;
                    got
                }));
            }
            for t in tasks {
                let got = t.await.unwrap().unwrap();
                assert!(got[..] == self.data[..], "wrong bytes");
            }
        }

        fn requests(&self) -> u64 {
            self.origin.inner().requests()
        }

        /// Another worker claims `block` (and holds it for `ttl`).
        fn claimed_elsewhere(&self, block: BlockId, ttl: Duration) {
            assert_eq!(self.shared.claim(&block, ttl).unwrap(), Claim::Acquired);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn four_workers_fetch_each_block_once() {
        let f = fleet(16 * 64 * 1024);
        f.read_all_concurrently(4, Duration::from_secs(5)).await;
        assert_eq!(f.requests(), 16, "each block fetched once across the fleet");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn without_claims_every_worker_fetches() {
        let f = fleet(16 * 64 * 1024);
        f.read_all_concurrently(4, Duration::ZERO).await;
        assert!(
            f.requests() > 16 * 3,
            "claims off: {} requests",
            f.requests()
        );
    }

    /// Four workers each read the whole object sequentially through a
    /// reader (readahead on), all starting at once: every byte right, every
    /// block fetched from the origin once across the fleet.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn four_readers_starting_together_fetch_each_block_once() {
        let f = fleet(64 * 64 * 1024);
        let mut tasks = vec![];
        for _ in 0..4 {
            let (engine, object) = f.worker(Duration::from_secs(10));
            let data = f.data.clone();
            tasks.push(tokio::spawn(async move {
                let reader = engine.reader(object);
                let mut off = 0u64;
                while off < data.len() as u64 {
                    let got = reader.read(off, 128 * KIB).await.unwrap();
                    let want = &data[off as usize..(off as usize + got.len())];
                    assert!(got[..] == *want, "wrong bytes at {off}");
                    off += got.len() as u64;
                }
                drop(reader);
                engine.shutdown(Duration::from_secs(5)).await;
                engine.stats()
            }));
        }
        for t in tasks {
            let stats = t.await.unwrap();
            assert_eq!(stats.readahead_cancelled, 0);
        }
        assert_eq!(f.requests(), 64, "each block fetched once across the fleet");
    }

    /// Cooperative cold start: blocks of a reader's window that another
    /// worker is fetching (their claims held) do not count against the
    /// window, which reaches as much further: this worker fetches blocks past
    /// its window while the others are still busy with theirs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_claimed_elsewhere_send_the_window_further() {
        let f = fleet(32 * 64 * 1024);
        let config = EngineConfig {
            block_size: 64 * KIB,
            memory_budget: 4096 * KIB,
            max_readahead: 256 * KIB,
            claim_timeout: Duration::from_secs(30),
            ..EngineConfig::default()
        };
        let tiers: Vec<Arc<dyn BlockStore>> = vec![f.shared.clone()];
        let engine = Engine::new(f.origin.clone(), tiers, config).unwrap();
        let object = engine.object(f.id.clone());
        let block = |index| BlockId {
            key: object.key,
            index,
        };
        // Another worker is fetching blocks 4..8.
        for i in 4..8 {
            f.claimed_elsewhere(block(i), Duration::from_secs(30));
        }
        let reader = engine.reader(object.clone());
        // Blocks 0..4, read from the start: 4 blocks ahead earned (4..8),
        // all four claimed elsewhere, so this worker fetches 8..12 itself.
        let got = reader.read(0, 256 * KIB).await.unwrap();
        assert!(got[..] == f.data[..256 * 1024]);
        let fetched_ahead = async {
            while f.requests() < 8 || engine.stats().readahead_lent < 4 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), fetched_ahead)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} origin requests, {} lent: the window did not move past the claimed blocks",
                    f.requests(),
                    engine.stats().readahead_lent
                )
            });
        assert_eq!(
            f.requests(),
            8,
            "blocks 0..4 and 8..12, none claimed elsewhere"
        );
        // The other worker publishes its blocks and releases its claims.
        for i in 4..8 {
            let range = object.layout.block_range(i);
            let bytes = &f.data[range.start as usize..range.end as usize];
            f.shared.put(&block(i), bytes).unwrap();
            f.shared.release(&block(i));
        }
        let mut off = 256 * KIB;
        while off < f.data.len() as u64 {
            let got = reader.read(off, 128 * KIB).await.unwrap();
            assert!(got[..] == f.data[off as usize..off as usize + got.len()]);
            off += got.len() as u64;
        }
        assert_eq!(f.requests(), 28, "every block but the other worker's four");
    }

    /// A waiter looks for a claimed block on a schedule set by its own fetch
    /// time (`claim_wait`): a block landing after about one fetch is found in
    /// a handful of looks, where polling every 5-50 ms took ten or more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_looks_a_few_times_per_fetch_time() {
        let f = fleet(2 * 64 * 1024);
        let fetch = Duration::from_millis(400);
        f.origin.set_delay(fetch);
        let (engine, object) = f.worker(Duration::from_secs(20));
        // Block 1 is fetched by this worker: its estimate of a fetch.
        let got = engine.read(&object, 64 * KIB, 10).await.unwrap();
        assert_eq!(&got[..], &f.data[64 * 1024..64 * 1024 + 10]);
        // Another worker holds block 0's claim and publishes it one fetch later.
        let block = BlockId {
            key: object.key,
            index: 0,
        };
        f.claimed_elsewhere(block, Duration::from_secs(20));
        let shared = f.shared.clone();
        let bytes = f.data[..64 * 1024].to_vec();
        let holder = tokio::spawn(async move {
            tokio::time::sleep(fetch).await;
            shared.put(&block, &bytes).unwrap();
            shared.release(&block);
        });
        let before = f.shared.gets();
        let got = engine.read(&object, 0, 10).await.unwrap();
        assert_eq!(&got[..], &f.data[..10]);
        holder.await.unwrap();
        // About 4 looks (one per quarter of the 400 ms estimate); 8 still
        // allows the holder to publish up to 400 ms late on a loaded machine,
        // where polling every 5-50 ms made 15.
        let looks = f.shared.gets() - before - 1;
        assert!(looks <= 8, "{looks} looks for one fetch time");
        assert_eq!(f.requests(), 1, "block 0 came from the other worker");
    }

    /// A fetch expected to take longer than the claim timeout does not make
    /// a waiter wait past it: its one look is at the deadline, then it
    /// fetches the block itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_never_waits_past_the_claim_timeout() {
        let f = fleet(2 * 64 * 1024);
        f.origin.set_delay(Duration::from_millis(1500));
        let (engine, object) = f.worker(Duration::from_millis(300));
        let got = engine.read(&object, 64 * KIB, 10).await.unwrap();
        assert_eq!(&got[..], &f.data[64 * 1024..64 * 1024 + 10]);
        let block = BlockId {
            key: object.key,
            index: 0,
        };
        f.claimed_elsewhere(block, Duration::from_secs(30));
        let before = f.shared.gets();
        let got = engine.read(&object, 0, 10).await.unwrap();
        assert_eq!(&got[..], &f.data[..10]);
        // The read's own lookup, and one look at the deadline (waiting for the
        // block to be due would have made 4).
        assert_eq!(f.shared.gets() - before, 2);
        let tier = engine.stats().tier("shared").unwrap();
        assert_eq!(tier.claim_wait_timeouts, 1);
        assert_eq!(
            f.requests(),
            2,
            "block 0 fetched by this worker after the timeout"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_workers_claim_is_taken_over_after_expiry() {
        let f = fleet(64 * 1024);
        let (engine, object) = f.worker(Duration::from_millis(300));
        // A worker claimed block 0 and died.
        let block = BlockId {
            key: object.key,
            index: 0,
        };
        f.claimed_elsewhere(block, Duration::from_millis(300));
        let start = std::time::Instant::now();
        let got = engine.read(&object, 0, 100).await.unwrap();
        assert_eq!(&got[..], &f.data[..100]);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "did not wait: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(2),
            "waited too long: {waited:?}"
        );
        let tier = engine.stats().tier("shared").unwrap();
        assert_eq!((tier.claim_waits, tier.claims), (1, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claim_errors_and_hangs_degrade_to_fetching() {
        for fault in [
            StoreFault::Errno(libc::EACCES),
            StoreFault::Errno(libc::ENOSPC),
            StoreFault::Errno(libc::ESTALE),
            StoreFault::Errno(libc::EIO),
            StoreFault::Hang(Duration::from_secs(3)),
        ] {
            let f = fleet(64 * 1024);
            let shared = Arc::new(FaultyStore::new(MemoryStore::with_claims("shared")));
            shared.fail_claims(1, fault);
            let config = EngineConfig {
                block_size: 64 * KIB,
                memory_budget: 4096 * KIB,
                tier_timeout: Duration::from_millis(300),
                ..EngineConfig::default()
            };
            let tiers: Vec<Arc<dyn BlockStore>> = vec![shared.clone()];
            let engine = Engine::new(f.origin.clone(), tiers, config).unwrap();
            let object = engine.object(f.id.clone());
            let start = std::time::Instant::now();
            let got = engine.read(&object, 0, 1000).await.unwrap();
            assert_eq!(&got[..], &f.data[..1000], "{fault:?}");
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{fault:?} hung the read"
            );
            assert_eq!(
                engine.stats().tier("shared").unwrap().errors,
                1,
                "{fault:?}"
            );
            assert_eq!(f.requests(), 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_holder_releases_and_a_waiter_fetches() {
        let f = fleet(64 * 1024);
        let (a, obj_a) = f.worker(Duration::from_secs(10));
        let (b, obj_b) = f.worker(Duration::from_secs(10));
        // A's fetch fails on every attempt (no retry wrapper here).
        f.origin.fail_next(1, Fault::Permanent);
        let ta = tokio::spawn(async move { a.read(&obj_a, 0, 10).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let start = std::time::Instant::now();
        let got = b.read(&obj_b, 0, 10).await.unwrap();
        assert_eq!(&got[..], &f.data[..10]);
        assert!(ta.await.unwrap().is_err());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "waited for the full timeout"
        );
    }
}
