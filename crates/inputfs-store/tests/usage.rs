//! Size limits: journals, the usage index, the sweep lease and LRU eviction, with
//! several `DirStore`s over one directory standing in for workers; and the
//! counters a worker exports as metrics (evictions, its usage estimate).
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use inputfs_core::store::Lookup;
use inputfs_core::{BlockId, BlockStore, CacheKey, SourceKind};
use inputfs_store::usage::ObjectUsage;
use inputfs_store::{DirStore, Limits, UsageCounters};

const BLOCK: usize = 10_000;
const FILE: u64 = BLOCK as u64 + 72; // data + header

fn key(n: u8) -> CacheKey {
    CacheKey::new(
        SourceKind::S3,
        &format!("s3://b/object-{n}"),
        "etag:1",
        1 << 30,
        4096,
    )
}

fn put_object(store: &DirStore, n: u8, blocks: u64) {
    for i in 0..blocks {
        let data = vec![n.wrapping_add(i as u8); BLOCK];
        store
            .put(
                &BlockId {
                    key: key(n),
                    index: i,
                },
                &data,
            )
            .unwrap();
    }
}

fn on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.join("inputfs-v1/objects")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path())
            } else {
                total += m.len()
            }
        }
    }
    total
}

fn has_object(store: &DirStore, n: u8) -> bool {
    store.object_dir(&key(n)).exists()
}

#[test]
fn the_sweep_evicts_least_recently_read_objects_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path(), "shared").unwrap();
    for n in 1..=4 {
        put_object(&store, n, 3);
    }
    // Say objects were last read in the order 3, 1, 4, 2 (oldest first).
    store.flush_usage().unwrap();
    let mut index = store.usage_index().unwrap();
    for (n, at) in [(3, 100), (1, 200), (4, 300), (2, 400)] {
        index.objects.get_mut(&key(n)).unwrap().last_access = at;
    }
    store.save_usage_index(&index).unwrap();
    let limits = Limits {
        max_bytes: Some(2 * 3 * FILE),
        min_free_percent: None,
    };
    let dry = store.evict(&limits, true).unwrap().unwrap();
    assert_eq!((dry.objects, dry.bytes), (2, 6 * FILE));
    assert!(
        (1..=4).all(|n| has_object(&store, n)),
        "a dry run deleted something"
    );
    let done = store.evict(&limits, false).unwrap().unwrap();
    assert_eq!(
        (done.objects, done.blocks, done.used_after),
        (2, 6, 6 * FILE)
    );
    assert!(!has_object(&store, 3) && !has_object(&store, 1));
    assert!(has_object(&store, 4) && has_object(&store, 2));
    assert_eq!(on_disk(dir.path()), 6 * FILE);
    // An evicted block is a miss; a kept one a hit.
    assert_eq!(
        store
            .get(
                &BlockId {
                    key: key(3),
                    index: 0
                },
                BLOCK as u64
            )
            .unwrap(),
        Lookup::Miss
    );
    assert!(matches!(
        store
            .get(
                &BlockId {
                    key: key(2),
                    index: 0
                },
                BLOCK as u64
            )
            .unwrap(),
        Lookup::Hit(_)
    ));
    assert_eq!(
        fs::read_dir(dir.path().join("inputfs-v1/trash"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_single_writer_never_exceeds_its_limit_by_more_than_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let max = 10 * FILE;
    let store = DirStore::open(dir.path(), "local")
        .unwrap()
        .with_limits(Limits {
            max_bytes: Some(max),
            min_free_percent: None,
        });
    for n in 0..30 {
        put_object(&store, n, 2);
        let used = on_disk(dir.path());
        assert!(
            used <= max + FILE,
            "{used} bytes on disk after object {n}, limit {max}"
        );
    }
    // The newest object survived.
    assert!(has_object(&store, 29));
}

#[test]
fn a_sweeper_counts_what_other_workers_placed() {
    let dir = tempfile::tempdir().unwrap();
    let a = DirStore::open(dir.path(), "shared").unwrap();
    let b = DirStore::open(dir.path(), "shared").unwrap();
    put_object(&a, 1, 4);
    put_object(&b, 2, 3);
    a.flush_usage().unwrap();
    // B sweeps: it has never seen A's objects except through A's journal.
    let report = b.evict(&Limits::default(), false).unwrap().unwrap();
    assert_eq!(report.used_before, 7 * FILE);
    let index = b.saved_usage_index().unwrap().unwrap();
    assert_eq!(index.objects[&key(1)].blocks.len(), 4);
    assert_eq!(index.objects[&key(2)].blocks.len(), 3);
    // Later records are folded in incrementally, without a rescan.
    put_object(&a, 3, 2);
    a.flush_usage().unwrap();
    let report = b.evict(&Limits::default(), false).unwrap().unwrap();
    assert!(!report.rescanned);
    assert_eq!(report.used_before, 9 * FILE);
}

#[test]
fn only_one_worker_sweeps_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let a = DirStore::open(dir.path(), "shared").unwrap();
    put_object(&a, 1, 1);
    fs::create_dir_all(dir.path().join("inputfs-v1/index")).unwrap();
    let lease = dir.path().join("inputfs-v1/index/lease");
    // Another worker's live lease.
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    fs::write(&lease, format!("inputfs-lease 1 otherhost 1 00 {expiry}\n")).unwrap();
    assert_eq!(a.evict(&Limits::default(), false).unwrap(), None);
    // Its holder died long ago: the lease is taken over.
    fs::write(&lease, "inputfs-lease 1 otherhost 1 00 1000\n").unwrap();
    assert!(a.evict(&Limits::default(), false).unwrap().is_some());
    assert!(!lease.exists(), "the lease was released");
}

#[test]
fn an_open_block_survives_eviction_for_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path(), "shared").unwrap();
    put_object(&store, 1, 1);
    let path = store.block_path(&BlockId {
        key: key(1),
        index: 0,
    });
    let mut open = fs::File::open(&path).unwrap();
    let report = store
        .evict(
            &Limits {
                max_bytes: Some(0),
                min_free_percent: None,
            },
            false,
        )
        .unwrap()
        .unwrap();
    assert_eq!(report.objects, 1);
    let mut bytes = vec![];
    std::io::Read::read_to_end(&mut open, &mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, FILE, "the reader lost its open block");
}

#[test]
fn a_cache_without_an_index_is_rescanned_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let old = DirStore::open(dir.path(), "shared").unwrap();
        put_object(&old, 1, 2);
        // Its journal is lost (the worker was killed before flushing).
    }
    let store = DirStore::open(dir.path(), "shared").unwrap();
    let first = store.evict(&Limits::default(), false).unwrap().unwrap();
    assert!(first.rescanned);
    assert_eq!(first.used_before, 2 * FILE);
    let second = store.evict(&Limits::default(), false).unwrap().unwrap();
    assert!(!second.rescanned);
    let _ = (ObjectUsage::default(), Duration::ZERO);
}

/// A tmpfs of a fixed size, unmounted (and removed) on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot mount a tmpfs (this test needs root)");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn min_free_percent_is_kept_on_a_small_filesystem() {
    let fs = Tmpfs::new("2m");
    let store = DirStore::open(fs.0.path(), "local")
        .unwrap()
        .with_limits(Limits {
            max_bytes: None,
            min_free_percent: Some(50.0),
        });
    // ~1.2 MiB of blocks on a 2 MiB filesystem: over half of it used.
    for n in 0..12 {
        put_object(&store, n, 10);
    }
    let report = store.sweep_usage(false).unwrap().unwrap();
    assert!(report.objects > 0, "nothing evicted: {report:?}");
    let st = nix::sys::statvfs::statvfs(fs.0.path()).unwrap();
    let free = st.blocks_available() as f64 / st.blocks() as f64;
    assert!(
        free >= 0.5,
        "only {:.0}% free after the sweep",
        free * 100.0
    );
    // The most recently placed object is the one kept.
    assert!(has_object(&store, 11));
}

#[test]
fn estimate_starts_unknown_then_follows_placements() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path(), "local").unwrap();
    assert_eq!(store.usage_counters(), UsageCounters::default());
    put_object(&store, 1, 3);
    // Unknown until seeded: this worker cannot know what others placed.
    assert_eq!(store.usage_counters().used_bytes, None);
    let seeded = store.estimate_usage().unwrap();
    assert_eq!(seeded, on_disk(dir.path()));
    put_object(&store, 2, 2);
    assert_eq!(store.usage_counters().used_bytes, Some(on_disk(dir.path())));
    // A second worker's view of the same directory, seeded afresh, agrees.
    let other = DirStore::open(dir.path(), "local").unwrap();
    assert_eq!(other.estimate_usage().unwrap(), on_disk(dir.path()));
}

#[test]
fn sweeps_count_evicted_objects_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path(), "local")
        .unwrap()
        .with_limits(Limits {
            max_bytes: Some(u64::MAX),
            min_free_percent: None,
        });
    for n in 0..4 {
        put_object(&store, n, 2);
    }
    let before = on_disk(dir.path());
    let limit = before / 2;
    let report = store
        .evict(
            &Limits {
                max_bytes: Some(limit),
                min_free_percent: None,
            },
            false,
        )
        .unwrap()
        .expect("no other worker holds the lease");
    assert!(report.objects >= 2, "{report:?}");
    let after = on_disk(dir.path());
    let counters = store.usage_counters();
    assert_eq!(counters.evicted_objects, report.objects as u64);
    assert_eq!(counters.evicted_bytes, before - after);
    assert_eq!(counters.used_bytes, Some(after));
    // A dry run evicts nothing and counts nothing.
    store
        .evict(
            &Limits {
                max_bytes: Some(0),
                min_free_percent: None,
            },
            true,
        )
        .unwrap();
    assert_eq!(
        store.usage_counters().evicted_objects,
        counters.evicted_objects
    );
}
