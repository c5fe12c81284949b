//! [`DirStore`]: the block cache in one directory, and its read side.
//!
//! A read must be one `open` and one `read` on the happy path — on NFS every
//! extra `stat` is a round trip — and must never hand out bytes that are not
//! exactly the block asked for, whatever another worker, a crash or a torn write
//! left in the file. So `get` opens without a prior `stat`, reads the file into
//! one buffer (one byte more than a valid block could be, to see over-long
//! files), checks it with [`format::check_block`], and slices the data out of that
//! buffer without a copy. A bad file is moved aside and reported as corrupt;
//! cleanup failures are ignored, since the origin can always serve the block.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};

use bytes::Bytes;
use inputfs_core::store::{Claim, Lookup, Placed};
use inputfs_core::{BlockId, BlockStore, CacheKey};

use crate::error::{StoreError, errno};
use crate::format::{self, HEADER_LEN};
use crate::fsutil;

/// The directory under the configured cache directory that holds everything.
/// A format change that old readers must not see gets a new name.
pub const ROOT_NAME: &str = "inputfs-v1";

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
    root: PathBuf,
    objects: PathBuf,
    pub(crate) tmp: PathBuf,
    corrupt: PathBuf,
    /// Set once a hard link failed in a way that means "not supported here", so
    /// later publishes go straight to `rename`.
    pub(crate) no_links: AtomicBool,
    claims: PathBuf,
    /// Whether this store coordinates origin fetches with claim files.
    claims_enabled: bool,
    held: crate::claim::Held,
    usage: crate::usage::Usage,
    /// The mount's block size, when objects may be held as plain files (see
    /// the `plain` module; the local tier only).
    plain_block_size: Option<u64>,
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
        tracing::debug!(tier = name, root = %store.root.display(), "opened block store");
        Ok(store)
    }

    /// The store over `dir`, not set up yet: no I/O.
    pub(crate) fn unready(dir: &Path, name: &str) -> DirStore {
        let root = dir.join(ROOT_NAME);
        DirStore {
            dir: dir.to_path_buf(),
            health: Default::default(),
            dev: AtomicU64::new(crate::setup::UNSEEN),
            name: name.to_string(),
            objects: root.join("objects"),
            tmp: root.join("tmp"),
            corrupt: root.join("corrupt"),
            claims: root.join("claims"),
            root,
            no_links: AtomicBool::new(false),
            claims_enabled: false,
            held: Default::default(),
            usage: crate::usage::Usage::new(&dir.join(ROOT_NAME)),
            plain_block_size: None,
        }
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
    pub fn claims_dir(&self) -> &Path {
        &self.claims
    }

    /// `dir/inputfs-v1`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where block `id` lives:
    /// `objects/<2 hex>/<64 hex key>/<index as 16 hex>.blk` under [`root`](Self::root).
    pub fn block_path(&self, id: &BlockId) -> PathBuf {
        let mut p = self.object_dir(&id.key);
        p.push(format!("{:016x}.blk", id.index));
        p
    }

    /// The directory holding every block of one object version (the unit of
    /// eviction).
    pub fn object_dir(&self, key: &CacheKey) -> PathBuf {
        let hex = key.to_hex();
        self.objects.join(&hex[..2]).join(hex)
    }

    /// The directory blocks are published from (`root/tmp`).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Where blocks that failed a check are moved (`root/corrupt`).
    pub fn corrupt_dir(&self) -> &Path {
        &self.corrupt
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
    pub fn objects_dir(&self) -> &Path {
        &self.objects
    }

    /// Look block `id` up: its block file, else the object's plain file.
    fn read_block(&self, id: &BlockId, expected_len: u64) -> Result<Lookup, StoreError> {
        match self.read_block_file(id, expected_len)? {
            Lookup::Miss => self.read_plain_block(id, expected_len),
            found => Ok(found),
        }
    }

    /// Read and check the block file of `id`.
    pub(crate) fn read_block_file(
        &self,
        id: &BlockId,
        expected_len: u64,
    ) -> Result<Lookup, StoreError> {
        let path = self.block_path(id);
        // O_NONBLOCK: a FIFO someone left at a block's path must not hang the
        // read; it has no effect on regular files.
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound || errno(&e) == libc::ENOTDIR => {
                return Ok(Lookup::Miss);
            }
            Err(e) if errno(&e) == libc::EISDIR => return Ok(self.remove_dir(&path)),
            Err(e) => return Err(StoreError::io("open", &path, e)),
        };
        let cap = usize::try_from(expected_len)
            .ok()
            .and_then(|n| n.checked_add(HEADER_LEN + 1))
            .ok_or_else(|| {
                StoreError::io("read", &path, io::Error::other("expected length too large"))
            })?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(cap)
            .map_err(|e| StoreError::io("read", &path, io::Error::other(e)))?;
        // `read_to_end` of a `Take` reads straight into the reserved, unzeroed
        // capacity (no fstat, no zeroing pass: zeroing was 8% of a warm read's
        // CPU), and the `Bytes` below shares that buffer without a copy.
        if let Err(e) = Read::by_ref(&mut file)
            .take(cap as u64)
            .read_to_end(&mut buf)
        {
            if is_dir_error(&e, &file) {
                return Ok(self.remove_dir(&path));
            }
            return Err(StoreError::io("read", &path, e));
        }
        match format::check_block(&buf, id, expected_len) {
            Ok(range) => {
                self.record_access(id);
                Ok(Lookup::Hit(Bytes::from(buf).slice(range)))
            }
            Err(defect) => {
                let reason = format!("{}: {defect}", path.display());
                self.move_aside(&path, &file);
                self.record_removed(id);
                tracing::debug!(tier = %self.name, %reason, "corrupt block moved aside");
                Ok(Lookup::Corrupt(reason))
            }
        }
    }

    /// Move a bad block file into `corrupt/` (for a post-mortem), or delete it if
    /// that fails. Both may fail (read-only mount, another worker got there
    /// first); either way the caller's read goes on to the next tier.
    fn move_aside(&self, path: &Path, opened: &File) {
        if !fsutil::still_names(path, opened) {
            return; // Already moved or replaced by another worker.
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = path
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = self
            .corrupt
            .join(format!("{key}.{file_name}.{}", fsutil::unique_stem()));
        if fs::rename(path, &aside).is_err() {
            let _ = fs::remove_file(path);
        }
    }

    /// A directory sits where a block file should be: remove it, best effort.
    fn remove_dir(&self, path: &Path) -> Lookup {
        let _ = fs::remove_dir_all(path);
        let reason = format!(
            "{}: a directory where a block file should be",
            path.display()
        );
        tracing::debug!(tier = %self.name, %reason, "removed directory in place of a block");
        Lookup::Corrupt(reason)
    }
}

/// Whether a read error means the "file" is a directory.
fn is_dir_error(e: &io::Error, file: &File) -> bool {
    errno(e) == libc::EISDIR || file.metadata().is_ok_and(|m| m.is_dir())
}

impl BlockStore for DirStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, block: &BlockId, expected_len: u64) -> inputfs_core::Result<Lookup> {
        self.call(|| self.read_block(block, expected_len))
    }

    fn put(&self, block: &BlockId, data: &[u8]) -> inputfs_core::Result<Placed> {
        self.call(|| self.publish(block, data))
    }

    fn claim(&self, block: &BlockId, ttl: std::time::Duration) -> inputfs_core::Result<Claim> {
        self.call(|| self.try_claim(block, ttl))
    }

    fn release(&self, block: &BlockId) {
        self.release_claim(block)
    }

    fn open_plain(&self, key: &CacheKey, size: u64) -> inputfs_core::Result<Option<File>> {
        self.call(|| DirStore::open_plain(self, key, size))
    }

    fn make_plain(
        &self,
        key: &CacheKey,
        layout: &inputfs_core::BlockLayout,
    ) -> inputfs_core::Result<bool> {
        self.call(|| DirStore::make_plain(self, key, layout))
    }

    fn plain_files(&self) -> bool {
        self.plain_block_size().is_some()
    }

    fn contains(&self, block: &BlockId) -> bool {
        self.is_usable()
            && (fs::metadata(self.block_path(block)).is_ok_and(|m| m.is_file())
                || (self.plain_files() && self.plain_path(&block.key).is_file()))
    }
}
