//! Objects made plain (one file of exactly their bytes, for kernel passthrough):
//! only when every block is present and verified (here, or given by the tiers below), served back block by block
//! with the right bytes, counted by a rescan, and refused when the file is off.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use common::pattern;
use inputfs_core::store::Lookup;
use inputfs_core::{BlockId, BlockLayout, BlockStore, CacheKey, SourceKind};
use inputfs_store::DirStore;

const BS: u64 = 4096;

struct Fixture {
    store: DirStore,
    _dir: tempfile::TempDir,
    key: CacheKey,
    layout: BlockLayout,
    data: Vec<u8>,
}

/// An object of 3 full blocks and a short last one, every block put.
fn fixture(plain: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DirStore::open(dir.path(), "local").unwrap();
    if plain {
        store = store.with_plain_files(BS);
    }
    let size = 3 * BS + 1000;
    let key = CacheKey::new(SourceKind::S3, "s3://b/whole", "etag:1", size, BS);
    let layout = BlockLayout::new(BS, size);
    let data = pattern(7, size as usize);
    for index in 0..layout.block_count() {
        let r = layout.block_range(index);
        store
            .put(
                &BlockId { key, index },
                &data[r.start as usize..r.end as usize],
            )
            .unwrap();
    }
    Fixture {
        store,
        _dir: dir,
        key,
        layout,
        data,
    }
}

fn block(f: &Fixture, index: u64) -> Vec<u8> {
    match f
        .store
        .get(&BlockId { key: f.key, index }, f.layout.block_len(index))
        .unwrap()
    {
        Lookup::Hit(b) => b.to_vec(),
        other => panic!("block {index}: {other:?}"),
    }
}

#[test]
fn complete_object_becomes_one_plain_file_and_still_serves_every_block() {
    let f = fixture(true);
    assert!(f.store.make_plain(&f.key, &f.layout, None).unwrap());
    let mut file = f
        .store
        .open_plain(&f.key, f.layout.object_size)
        .unwrap()
        .expect("plain file");
    let mut whole = Vec::new();
    file.read_to_end(&mut whole).unwrap();
    assert!(whole == f.data, "plain file bytes differ from the object");
    for index in 0..f.layout.block_count() {
        let id = BlockId { key: f.key, index };
        assert!(!f.store.block_path(&id).exists(), "block {index} kept");
        let r = f.layout.block_range(index);
        assert!(
            block(&f, index) == f.data[r.start as usize..r.end as usize],
            "block {index} from the plain file"
        );
    }
    // Making it plain again is a no-op that says yes.
    assert!(f.store.make_plain(&f.key, &f.layout, None).unwrap());
}

#[test]
fn a_missing_or_corrupt_block_leaves_the_object_as_blocks() {
    let f = fixture(true);
    let last = BlockId {
        key: f.key,
        index: 3,
    };
    fs::remove_file(f.store.block_path(&last)).unwrap();
    assert!(!f.store.make_plain(&f.key, &f.layout, None).unwrap());
    assert!(
        f.store
            .open_plain(&f.key, f.layout.object_size)
            .unwrap()
            .is_none()
    );

    let f = fixture(true);
    let second = f.store.block_path(&BlockId {
        key: f.key,
        index: 1,
    });
    let mut bytes = fs::read(&second).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    fs::write(&second, bytes).unwrap();
    assert!(!f.store.make_plain(&f.key, &f.layout, None).unwrap());
    assert!(!f.store.plain_path(&f.key).exists());
    // Nothing left behind in tmp/.
    assert_eq!(fs::read_dir(f.store.tmp_dir()).unwrap().count(), 0);
    // The good blocks are still there and right.
    assert!(block(&f, 0) == f.data[..BS as usize]);
}

#[test]
fn plain_file_of_the_wrong_size_counts_as_absent() {
    let f = fixture(true);
    assert!(f.store.make_plain(&f.key, &f.layout, None).unwrap());
    let path = f.store.plain_path(&f.key);
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 1);
    fs::write(&path, bytes).unwrap();
    assert!(
        f.store
            .open_plain(&f.key, f.layout.object_size)
            .unwrap()
            .is_none()
    );
    assert!(!path.exists(), "a wrong-size plain file is removed");
    // Its blocks are gone too now: a miss, never wrong bytes.
    let got = f
        .store
        .get(
            &BlockId {
                key: f.key,
                index: 3,
            },
            f.layout.block_len(3),
        )
        .unwrap();
    assert_eq!(got, Lookup::Miss);
}

#[test]
fn stores_without_plain_files_never_make_them() {
    let f = fixture(false);
    assert!(!f.store.make_plain(&f.key, &f.layout, None).unwrap());
    assert!(!f.store.plain_path(&f.key).exists());
    assert!(
        f.store
            .open_plain(&f.key, f.layout.object_size)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_rescan_counts_the_plain_file_as_the_object_bytes() {
    let f = fixture(true);
    assert!(f.store.make_plain(&f.key, &f.layout, None).unwrap());
    let index = f.store.rescan_usage().unwrap();
    let usage = index.objects.get(&f.key).expect("object in the rescan");
    assert_eq!(usage.blocks.values().sum::<u64>(), f.layout.object_size);
}

/// A plain file someone else wrote (zeros of the right size, as a directory
/// shared by mistake may hold) is never served, by lookup or passthrough,
/// whether its sidecar is missing or another file's; it is removed, and the
/// blocks beside it still serve.
#[test]
fn a_plain_file_that_does_not_check_out_is_never_served() {
    for sidecar in ["none", "its own", "of another plain file"] {
        let f = fixture(true);
        let other = fixture(true);
        assert!(
            other
                .store
                .make_plain(&other.key, &other.layout, None)
                .unwrap()
        );
        let plain = f.store.plain_path(&f.key);
        let sums = plain.with_file_name("object.sums");
        fs::write(&plain, vec![0u8; f.layout.object_size as usize]).unwrap();
        match sidecar {
            "none" => {}
            "its own" => {
                // Correct checksums of the real bytes, over a zero-filled file.
                assert!(f.store.make_plain(&f.key, &f.layout, None).unwrap());
                fs::write(&plain, vec![0u8; f.layout.object_size as usize]).unwrap();
            }
            _ => {
                fs::copy(
                    other
                        .store
                        .plain_path(&other.key)
                        .with_file_name("object.sums"),
                    &sums,
                )
                .unwrap();
            }
        }
        // A fresh process (nothing remembered): as another worker would be.
        let fresh = DirStore::open(f.store.dir(), "local")
            .unwrap()
            .with_plain_files(BS);
        let got = fresh.open_plain(&f.key, f.layout.object_size).unwrap();
        assert!(
            got.is_none(),
            "{sidecar}: a zero-filled plain file handed out"
        );
        assert!(!plain.exists(), "{sidecar}: the bad plain file is removed");
        if sidecar != "its own" {
            // The blocks were never removed: they serve.
            assert_eq!(
                block(&f, 1),
                f.data[BS as usize..2 * BS as usize],
                "{sidecar}"
            );
        }
    }
}

/// A block read through the store from a plain file is checked: a file
/// changed under a running daemon gives a corrupt report, never its bytes.
#[test]
fn a_plain_file_changed_after_it_was_made_is_caught_by_the_read() {
    let f = fixture(true);
    assert!(f.store.make_plain(&f.key, &f.layout, None).unwrap());
    let plain = f.store.plain_path(&f.key);
    let mut bytes = fs::read(&plain).unwrap();
    bytes[BS as usize + 7] ^= 0xff;
    fs::write(&plain, bytes).unwrap();
    let id = BlockId {
        key: f.key,
        index: 1,
    };
    assert!(matches!(f.store.get(&id, BS).unwrap(), Lookup::Corrupt(_)));
    assert!(!plain.exists());
    // The origin serves it again; nothing wrong was ever returned.
    assert_eq!(f.store.get(&id, BS).unwrap(), Lookup::Miss);
}

/// A plain file this process made (remembered as good, so not checked whole
/// again) and then rewritten in place with its size and modification time
/// put back is checked whole at the next open: the change time, which no
/// writer can set back, tells it apart.
#[test]
fn a_plain_file_rewritten_with_its_old_mtime_is_checked_again_before_passthrough() {
    let f = fixture(true);
    assert!(f.store.make_plain(&f.key, &f.layout, None).unwrap());
    let plain = f.store.plain_path(&f.key);
    let size = f.layout.object_size;
    let first = f
        .store
        .open_plain(&f.key, size)
        .unwrap()
        .expect("made here");
    let mut served = Vec::new();
    (&first).read_to_end(&mut served).unwrap();
    assert_eq!(served, f.data);
    let before = fs::metadata(&plain).unwrap();
    let mtime = before.modified().unwrap();
    // The change time has a resolution of a clock tick: wait for it to move,
    // so the rewrite below is a different change time whatever the clock.
    let ctime = |m: &fs::Metadata| (m.ctime(), m.ctime_nsec());
    while ctime(&fs::metadata(&plain).unwrap()) == ctime(&before) {
        let probe = fs::File::options().write(true).open(&plain).unwrap();
        probe.set_modified(mtime).unwrap();
    }
    let file = fs::File::options().write(true).open(&plain).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &vec![0u8; size as usize], 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let after = fs::metadata(&plain).unwrap();
    assert_eq!(
        (after.ino(), after.len(), after.modified().unwrap()),
        (before.ino(), before.len(), mtime),
        "same inode, size and mtime: only the change time differs"
    );
    assert!(
        f.store.open_plain(&f.key, size).unwrap().is_none(),
        "a rewritten plain file handed out for passthrough"
    );
    assert!(!plain.exists(), "the rewritten plain file is removed");
}

/// The blocks a store lacks come from `fill` (the tiers below) as the plain
/// file is written: never as block files of their own; a fill that has no
/// block, or one of the wrong length, leaves the object as it was.
#[test]
fn blocks_missing_here_are_taken_from_the_fill_as_the_plain_file_is_written() {
    let f = fixture(true);
    let slice = |index: u64| {
        let r = f.layout.block_range(index);
        bytes::Bytes::copy_from_slice(&f.data[r.start as usize..r.end as usize])
    };
    for index in [1, 3] {
        fs::remove_file(f.store.block_path(&BlockId { key: f.key, index })).unwrap();
    }
    assert!(!f.store.make_plain(&f.key, &f.layout, None).unwrap());
    // A fill without block 3, then one that gives a block too short.
    let without_3 = |id: &BlockId, _len: u64| (id.index == 1).then(|| slice(1));
    assert!(
        !f.store
            .make_plain(&f.key, &f.layout, Some(&without_3))
            .unwrap()
    );
    let short = |id: &BlockId, _len: u64| Some(slice(id.index).slice(1..));
    assert!(!f.store.make_plain(&f.key, &f.layout, Some(&short)).unwrap());
    assert!(
        f.store
            .open_plain(&f.key, f.layout.object_size)
            .unwrap()
            .is_none()
    );
    let asked = std::sync::Mutex::new(Vec::new());
    let fill = |id: &BlockId, len: u64| {
        assert_eq!(len, f.layout.block_len(id.index));
        asked.lock().unwrap().push(id.index);
        Some(slice(id.index))
    };
    assert!(f.store.make_plain(&f.key, &f.layout, Some(&fill)).unwrap());
    assert_eq!(
        *asked.lock().unwrap(),
        vec![1, 3],
        "only the missing blocks"
    );
    let mut whole = Vec::new();
    f.store
        .open_plain(&f.key, f.layout.object_size)
        .unwrap()
        .expect("plain file")
        .read_to_end(&mut whole)
        .unwrap();
    assert!(whole == f.data, "plain file bytes differ from the object");
}
