//! Tests of what the engine tells operators: the memory tier's counters and
//! sizes, and origin throttling logged once per episode however many reads hit it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::episode::Throttling;
use crate::source::{RetryPolicy, Retrying};
use crate::testing::{Fault, FaultySource, MemorySource, MemoryStore};

const KIB: u64 = 1024;

fn config() -> EngineConfig {
    EngineConfig {
        block_size: 64 * KIB,
        memory_budget: 2048 * KIB,
        max_readahead: 256 * KIB,
        tier_timeout: Duration::from_millis(500),
        publish_slots: 64,
        claim_timeout: Duration::ZERO,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Everything logged while it is the default subscriber, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self, level: &str, containing: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| l.contains(level) && l.contains(containing))
            .count()
    }
}

#[tokio::test]
async fn memory_hits_misses_and_sizes_are_counted() {
    let mem = MemorySource::new();
    let bytes = pattern(300_000);
    let id = mem.insert("mem://bucket/obj", bytes.clone());
    let engine = Engine::new(
        Arc::new(mem),
        vec![Arc::new(MemoryStore::new("local"))],
        config(),
    )
    .unwrap();
    let obj = engine.object(id);
    let first = engine.read(&obj, 0, 300_000).await.unwrap();
    assert!(first[..] == bytes[..]);
    let cold = engine.stats().memory;
    assert_eq!((cold.hits, cold.misses), (0, 5), "{cold:?}");
    let again = engine.read(&obj, 70_000, 10).await.unwrap();
    assert_eq!(&again[..], &bytes[70_000..70_010]);
    let warm = engine.stats();
    assert_eq!((warm.memory.hits, warm.memory.misses), (1, 5));
    // The bytes the read took from memory, not the whole block.
    assert_eq!(warm.memory.bytes_read, 10);
    // A read across two blocks in memory: two hits.
    let across = engine.read(&obj, 64 * KIB - 5, 10).await.unwrap();
    assert_eq!(&across[..], &bytes[64 * 1024 - 5..64 * 1024 + 5]);
    let m = engine.stats().memory;
    assert_eq!((m.hits, m.misses, m.bytes_read), (3, 5, 20));
    assert_eq!(m.inflight_bytes, 0);
    assert_eq!(engine.stats_now().await.memory.cached_bytes, 300_000);
    // Loads by `block` (readahead, warm) are not application reads.
    engine.block(&obj, 0).await.unwrap();
    assert_eq!(engine.stats().memory.hits, 3);
    // Memory hits never reach the tiers.
    assert_eq!(warm.tier("local").unwrap().misses, 5);
    assert_eq!(warm.tier("local").unwrap().hits, 0);
}

#[tokio::test]
async fn throttling_warns_once_for_many_reads() {
    let log = Captured::default();
    let _guard = log.install();
    let mem = MemorySource::new();
    let bytes = pattern(1_000_000);
    let id = mem.insert("mem://bucket/big", bytes.clone());
    let origin = Arc::new(FaultySource::new(mem));
    // Every one of the first 40 requests is refused; each block's read is
    // retried until it gets through.
    origin.fail_next(40, Fault::Throttled);
    let throttling = Arc::new(Throttling::default());
    let policy = RetryPolicy {
        attempts: 50,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };
    let source = Retrying::new(origin.clone(), policy).with_throttling(throttling.clone());
    let engine = Engine::new(Arc::new(source), vec![], config()).unwrap();
    let obj = engine.object(id);
    // Concurrent and sequential reads of every block (16 blocks).
    let reads = (0..16u64).map(|i| {
        let (engine, obj) = (engine.clone(), obj.clone());
        async move { engine.read(&obj, i * 64 * KIB, 64 * KIB).await }
    });
    let parts = futures::future::try_join_all(reads).await.unwrap();
    let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert!(joined[..] == bytes[..], "bytes differ");
    assert_eq!(throttling.count(), 40);
    assert_eq!(origin.calls(), 40 + 16);
    assert_eq!(
        log.lines("WARN", "origin is throttling"),
        1,
        "one warning per episode"
    );
    // Within the quiet period the episode stays open: no "cleared" line yet.
    assert!(throttling.is_active());
    assert_eq!(log.lines("INFO", "throttling has cleared"), 0);
    // The failed attempts are not origin errors: every read succeeded.
    assert_eq!(engine.stats().origin_errors, 0);
}

#[tokio::test]
async fn throttling_clears_with_one_info_line() {
    let log = Captured::default();
    let _guard = log.install();
    let mem = MemorySource::new();
    let id = mem.insert("mem://bucket/o", pattern(200_000));
    let origin = Arc::new(FaultySource::new(mem));
    let throttling = Arc::new(Throttling::new(Duration::ZERO));
    let policy = RetryPolicy {
        attempts: 10,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
    let source = Retrying::new(origin.clone(), policy).with_throttling(throttling.clone());
    let engine = Engine::new(Arc::new(source), vec![], config()).unwrap();
    let obj = engine.object(id);
    origin.fail_next(3, Fault::Throttled);
    engine.read(&obj, 0, 10).await.unwrap();
    engine.read(&obj, 64 * KIB, 10).await.unwrap();
    assert_eq!(log.lines("WARN", "origin is throttling"), 1);
    assert_eq!(log.lines("INFO", "throttling has cleared"), 1);
    // A second episode warns again, once.
    origin.fail_next(2, Fault::Throttled);
    engine.read(&obj, 128 * KIB, 10).await.unwrap();
    assert_eq!(log.lines("WARN", "origin is throttling"), 2);
    assert_eq!(log.lines("INFO", "throttling has cleared"), 2);
    assert_eq!(throttling.count(), 5);
}

#[tokio::test]
async fn failing_origin_reads_warn_once_not_per_read() {
    let log = Captured::default();
    let _guard = log.install();
    let mem = MemorySource::new();
    let bytes = pattern(640 * 1024);
    let id = mem.insert("mem://bucket/gone", bytes.clone());
    let origin = Arc::new(FaultySource::new(mem));
    origin.fail_next(10, Fault::Permanent);
    let engine = Engine::new(origin.clone(), vec![], config()).unwrap();
    let obj = engine.object(id);
    for i in 0..10 {
        let err = engine.read(&obj, i * 64 * KIB, 10).await.unwrap_err();
        assert_eq!(err.errno(), libc::EIO);
    }
    assert_eq!(engine.stats().origin_errors, 10);
    assert_eq!(log.lines("WARN", "origin read failed"), 1);
    // The origin works again: reads return the right bytes.
    let got = engine.read(&obj, 0, 640 * KIB).await.unwrap();
    assert!(got[..] == bytes[..]);
    assert_eq!(log.lines("WARN", "origin read failed"), 1);
}
