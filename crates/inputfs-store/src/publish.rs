//! Publishing a block so that no reader, on this host or another, ever sees a
//! partial file, and so that any number of workers may publish the same block at
//! once.
//!
//! The block is written to a uniquely named file in `tmp/` (same filesystem as
//! its final path), closed — on NFS, `close` is what flushes to the server, so
//! its error is checked — and then hard-linked to its final name. `link` fails
//! with `EEXIST` if the block is already there, which is how a worker learns it
//! lost a race (and the winner's block is the same bytes by construction).
//! Filesystems without hard links (SMB, some FUSE ones) fall back to `rename`,
//! which replaces an existing block with identical content. No `fsync`: a block
//! torn by a crash fails its checksum and is fetched again. Whatever happens,
//! the temp file is removed (a guard does it on every early return).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use inputfs_core::BlockId;
use inputfs_core::store::Placed;

use crate::dir::DirStore;
use crate::error::{StoreError, errno};
use crate::format;
use crate::fsutil::{self, FILE_MODE, ensure_dir};

/// A temp file that is removed when dropped, unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::debug!(path = %self.path.display(), error = %e, "could not remove temp file");
        }
    }
}

impl DirStore {
    /// Write `data` as block `id` (see the module docs for how).
    pub(crate) fn publish(&self, id: &BlockId, data: &[u8]) -> Result<Placed, StoreError> {
        let final_path = self.block_path(id);
        let object_dir = self.object_dir(&id.key);
        // Journal time of this placement: taken before it starts, so a block
        // that lands in a directory an eviction is moving away counts as older
        // than the eviction (and is not counted); refreshed below if the
        // directory has to be made again.
        let mut since = crate::usage::now_ms();
        ensure_dir(&object_dir, self.root())?;
        let header = format::encode_header(&id.key, id.index, data);
        let tmp = self.write_temp(&header, data)?;
        let parts = Parts {
            final_path: &final_path,
            object_dir: &object_dir,
            header: &header,
            data,
        };
        let placed = self.place(tmp, &parts, &mut since)?;
        if placed == Placed::New {
            self.record_placed(id, (header.len() + data.len()) as u64, since);
        }
        Ok(placed)
    }

    /// Create a fresh temp file holding `header` + `data`, and close it.
    fn write_temp(&self, header: &[u8], data: &[u8]) -> Result<TempFile, StoreError> {
        let mut recreated_tmp = false;
        let mut attempts = 0;
        let (file, tmp) = loop {
            attempts += 1;
            let path = self.tmp.join(format!("{}.tmp", fsutil::unique_stem()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
            {
                Ok(f) => break (f, TempFile { path, armed: true }),
                // A name clash (pid reuse in another container with our host
                // name?): draw another name.
                Err(e) if fsutil::already_exists(&e, &path) && attempts < 4 => {}
                // `tmp/` was removed (by hand or by a cleanup): make it again, once.
                Err(e) if e.kind() == io::ErrorKind::NotFound && !recreated_tmp => {
                    recreated_tmp = true;
                    ensure_dir(&self.tmp, self.root())?;
                }
                Err(e) => return Err(StoreError::io("create temp file", &path, e)),
            }
        };
        fsutil::set_file_mode(&file);
        let mut w = &file;
        w.write_all(header)
            .and_then(|()| w.write_all(data))
            .map_err(|e| StoreError::io("write", &tmp.path, e))?;
        close(file).map_err(|e| StoreError::io("close", &tmp.path, e))?;
        Ok(tmp)
    }

    /// Move the closed temp file to `final_path`: link (or rename), treating
    /// "already there" as success. Retries once if something vanished in
    /// between: the object's directory (evicted by another worker) or the
    /// temp file itself (the cache directory was removed and made again while
    /// the block was written: on a slow network mount a publish takes long
    /// enough for that to matter). If the retry finds its object's directory
    /// gone again while the cache directory is intact, the object was evicted
    /// under it twice: that is a lost race, not a failing tier.
    fn place(
        &self,
        mut tmp: TempFile,
        parts: &Parts,
        since: &mut u64,
    ) -> Result<Placed, StoreError> {
        let final_path = parts.final_path;
        for attempt in 0..2 {
            let retry = attempt == 0;
            if !self.no_links.load(Ordering::Relaxed) {
                match fs::hard_link(&tmp.path, final_path) {
                    Ok(()) => return Ok(Placed::New), // the guard unlinks the temp name
                    Err(e) if fsutil::already_exists(&e, final_path) => {
                        return Ok(Placed::AlreadyThere);
                    }
                    // sshfs: EPERM for a block linked by another worker and
                    // evicted again before we looked; one more try.
                    Err(e) if retry && fsutil::maybe_raced(&e) => continue,
                    Err(e) if links_unsupported(&e) => {
                        if !self.no_links.swap(true, Ordering::Relaxed) {
                            tracing::info!(root = %self.root().display(), error = %e,
                                "hard links unsupported here; publishing by rename");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound && retry => {
                        tmp = self.make_again(tmp, parts, since)?;
                        continue;
                    }
                    Err(e) if self.evicted_under(&e, &tmp) => return Ok(Placed::Evicted),
                    Err(e) => return Err(StoreError::io("link temp file to", final_path, e)),
                }
            }
            // `rename` replaces a block already there without a word: look
            // first (one `stat`, only where links are unsupported) so a worker
            // learns it fetched a block another worker had published.
            if fs::symlink_metadata(final_path).is_ok_and(|m| m.is_file()) {
                return Ok(Placed::AlreadyThere);
            }
            match fs::rename(&tmp.path, final_path) {
                Ok(()) => {
                    tmp.armed = false;
                    return Ok(Placed::New);
                }
                // SMB refuses to replace a file another client has open; that
                // file is this very block, so there is nothing left to do.
                Err(e) if matches!(errno(&e), libc::EEXIST | libc::EBUSY | libc::EACCES) => {
                    return Ok(Placed::AlreadyThere);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && retry => {
                    tmp = self.make_again(tmp, parts, since)?;
                }
                Err(e) if self.evicted_under(&e, &tmp) => return Ok(Placed::Evicted),
                Err(e) => return Err(StoreError::io("rename temp file to", final_path, e)),
            }
        }
        Err(StoreError::io(
            "publish",
            final_path,
            io::Error::from(io::ErrorKind::NotFound),
        ))
    }
}

/// What a publish places where: kept together so a retry can write the temp
/// file again.
struct Parts<'a> {
    final_path: &'a Path,
    object_dir: &'a Path,
    header: &'a [u8],
    data: &'a [u8],
}

impl DirStore {
    /// Whether `e`, the error of the retried placement, is `ENOENT` with the
    /// temp file and the cache directory intact: the object's directory was
    /// evicted again.
    fn evicted_under(&self, e: &io::Error, tmp: &TempFile) -> bool {
        e.kind() == io::ErrorKind::NotFound
            && fs::symlink_metadata(&tmp.path).is_ok()
            && self.missing_dir().is_none()
    }

    /// Before the one retry of [`place`](Self::place): make the object's
    /// directory again, and the temp file if it went with a removed cache
    /// directory. The placement's journal time is taken anew.
    fn make_again(
        &self,
        tmp: TempFile,
        parts: &Parts,
        since: &mut u64,
    ) -> Result<TempFile, StoreError> {
        *since = crate::usage::now_ms();
        ensure_dir(parts.object_dir, self.root())?;
        if fs::symlink_metadata(&tmp.path).is_ok() {
            return Ok(tmp);
        }
        drop(tmp);
        self.write_temp(parts.header, parts.data)
    }
}

/// Whether a failed `link` means "this filesystem does not do hard links".
fn links_unsupported(e: &io::Error) -> bool {
    matches!(
        errno(e),
        libc::EPERM | libc::ENOTSUP | libc::ENOSYS | libc::EXDEV | libc::EMLINK
    ) || errno(e) == libc::EOPNOTSUPP
}

/// Close `file` and report the error `Drop` would swallow: on NFS, `close`
/// flushes the written data to the server and is where ENOSPC or EIO shows up.
fn close(file: File) -> io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of an open descriptor; it is closed
    // exactly once, here, and not used afterwards.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
