//! Helpers shared by the integration tests: a store in a temp directory that
//! lives as long as the store, block ids and recognisable data.

#![allow(dead_code)]

pub mod unprivileged;

use std::path::{Path, PathBuf};

use inputfs_core::store::Lookup;
use inputfs_core::{BlockId, BlockStore, CacheKey, SourceKind};
use inputfs_store::DirStore;

/// A store together with the temp directory it lives in (removed on drop).
pub struct TestStore {
    pub store: DirStore,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestStore {
    type Target = DirStore;
    fn deref(&self) -> &DirStore {
        &self.store
    }
}

impl BlockStore for TestStore {
    fn name(&self) -> &str {
        self.store.name()
    }
    fn get(&self, block: &BlockId, expected_len: u64) -> inputfs_core::Result<Lookup> {
        self.store.get(block, expected_len)
    }
    fn put(
        &self,
        block: &BlockId,
        data: &[u8],
    ) -> inputfs_core::Result<inputfs_core::store::Placed> {
        self.store.put(block, data)
    }
}

pub fn fresh() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path(), "test").unwrap();
    TestStore { store, dir }
}

pub fn block(url: &str, index: u64) -> BlockId {
    BlockId {
        key: CacheKey::new(SourceKind::S3, url, "etag:\"1\"", 1 << 30, 1 << 20),
        index,
    }
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(131).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

pub fn expect_hit(store: &dyn BlockStore, id: &BlockId, want: &[u8]) {
    match store.get(id, want.len() as u64) {
        Ok(Lookup::Hit(got)) => assert!(got == want, "{id:?}: wrong bytes"),
        other => panic!("{id:?}: expected a hit, got {other:?}"),
    }
}

/// Every file (not directory) below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Whether writes to a mode-0o555 directory are refused (false when running as
/// root, where permission bits do not stop writes; see [`unprivileged`]).
pub fn permissions_are_enforced(scratch: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch.join("perm-probe");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    let enforced = std::fs::write(d.join("x"), b"x").is_err();
    let _ = std::fs::remove_file(d.join("x"));
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir(&d).unwrap();
    enforced
}
