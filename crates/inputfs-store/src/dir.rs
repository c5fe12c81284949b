//! [`DirStore`]: the block cache in one directory, and its read side.
//!
//! A read must be few system calls on the happy path — on NFS every extra
//! `stat` is a round trip — and must never hand out bytes that are not
//! exactly the block asked for, whatever another worker, a crash or a torn
//! write left in the file. So `get` opens the block through `beneath` (which
//! never follows a link and never opens anything but a regular file), reads
//! it into one buffer (one byte more than a valid block could be, to see
//! over-long files), checks it with [`format::check_block`], and slices the
//! data out of that buffer without a copy. A bad file is moved aside and
//! reported as corrupt; anything but a regular file at a block's name (a
//! link, a directory, a FIFO or device) is removed, never followed, and
//! reported as corrupt too. Cleanup failures are ignored, since the origin
//! can always serve the block.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};

use bytes::Bytes;
use inputfs_core::store::{Claim, Lookup, Placed};
use inputfs_core::{BlockId, BlockStore, CacheKey};

use crate::beneath::{Beneath, Found, Kind, Rel};
use crate::error::{StoreError, errno};
use crate::format::{self, HEADER_LEN};
use crate::fsutil;
use crate::layout::Layout;
pub use crate::layout::ROOT_NAME;

/// A directory of cached blocks (see `docs/FORMAT.md` for the layout).
#[derive(Debug)]
pub struct DirStore {
    /// The configured directory; never created by the store.
    dir: PathBuf,
    /// Whether the root is set up, and in which generation.
    health: crate::health::Health,
    /// `st_dev` of `dir` when first seen as a directory (`setup::UNSEEN` before).
    pub(crate) dev: AtomicU64,
    name: String,
    /// The names of everything under `dir`.
    pub(crate) layout: Layout,
    /// Set once a hard link failed in a way that means "not supported here", so
    /// later publishes go straight to `rename`.
    pub(crate) no_links: AtomicBool,
    /// Whether this store coordinates origin fetches with claim files.
    claims_enabled: bool,
    held: crate::claim::Held,
    usage: crate::usage::Usage,
    /// The mount's block size, when objects may be held as plain files (see
    /// the `plain` module; the local tier only).
    plain_block_size: Option<u64>,
    /// What this process knows of plain files' sidecars and verification.
    pub(crate) plain: crate::plain::Known,
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
        store.admit()?;
        tracing::debug!(tier = name, root = %store.root().display(), "opened block store");
        Ok(store)
    }

    /// The store over `dir`, not set up yet: no I/O.
    pub(crate) fn unready(dir: &Path, name: &str) -> DirStore {
        let layout = Layout::default();
        DirStore {
            dir: dir.to_path_buf(),
            health: Default::default(),
            dev: AtomicU64::new(crate::setup::UNSEEN),
            name: name.to_string(),
            usage: crate::usage::Usage::new(&layout),
            layout,
            no_links: AtomicBool::new(false),
            claims_enabled: false,
            held: Default::default(),
            plain_block_size: None,
            plain: Default::default(),
        }
    }

    /// A handle on the configured directory, through which every name in it
    /// is reached (opened afresh per call: a directory replaced under a
    /// running daemon is seen at once).
    pub(crate) fn at(&self) -> Result<Beneath, StoreError> {
        Beneath::open(&self.dir).map_err(|e| StoreError::io("open cache directory", &self.dir, e))
    }

    /// `rel` as a full path, for messages and tests only.
    pub(crate) fn shown(&self, rel: &Rel) -> PathBuf {
        self.dir.join(rel.as_path())
    }

    /// The configured directory (`dir`, holding the root).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn health(&self) -> &crate::health::Health {
        &self.health
    }

    /// Coordinate origin fetches with other workers through claim files in
    /// `claims/` (for the shared tier; pointless for a private local one).
    pub fn with_claims(mut self) -> Self {
        self.claims_enabled = true;
        self
    }

    /// Let complete objects be held as plain files, for kernel passthrough
    /// (see the `plain` module). `block_size` is the mount's block size.
    pub fn with_plain_files(mut self, block_size: u64) -> Self {
        self.plain_block_size = Some(block_size);
        self
    }

    pub(crate) fn plain_block_size(&self) -> Option<u64> {
        self.plain_block_size
    }

    pub(crate) fn claims_enabled(&self) -> bool {
        self.claims_enabled
    }

    pub(crate) fn usage(&self) -> &crate::usage::Usage {
        &self.usage
    }

    pub(crate) fn usage_mut(&mut self) -> &mut crate::usage::Usage {
        &mut self.usage
    }

    pub(crate) fn held(&self) -> &crate::claim::Held {
        &self.held
    }

    pub(crate) fn name_str(&self) -> &str {
        &self.name
    }

    /// Where claim files live (`root/claims`).
    pub fn claims_dir(&self) -> PathBuf {
        self.shown(&self.layout.claims)
    }

    /// The sweep lease (`root/index/lease`).
    pub fn lease_path(&self) -> PathBuf {
        self.shown(&self.layout.lease())
    }

    /// `dir/inputfs-v1`.
    pub fn root(&self) -> PathBuf {
        self.shown(&self.layout.root)
    }

    /// Where block `id` lives:
    /// `objects/<2 hex>/<64 hex key>/<index as 16 hex>.blk` under [`root`](Self::root).
    pub fn block_path(&self, id: &BlockId) -> PathBuf {
        self.shown(&self.layout.block(id))
    }

    /// The directory holding every block of one object version (the unit of
    /// eviction).
    pub fn object_dir(&self, key: &CacheKey) -> PathBuf {
        self.shown(&self.layout.object(key))
    }

    /// The directory blocks are published from (`root/tmp`).
    pub fn tmp_dir(&self) -> PathBuf {
        self.shown(&self.layout.tmp)
    }

    /// Where blocks that failed a check are moved (`root/corrupt`).
    pub fn corrupt_dir(&self) -> PathBuf {
        self.shown(&self.layout.corrupt)
    }

    /// Publish by `rename` only, never trying `link` first. This is what the
    /// store switches to by itself the first time `link` fails as unsupported
    /// (SMB); calling it up front is for tests and for filesystems whose links
    /// misbehave.
    pub fn publish_by_rename(&self) {
        self.no_links
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The fan-out tree of object directories (`root/objects`).
    pub fn objects_dir(&self) -> PathBuf {
        self.shown(&self.layout.objects)
    }

    /// Look block `id` up: its block file, else the object's plain file.
    fn read_block(
        &self,
        at: &Beneath,
        id: &BlockId,
        expected_len: u64,
    ) -> Result<Lookup, StoreError> {
        match self.read_block_file(at, id, expected_len)? {
            Lookup::Miss => self.read_plain_block(at, id, expected_len),
            found => Ok(found),
        }
    }

    /// Read and check the block file of `id`.
    pub(crate) fn read_block_file(
        &self,
        at: &Beneath,
        id: &BlockId,
        expected_len: u64,
    ) -> Result<Lookup, StoreError> {
        let rel = self.layout.block(id);
        let (file, stat) = match at.open_file(&rel) {
            Ok(Found::File(file, stat)) => (file, stat),
            Ok(Found::NotRegular(kind)) => return Ok(self.remove_intruder(at, &rel, kind)),
            // Missing, or a link or file where a directory of the name
            // belongs (the next publish replaces it): a miss.
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(&e) => {
                return Ok(Lookup::Miss);
            }
            Err(e) => return Err(StoreError::io("open", &at.display(&rel), e)),
        };
        let cap = usize::try_from(expected_len)
            .ok()
            .and_then(|n| n.checked_add(HEADER_LEN + 1))
            .ok_or_else(|| {
                StoreError::io(
                    "read",
                    &at.display(&rel),
                    io::Error::other("expected length too large"),
                )
            })?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(cap)
            .map_err(|e| StoreError::io("read", &at.display(&rel), io::Error::other(e)))?;
        // `read_to_end` of a `Take` reads straight into the reserved, unzeroed
        // capacity (no zeroing pass: zeroing was 8% of a warm read's CPU), and
        // the `Bytes` below shares that buffer without a copy.
        Read::by_ref(&mut &file)
            .take(cap as u64)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::io("read", &at.display(&rel), e))?;
        match format::check_block(&buf, id, expected_len) {
            Ok(range) => {
                self.record_access(id);
                Ok(Lookup::Hit(Bytes::from(buf).slice(range)))
            }
            Err(defect) => {
                let reason = format!("{}: {defect}", at.display(&rel).display());
                self.move_aside(at, &rel, &file, &stat);
                self.record_removed(id);
                tracing::debug!(tier = %self.name, %reason, "corrupt block moved aside");
                Ok(Lookup::Corrupt(reason))
            }
        }
    }

    /// Move a bad block file into `corrupt/` (for a post-mortem), or delete it if
    /// that fails. Both may fail (read-only mount, another worker got there
    /// first); either way the caller's read goes on to the next tier.
    fn move_aside(&self, at: &Beneath, rel: &Rel, opened: &File, stat: &nix::sys::stat::FileStat) {
        if !fsutil::still_names(at, rel, stat) {
            return; // Already moved or replaced by another worker.
        }
        let _ = opened;
        let file_name = rel
            .as_path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let key = rel
            .as_path()
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        let aside = self.layout.made(
            &self.layout.corrupt,
            &format!(
                "{}.{}.{}",
                key.unwrap_or_default(),
                file_name.unwrap_or_default(),
                fsutil::unique_stem()
            ),
        );
        if at.rename(rel, &aside).is_err() {
            let _ = at.unlink(rel);
        }
    }

    /// Something other than a regular file sits where a block or plain file
    /// belongs (a link, a directory, a FIFO, a device): remove it, never
    /// following it, best effort, and report it as corrupt (counted).
    pub(crate) fn remove_intruder(&self, at: &Beneath, rel: &Rel, kind: Kind) -> Lookup {
        let (_, removed) = at.remove_tree(rel);
        let reason = format!(
            "{}: a {kind:?} where a regular file should be{}",
            at.display(rel).display(),
            if removed.is_ok() { " (removed)" } else { "" }
        );
        tracing::warn!(tier = %self.name, %reason, "removed an entry that is not a regular file");
        Lookup::Corrupt(reason)
    }
}

/// Whether opening a name failed on the way to it: a link (`ELOOP`) or a
/// non-directory (`ENOTDIR`) where one of its directories belongs.
pub(crate) fn is_link_on_the_way(e: &io::Error) -> bool {
    matches!(errno(e), libc::ELOOP | libc::ENOTDIR)
}

impl BlockStore for DirStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, block: &BlockId, expected_len: u64) -> inputfs_core::Result<Lookup> {
        self.call(|at| self.read_block(at, block, expected_len))
    }

    fn put(&self, block: &BlockId, data: &[u8]) -> inputfs_core::Result<Placed> {
        self.call(|at| self.publish(at, block, data))
    }

    fn claim(&self, block: &BlockId, ttl: std::time::Duration) -> inputfs_core::Result<Claim> {
        self.call(|at| self.try_claim(at, block, ttl))
    }

    fn release(&self, block: &BlockId) {
        self.release_claim(block)
    }

    fn open_plain(&self, key: &CacheKey, size: u64) -> inputfs_core::Result<Option<File>> {
        self.call(|at| DirStore::open_plain_at(self, at, key, size))
    }

    fn make_plain(
        &self,
        key: &CacheKey,
        layout: &inputfs_core::BlockLayout,
    ) -> inputfs_core::Result<bool> {
        self.call(|at| DirStore::make_plain_at(self, at, key, layout))
    }

    fn plain_files(&self) -> bool {
        self.plain_block_size().is_some()
    }

    fn contains(&self, block: &BlockId) -> bool {
        let is_file = |at: &Beneath, rel: &Rel| {
            at.stat(rel)
                .is_ok_and(|s| crate::beneath::Kind::of(&s) == Kind::File)
        };
        self.is_usable()
            && self.at().is_ok_and(|at| {
                is_file(&at, &self.layout.block(block))
                    || (self.plain_files() && is_file(&at, &self.layout.plain(&block.key)))
            })
    }
}
