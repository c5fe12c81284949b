//! The shared `BlockStore` conformance suite (`inputfs_core::testing::
//! block_store_suite`, which the in-memory store and a `DirStore` on a local
//! directory also pass) against a `DirStore` on real network filesystems, opened
//! as inputfs opens its shared tier: sshfs with strict and with default attribute
//! caching, and SMB (smbnetfs), where `link` fails with `EPERM` and the store
//! switches to publishing by rename by itself. On sshfs it also runs publishing
//! by rename from the start, so both ways of publishing are covered there.
//!
//! Every store the suite asks for is a fresh directory on the network mount;
//! all of it is removed with the [`SharedDir`] when the test ends.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use inputfs_store::DirStore;
use inputfs_tests::SharedDir;

/// Run the suite on stores in fresh directories of one client's view of
/// `shared`. `by_rename` publishes by rename from the start.
fn suite_on(mut shared: SharedDir, by_rename: bool) {
    let view = shared.mount_point(0);
    let made = AtomicUsize::new(0);
    inputfs_core::testing::block_store_suite(|| {
        let dir = view.join(format!("store-{}", made.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let store = DirStore::open(&dir, "shared")
            .unwrap_or_else(|e| panic!("open a store on {}: {e}", dir.display()))
            .with_claims();
        if by_rename {
            store.publish_by_rename();
        }
        store
    });
    // The blocks went through the network filesystem: the server holds them,
    // in every store the suite made, and no temp file.
    let (mut blocks, mut temps) = (0, Vec::new());
    for n in 0..made.load(Ordering::SeqCst) {
        let root = shared.server_dir().join(format!("store-{n}/inputfs-v1"));
        assert!(root.is_dir(), "{} missing on the server", root.display());
        blocks += files_under(&root.join("objects"))
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "blk"))
            .count();
        temps.extend(files_under(&root.join("tmp")));
    }
    assert!(
        blocks > 0,
        "no block file reached the server ({})",
        shared.kind()
    );
    assert!(temps.is_empty(), "temp files left: {temps:?}");
}

/// Every file below `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn dir_store_passes_the_block_store_suite_on_sshfs_strict() {
    suite_on(SharedDir::sshfs(true), false);
}

#[test]
fn dir_store_passes_the_block_store_suite_on_sshfs_strict_by_rename() {
    suite_on(SharedDir::sshfs(true), true);
}

#[test]
fn dir_store_passes_the_block_store_suite_on_sshfs_with_default_caching() {
    suite_on(SharedDir::sshfs(false), false);
}

#[test]
fn dir_store_passes_the_block_store_suite_on_smb() {
    suite_on(SharedDir::smb(), false);
}

/// Sixteen threads of one worker publish the same block and read it back,
/// 100 blocks over, on SMB (publishing by rename). libsmbclient renames over
/// a file by unlinking it and renaming again, and smbnetfs refuses to remove
/// a file just closed (`EBUSY` until FUSE's release arrives): before
/// publishes took turns and looked before writing, a run of this saw 1–3
/// reads miss a block that had been published, and 1–2 temp files left.
/// Every read must be a hit with the right bytes, and no temp file remain.
#[test]
fn concurrent_publishers_of_one_block_on_smb_never_miss_and_leave_no_temp_file() {
    use inputfs_core::store::{BlockStore, Lookup};
    use inputfs_core::{BlockId, CacheKey, SourceKind};

    let mut shared = SharedDir::smb();
    let dir = shared.mount_point(0).join("store");
    std::fs::create_dir(&dir).unwrap();
    let store = DirStore::open(&dir, "shared").unwrap().with_claims();
    let data = inputfs_tests::pattern(3, 256 * 1024);
    for round in 0..100 {
        let url = format!("file:///race/{round}");
        let id = BlockId {
            key: CacheKey::new(SourceKind::File, &url, "etag:1", 1 << 20, 4096),
            index: 0,
        };
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    store.put(&id, &data).unwrap();
                    match store.get(&id, data.len() as u64).unwrap() {
                        Lookup::Hit(got) => assert!(got == data, "round {round}: wrong bytes"),
                        other => panic!("round {round}: a published block read as {other:?}"),
                    }
                });
            }
        });
    }
    let tmp = shared.server_dir().join("store/inputfs-v1/tmp");
    let left = files_under(&tmp);
    assert!(left.is_empty(), "temp files left: {left:?}");
}
