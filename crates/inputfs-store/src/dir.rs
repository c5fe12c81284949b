//! [`DirStore`]: the block cache in one directory, composed of parts that
//! know nothing of each other's state.
//!
//! - [`CacheDir`] owns the directory: its path, names, set-up state, and the
//!   one handle through which anything in it is reached.
//! - `block_file` reads and checks block files; `publish` writes them;
//!   `claim` coordinates origin fetches; `plain` holds objects whole; `usage`
//!   journals and evicts.
//!
//! Each part is handed the `CacheDir` (and `Usage`, for what it journals) per
//! call; none of them imports `DirStore`, which only wires them together and
//! implements [`BlockStore`]. The binary's upkeep (status, gc, sweeps, worker
//! notes) goes through [`upkeep`], the rest of the public face.

mod listings;
mod upkeep;

use std::fs::File;
use std::path::{Path, PathBuf};

use inputfs_core::store::{Claim, Lookup, Placed};
use inputfs_core::{BlockId, BlockStore, CacheKey};

use crate::beneath::{Beneath, Kind, Rel};
use crate::block_file;
use crate::cache_dir::CacheDir;
use crate::claim::Claims;
use crate::error::StoreError;
pub use crate::layout::ROOT_NAME;
use crate::plain::PlainFiles;
use crate::publish::Publisher;
use crate::usage::Usage;

/// A directory of cached blocks (see `docs/FORMAT.md` for the layout).
#[derive(Debug)]
pub struct DirStore {
    cd: CacheDir,
    claims: Claims,
    publisher: Publisher,
    /// Plain files (the local tier only; see the `plain` module).
    plain: PlainFiles,
    usage: Usage,
}

impl DirStore {
    /// Open the store in `dir`, creating `dir/inputfs-v1` and its subdirectories
    /// if missing. Nothing is ever wiped. `dir` itself must exist: a missing
    /// shared-cache directory usually means a mount is missing, and creating it
    /// would put the "shared" cache on the local disk. `name` ("local",
    /// "shared") is what logs and tier errors call this store.
    ///
    /// After opening, a root removed while in use is re-created while `dir` is
    /// on the same device, and an unusable directory refuses calls until it
    /// works again (see the `health` module; [`open_lenient`](Self::open_lenient)
    /// also starts that way instead of failing).
    pub fn open(dir: &Path, name: &str) -> Result<DirStore, StoreError> {
        let store = DirStore::unready(dir, name);
        store.cd.admit()?;
        tracing::debug!(tier = name, root = %store.root().display(), "opened block store");
        Ok(store)
    }

    /// Like [`open`](Self::open), but never fails: if the store cannot be set
    /// up now (`dir` missing, not writable, ...), it is returned anyway with the
    /// reason, refuses its calls, and sets itself up on the first call after
    /// the directory works (see the `health` module). For a shared cache, whose
    /// absence must not stop a mount.
    pub fn open_lenient(dir: &Path, name: &str) -> (DirStore, Option<StoreError>) {
        let store = DirStore::unready(dir, name);
        let error = store.cd.admit().err();
        (store, error)
    }

    /// The store over `dir`, not set up yet: no I/O.
    fn unready(dir: &Path, name: &str) -> DirStore {
        let cd = CacheDir::new(dir, name);
        DirStore {
            usage: Usage::new(&cd.layout),
            cd,
            claims: Claims::default(),
            publisher: Publisher::default(),
            plain: PlainFiles::default(),
        }
    }

    /// Coordinate origin fetches with other workers through claims in
    /// `claims/` (for the shared tier; pointless for a private local one).
    pub fn with_claims(mut self) -> Self {
        self.claims = Claims::enabled();
        self
    }

    /// Let complete objects be held as plain files, for kernel passthrough
    /// (see the `plain` module). `block_size` is the mount's block size.
    pub fn with_plain_files(mut self, block_size: u64) -> Self {
        self.plain = PlainFiles::with_block_size(block_size);
        self
    }

    /// Keep this directory within `limits` (enforced by sweeps).
    pub fn with_limits(mut self, limits: crate::Limits) -> Self {
        self.usage.set_limits(limits);
        self
    }

    /// Publish by `rename` only, never trying `link` first. This is what the
    /// store switches to by itself the first time `link` fails as unsupported
    /// (SMB); calling it up front is for tests and for filesystems whose links
    /// misbehave.
    pub fn publish_by_rename(&self) {
        self.publisher.by_rename();
    }

    /// Whether the store is set up (its last set-up worked and no check since
    /// found the root gone).
    pub fn is_usable(&self) -> bool {
        self.cd.is_usable()
    }

    /// Calls this store refused as unusable since it was opened.
    pub fn refused_calls(&self) -> u64 {
        self.cd.refused_calls()
    }

    /// The operations this store has made on its directory, by kind.
    pub fn dir_ops(&self) -> &crate::ops::DirOps {
        &self.cd.ops
    }

    /// The configured directory (`dir`, holding the root).
    pub fn dir(&self) -> &Path {
        self.cd.dir()
    }

    /// `dir/inputfs-v1`.
    pub fn root(&self) -> PathBuf {
        self.cd.root()
    }

    /// Where block `id` lives:
    /// `objects/<2 hex>/<64 hex key>/<index as 16 hex>.blk` under [`root`](Self::root).
    pub fn block_path(&self, id: &BlockId) -> PathBuf {
        self.cd.shown(&self.cd.layout.block(id))
    }

    /// The directory holding every block of one object version (the unit of
    /// eviction).
    pub fn object_dir(&self, key: &CacheKey) -> PathBuf {
        self.cd.shown(&self.cd.layout.object(key))
    }

    /// Where the plain file of `key` lives (for messages and tests).
    pub fn plain_path(&self, key: &CacheKey) -> PathBuf {
        self.cd.shown(&self.cd.layout.plain(key))
    }

    /// Where the claim of block `id` lives (for messages and tests).
    pub fn claim_path(&self, id: &BlockId) -> PathBuf {
        self.cd.shown(&self.cd.layout.claim(id))
    }

    /// Look block `id` up: its block file, else the object's plain file.
    fn read_block(
        &self,
        at: &Beneath,
        id: &BlockId,
        expected_len: u64,
    ) -> Result<Lookup, StoreError> {
        match block_file::read(&self.cd, &self.usage, at, id, expected_len)? {
            Lookup::Miss => self
                .plain
                .read_block(&self.cd, &self.usage, at, id, expected_len),
            found => Ok(found),
        }
    }
}

impl BlockStore for DirStore {
    fn name(&self) -> &str {
        self.cd.name()
    }

    fn get(&self, block: &BlockId, expected_len: u64) -> inputfs_core::Result<Lookup> {
        self.cd.call(|at| self.read_block(at, block, expected_len))
    }

    fn put(&self, block: &BlockId, data: &[u8]) -> inputfs_core::Result<Placed> {
        self.cd.call(|at| {
            self.publisher
                .publish(&self.cd, &self.usage, at, block, data)
        })
    }

    fn claim(&self, block: &BlockId, ttl: std::time::Duration) -> inputfs_core::Result<Claim> {
        self.cd
            .call(|at| self.claims.take(&self.cd, at, block, ttl))
    }

    fn release(&self, block: &BlockId) {
        self.claims.release(&self.cd, block)
    }

    fn open_plain(&self, key: &CacheKey, size: u64) -> inputfs_core::Result<Option<File>> {
        self.cd
            .call(|at| self.plain.open(&self.cd, &self.usage, at, key, size))
    }

    fn make_plain(
        &self,
        key: &CacheKey,
        layout: &inputfs_core::BlockLayout,
        fill: Option<&inputfs_core::store::FillBlock<'_>>,
    ) -> inputfs_core::Result<bool> {
        self.cd.call(|at| {
            self.plain
                .make(&self.cd, &self.usage, at, key, layout, fill)
        })
    }

    fn plain_files(&self) -> bool {
        self.plain.block_size().is_some()
    }

    fn contains(&self, block: &BlockId) -> bool {
        let is_file =
            |at: &Beneath, rel: &Rel| at.stat(rel).is_ok_and(|s| Kind::of(&s) == Kind::File);
        let layout = &self.cd.layout;
        self.is_usable()
            && self.cd.at().is_ok_and(|at| {
                is_file(&at, &layout.block(block))
                    || (self.plain_files() && is_file(&at, &layout.plain(&block.key)))
            })
    }
}
