//! Engine tests over the in-memory fakes: exact bytes, tier order, single-flight,
//! readahead, the memory budget, and every tier failure degrading to the origin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::source::{RetryPolicy, Retrying};
use crate::testing::{Fault, FaultySource, FaultyStore, MemorySource, MemoryStore, StoreFault};

const KIB: u64 = 1024;

fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn config() -> EngineConfig {
    EngineConfig {
        block_size: 64 * KIB,
        memory_budget: 2048 * KIB,
        max_readahead: 256 * KIB,
        tier_timeout: Duration::from_millis(500),
        publish_slots: 64,
        claim_timeout: Duration::from_secs(1),
    }
}

struct Rig {
    origin: Arc<FaultySource<MemorySource>>,
    local: Arc<FaultyStore<MemoryStore>>,
    shared: Arc<FaultyStore<MemoryStore>>,
    engine: Arc<Engine>,
    object: Arc<Object>,
    bytes: Vec<u8>,
}

fn rig(size: usize) -> Rig {
    rig_with(size, config())
}

fn rig_with(size: usize, config: EngineConfig) -> Rig {
    let mem = MemorySource::new();
    let bytes = data(size);
    let id = mem.insert("mem://bucket/obj", bytes.clone());
    let origin = Arc::new(FaultySource::new(mem));
    let local = Arc::new(FaultyStore::new(MemoryStore::new("local")));
    let shared = Arc::new(FaultyStore::new(MemoryStore::new("shared")));
    let engine = Engine::new(
        Arc::new(Retrying::new(
            origin.clone(),
            RetryPolicy {
                attempts: 3,
                first_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(4),
            },
        )),
        vec![local.clone(), shared.clone()],
        config,
    )
    .unwrap();
    let object = engine.object(id);
    Rig {
        origin,
        local,
        shared,
        engine,
        object,
        bytes,
    }
}

impl Rig {
    async fn check(&self, offset: u64, len: u64) {
        let got = self.engine.read(&self.object, offset, len).await.unwrap();
        let end = (offset + len).min(self.bytes.len() as u64) as usize;
        let start = (offset as usize).min(end);
        assert!(
            got[..] == self.bytes[start..end],
            "bytes differ at {offset}+{len}"
        );
    }

    /// A new engine over the same origin and tiers: what a remount sees.
    fn remount(&self) -> (Arc<Engine>, Arc<Object>) {
        let engine = Engine::new(
            Arc::new(self.origin.clone()),
            vec![self.local.clone(), self.shared.clone()],
            config(),
        )
        .unwrap();
        let object = engine.object(self.object.id.clone());
        (engine, object)
    }

    fn origin_requests(&self) -> u64 {
        self.origin.inner().requests()
    }

    async fn settle(&self) {
        assert!(self.engine.shutdown(Duration::from_secs(5)).await);
    }
}

#[tokio::test]
async fn reads_return_exact_bytes_at_odd_offsets() {
    let r = rig(1_000_003);
    for (off, len) in [
        (0, 1),
        (1, 65_535),
        (65_535, 2),
        (65_536 * 3 - 7, 200_000),
        (999_999, 100),
        (1_000_003, 10),
        (2_000_000, 10),
        (0, 1_000_003),
    ] {
        r.check(off, len).await;
    }
}

#[tokio::test]
async fn second_engine_over_the_same_tiers_reads_nothing_from_origin() {
    let r = rig(500_000);
    r.check(0, 500_000).await;
    r.settle().await;
    let before = r.origin_requests();
    assert_eq!(before, 8);
    let (engine, obj) = r.remount();
    let got = engine.read(&obj, 0, 500_000).await.unwrap();
    assert!(got[..] == r.bytes[..]);
    assert_eq!(r.origin_requests(), before);
    assert_eq!(engine.stats().tier("local").unwrap().hits, 8);
}

#[tokio::test]
async fn shared_hit_is_copied_to_local() {
    let r = rig(200_000);
    r.check(0, 200_000).await;
    r.settle().await;
    // Lose the local tier (a new VM), keep the shared one.
    let local = Arc::new(MemoryStore::new("local"));
    let engine = Engine::new(
        Arc::new(r.origin.clone()),
        vec![local.clone(), r.shared.clone()],
        config(),
    )
    .unwrap();
    let obj = engine.object(r.object.id.clone());
    assert!(engine.read(&obj, 0, 200_000).await.unwrap()[..] == r.bytes[..]);
    assert!(engine.shutdown(Duration::from_secs(5)).await);
    assert_eq!(engine.stats().tier("shared").unwrap().hits, 4);
    assert_eq!(local.len(), 4);
    assert_eq!(r.origin_requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_a_block_cause_one_origin_fetch() {
    let r = rig(64 * 1024);
    r.origin.set_delay(Duration::from_millis(50));
    let mut tasks = vec![];
    for i in 0..16u64 {
        let (engine, obj) = (r.engine.clone(), r.object.clone());
        tasks.push(tokio::spawn(async move {
            engine.read(&obj, i * 100, 4096).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap().unwrap();
        assert!(got[..] == r.bytes[i * 100..i * 100 + 4096]);
    }
    assert_eq!(r.origin_requests(), 1);
}

#[tokio::test]
async fn random_read_fetches_only_the_blocks_it_touches() {
    let r = rig(4 * 1024 * 1024);
    let reader = r.engine.reader(r.object.clone());
    // Position the reader elsewhere first so the read below is not "sequential".
    let _ = reader.read(3 * 1024 * 1024, 10).await.unwrap();
    let before = r.origin_requests();
    let got = reader.read(1_000_000, 100_000).await.unwrap();
    assert!(got[..] == r.bytes[1_000_000..1_100_000]);
    // 1_000_000..1_100_000 spans blocks 15 and 16 of 64 KiB: two fetches, no more.
    assert_eq!(r.origin_requests() - before, 2);
}

#[tokio::test]
async fn sequential_reader_prefetches_ahead() {
    let r = rig(2 * 1024 * 1024);
    let reader = r.engine.reader(r.object.clone());
    let mut off = 0u64;
    while off < 512 * KIB {
        let got = reader.read(off, 32 * KIB).await.unwrap();
        assert!(got[..] == r.bytes[off as usize..(off + 32 * KIB) as usize]);
        off += 32 * KIB;
    }
    // Let spawned prefetches land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fetched = r.origin_requests();
    assert!(
        fetched > 8,
        "expected readahead past the 8 blocks read, got {fetched}"
    );
    assert!(fetched <= 8 + 4, "readahead exceeded its window: {fetched}");
}

#[tokio::test]
async fn corrupt_tier_block_is_refetched_and_counted() {
    let r = rig(100_000);
    r.check(0, 100_000).await;
    r.settle().await;
    let block = BlockId {
        key: r.object.key,
        index: 0,
    };
    r.local.inner().truncate(&block);
    r.shared.inner().truncate(&block);
    let (engine, obj) = r.remount();
    assert!(engine.read(&obj, 0, 100_000).await.unwrap()[..] == r.bytes[..]);
    let s = engine.stats();
    assert_eq!(s.tier("local").unwrap().corrupt, 1);
    assert_eq!(s.tier("shared").unwrap().corrupt, 1);
    assert_eq!(s.origin_requests, 1);
}

#[tokio::test]
async fn tier_errors_fall_through_to_origin() {
    for errno in [
        libc::ENOENT,
        libc::ESTALE,
        libc::EBUSY,
        libc::EEXIST,
        libc::EACCES,
        libc::EPERM,
        libc::ENOSPC,
        libc::EIO,
    ] {
        let r = rig(100_000);
        r.local.fail_gets(10, StoreFault::Errno(errno));
        r.shared.fail_gets(10, StoreFault::Errno(errno));
        r.local.fail_puts(10, StoreFault::Errno(errno));
        r.shared.fail_puts(10, StoreFault::Errno(errno));
        r.check(0, 100_000).await;
        r.settle().await;
        let s = r.engine.stats();
        assert_eq!(s.tier("local").unwrap().errors, 2, "errno {errno}");
        assert_eq!(s.tier("shared").unwrap().errors, 2, "errno {errno}");
        assert_eq!(s.tier("shared").unwrap().publish_errors, 2, "errno {errno}");
        assert_eq!(s.origin_requests, 2);
    }
}

/// Read block `index` of the rig's object and wait for its publishes.
async fn read_block(r: &Rig, index: u64) {
    r.check(index * 64 * KIB, 10).await;
    r.settle().await;
}

#[tokio::test]
async fn a_failing_tier_is_one_episode_until_every_kind_of_call_works_again() {
    let r = rig(8 * 64 * KIB as usize);
    let shared = |r: &Rig| r.engine.stats().tier("shared").unwrap();
    assert!(!shared(&r).degraded);
    // A full directory: every publish fails, lookups still answer (misses).
    r.shared.fail_puts(3, StoreFault::Errno(libc::ENOSPC));
    for i in 0..3 {
        read_block(&r, i).await;
        let s = shared(&r);
        assert!(s.degraded, "block {i}: a miss is not a recovery");
        assert_eq!(s.degradations, 1, "block {i}: one episode, one warning");
    }
    assert_eq!(shared(&r).publish_errors, 3);
    // The next publish works: recovered, the warning is re-armed, and the
    // three failed publishes are made again from memory.
    read_block(&r, 3).await;
    let s = shared(&r);
    assert!(!s.degraded);
    assert_eq!((s.degradations, s.publishes, s.publish_retried), (1, 4, 3));
    // A failure of a call that started after the recovery is a new episode
    // (no time window hides it; stale failures are `tier_health`'s tests)...
    r.shared.fail_gets(2, StoreFault::Errno(libc::EIO));
    read_block(&r, 4).await;
    read_block(&r, 5).await;
    let s = shared(&r);
    assert!(s.degraded);
    assert_eq!((s.degradations, s.errors), (2, 2));
    // ...that ends with the next lookup that works.
    read_block(&r, 6).await;
    assert!(!shared(&r).degraded);
    assert_eq!(shared(&r).degradations, 2);
    // The healthy local tier never degraded.
    let local = r.engine.stats().tier("local").unwrap();
    assert!(!local.degraded);
    assert_eq!(local.degradations, 0);
}

#[tokio::test]
async fn a_tier_unusable_at_start_recovers_with_its_first_working_call() {
    let r = rig(2 * 64 * KIB as usize);
    let err = Error::Tier {
        tier: "shared".into(),
        message: "open cache directory /nowhere: No such file or directory".into(),
    };
    r.engine.report_tier_error("shared", &err);
    r.engine.report_tier_error("no-such-tier", &err);
    let s = r.engine.stats().tier("shared").unwrap();
    assert!(s.degraded);
    assert_eq!(s.degradations, 1);
    // Failing calls continue the same episode.
    r.shared.fail_gets(1, StoreFault::Errno(libc::ENOENT));
    r.shared.fail_puts(1, StoreFault::Errno(libc::ENOENT));
    read_block(&r, 0).await;
    let s = r.engine.stats().tier("shared").unwrap();
    assert!(s.degraded);
    assert_eq!(s.degradations, 1);
    // Everything works again: one lookup and one publish later it has
    // recovered, and block 0's failed publish is made again.
    read_block(&r, 1).await;
    let s = r.engine.stats().tier("shared").unwrap();
    assert!(!s.degraded);
    assert_eq!((s.degradations, s.publishes, s.publish_retried), (1, 2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_tier_is_bounded_by_the_timeout() {
    let r = rig(64 * 1024);
    r.shared
        .fail_gets(1, StoreFault::Hang(Duration::from_secs(3)));
    let start = std::time::Instant::now();
    r.check(0, 100).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r.engine.stats().tier("shared").unwrap().errors, 1);
}

/// Calls stuck in the kernel (a hung network mount) hold their thread until
/// they return; they cannot take every thread of the blocking pool: while
/// `HUNG_MAX` of them are hung the tier is not called, reads go to the
/// origin, and the hung ones are counted until they return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_tier_calls_are_bounded_counted_and_never_starve_reads() {
    const WAVE: usize = 48;
    let mut config = config();
    config.memory_budget = 64 * 1024 * KIB;
    // Long enough for every read of a wave to have tried its lookup before
    // the first one times out and tries its claim.
    config.tier_timeout = Duration::from_secs(2);
    let r = Arc::new(rig_with(2 * WAVE * 64 * KIB as usize, config));
    r.shared
        .fail_gets(1000, StoreFault::Hang(Duration::from_secs(10)));
    let wave = |first: usize| {
        let r = r.clone();
        async move {
            let reads: Vec<_> = (first..first + WAVE)
                .map(|i| {
                    let r = r.clone();
                    tokio::spawn(async move { r.check(i as u64 * 64 * KIB, 64 * KIB).await })
                })
                .collect();
            for read in reads {
                read.await.unwrap();
            }
        }
    };
    // The first wave's lookups all hang (none had timed out when they
    // started).
    wave(0).await;
    let first = r.engine.stats().tier("shared").unwrap();
    assert_eq!(first.calls_hung, WAVE as u64, "{first:?}");
    // The second wave calls the tier not at all (every lookup and claim
    // fails at once): right bytes from the origin.
    wave(WAVE).await;
    let s = r.engine.stats().tier("shared").unwrap();
    assert_eq!(s.calls_hung, WAVE as u64, "no more calls hung: {s:?}");
    assert_eq!(s.errors - first.errors, 2 * WAVE as u64, "{s:?}");
    assert_eq!(r.origin_requests(), 2 * WAVE as u64);
    // They return in the end, and are no longer counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while r.engine.stats().tier("shared").unwrap().calls_hung > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "hung calls never uncounted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn origin_failure_fails_that_read_only() {
    let r = rig(200_000);
    r.origin.fail_next(3, Fault::Transient);
    let err = r.engine.read(&r.object, 0, 10).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    // The next read (same block) succeeds: failures are not cached.
    r.check(0, 10).await;
    // Transient errors fewer than the attempts are invisible.
    r.origin.fail_next(2, Fault::Transient);
    r.check(100_000, 10).await;
}

#[tokio::test]
async fn version_change_is_eio() {
    let r = rig(100_000);
    r.origin.fail_next(1, Fault::Changed);
    let err = r.engine.read(&r.object, 0, 10).await.unwrap_err();
    assert!(matches!(err, Error::VersionChanged { .. }));
    assert_eq!(err.errno(), libc::EIO);
}

#[tokio::test]
async fn a_version_change_is_reported_once_per_url_and_cached_blocks_still_serve() {
    let r = rig(200_000);
    r.check(0, 10).await; // block 0 cached before the change
    r.origin.fail_next(3, Fault::Changed);
    for offset in [70_000, 140_000, 70_000] {
        let err = r.engine.read(&r.object, offset, 10).await.unwrap_err();
        assert!(matches!(err, Error::VersionChanged { .. }), "{err}");
    }
    let seen = r.engine.changed.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen.contains("mem://bucket/obj"));
    r.check(0, 10).await;
}

/// A source that records the largest number of bytes it had in flight at once.
struct Gauge {
    inner: MemorySource,
    now: AtomicU64,
    peak: AtomicU64,
}

#[async_trait]
impl Source for Gauge {
    async fn get_range(&self, o: &ObjectId, r: std::ops::Range<u64>) -> Result<Bytes> {
        let n = r.end - r.start;
        let now = self.now.fetch_add(n, Ordering::SeqCst) + n;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let out = self.inner.get_range(o, r).await;
        self.now.fetch_sub(n, Ordering::SeqCst);
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_bytes_stay_within_the_budget() {
    let mem = MemorySource::new();
    let bytes = data(8 * 1024 * 1024);
    let id = mem.insert("mem://big", bytes.clone());
    let gauge = Arc::new(Gauge {
        inner: mem,
        now: AtomicU64::new(0),
        peak: AtomicU64::new(0),
    });
    let cfg = EngineConfig {
        memory_budget: 512 * KIB, // 384 KiB in flight: 6 blocks
        ..config()
    };
    let engine = Engine::new(gauge.clone(), vec![], cfg).unwrap();
    let obj = engine.object(id);
    let mut tasks = vec![];
    for i in 0..32u64 {
        let (engine, obj) = (engine.clone(), obj.clone());
        tasks.push(tokio::spawn(async move {
            engine.read(&obj, i * 256 * KIB, 256 * KIB).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap().unwrap();
        let s = i * 256 * 1024;
        assert!(got[..] == bytes[s..s + 256 * 1024]);
    }
    let peak = gauge.peak.load(Ordering::SeqCst);
    assert!(
        peak <= 384 * KIB,
        "peak in flight {peak} exceeds the budget"
    );
    assert!(peak >= 128 * KIB, "budget not used in parallel: {peak}");
}

#[test]
fn config_validation_names_the_problem() {
    let bad = EngineConfig {
        block_size: 100,
        ..config()
    };
    assert!(bad.validate().unwrap_err().contains("block size"));
    let bad = EngineConfig {
        memory_budget: 64 * KIB,
        ..config()
    };
    assert!(bad.validate().unwrap_err().contains("memory budget"));
}

#[tokio::test]
async fn failed_publishes_are_retried_once_the_tier_works_again() {
    let r = rig(8 * 64 * KIB as usize);
    let shared = |r: &Rig| r.engine.stats().tier("shared").unwrap();
    // Two publishes fail (the tier degrades); the blocks stay in memory.
    r.shared.fail_puts(2, StoreFault::Errno(libc::EIO));
    read_block(&r, 0).await;
    read_block(&r, 1).await;
    let s = shared(&r);
    assert!(s.degraded);
    assert_eq!((s.publish_errors, s.publish_pending), (2, 2));
    assert_eq!(r.shared.inner().len(), 0);
    // The next publish works: the tier recovers and publishes both again.
    read_block(&r, 2).await;
    let s = shared(&r);
    assert!(!s.degraded);
    assert_eq!(
        (
            s.publishes,
            s.publish_retried,
            s.publish_dropped,
            s.publish_pending
        ),
        (3, 2, 0, 0)
    );
    assert_eq!(r.shared.inner().len(), 3, "every block reached the tier");
    // A remount over the same tiers reads all three without the origin.
    let (engine, object) = r.remount();
    let before = r.origin.inner().requests();
    for i in 0..3 {
        let got = engine.block(&object, i).await.unwrap();
        assert_eq!(
            got[..],
            r.bytes[(i * 64 * KIB) as usize..((i + 1) * 64 * KIB) as usize]
        );
    }
    assert_eq!(r.origin.inner().requests(), before);
}

/// A flapping tier (a directory removed again and again under slow calls)
/// may stay degraded for long because some kind of call keeps failing; kept
/// copies must not wait for that: they are made as soon as publishes work.
#[tokio::test]
async fn kept_copies_are_made_once_publishes_work_while_lookups_still_fail() {
    let r = rig(8 * 64 * KIB as usize);
    let shared = |r: &Rig| r.engine.stats().tier("shared").unwrap();
    r.shared.fail_gets(1000, StoreFault::Errno(libc::EIO));
    r.shared.fail_puts(2, StoreFault::Errno(libc::EIO));
    read_block(&r, 0).await;
    read_block(&r, 1).await;
    assert_eq!(shared(&r).publish_pending, 2);
    read_block(&r, 2).await;
    let s = shared(&r);
    assert!(s.degraded, "lookups still fail: {s:?}");
    assert_eq!(
        (s.publishes, s.publish_retried, s.publish_pending),
        (3, 2, 0),
        "{s:?}"
    );
    assert_eq!(r.shared.inner().len(), 3, "every block reached the tier");
}

#[tokio::test]
async fn failed_publishes_past_the_kept_bound_are_made_from_memory_or_counted_dropped() {
    let mut config = config();
    // Kept bytes are bounded by a quarter of the budget: one block here.
    config.memory_budget = 4 * 64 * KIB;
    let r = rig_with(8 * 64 * KIB as usize, config);
    let shared = |r: &Rig| r.engine.stats().tier("shared").unwrap();
    let id = |index| BlockId {
        key: r.object.key,
        index,
    };
    r.shared.fail_puts(3, StoreFault::Errno(libc::EIO));
    for i in 0..3 {
        read_block(&r, i).await;
    }
    let s = shared(&r);
    assert_eq!(
        (s.publish_pending, s.publish_dropped),
        (3, 0),
        "block 0 kept with its bytes, 1 and 2 by id: {s:?}"
    );
    // Block 1 is gone from memory by the time the tier works, block 2 not.
    r.engine.memory.invalidate(&id(1)).await;
    r.engine.memory.run_pending_tasks().await;
    assert!(r.engine.memory.contains_key(&id(2)));
    read_block(&r, 3).await;
    let s = shared(&r);
    assert!(!s.degraded);
    assert_eq!(
        (s.publish_retried, s.publish_dropped, s.publish_pending),
        (2, 1, 0),
        "{s:?}"
    );
    assert_eq!(
        r.shared.inner().len(),
        3,
        "blocks 0 (kept), 2 (from memory) and 3 made; 1 dropped"
    );
}

/// A reader that has earned readahead over a slow origin closes: the loads
/// still in flight are cancelled before their origin requests complete, the
/// claims they held on the shared tier are released at once (not left to
/// expire under the fleet), and a demand read that was waiting for one of
/// those blocks loads it itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_handles_readahead_is_cancelled_and_its_claims_released() {
    const BLOCK: u64 = 64 * KIB;
    let mem = MemorySource::new();
    let bytes = data(64 * BLOCK as usize);
    let id = mem.insert("mem://bucket/obj", bytes.clone());
    let origin = Arc::new(FaultySource::new(mem));
    let shared = Arc::new(MemoryStore::with_claims("shared"));
    let config = EngineConfig {
        max_readahead: 1024 * KIB,
        claim_timeout: Duration::from_secs(30),
        ..config()
    };
    let engine = Engine::new(origin.clone(), vec![shared.clone()], config).unwrap();
    let object = engine.object(id);
    // Blocks 0..32 in memory; then the origin answers after 30 s.
    engine.read(&object, 0, 32 * BLOCK).await.unwrap();
    origin.set_delay(Duration::from_secs(30));
    let reader = engine.reader(object.clone());
    // 32 blocks read earn 16 blocks ahead (a half), of which the window (a
    // quarter of the 2 MiB memory budget) allows 8: 32..40, claimed and
    // requested from the origin.
    let got = reader.read(0, 32 * BLOCK).await.unwrap();
    assert!(got[..] == bytes[..32 * BLOCK as usize]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while origin.calls() < 32 + 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "readahead never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.stats().readahead_blocks, 8);
    // A demand read of block 33 (joining the readahead's load through the
    // single-flight point if it gets there first).
    let waiting = {
        let (engine, object) = (engine.clone(), object.clone());
        tokio::spawn(async move { engine.read(&object, 33 * BLOCK, 10).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    origin.set_delay(Duration::ZERO);
    drop(reader);
    // Far below the 30 s a leaked claim would hold it up for.
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the demand read waited for the cancelled load's claim to expire")
        .unwrap()
        .unwrap();
    assert!(got[..] == bytes[33 * BLOCK as usize..33 * BLOCK as usize + 10]);
    assert!(engine.shutdown(Duration::from_secs(5)).await);
    let stats = engine.stats();
    assert_eq!(stats.readahead_cancelled, 8);
    // Only the 32 blocks and the demand read's block 33 were ever answered.
    assert_eq!(origin.inner().requests(), 33);
    for index in 32..40 {
        let block = BlockId {
            key: object.key,
            index,
        };
        // (Block 33's claim was the demand read's, released as it published.)
        let claim = shared.claim(&block, Duration::from_secs(1)).unwrap();
        assert_eq!(
            claim,
            crate::store::Claim::Acquired,
            "block {index}: the cancelled load's claim is still held"
        );
    }
}

/// A read that opens a stream in the second half of a block and runs into
/// the next (the kernel's read-around of a fault on a mapped file) fetches
/// only its lead-in of the first block, not the whole block, and caches
/// nothing of it; the rest is read by whole blocks as always. A lead-in of a
/// block that is cached is served from the cache.
#[tokio::test]
async fn a_lead_in_is_fetched_as_a_range_not_a_block() {
    const BLOCK: u64 = 64 * KIB;
    let r = rig(16 * BLOCK as usize);
    let reader = r.engine.reader(r.object.clone());
    // 48 KiB..80 KiB of a fault around 64 KiB: blocks 0 and 1, lead-in 48..64 KiB.
    let got = reader.read(48 * KIB, 32 * KIB).await.unwrap();
    assert!(got[..] == r.bytes[48 * KIB as usize..80 * KIB as usize]);
    let stats = r.engine.stats();
    assert_eq!(stats.origin_bytes, 16 * KIB + BLOCK, "lead-in + block 1");
    // Block 0 read later is fetched whole, once.
    r.check(0, BLOCK).await;
    assert_eq!(r.engine.stats().origin_bytes, 16 * KIB + 2 * BLOCK);
    // A lead-in of a cached block costs the origin nothing.
    let reader = r.engine.reader(r.object.clone());
    let got = reader.read(40 * KIB, 40 * KIB).await.unwrap();
    assert!(got[..] == r.bytes[40 * KIB as usize..80 * KIB as usize]);
    assert_eq!(r.engine.stats().origin_bytes, 16 * KIB + 2 * BLOCK);
    // A read starting in the first half of its block is not a lead-in.
    let reader = r.engine.reader(r.object.clone());
    reader.read(4 * BLOCK + 10, BLOCK).await.unwrap();
    assert_eq!(r.engine.stats().origin_bytes, 16 * KIB + 4 * BLOCK);
}
