//! Claim files and the sweep, with two `DirStore`s over one directory standing in
//! for two workers.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::fs;
use std::time::{Duration, SystemTime};

use inputfs_core::store::Claim;
use inputfs_core::{BlockId, BlockStore, CacheKey, SourceKind};
use inputfs_store::{DirStore, Swept};

fn block(i: u64) -> BlockId {
    BlockId {
        key: CacheKey::new(SourceKind::S3, "s3://b/k", "etag:1", 1 << 20, 4096),
        index: i,
    }
}

fn two_workers() -> (tempfile::TempDir, DirStore, DirStore) {
    let dir = tempfile::tempdir().unwrap();
    let a = DirStore::open(dir.path(), "shared").unwrap().with_claims();
    let b = DirStore::open(dir.path(), "shared").unwrap().with_claims();
    (dir, a, b)
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn one_worker_holds_a_claim_until_it_releases() {
    let (_d, a, b) = two_workers();
    assert_eq!(a.claim(&block(0), LONG).unwrap(), Claim::Acquired);
    assert_eq!(b.claim(&block(0), LONG).unwrap(), Claim::Held);
    assert_eq!(
        a.claim(&block(0), LONG).unwrap(),
        Claim::Held,
        "not re-entrant"
    );
    assert_eq!(
        b.claim(&block(1), LONG).unwrap(),
        Claim::Acquired,
        "per block"
    );
    a.release(&block(0));
    assert!(!a.claim_path(&block(0)).exists());
    assert_eq!(b.claim(&block(0), LONG).unwrap(), Claim::Acquired);
}

#[test]
fn an_expired_claim_is_taken_over_and_the_old_holder_cannot_release_it() {
    let (_d, a, b) = two_workers();
    assert_eq!(
        a.claim(&block(0), Duration::from_millis(50)).unwrap(),
        Claim::Acquired
    );
    // The claim expiring is what is under test: time passing past its 50 ms is
    // the condition, not a wait for something else to happen.
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(
        b.claim(&block(0), LONG).unwrap(),
        Claim::Acquired,
        "takeover"
    );
    // A finishes late and releases: B's claim must survive.
    a.release(&block(0));
    assert!(b.claim_path(&block(0)).exists());
    assert_eq!(a.claim(&block(0), LONG).unwrap(), Claim::Held);
}

#[test]
fn a_torn_claim_counts_by_its_age() {
    let (_d, a, b) = two_workers();
    let path = a.claim_path(&block(0));
    fs::write(&path, b"").unwrap(); // killed between create and write
    assert_eq!(
        b.claim(&block(0), Duration::from_secs(30)).unwrap(),
        Claim::Held
    );
    let old = SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(
        b.claim(&block(0), Duration::from_secs(30)).unwrap(),
        Claim::Acquired
    );
    // Garbage content behaves the same.
    b.release(&block(0));
    fs::write(&path, b"\xff\xfe not a claim").unwrap();
    assert_eq!(
        a.claim(&block(0), Duration::from_secs(30)).unwrap(),
        Claim::Held
    );
}

#[test]
fn stores_without_claims_do_not_coordinate() {
    let dir = tempfile::tempdir().unwrap();
    let local = DirStore::open(dir.path(), "local").unwrap();
    assert_eq!(local.claim(&block(0), LONG).unwrap(), Claim::Unsupported);
    assert_eq!(fs::read_dir(local.claims_dir()).unwrap().count(), 0);
}

#[test]
fn sweep_removes_what_dead_workers_left() {
    let (_d, a, b) = two_workers();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let tmp = a.tmp_dir();
    let dead_local = tmp.join(format!("{host}.4194999.0001.tmp"));
    let live_local = tmp.join(format!("{host}.{}.0002.tmp", std::process::id()));
    let young_remote = tmp.join("other-host.123.0003.tmp");
    let old_remote = tmp.join("other-host.124.0004.tmp");
    for p in [&dead_local, &live_local, &young_remote, &old_remote] {
        fs::write(p, b"partial block").unwrap();
    }
    let old = SystemTime::now() - Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&old_remote)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // One expired claim, one live.
    assert_eq!(
        a.claim(&block(0), Duration::from_millis(1)).unwrap(),
        Claim::Acquired
    );
    assert_eq!(a.claim(&block(1), LONG).unwrap(), Claim::Acquired);
    // Let the 1 ms claim expire (time passing is the condition under test).
    std::thread::sleep(Duration::from_millis(20));
    let expected = Swept {
        temp_files: 2,
        claims: 1,
        corrupt: 0,
    };
    // A dry run counts exactly what the real one then removes, and removes
    // nothing.
    let dry = b.sweep(Duration::from_secs(3600), LONG, true).unwrap();
    assert_eq!(dry, expected);
    assert!(dead_local.exists() && old_remote.exists());
    assert!(a.claim_path(&block(0)).exists());
    let swept = b.sweep(Duration::from_secs(3600), LONG, false).unwrap();
    assert_eq!(swept, expected);
    assert!(!dead_local.exists() && !old_remote.exists());
    assert!(live_local.exists() && young_remote.exists());
    assert!(!a.claim_path(&block(0)).exists());
    assert!(a.claim_path(&block(1)).exists());
}
