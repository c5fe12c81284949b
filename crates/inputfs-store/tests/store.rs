//! `DirStore` as a `BlockStore`: the shared conformance suite, the exact bytes
//! and paths it writes, its permissions, and that reopening keeps the cache.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{block, expect_hit, fresh, pattern};
use inputfs_core::store::Lookup;
use inputfs_core::{BlockId, BlockStore, CacheKey};
use inputfs_store::{DirStore, StoreError};

#[test]
fn passes_the_block_store_suite() {
    inputfs_core::testing::block_store_suite(fresh);
}

#[test]
fn passes_the_block_store_suite_publishing_by_rename() {
    inputfs_core::testing::block_store_suite(|| {
        let s = fresh();
        s.publish_by_rename();
        s
    });
}

/// The same block as the golden test in `format.rs` and in docs/FORMAT.md, as
/// `put` writes it to disk.
const GOLDEN_FILE_HEX: &str = concat!(
    "494e5055544653420100480000000000",
    "000102030405060708090a0b0c0d0e0f",
    "101112131415161718191a1b1c1d1e1f",
    "03000000000000001500000000000000",
    "f73195467b47e598696e707574667320",
    "676f6c64656e20626c6f636b0a",
);

#[test]
fn golden_file_on_disk() {
    let s = fresh();
    let id = BlockId {
        key: CacheKey(std::array::from_fn(|i| i as u8)),
        index: 3,
    };
    s.put(&id, b"inputfs golden block\n").unwrap();
    let path = s.block_path(&id);
    assert_eq!(
        path,
        s.dir.path().join(
            "inputfs-v1/objects/00/000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f/0000000000000003.blk"
        )
    );
    let hex: String = fs::read(&path)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, GOLDEN_FILE_HEX);
    expect_hit(&s, &id, b"inputfs golden block\n");
}

#[test]
fn layout_paths() {
    let s = fresh();
    let root = s.dir.path().join("inputfs-v1");
    assert_eq!(s.root(), root);
    assert_eq!(s.tmp_dir(), root.join("tmp"));
    assert_eq!(s.corrupt_dir(), root.join("corrupt"));
    assert_eq!(s.objects_dir(), root.join("objects"));
    for d in ["objects", "tmp", "corrupt"] {
        assert!(root.join(d).is_dir(), "{d} missing");
    }
    let id = BlockId {
        key: CacheKey([0xab; 32]),
        index: 0x1234_5678_9abc,
    };
    assert_eq!(
        s.block_path(&id),
        root.join(format!(
            "objects/ab/{}/0000123456789abc.blk",
            "ab".repeat(32)
        ))
    );
}

#[test]
fn modes_are_group_writable_and_setgid() {
    let s = fresh();
    let id = block("s3://b/perm", 0);
    s.put(&id, &pattern(1, 10)).unwrap();
    let object_dir = s.object_dir(&id.key);
    let fanout = object_dir.parent().unwrap().to_path_buf();
    for d in [
        s.root(),
        s.objects_dir(),
        s.tmp_dir(),
        s.corrupt_dir(),
        fanout,
        object_dir,
    ] {
        let mode = fs::metadata(&d).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o2775, "{}", d.display());
    }
    let mode = fs::metadata(s.block_path(&id)).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o664);
}

#[test]
fn reopen_keeps_blocks_and_foreign_files() {
    let s = fresh();
    let id = block("s3://b/keep", 2);
    s.put(&id, &pattern(4, 3000)).unwrap();
    fs::write(s.root().join("someone-elses-file"), b"hi").unwrap();
    let again = DirStore::open(s.dir.path(), "again").unwrap();
    expect_hit(&again, &id, &pattern(4, 3000));
    assert_eq!(
        fs::read(s.root().join("someone-elses-file")).unwrap(),
        b"hi"
    );
    assert_eq!(again.name(), "again");
}

#[test]
fn open_needs_an_existing_directory() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("not-mounted");
    let e = DirStore::open(&missing, "shared").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("not-mounted") && !msg.contains('\n'), "{msg}");
    assert!(
        !missing.exists(),
        "open must not create the cache directory itself"
    );
    let file = d.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let e = DirStore::open(&file, "shared").unwrap_err();
    assert!(matches!(e, StoreError::NotADirectory { .. }), "{e}");
}

/// Only a missing root means "no cache here"; a directory that cannot be
/// looked into is an error (on a network mount: EIO, ESTALE), never a "no"
/// that `status` and `gc` would report as an empty directory.
#[test]
fn holds_cache_says_no_only_for_a_missing_root() {
    let d = tempfile::tempdir().unwrap();
    assert!(!DirStore::holds_cache(d.path()).unwrap());
    drop(DirStore::open(d.path(), "shared").unwrap());
    assert!(DirStore::holds_cache(d.path()).unwrap());
    let planted = tempfile::tempdir().unwrap();
    fs::write(planted.path().join("inputfs-v1"), b"not a directory").unwrap();
    assert!(!DirStore::holds_cache(planted.path()).unwrap());
    let file = d.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let e = DirStore::holds_cache(&file).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
    let e = DirStore::holds_cache(&d.path().join("not-mounted")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}

#[test]
fn subdirectories_removed_under_a_running_store_come_back() {
    let s = fresh();
    fs::remove_dir_all(s.objects_dir()).unwrap();
    fs::remove_dir_all(s.tmp_dir()).unwrap();
    let id = block("s3://b/regrow", 1);
    s.put(&id, &pattern(2, 700)).unwrap();
    expect_hit(&s, &id, &pattern(2, 700));
    assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn a_removed_root_fails_one_call_then_comes_back_on_the_same_device() {
    let s = fresh();
    fs::remove_dir_all(s.root()).unwrap();
    // The call that finds it gone fails (and creates nothing: the directory
    // may belong to a mount that is gone)...
    let e = s.put(&block("s3://b/gone", 0), b"x").unwrap_err();
    assert!(e.to_string().contains("inputfs-v1"), "{e}");
    assert!(!s.root().exists());
    assert!(!s.is_usable());
    // ...the next sets the store up again: the directory is on the device it
    // was on at open, so the root is re-created.
    assert_eq!(s.get(&block("s3://b/gone", 0), 1).unwrap(), Lookup::Miss);
    assert!(s.is_usable());
    s.put(&block("s3://b/gone", 0), b"x").unwrap();
    expect_hit(&s, &block("s3://b/gone", 0), b"x");
}

/// Run as the unprivileged test user: as root a mode-000 file is still readable.
#[test]
fn unreadable_block_is_a_tier_error_with_path() {
    common::unprivileged::run_as_test_user("unreadable_block_is_a_tier_error_with_path", || {
        let s = fresh();
        assert!(
            common::permissions_are_enforced(s.dir.path()),
            "mode bits do not bind this process"
        );
        let id = block("s3://b/eacces", 0);
        s.put(&id, &pattern(1, 10)).unwrap();
        let path = s.block_path(&id);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        let e = s.get(&id, 10).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(path.to_str().unwrap()) && msg.contains("test"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert!(
            path.exists(),
            "an I/O error is not corruption: the file stays"
        );
        assert_eq!(
            fs::read_dir(s.corrupt_dir()).unwrap().count(),
            0,
            "an unreadable block was set aside as corrupt"
        );
    });
}

#[test]
fn zero_length_block() {
    let s = fresh();
    let id = block("s3://b/empty-object-tail", 0);
    s.put(&id, b"").unwrap();
    expect_hit(&s, &id, b"");
    assert!(matches!(s.get(&id, 1).unwrap(), Lookup::Corrupt(_)));
}

#[test]
fn hit_is_a_slice_of_the_exact_data() {
    let s = fresh();
    let id = block("s3://b/big", 9);
    let data = pattern(8, 4 << 20);
    s.put(&id, &data).unwrap();
    match s.get(&id, data.len() as u64).unwrap() {
        Lookup::Hit(b) => {
            assert_eq!(b.len(), data.len());
            assert!(b == data);
        }
        other => panic!("{other:?}"),
    }
}

/// The store counts what it does on its directory: a hit or a miss is one
/// `open`; a publish a temp file created, linked into place and its temp
/// name removed, one append to the usage journal, and the object's directory
/// made (a first `mkdir` refused for want of its fan directory, the fan's,
/// the object's again; each directory made is opened to set its mode).
#[test]
fn operations_on_the_directory_are_counted_by_kind() {
    use inputfs_store::ops::DirOp;
    let s = fresh();
    let counts = || s.store.dir_ops().snapshot().map(|(_, n)| n);
    let since = |before: [u64; 9], op: DirOp| counts()[op as usize] - before[op as usize];
    // The first call sets the cache directory up (its subdirectories, this
    // worker's entry): not what is measured here.
    s.put(&block("s3://b/setup", 0), b"x").unwrap();
    let id = block("s3://b/counted", 0);
    let before = counts();
    s.put(&id, &pattern(3, 5000)).unwrap();
    let snapshot = format!("{:?}", s.store.dir_ops().snapshot());
    assert_eq!(since(before, DirOp::Create), 1, "{snapshot}");
    assert_eq!(since(before, DirOp::Link) + since(before, DirOp::Rename), 1);
    assert_eq!(since(before, DirOp::Unlink), 1, "the temp name");
    assert_eq!(
        since(before, DirOp::Open),
        3,
        "the journal and the two directories made: {snapshot}"
    );
    assert_eq!(since(before, DirOp::Mkdir), 3, "{snapshot}");
    let put_total: u64 = counts().iter().sum::<u64>() - before.iter().sum::<u64>();
    assert_eq!(put_total, 9, "operations for a publish: {snapshot}");
    let after_put = s.store.dir_ops().total();
    expect_hit(&s, &id, &pattern(3, 5000));
    assert_eq!(
        s.store.dir_ops().total(),
        after_put + 1,
        "a hit is one open"
    );
    assert_eq!(
        s.get(&block("s3://b/counted", 1), 5000).unwrap(),
        Lookup::Miss
    );
    assert_eq!(
        s.store.dir_ops().total(),
        after_put + 2,
        "a miss is one open"
    );
}
