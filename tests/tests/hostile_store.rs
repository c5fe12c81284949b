//! A hostile shared cache, against the store and its sweeps directly: random
//! trees of what another worker or a person could leave under `inputfs-v1/`
//! (links to a file, a directory or a device outside; FIFOs, sockets, device
//! nodes, directories, a huge sparse file, garbage, a block of another
//! object) at every place of the layout, then everything a worker and
//! `inputfs gc` do. Asserted every case: no panic, no call hangs past
//! [`BOUND`], every byte served is right, the store heals (two publishes at
//! most and the block reads back right), a dry sweep counts what the real
//! one removes, and a canary tree beside the cache is unchanged (names,
//! bytes, mode, owner and mtime of every entry).
//!
//! Device nodes need root (CI runs as root); elsewhere the test fails with
//! that reason rather than skip it. What is planted, and how, is shared with
//! the same suite through real mounts (`hostile_mount.rs`): `inputfs_tests::hostile`.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use inputfs_core::store::{Claim, Lookup};
use inputfs_core::{
    BlockId, BlockLayout, BlockStore, CacheKey, ListingStore, SourceKind, listing_key,
};
use inputfs_store::DirStore;
use inputfs_store::usage::Limits;
use inputfs_tests::hostile::{PLANTS, Plant, bounded, canary, plant, snapshot};
use inputfs_tests::pattern;
use proptest::prelude::*;

fn block(url: &str, index: u64) -> BlockId {
    BlockId {
        key: CacheKey::new(SourceKind::S3, url, "etag:1", 2 * BLOCK, BLOCK),
        index,
    }
}

/// No store call may take longer (a FIFO opened for reading, `/dev/zero`
/// read to its end, a walk through a link loop would).
const BOUND: Duration = Duration::from_secs(30);
const BLOCK: u64 = 4096;

/// The places of the layout, relative to the cache directory.
fn places(store: &DirStore, a: &BlockId) -> Vec<PathBuf> {
    let dir = store.dir();
    let rel = |p: PathBuf| p.strip_prefix(dir).unwrap().to_path_buf();
    let object = rel(store.object_dir(&a.key));
    let mut out: Vec<PathBuf> = [
        "inputfs-v1",
        "inputfs-v1/objects",
        "inputfs-v1/tmp",
        "inputfs-v1/claims",
        "inputfs-v1/corrupt",
        "inputfs-v1/trash",
        "inputfs-v1/index",
        "inputfs-v1/journal",
        "inputfs-v1/workers",
        "inputfs-v1/index/lease",
        "inputfs-v1/index/usage.9999999999999.ffffffffffffffff",
        "inputfs-v1/journal/planted.0000.log",
        "inputfs-v1/trash/planted",
        "inputfs-v1/tmp/planted.1.0.tmp",
        "inputfs-v1/workers/planted.json",
        "inputfs-v1/listings",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    out.push(object.parent().unwrap().to_path_buf());
    out.push(object.clone());
    out.push(rel(store.block_path(a)));
    out.push(rel(store.block_path(&BlockId { index: 1, ..*a })));
    out.push(rel(store.plain_path(&a.key)));
    out.push(rel(store.claim_path(a)));
    let listing = listing_key(LISTED);
    out.push(PathBuf::from(format!(
        "inputfs-v1/listings/{}.json",
        listing.to_hex()
    )));
    out.push(rel(store.claim_path(&BlockId {
        key: listing,
        index: u64::MAX,
    })));
    out
}

/// The prefix whose listing snapshot and claim are planted over.
const LISTED: &str = "s3://b/hostile/";

/// A lookup must never give wrong bytes; a miss, a corrupt report or an
/// error is fine.
fn never_wrong(store: &DirStore, id: &BlockId, want: &[u8]) -> bool {
    match store.get(id, want.len() as u64) {
        Ok(Lookup::Hit(got)) => {
            assert!(got == want, "{id:?}: wrong bytes served");
            true
        }
        _ => false,
    }
}

/// Everything a worker and `gc` do, on a store over `dir`.
fn exercise(dir: PathBuf, a: BlockId, b: BlockId, data: Vec<u8>, other: Vec<u8>) {
    let store = DirStore::open_lenient(&dir, "shared")
        .0
        .with_claims()
        .with_plain_files(BLOCK);
    for id in [a, BlockId { index: 1, ..a }] {
        never_wrong(&store, &id, &data);
    }
    never_wrong(&store, &b, &other);
    // The store heals: at most two publishes and the block reads back right.
    let healed = (0..2).any(|_| store.put(&a, &data).is_ok() && never_wrong(&store, &a, &data));
    assert!(healed, "block {a:?} not readable after two publishes");
    let _ = store.put(&BlockId { index: 1, ..a }, &data);
    if store.claim(&a, Duration::from_secs(5)).ok() == Some(Claim::Acquired) {
        store.release(&a);
    }
    let layout = BlockLayout::new(BLOCK, 2 * BLOCK);
    if store.make_plain(&a.key, &layout, None).unwrap_or(false) {
        let file = store.open_plain(&a.key, 2 * BLOCK);
        assert!(matches!(file, Ok(Some(_))), "{file:?}");
    }
    never_wrong(&store, &a, &data);
    let _ = store.usage_index();
    let _ = store.strays(Duration::from_secs(3600));
    let _ = store.worker_notes();
    let _ = store.write_worker_note("me.1.json", b"{}");
    // Snapshots are the resolver's to check; the store must only never
    // follow a link, hang or panic on them.
    let _ = store.read_listing(LISTED);
    let _ = store.write_listing(LISTED, b"{}");
    if let Ok(Some(got)) = store.read_listing(LISTED) {
        assert!(got.len() as u64 <= inputfs_store::LISTING_MAX);
    }
    if store.claim_listing(LISTED, Duration::from_secs(5)).ok() == Some(Claim::Acquired) {
        store.release_listing(LISTED);
    }
    let stale = Duration::ZERO;
    let dry = store.sweep(stale, stale, true);
    let real = store.sweep(stale, stale, false);
    if let (Ok(dry), Ok(real)) = (&dry, &real) {
        assert_eq!(dry, real, "a dry sweep counts what the real one removes");
    }
    let tiny = Limits {
        max_bytes: Some(1),
        min_free_percent: None,
    };
    let _ = store.evict(&tiny, true);
    let _ = store.evict(&tiny, false);
    let _ = store.flush_usage();
}

fn run_case(plants: &[(usize, Plant)]) {
    let tmp = tempfile::tempdir().unwrap();
    let canary = canary(tmp.path());
    let dir = tmp.path().join("cache");
    fs::create_dir(&dir).unwrap();
    let a = block("s3://b/hostile-a", 0);
    let b = block("s3://b/hostile-b", 0);
    let (data, other) = (pattern(1, BLOCK as usize), pattern(2, BLOCK as usize));
    // Another worker's cache as it was, then the planting.
    let store = DirStore::open(&dir, "shared").unwrap();
    store.put(&b, &other).unwrap();
    store.put(&a, &data).unwrap();
    let other_block = fs::read(store.block_path(&b)).unwrap();
    let places = places(&store, &a);
    drop(store);
    let before = snapshot(&canary);
    for &(place, what) in plants {
        plant(
            &dir,
            &places[place % places.len()],
            what,
            &canary,
            &other_block,
        );
    }
    bounded("a worker over the planted cache", BOUND, move || {
        exercise(dir, a, b, data, other)
    });
    assert_eq!(snapshot(&canary), before, "the canary tree changed");
}

/// Every kind at every place, one at a time.
#[test]
fn every_kind_at_every_place() {
    let tmp = tempfile::tempdir().unwrap();
    let count = places(
        &DirStore::open(tmp.path(), "x").unwrap(),
        &block("s3://b/x", 0),
    )
    .len();
    for place in 0..count {
        for what in PLANTS {
            run_case(&[(place, what)]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random trees of them.
    #[test]
    fn random_hostile_trees(plants in prop::collection::vec((0usize..64, prop::sample::select(PLANTS.to_vec())), 1..6)) {
        run_case(&plants);
    }
}
