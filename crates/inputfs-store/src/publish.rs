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
//!
//! A rename over a block is not always atomic: libsmbclient (under smbnetfs)
//! renames without replacing, and on `EEXIST` unlinks the target and renames
//! again (`SMBC_rename_ctx`), so for a moment the block is not there and a
//! reader misses it (or the second rename fails and a temp file is left to
//! the sweep). So a publish by rename looks first and renames only onto a
//! name it saw free, and publishes of one block in one process take turns
//! from that look to the rename ([`PUBLISHING`]): two threads of a worker
//! never rename over each other's block. The look comes before the temp file
//! is written, so a block already there costs no write; that matters on SMB
//! beyond the bytes, since smbnetfs answers `EBUSY` to removing a file just
//! closed (FUSE sends the release after `close` returns, and the SMB handle
//! stays open until then). Across workers a claim makes one of them fetch
//! and publish; two at once (a claim timed out or taken over) can still cost
//! a reader one miss there, which the origin serves, and leave a temp file
//! that the sweep removes once it is old.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use inputfs_core::BlockId;
use inputfs_core::store::Placed;

use crate::beneath::{Beneath, Kind, Rel};
use crate::cache_dir::CacheDir;
use crate::direct::SequentialWriter;
use crate::error::{StoreError, errno};
use crate::format;
use crate::fsutil::{self, FILE_MODE, ensure_dir, is_link_on_the_way};
use crate::usage::Usage;

/// Turns of the look-then-rename of a publish by rename, by block name (a
/// hash of it: two blocks may share a turn, which only makes one wait).
static PUBLISHING: [Mutex<()>; 64] = [const { Mutex::new(()) }; 64];

/// The turn of publishes by rename to `rel`.
fn turn_of(rel: &Rel) -> MutexGuard<'static, ()> {
    let mut hasher = std::hash::DefaultHasher::new();
    rel.hash(&mut hasher);
    let slot = (hasher.finish() % PUBLISHING.len() as u64) as usize;
    PUBLISHING[slot].lock().unwrap_or_else(|p| p.into_inner())
}

/// A temp file that is removed when dropped, unless it was renamed into place.
struct TempFile<'a> {
    at: &'a Beneath,
    rel: Rel,
    armed: bool,
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = self.at.unlink(&self.rel)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::debug!(path = %self.at.display(&self.rel).display(), error = %e,
                "could not remove temp file");
        }
    }
}

/// The write side of one store. Set once a hard link failed in a way that
/// means "not supported here", so later publishes go straight to `rename`.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    no_links: AtomicBool,
}

impl Publisher {
    /// Publish by `rename` from now on, never trying `link` first.
    pub(crate) fn by_rename(&self) {
        self.no_links.store(true, Ordering::Relaxed);
    }

    /// Write `data` as block `id` into `cd` (see the module docs for how).
    pub(crate) fn publish(
        &self,
        cd: &CacheDir,
        usage: &Usage,
        at: &Beneath,
        id: &BlockId,
        data: &[u8],
    ) -> Result<Placed, StoreError> {
        let final_rel = cd.layout.block(id);
        let object_rel = cd.layout.object(&id.key);
        ensure_dir(at, &object_rel)?;
        // Journal time of this placement: taken once the object's directory
        // is there and before the block lands, so a block that lands in a
        // directory an eviction is moving away counts as older than the
        // eviction (and is not counted), while one in a directory made again
        // after an eviction (here, or below) counts as newer.
        let mut since = crate::usage::now_ms();
        // Publishing by rename: in this block's turn, and not at all if it
        // is there already (no temp file written in vain: on SMB one just
        // closed cannot even be removed yet, see the module docs).
        let mut turn = None;
        if self.no_links.load(Ordering::Relaxed) {
            turn = Some(turn_of(&final_rel));
            if at
                .stat(&final_rel)
                .is_ok_and(|s| Kind::of(&s) == Kind::File)
            {
                return Ok(Placed::AlreadyThere);
            }
        }
        let header = format::encode_header(&id.key, id.index, data);
        let tmp = write_temp(cd, at, &header, data)?;
        let parts = Parts {
            final_rel: &final_rel,
            object_rel: &object_rel,
            header: &header,
            data,
        };
        let placed = self.place(cd, at, tmp, &parts, &mut since, &mut turn)?;
        if placed == Placed::New {
            usage.record_placed(cd, id, (header.len() + data.len()) as u64, since);
        }
        Ok(placed)
    }

    /// Move the closed temp file to its final name: link (or rename), treating
    /// "already there" as success. Tries again ([`PLACE_TRIES`] in all) if
    /// something vanished in between: the object's directory (evicted by
    /// another worker) or the temp file itself (the cache directory was
    /// removed and made again while the block was written: on a slow network
    /// mount a publish takes long enough for that to matter). If the last try
    /// finds its object's directory gone again while the cache directory is
    /// intact, the object was evicted under it every time: that is a lost
    /// race, not a failing tier; so is finding another directory made in its
    /// place by then. Something other than a regular file at the
    /// final name (planted by someone) is removed, never followed, and the
    /// block placed.
    fn place<'a>(
        &self,
        cd: &CacheDir,
        at: &'a Beneath,
        mut tmp: TempFile<'a>,
        parts: &Parts,
        since: &mut u64,
        turn: &mut Option<MutexGuard<'static, ()>>,
    ) -> Result<Placed, StoreError> {
        let final_rel = parts.final_rel;
        let shown = || at.display(final_rel);
        for attempt in 1..=PLACE_TRIES {
            let retry = attempt < PLACE_TRIES;
            if !self.no_links.load(Ordering::Relaxed) {
                match at.link(&tmp.rel, final_rel) {
                    Ok(()) => return Ok(Placed::New), // the guard unlinks the temp name
                    Err(e) if fsutil::already_exists(at, &e, final_rel) => {
                        if retry && remove_non_file(cd, at, final_rel) {
                            continue;
                        }
                        return Ok(Placed::AlreadyThere);
                    }
                    // sshfs: EPERM for a block linked by another worker and
                    // evicted again before we looked; one more try.
                    Err(e) if retry && fsutil::maybe_raced(&e) => continue,
                    Err(e) if links_unsupported(&e) => {
                        if !self.no_links.swap(true, Ordering::Relaxed) {
                            tracing::info!(root = %cd.root().display(), error = %e,
                                "hard links unsupported here; publishing by rename");
                        }
                    }
                    Err(e) if vanished(&e) && retry => {
                        tmp = make_again(cd, at, tmp, parts, since)?;
                        continue;
                    }
                    Err(e) if evicted_under(cd, at, &e, &tmp) => {
                        return Ok(Placed::Evicted);
                    }
                    Err(e) => return Err(StoreError::io("link temp file to", &shown(), e)),
                }
            }
            // `rename` replaces a block already there without a word: look
            // first (one `stat`, only where links are unsupported) so a worker
            // learns it fetched a block another worker had published, and
            // never renames over it (see the module docs); in its turn, so no
            // other thread of this process renames between the look and ours.
            if turn.is_none() {
                *turn = Some(turn_of(final_rel));
            }
            if at.stat(final_rel).is_ok_and(|s| Kind::of(&s) == Kind::File) {
                return Ok(Placed::AlreadyThere);
            }
            match at.rename(&tmp.rel, final_rel) {
                Ok(()) => {
                    tmp.armed = false;
                    return Ok(Placed::New);
                }
                Err(e) if refused(&e) => {
                    let placed = refused_rename(at, &tmp.rel, final_rel, e)
                        .map_err(|e| StoreError::io("rename temp file to", &shown(), e))?;
                    if placed == Placed::New {
                        tmp.armed = false;
                    }
                    return Ok(placed);
                }
                Err(e) if vanished(&e) && retry => {
                    tmp = make_again(cd, at, tmp, parts, since)?;
                }
                Err(e) if evicted_under(cd, at, &e, &tmp) => return Ok(Placed::Evicted),
                Err(e) => return Err(StoreError::io("rename temp file to", &shown(), e)),
            }
        }
        Err(StoreError::io(
            "publish",
            &shown(),
            io::Error::from(io::ErrorKind::NotFound),
        ))
    }
}

/// If something other than a regular file holds `rel` (a block's name),
/// remove it, never following it; returns whether it did.
fn remove_non_file(cd: &CacheDir, at: &Beneath, rel: &Rel) -> bool {
    match at.stat(rel) {
        Ok(stat) if Kind::of(&stat) != Kind::File => {
            cd.remove_intruder(at, rel, Kind::of(&stat));
            true
        }
        _ => false,
    }
}

/// Create a fresh temp file in `cd` holding `header` + `data`, and close it.
fn write_temp<'a>(
    cd: &CacheDir,
    at: &'a Beneath,
    header: &[u8],
    data: &[u8],
) -> Result<TempFile<'a>, StoreError> {
    let mut recreated_tmp = false;
    let mut attempts = 0;
    let (file, tmp) = loop {
        attempts += 1;
        let rel = cd
            .layout
            .made(&cd.layout.tmp, &format!("{}.tmp", fsutil::unique_stem()));
        match at.create_new(&rel, FILE_MODE) {
            Ok(f) => {
                break (
                    f,
                    TempFile {
                        at,
                        rel,
                        armed: true,
                    },
                );
            }
            // A name clash (pid reuse in another container with our host
            // name?): draw another name.
            Err(e) if fsutil::already_exists(at, &e, &rel) && attempts < 4 => {}
            // `tmp/` was removed (by hand or by a cleanup) or replaced by
            // something else: make it again, once.
            Err(e)
                if (e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(&e))
                    && !recreated_tmp =>
            {
                recreated_tmp = true;
                ensure_dir(at, &cd.layout.tmp)?;
            }
            Err(e) => return Err(StoreError::io("create temp file", &at.display(&rel), e)),
        }
    };
    let shown = || at.display(&tmp.rel);
    let mut w = SequentialWriter::new(&file);
    w.write_all(header)
        .and_then(|()| w.write_all(data))
        .and_then(|()| w.finish())
        .map_err(|e| StoreError::io("write", &shown(), e))?;
    close(file).map_err(|e| StoreError::io("close", &shown(), e))?;
    Ok(tmp)
}

/// Tries of a placement. A small shared cache under many workers evicts the
/// directory a block is being placed into again and again (another worker
/// makes it anew in between, so a look after a failed try can find it there
/// although the try lost to an eviction): two tries were not always enough,
/// and the last failure counted as a failing tier (`stress_on_smb` saw one
/// warning more than its removals, 5 s after the last one). As many as
/// `ensure_dir` gives a `mkdir` for the same race.
const PLACE_TRIES: usize = 4;

/// Whether a placement failed because a name on the way vanished (or was
/// replaced by something that is not a directory).
/// A rename refused because of what is open or there (see [`refused_rename`]).
fn refused(e: &io::Error) -> bool {
    matches!(errno(e), libc::EEXIST | libc::EBUSY | libc::EACCES)
}

/// The longest a publish waits for its own temp file to be released.
const RELEASE_WAIT: Duration = Duration::from_millis(250);

/// After a rename of `tmp` to `final_rel` was refused ([`refused`]): either
/// a block is at the final name (SMB refuses to replace a file another
/// client has open, and that file is this very block), or the refused file
/// is our own temp file, just closed: smbnetfs keeps its SMB handle open
/// until FUSE's release arrives, after `close` has returned, and the server
/// refuses to rename a file with an open handle. Saying "already there"
/// then would be false, and the block would be missing for every reader.
/// So look; if nothing is there, try the rename again, pausing 1 ms doubling,
/// for at most [`RELEASE_WAIT`], then give up with the last refusal (the
/// publish fails, and the engine makes it again later).
fn refused_rename(
    at: &Beneath,
    tmp: &Rel,
    final_rel: &Rel,
    first: io::Error,
) -> io::Result<Placed> {
    let mut pause = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    let mut last = first;
    loop {
        if at.stat(final_rel).is_ok_and(|s| Kind::of(&s) == Kind::File) {
            return Ok(Placed::AlreadyThere);
        }
        if waited >= RELEASE_WAIT {
            return Err(last);
        }
        std::thread::sleep(pause);
        waited += pause;
        pause *= 2;
        match at.rename(tmp, final_rel) {
            Ok(()) => return Ok(Placed::New),
            Err(e) if refused(&e) => last = e,
            Err(e) => return Err(e),
        }
    }
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(e)
}

/// What a publish places where: kept together so a retry can write the temp
/// file again.
struct Parts<'a> {
    final_rel: &'a Rel,
    object_rel: &'a Rel,
    header: &'a [u8],
    data: &'a [u8],
}

/// Whether `e`, the error of the retried placement, is `ENOENT` because the
/// object's directory was evicted under this publish: the temp file and the
/// cache directory are intact, so the name missing was the directory's.
/// Whether it is still gone when we look does not matter: with eight workers
/// publishing into a cache of a few blocks, sweeps evict an object's
/// directory and other workers' publishes make it again within milliseconds,
/// so a look after the failure finds a new one about as often as none
/// (`stress_on_smb` failed on the warning that requiring "none" gave). Nor
/// can the directory's identity tell a new one from the old: ext4 hands a
/// freed inode number to the next directory made beside it, with the same
/// coarse change time. A network filesystem's stale view that answers
/// `ENOENT` for a directory that is there costs the same: one block not
/// published, fetched again by whoever needs it.
fn evicted_under(cd: &CacheDir, at: &Beneath, e: &io::Error, tmp: &TempFile) -> bool {
    e.kind() == io::ErrorKind::NotFound && at.stat(&tmp.rel).is_ok() && cd.missing_dir().is_none()
}

/// Before another try of [`Publisher::place`]: make the object's directory
/// again, and the temp file if it went with a removed cache directory. The
/// placement's journal time is taken anew.
fn make_again<'a>(
    cd: &CacheDir,
    at: &'a Beneath,
    tmp: TempFile<'a>,
    parts: &Parts,
    since: &mut u64,
) -> Result<TempFile<'a>, StoreError> {
    ensure_dir(at, parts.object_rel)?;
    *since = crate::usage::now_ms();
    if at.stat(&tmp.rel).is_ok() {
        return Ok(tmp);
    }
    drop(tmp);
    write_temp(cd, at, parts.header, parts.data)
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

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "the test evicts and makes an object's directory by path, as another worker would"
)]
mod tests {
    use super::*;

    #[test]
    fn enoent_with_the_temp_file_and_the_cache_there_is_an_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let cd = CacheDir::new(dir.path(), "test");
        cd.set_up().unwrap();
        let at = cd.at().unwrap();
        let tmp = write_temp(&cd, &at, b"header", b"data").unwrap();
        let enoent = io::Error::from(io::ErrorKind::NotFound);
        // Whatever the object's directory is now (gone, or made again by
        // another worker), ENOENT from placing an intact temp file is one.
        assert!(evicted_under(&cd, &at, &enoent, &tmp));
        // Another error never is.
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert!(!evicted_under(&cd, &at, &eio, &tmp));
        // Nor is ENOENT when the temp file went too (the cache directory was
        // removed and made again: the retry writes it again)...
        let gone = TempFile {
            at: &at,
            rel: cd.layout.made(&cd.layout.tmp, "never-written.tmp"),
            armed: false,
        };
        assert!(!evicted_under(&cd, &at, &enoent, &gone));
        // ...or when the configured directory itself was moved away (our
        // handle still reaches the temp file in it).
        let away = dir.path().with_extension("away");
        std::fs::rename(dir.path(), &away).unwrap();
        assert!(at.stat(&tmp.rel).is_ok());
        assert!(!evicted_under(&cd, &at, &enoent, &tmp));
        std::fs::rename(&away, dir.path()).unwrap();
        drop(tmp);
    }
}
