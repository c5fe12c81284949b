//! Objects held whole, as one plain file of exactly their bytes.
//!
//! Kernel FUSE passthrough hands reads of a file straight to a backing file, with
//! the same offsets: it needs the object as one plain file, which block files
//! (each with its header) are not. So once every block of an object is in a
//! store that allows it (the local tier: private to this worker, on local disk),
//! the object can be *made plain*: its verified blocks are copied into
//! `object.data` in the object's directory (temp file, `fsync`, `rename`), and
//! the block files are then removed, so the object costs its size once.
//!
//! From then on the store serves that object's blocks from the plain file (a
//! ranged read), and [`DirStore::open_plain`] gives the daemon the file to pass
//! through. The plain file lives in the object's directory, so eviction (which
//! moves whole directories) and the usage index treat it as the object's bytes.
//! It carries no checksum: it was written from blocks that were verified, on a
//! disk only this worker writes, and passthrough reads could not be checked
//! anyway. A plain file of the wrong size is removed and counts as absent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use bytes::Bytes;
use inputfs_core::store::Lookup;
use inputfs_core::{BlockId, BlockLayout, CacheKey};

use crate::dir::DirStore;
use crate::error::{StoreError, errno};
use crate::fsutil::{self, FILE_MODE, ensure_dir};

/// The name of an object's plain file inside its object directory.
pub const PLAIN_NAME: &str = "object.data";

impl DirStore {
    /// Where the plain file of `key` lives.
    pub fn plain_path(&self, key: &CacheKey) -> PathBuf {
        self.object_dir(key).join(PLAIN_NAME)
    }

    /// The object's plain file, opened for reading, if this store has one of
    /// exactly `size` bytes. Counts as a read of the object for eviction order.
    pub fn open_plain(&self, key: &CacheKey, size: u64) -> Result<Option<File>, StoreError> {
        if self.plain_block_size().is_none() {
            return Ok(None);
        }
        let path = self.plain_path(key);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound || errno(&e) == libc::ENOTDIR => {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::io("open", &path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| StoreError::io("stat", &path, e))?;
        if !meta.is_file() || meta.len() != size {
            tracing::warn!(tier = self.name_str(), path = %path.display(), len = meta.len(), size,
                "plain object file has the wrong size: removed");
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        self.record_access(&BlockId {
            key: *key,
            index: 0,
        });
        Ok(Some(file))
    }

    /// Serve block `id` (of `expected_len` bytes) from the object's plain
    /// file, if there is one. Blocks sit at `index * block size`: one mount
    /// uses one block size, and it is part of the cache key.
    pub(crate) fn read_plain_block(
        &self,
        id: &BlockId,
        expected_len: u64,
    ) -> Result<Lookup, StoreError> {
        let Some(block_size) = self.plain_block_size() else {
            return Ok(Lookup::Miss);
        };
        let path = self.plain_path(&id.key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound || errno(&e) == libc::ENOTDIR => {
                return Ok(Lookup::Miss);
            }
            Err(e) => return Err(StoreError::io("open", &path, e)),
        };
        let size = file
            .metadata()
            .map_err(|e| StoreError::io("stat", &path, e))?
            .len();
        let start = id.index.saturating_mul(block_size);
        let in_bounds = start
            .checked_add(expected_len)
            .is_some_and(|end| end <= size && (end == size || expected_len == block_size));
        if !in_bounds {
            return Ok(Lookup::Miss);
        }
        let len = usize::try_from(expected_len)
            .map_err(|e| StoreError::io("read", &path, io::Error::other(e)))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| StoreError::io("read", &path, e))?;
        self.record_access(id);
        Ok(Lookup::Hit(Bytes::from(buf)))
    }

    /// Make the object plain if every one of its blocks is here (see the module
    /// docs). Returns whether the object is plain now. Blocks that are missing
    /// or fail their check leave it as it was (and the corrupt ones moved aside).
    pub fn make_plain(&self, key: &CacheKey, layout: &BlockLayout) -> Result<bool, StoreError> {
        if self.plain_block_size() != Some(layout.block_size) {
            return Ok(false);
        }
        if self.open_plain(key, layout.object_size)?.is_some() {
            return Ok(true);
        }
        let dir = self.object_dir(key);
        let present = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".blk"))
                .count() as u64,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StoreError::io("list", &dir, e)),
        };
        if present < layout.block_count() {
            return Ok(false);
        }
        let tmp = self
            .tmp_dir()
            .join(format!("{}.tmp", fsutil::unique_stem()));
        let written = self.write_plain(&tmp, key, layout);
        let placed = match written {
            Ok(true) => fs::rename(&tmp, self.plain_path(key))
                .map(|()| true)
                .map_err(|e| StoreError::io("rename temp file to", &self.plain_path(key), e)),
            other => other,
        };
        if !matches!(placed, Ok(true)) {
            let _ = fs::remove_file(&tmp);
            return placed;
        }
        for index in 0..layout.block_count() {
            let _ = fs::remove_file(self.block_path(&BlockId { key: *key, index }));
        }
        tracing::debug!(tier = self.name_str(), path = %self.plain_path(key).display(),
            "object made plain");
        Ok(true)
    }

    /// Copy every verified block of the object into a new file at `tmp`, synced.
    /// False if a block is missing or corrupt.
    fn write_plain(
        &self,
        tmp: &std::path::Path,
        key: &CacheKey,
        layout: &BlockLayout,
    ) -> Result<bool, StoreError> {
        ensure_dir(self.tmp_dir(), self.root())?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(tmp)
            .map_err(|e| StoreError::io("create temp file", tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        for index in 0..layout.block_count() {
            let id = BlockId { key: *key, index };
            match self.read_block_file(&id, layout.block_len(index))? {
                Lookup::Hit(data) => out
                    .write_all(&data)
                    .map_err(|e| StoreError::io("write", tmp, e))?,
                Lookup::Miss | Lookup::Corrupt(_) => return Ok(false),
            }
        }
        out.flush().map_err(|e| StoreError::io("write", tmp, e))?;
        drop(out);
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", tmp, e))?;
        Ok(true)
    }
}
