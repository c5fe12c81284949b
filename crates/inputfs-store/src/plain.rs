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

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use inputfs_core::store::Lookup;
use inputfs_core::{BlockId, BlockLayout, CacheKey};

use crate::beneath::{Beneath, Found, Kind, Rel};
use crate::dir::{DirStore, is_link_on_the_way};
use crate::error::StoreError;
use crate::fsutil::{self, FILE_MODE, ensure_dir};
pub use crate::layout::PLAIN_NAME;

impl DirStore {
    /// Where the plain file of `key` lives (for messages and tests).
    pub fn plain_path(&self, key: &CacheKey) -> PathBuf {
        self.shown(&self.layout.plain(key))
    }

    /// The object's plain file, opened, and its size, if it is a regular
    /// file; anything else there is removed (never followed) and counts as
    /// absent.
    fn plain_file(&self, at: &Beneath, key: &CacheKey) -> Result<Option<(File, u64)>, StoreError> {
        let rel = self.layout.plain(key);
        match at.open_file(&rel) {
            Ok(Found::File(file, stat)) => {
                Ok(Some((file, u64::try_from(stat.st_size).unwrap_or(0))))
            }
            Ok(Found::NotRegular(kind)) => {
                self.remove_intruder(at, &rel, kind);
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(&e) => Ok(None),
            Err(e) => Err(StoreError::io("open", &at.display(&rel), e)),
        }
    }

    /// The object's plain file, opened for reading, if this store has one of
    /// exactly `size` bytes. Counts as a read of the object for eviction order.
    pub(crate) fn open_plain_at(
        &self,
        at: &Beneath,
        key: &CacheKey,
        size: u64,
    ) -> Result<Option<File>, StoreError> {
        if self.plain_block_size().is_none() {
            return Ok(None);
        }
        let Some((file, len)) = self.plain_file(at, key)? else {
            return Ok(None);
        };
        if len != size {
            let rel = self.layout.plain(key);
            tracing::warn!(tier = self.name_str(), path = %at.display(&rel).display(), len, size,
                "plain object file has the wrong size: removed");
            let _ = at.unlink(&rel);
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
        at: &Beneath,
        id: &BlockId,
        expected_len: u64,
    ) -> Result<Lookup, StoreError> {
        let Some(block_size) = self.plain_block_size() else {
            return Ok(Lookup::Miss);
        };
        let Some((file, size)) = self.plain_file(at, &id.key)? else {
            return Ok(Lookup::Miss);
        };
        let shown = || at.display(&self.layout.plain(&id.key));
        let start = id.index.saturating_mul(block_size);
        let in_bounds = start
            .checked_add(expected_len)
            .is_some_and(|end| end <= size && (end == size || expected_len == block_size));
        if !in_bounds {
            return Ok(Lookup::Miss);
        }
        let len = usize::try_from(expected_len)
            .map_err(|e| StoreError::io("read", &shown(), io::Error::other(e)))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| StoreError::io("read", &shown(), e))?;
        self.record_access(id);
        Ok(Lookup::Hit(Bytes::from(buf)))
    }

    /// Make the object plain if every one of its blocks is here (see the module
    /// docs). Returns whether the object is plain now. Blocks that are missing
    /// or fail their check leave it as it was (and the corrupt ones moved aside).
    pub(crate) fn make_plain_at(
        &self,
        at: &Beneath,
        key: &CacheKey,
        layout: &BlockLayout,
    ) -> Result<bool, StoreError> {
        if self.plain_block_size() != Some(layout.block_size) {
            return Ok(false);
        }
        if self.open_plain_at(at, key, layout.object_size)?.is_some() {
            return Ok(true);
        }
        let dir = self.layout.object(key);
        let present = match at.entries(Some(&dir)) {
            Ok(entries) => entries
                .iter()
                .filter(|(name, stat)| {
                    name.to_string_lossy().ends_with(".blk") && Kind::of(stat) == Kind::File
                })
                .count() as u64,
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(&e) => 0,
            Err(e) => return Err(StoreError::io("list", &at.display(&dir), e)),
        };
        if present < layout.block_count() {
            return Ok(false);
        }
        ensure_dir(at, &self.layout.tmp)?;
        let tmp = self
            .layout
            .made(&self.layout.tmp, &format!("{}.tmp", fsutil::unique_stem()));
        let plain = self.layout.plain(key);
        let written = self.write_plain(at, &tmp, key, layout);
        let placed = match written {
            Ok(true) => at
                .rename(&tmp, &plain)
                .map(|()| true)
                .map_err(|e| StoreError::io("rename temp file to", &at.display(&plain), e)),
            other => other,
        };
        if !matches!(placed, Ok(true)) {
            let _ = at.unlink(&tmp);
            return placed;
        }
        for index in 0..layout.block_count() {
            let _ = at.unlink(&self.layout.block(&BlockId { key: *key, index }));
        }
        tracing::debug!(tier = self.name_str(), path = %at.display(&plain).display(),
            "object made plain");
        Ok(true)
    }

    /// Copy every verified block of the object into a new file at `tmp`, synced.
    /// False if a block is missing or corrupt.
    fn write_plain(
        &self,
        at: &Beneath,
        tmp: &Rel,
        key: &CacheKey,
        layout: &BlockLayout,
    ) -> Result<bool, StoreError> {
        let shown = || at.display(tmp);
        let file = at
            .create_new(tmp, FILE_MODE)
            .map_err(|e| StoreError::io("create temp file", &shown(), e))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        for index in 0..layout.block_count() {
            let id = BlockId { key: *key, index };
            match self.read_block_file(at, &id, layout.block_len(index))? {
                Lookup::Hit(data) => out
                    .write_all(&data)
                    .map_err(|e| StoreError::io("write", &shown(), e))?,
                Lookup::Miss | Lookup::Corrupt(_) => return Ok(false),
            }
        }
        out.flush()
            .map_err(|e| StoreError::io("write", &shown(), e))?;
        drop(out);
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &shown(), e))?;
        Ok(true)
    }
}
