//! The counters a mounted worker exports as metrics: what its sweeps evicted and
//! its estimate of a directory's usage, checked against the files on disk.

use std::fs;
use std::path::Path;

use inputfs_core::{BlockId, BlockStore, CacheKey, SourceKind};
use inputfs_store::{DirStore, Limits, UsageCounters};

const BLOCK: usize = 10_000;

fn key(n: u8) -> CacheKey {
    CacheKey::new(
        SourceKind::S3,
        &format!("s3://b/counted-{n}"),
        "etag:1",
        1 << 30,
        4096,
    )
}

fn put_object(store: &DirStore, n: u8, blocks: u64) {
    for index in 0..blocks {
        let data = vec![n.wrapping_add(index as u8); BLOCK];
        store.put(&BlockId { key: key(n), index }, &data).unwrap();
    }
}

/// Bytes of block files under the directory, as the index counts them.
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
