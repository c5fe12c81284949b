//! A store whose directory is unusable — missing at open, removed, not
//! writable — refuses its calls, never creates the directory itself, and sets
//! itself up on the first call after the directory works (no timer). A root
//! removed under a working store is re-created by the next call; an `ENOENT`
//! below an intact root never takes the store down.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

mod common;

use std::fs;
use std::time::Duration;

use common::{block, expect_hit, pattern};
use inputfs_core::BlockStore;
use inputfs_core::store::{Claim, Lookup};
use inputfs_store::{DirStore, StoreError};

#[test]
fn lenient_open_of_a_missing_directory_is_usable_the_moment_it_exists() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("not-mounted-yet");
    let (store, err) = DirStore::open_lenient(&dir, "shared");
    let store = store.with_claims();
    let err = err.expect("a missing directory is reported");
    assert!(err.to_string().contains("not-mounted-yet"), "{err}");
    assert!(!store.is_usable());
    let id = block("s3://b/late", 0);
    // Every call is refused with a tier error naming the store; nothing is created.
    let e = store.get(&id, 3).unwrap_err();
    assert!(
        e.to_string().contains("shared") && e.to_string().contains("not-mounted-yet"),
        "{e}"
    );
    assert!(store.put(&id, b"abc").is_err());
    assert!(store.claim(&id, Duration::from_secs(5)).is_err());
    assert_eq!(store.refused_calls(), 4, "the open and three calls");
    assert!(!dir.exists(), "the cache directory itself is never created");
    // It appears: the very next call sets the store up and goes through.
    fs::create_dir(&dir).unwrap();
    store.put(&id, b"abc").unwrap();
    assert!(store.is_usable());
    assert_eq!(store.refused_calls(), 4, "nothing refused once it exists");
    expect_hit(&store, &id, b"abc");
    assert_eq!(
        store
            .claim(&block("s3://b/late", 1), Duration::from_secs(5))
            .unwrap(),
        Claim::Acquired
    );
}

#[test]
fn lenient_open_of_a_usable_directory_is_open() {
    let d = tempfile::tempdir().unwrap();
    let (store, err) = DirStore::open_lenient(d.path(), "shared");
    assert!(err.is_none(), "{err:?}");
    assert!(store.is_usable());
    let id = block("s3://b/now", 2);
    store.put(&id, &pattern(3, 5000)).unwrap();
    expect_hit(&store, &id, &pattern(3, 5000));
    assert_eq!(store.refused_calls(), 0);
}

#[test]
fn a_directory_removed_while_open_is_never_recreated_and_back_at_once() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("cache");
    fs::create_dir(&dir).unwrap();
    let store = DirStore::open(&dir, "shared").unwrap();
    fs::remove_dir_all(&dir).unwrap();
    let id = block("s3://b/unmounted", 0);
    // The first publish fails on the missing root, which a check confirms:
    // the store is down, and every later call is refused.
    assert!(store.put(&id, b"x").is_err());
    assert!(!store.is_usable());
    for _ in 0..3 {
        assert!(store.put(&id, b"x").is_err());
        assert!(
            store.get(&id, 1).is_err(),
            "a store with no directory answers"
        );
    }
    assert_eq!(store.refused_calls(), 6);
    assert!(!dir.exists(), "the cache directory itself is never created");
    // Back (same device here): the next call re-creates the root and publishes.
    fs::create_dir(&dir).unwrap();
    store.put(&id, b"x").unwrap();
    expect_hit(&store, &id, b"x");
    assert_eq!(store.refused_calls(), 6);
}

#[test]
fn a_removed_root_is_recreated_by_the_next_call_with_no_refusal() {
    let d = tempfile::tempdir().unwrap();
    let store = DirStore::open(d.path(), "shared").unwrap();
    let id = block("s3://b/root-gone", 0);
    store.put(&id, b"before").unwrap();
    fs::remove_dir_all(store.root()).unwrap();
    // A lookup of a missing block is a miss, whatever the reason.
    assert_eq!(store.get(&id, 6).unwrap(), Lookup::Miss);
    // A publish fails on the missing root (the check confirms it)...
    assert!(store.put(&id, b"before").is_err());
    // ...and the next call sets the store up again at once.
    store.put(&id, b"after!").unwrap();
    expect_hit(&store, &id, b"after!");
    assert_eq!(
        store.refused_calls(),
        0,
        "the directory was there throughout"
    );
}

#[test]
fn an_enoent_below_an_intact_root_does_not_take_the_store_down() {
    let d = tempfile::tempdir().unwrap();
    let store = DirStore::open(d.path(), "shared").unwrap();
    let id = block("s3://b/evicted", 0);
    store.put(&id, b"abc").unwrap();
    // Another worker evicts the object's directory: a miss, the store stays up.
    fs::remove_dir_all(store.object_dir(&id.key)).unwrap();
    assert_eq!(store.get(&id, 3).unwrap(), Lookup::Miss);
    assert!(store.is_usable());
    store.put(&id, b"abc").unwrap();
    expect_hit(&store, &id, b"abc");
    assert_eq!(store.refused_calls(), 0);
}

#[test]
fn strict_open_still_fails_on_a_missing_directory() {
    let d = tempfile::tempdir().unwrap();
    let e = DirStore::open(&d.path().join("nope"), "shared").unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e}");
}

#[test]
fn a_file_in_place_of_the_directory_is_unusable_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let (store, err) = DirStore::open_lenient(&file, "shared");
    assert!(
        matches!(err, Some(StoreError::NotADirectory { .. })),
        "{err:?}"
    );
    assert!(store.get(&block("s3://b/f", 0), 1).is_err());
    assert_eq!(fs::read(&file).unwrap(), b"");
}
