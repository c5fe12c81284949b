//! Objects held whole, as one plain file of exactly their bytes.
//!
//! Kernel FUSE passthrough hands reads of a file straight to a backing file, with
//! the same offsets: it needs the object as one plain file, which block files
//! (each with its header) are not. So once every block of an object is in a
//! store that allows it (the local tier), the object can be *made plain*: its
//! verified blocks are copied into `object.data` in the object's directory
//! (temp file, `fsync`, `rename`), with their checksums in a sidecar,
//! `object.sums` (see `sums`), and the block files are then removed, so the
//! object costs its size once.
//!
//! From then on the store serves that object's blocks from the plain file (a
//! ranged read), and the store's `open_plain` gives the daemon the file to
//! pass through. The plain file lives in the object's directory, so eviction
//! (which moves whole directories) and the usage index treat it as the
//! object's bytes.
//!
//! A plain file is never trusted for being there: the directory may have been
//! written by another worker or a person (`--cache-dir` pointed at a shared
//! directory by mistake, say). It is checked against its sidecar before
//! anyone is served from it:
//! - a read through the daemon checks the block it reads (one CRC32C of
//!   bytes it reads anyway);
//! - passthrough cannot check reads the kernel serves, so before a plain file
//!   is handed out the whole of it is checked, once per mount and file (by
//!   device, inode, size, modification and change time, recorded in this
//!   process's memory): a full read at local-disk speed, or none for a file
//!   this process made itself (it was written from verified blocks), which is
//!   the usual case: the mount that fetched the object makes it plain. The
//!   cost shows in `scripts/bench`'s warm-local rows: a fresh mount over a
//!   filled local cache (checks, then reads) against a second read in the same
//!   mount (no check); 0.69x against 1.15x of a plain local file's read, 1 GiB,
//!   on the 2-core CI machine. Recording checks across mounts (privately, per
//!   host) would save the first figure's difference; it is not done, because
//!   the record would then be one more thing a writer could forge.
//!
//! A plain file without a sound sidecar, or that fails a check, is removed
//! with its sidecar and counts as absent (the origin serves the object).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use nix::sys::stat::FileStat;

use inputfs_core::store::{FillBlock, Lookup};
use inputfs_core::{BlockId, BlockLayout, CacheKey, buffers};

use crate::beneath::{Beneath, Found, Kind, Rel};
use crate::block_file;
use crate::cache_dir::CacheDir;
use crate::direct::SequentialWriter;
use crate::error::StoreError;
use crate::fsutil::{self, FILE_MODE, ensure_dir, is_link_on_the_way};
pub use crate::layout::PLAIN_NAME;
use crate::sums::{self, Sums};
use crate::usage::Usage;

/// Entries of [`Known`] past which it is forgotten and rebuilt.
const KNOWN_MAX: usize = 4096;

/// The plain-file side of one store: the block size objects are held plain
/// with (none: this store holds no plain files), and what this process knows
/// of plain files: their sidecars, and which files (by identity) it checked
/// whole or made itself.
#[derive(Debug, Default)]
pub(crate) struct PlainFiles {
    block_size: Option<u64>,
    sums: Mutex<HashMap<CacheKey, Arc<Sums>>>,
    checked: Mutex<HashMap<CacheKey, Identity>>,
}

/// A file as `fstat` tells it apart from a replacement or a rewrite: the
/// change time is in it because a writer can set the modification time back
/// (`touch -d`) but not the change time, which any write or `utimensat`
/// moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(stat: &FileStat) -> Identity {
        Identity {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: stat.st_size,
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
            ctime: (stat.st_ctime, stat.st_ctime_nsec),
        }
    }
}

fn recall<V: Clone>(map: &Mutex<HashMap<CacheKey, V>>, key: &CacheKey) -> Option<V> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(key)
        .cloned()
}

fn remember<V>(map: &Mutex<HashMap<CacheKey, V>>, key: CacheKey, value: V) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= KNOWN_MAX {
        map.clear();
    }
    map.insert(key, value);
}

impl PlainFiles {
    /// Plain files of objects read in blocks of `block_size`.
    pub(crate) fn with_block_size(block_size: u64) -> PlainFiles {
        PlainFiles {
            block_size: Some(block_size),
            ..PlainFiles::default()
        }
    }

    /// The block size objects are held plain with, if this store holds any.
    pub(crate) fn block_size(&self) -> Option<u64> {
        self.block_size
    }

    /// The object's plain file, opened, and its `fstat`, if it is a regular
    /// file; anything else there is removed (never followed) and counts as
    /// absent.
    fn plain_file(
        cd: &CacheDir,
        at: &Beneath,
        key: &CacheKey,
    ) -> Result<Option<(File, FileStat)>, StoreError> {
        let rel = cd.layout.plain(key);
        match at.open_file(&rel) {
            Ok(Found::File(file, stat)) => Ok(Some((file, stat))),
            Ok(Found::NotRegular(kind)) => {
                cd.remove_intruder(at, &rel, kind);
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(&e) => Ok(None),
            Err(e) => Err(StoreError::io("open", &at.display(&rel), e)),
        }
    }

    /// The sidecar of the plain file of `key`, for an object of `layout`, if
    /// it is sound (remembered once read).
    fn plain_sums(
        &self,
        cd: &CacheDir,
        at: &Beneath,
        key: &CacheKey,
        layout: &BlockLayout,
    ) -> Option<Arc<Sums>> {
        let known = recall(&self.sums, key);
        if known.is_some() {
            return known;
        }
        let bytes = at
            .read_small(&cd.layout.sums(key), sums::len_for(layout))
            .ok()??;
        let sums = Arc::new(Sums::decode(&bytes, key, layout)?);
        remember(&self.sums, *key, sums.clone());
        Some(sums)
    }

    /// Remove the plain file of `key` and its sidecar, and forget them: it
    /// failed a check (or has none), so the origin serves the object again.
    fn drop_plain(&self, cd: &CacheDir, at: &Beneath, key: &CacheKey, why: &str) {
        tracing::warn!(tier = cd.name(), path = %at.display(&cd.layout.plain(key)).display(),
            "plain object file {why}: removed");
        let _ = at.unlink(&cd.layout.plain(key));
        let _ = at.unlink(&cd.layout.sums(key));
        self.sums
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The object's plain file, opened for reading, if this store has one of
    /// exactly `size` bytes. Counts as a read of the object for eviction order.
    pub(crate) fn open(
        &self,
        cd: &CacheDir,
        usage: &Usage,
        at: &Beneath,
        key: &CacheKey,
        size: u64,
    ) -> Result<Option<File>, StoreError> {
        if self.block_size.is_none() {
            return Ok(None);
        }
        let Some((file, stat)) = Self::plain_file(cd, at, key)? else {
            return Ok(None);
        };
        let len = u64::try_from(stat.st_size).unwrap_or(0);
        if len != size {
            self.drop_plain(
                cd,
                at,
                key,
                &format!("has {len} bytes, not the object's {size}"),
            );
            return Ok(None);
        }
        if !self.checked_whole(cd, at, key, &file, &stat)? {
            return Ok(None);
        }
        usage.record_access(&BlockId {
            key: *key,
            index: 0,
        });
        Ok(Some(file))
    }

    /// Whether the plain file `file` of `key` is known good: checked whole
    /// by this process (or made by it) as the very file it is now, or
    /// checked whole now against its sidecar. One that fails is removed.
    fn checked_whole(
        &self,
        cd: &CacheDir,
        at: &Beneath,
        key: &CacheKey,
        file: &File,
        stat: &FileStat,
    ) -> Result<bool, StoreError> {
        let identity = Identity::of(stat);
        let known = recall(&self.checked, key);
        if known == Some(identity) {
            return Ok(true);
        }
        let Some(block_size) = self.block_size else {
            return Ok(false);
        };
        let layout = BlockLayout::new(block_size, u64::try_from(stat.st_size).unwrap_or(0));
        let Some(sums) = self.plain_sums(cd, at, key, &layout) else {
            self.drop_plain(cd, at, key, "has no sound sidecar of checksums");
            return Ok(false);
        };
        let shown = || at.display(&cd.layout.plain(key));
        let mut buf = vec![0u8; usize::try_from(block_size).unwrap_or(0)];
        for index in 0..layout.block_count() {
            let len = usize::try_from(layout.block_len(index)).unwrap_or(0);
            file.read_exact_at(&mut buf[..len], index * block_size)
                .map_err(|e| StoreError::io("read", &shown(), e))?;
            if !sums.check(index, &buf[..len]) {
                self.drop_plain(cd, at, key, &format!("fails its checksum at block {index}"));
                return Ok(false);
            }
        }
        remember(&self.checked, *key, identity);
        Ok(true)
    }

    /// Serve block `id` (of `expected_len` bytes) from the object's plain
    /// file, if there is one. Blocks sit at `index * block size`: one mount
    /// uses one block size, and it is part of the cache key.
    pub(crate) fn read_block(
        &self,
        cd: &CacheDir,
        usage: &Usage,
        at: &Beneath,
        id: &BlockId,
        expected_len: u64,
    ) -> Result<Lookup, StoreError> {
        let Some(block_size) = self.block_size else {
            return Ok(Lookup::Miss);
        };
        let Some((file, stat)) = Self::plain_file(cd, at, &id.key)? else {
            return Ok(Lookup::Miss);
        };
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        let shown = || at.display(&cd.layout.plain(&id.key));
        let start = id.index.saturating_mul(block_size);
        let in_bounds = start
            .checked_add(expected_len)
            .is_some_and(|end| end <= size && (end == size || expected_len == block_size));
        if !in_bounds {
            return Ok(Lookup::Miss);
        }
        let layout = BlockLayout::new(block_size, size);
        let Some(sums) = self.plain_sums(cd, at, &id.key, &layout) else {
            self.drop_plain(cd, at, &id.key, "has no sound sidecar of checksums");
            return Ok(Lookup::Miss);
        };
        let len = usize::try_from(expected_len)
            .map_err(|e| StoreError::io("read", &shown(), io::Error::other(e)))?;
        // A pooled block buffer (`inputfs_core::buffers`), zeroed in place:
        // cheaper than a fresh one's page faults.
        let mut buf = buffers::take(len);
        buf.resize(len, 0);
        file.read_exact_at(&mut buf, start)
            .map_err(|e| StoreError::io("read", &shown(), e))?;
        if !sums.check(id.index, &buf) {
            let why = format!("fails its checksum at block {}", id.index);
            self.drop_plain(cd, at, &id.key, &why);
            return Ok(Lookup::Corrupt(format!("{}: {why}", shown().display())));
        }
        usage.record_access(id);
        Ok(Lookup::Hit(buffers::share(buf)))
    }

    /// Make the object plain if every one of its blocks is here, or given by
    /// `fill` (see the module docs). Returns whether the object is plain now.
    /// Blocks that are missing or fail their check leave it as it was (and
    /// the corrupt ones moved aside).
    pub(crate) fn make(
        &self,
        cd: &CacheDir,
        usage: &Usage,
        at: &Beneath,
        key: &CacheKey,
        layout: &BlockLayout,
        fill: Option<&FillBlock<'_>>,
    ) -> Result<bool, StoreError> {
        if self.block_size != Some(layout.block_size) {
            return Ok(false);
        }
        if self.open(cd, usage, at, key, layout.object_size)?.is_some() {
            return Ok(true);
        }
        let dir = cd.layout.object(key);
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
        if present < layout.block_count() && fill.is_none() {
            return Ok(false);
        }
        ensure_dir(at, &cd.layout.tmp)?;
        let tmp = cd
            .layout
            .made(&cd.layout.tmp, &format!("{}.tmp", fsutil::unique_stem()));
        let plain = cd.layout.plain(key);
        let written = Self::write_plain(cd, usage, at, &tmp, key, layout, fill);
        // The sidecar goes into place first: a plain file is never without
        // one (a sidecar without its plain file is harmless).
        let placed = match written {
            Ok(Some((sums, made))) => Self::place_sums(cd, at, key, layout, &sums)
                .and_then(|()| {
                    at.rename(&tmp, &plain)
                        .map_err(|e| StoreError::io("rename temp file to", &at.display(&plain), e))
                })
                .map(|()| Some((sums, made))),
            other => other,
        };
        let (sums, made) = match placed {
            Ok(Some(placed)) => placed,
            other => {
                let _ = at.unlink(&tmp);
                return other.map(|_| false);
            }
        };
        // Made here from verified blocks: known good as the file it is now,
        // if the name still holds the very file written (the rename may have
        // moved its change time, so it is looked at again; a file put there
        // since by someone else is checked whole when opened).
        remember(&self.sums, *key, Arc::new(sums));
        if let Ok(Found::File(_, stat)) = at.open_file(&plain)
            && (stat.st_dev, stat.st_ino) == (made.st_dev, made.st_ino)
        {
            remember(&self.checked, *key, Identity::of(&stat));
        }
        for index in 0..layout.block_count() {
            let _ = at.unlink(&cd.layout.block(&BlockId { key: *key, index }));
        }
        tracing::debug!(tier = cd.name(), path = %at.display(&plain).display(),
            "object made plain");
        Ok(true)
    }

    /// Write the sidecar of `sums` into place (temp file, rename).
    fn place_sums(
        cd: &CacheDir,
        at: &Beneath,
        key: &CacheKey,
        layout: &BlockLayout,
        sums: &Sums,
    ) -> Result<(), StoreError> {
        let tmp = cd
            .layout
            .made(&cd.layout.tmp, &format!("{}.sums", fsutil::unique_stem()));
        let rel = cd.layout.sums(key);
        let written = at
            .create_new(&tmp, FILE_MODE)
            .and_then(|mut f| f.write_all(&sums.encode(key, layout)))
            .and_then(|()| at.rename(&tmp, &rel));
        if let Err(e) = written {
            let _ = at.unlink(&tmp);
            return Err(StoreError::io("write checksums", &at.display(&rel), e));
        }
        Ok(())
    }

    /// Copy every verified block of the object (from here, else from `fill`)
    /// into a new file at `tmp`, synced, and return their checksums and the
    /// file's `fstat`. `None` if a block is missing or corrupt.
    fn write_plain(
        cd: &CacheDir,
        usage: &Usage,
        at: &Beneath,
        tmp: &Rel,
        key: &CacheKey,
        layout: &BlockLayout,
        fill: Option<&FillBlock<'_>>,
    ) -> Result<Option<(Sums, FileStat)>, StoreError> {
        let shown = || at.display(tmp);
        let file = at
            .create_new(tmp, FILE_MODE)
            .map_err(|e| StoreError::io("create temp file", &shown(), e))?;
        let mut out = SequentialWriter::new(&file);
        let mut sums = Sums::new();
        for index in 0..layout.block_count() {
            let id = BlockId { key: *key, index };
            let len = layout.block_len(index);
            let data = match block_file::read(cd, usage, at, &id, len)? {
                Lookup::Hit(data) => data,
                Lookup::Miss | Lookup::Corrupt(_) => match fill.and_then(|f| f(&id, len)) {
                    Some(data) if data.len() as u64 == len => data,
                    _ => return Ok(None),
                },
            };
            sums.push(&data);
            out.write_all(&data)
                .map_err(|e| StoreError::io("write", &shown(), e))?
        }
        out.finish()
            .map_err(|e| StoreError::io("write", &shown(), e))?;
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &shown(), e))?;
        let made =
            nix::sys::stat::fstat(&file).map_err(|e| StoreError::io("stat", &shown(), e.into()))?;
        Ok(Some((sums, made)))
    }
}
