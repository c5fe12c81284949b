//! A store whose directory is unusable — missing at open, removed, not
//! writable — fails its calls fast, never creates the directory itself, and
//! sets itself up by itself once the directory works (at most once per retry
//! interval).

mod common;

use std::fs;
use std::time::Duration;

use common::{block, expect_hit, pattern};
use inputfs_core::BlockStore;
use inputfs_core::store::Claim;
use inputfs_store::{DirStore, StoreError};

const RETRY: Duration = Duration::from_millis(300);

#[test]
fn lenient_open_of_a_missing_directory_recovers_once_it_exists() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("not-mounted-yet");
    let (store, err) = DirStore::open_lenient(&dir, "shared");
    let store = store.with_retry_interval(RETRY).with_claims();
    let err = err.expect("a missing directory is reported");
    assert!(err.to_string().contains("not-mounted-yet"), "{err}");
    assert!(!store.is_usable());
    let id = block("s3://b/late", 0);
    // Every call fails fast with a tier error naming the store; nothing is created.
    let e = store.get(&id, 3).unwrap_err();
    assert!(
        e.to_string().contains("shared") && e.to_string().contains("not-mounted-yet"),
        "{e}"
    );
    assert!(store.put(&id, b"abc").is_err());
    assert!(store.claim(&id, Duration::from_secs(5)).is_err());
    assert!(!dir.exists(), "the cache directory itself is never created");
    // It appears: calls keep failing fast until the retry interval has passed
    // (no I/O in between)...
    fs::create_dir(&dir).unwrap();
    let e = store.put(&id, b"abc").unwrap_err();
    assert!(e.to_string().contains("unusable"), "{e}");
    assert!(
        !dir.join("inputfs-v1").exists(),
        "set up before the interval"
    );
    // ...then the next call sets the store up and goes through.
    std::thread::sleep(RETRY + Duration::from_millis(50));
    store.put(&id, b"abc").unwrap();
    assert!(store.is_usable());
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
}

#[test]
fn a_directory_removed_while_open_is_never_recreated() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("cache");
    fs::create_dir(&dir).unwrap();
    let store = DirStore::open(&dir, "shared")
        .unwrap()
        .with_retry_interval(RETRY);
    fs::remove_dir_all(&dir).unwrap();
    let id = block("s3://b/unmounted", 0);
    for _ in 0..3 {
        assert!(store.put(&id, b"x").is_err());
        assert!(
            store.get(&id, 1).is_err(),
            "a store with no directory answers"
        );
        std::thread::sleep(RETRY);
    }
    assert!(!dir.exists(), "the cache directory itself is never created");
    // Back (same device here): the root is re-created and blocks publish again.
    fs::create_dir(&dir).unwrap();
    std::thread::sleep(RETRY + Duration::from_millis(50));
    let _ = store.get(&id, 1);
    store.put(&id, b"x").unwrap();
    expect_hit(&store, &id, b"x");
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
