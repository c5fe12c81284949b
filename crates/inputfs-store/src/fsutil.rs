//! Small file-system helpers shared by the read and the write side.
//!
//! They exist to put the cache's sharing rules in one place: directories are
//! created group-writable and setgid, files group-writable, whatever the umask
//! (set on the handle, by `beneath`); temp and moved-aside files carry a name
//! no other worker can produce; and nothing is ever created above the
//! directory the store was given, nor through a link in it.

use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::stat::FileStat;

use crate::beneath::{Beneath, Kind, Rel};
use crate::error::StoreError;

/// Mode of every directory the store creates: group-writable, and setgid so
/// everything below inherits the directory's group.
pub const DIR_MODE: u32 = 0o2775;
/// Mode of every file the store creates.
pub const FILE_MODE: u32 = 0o664;

/// Create the directory `rel` and any missing ancestors below the root (the
/// configured directory is never created, and the root only by the store's
/// set-up: if either is gone, say a network mount went away and left its
/// empty mountpoint, this fails). A directory that already exists is fine;
/// anything else holding one of the names (a link, a file, a FIFO: written by
/// someone else) is removed, never followed, and the directory made in its
/// place.
///
/// Other workers move object directories away (evictions) and make them
/// (publishes) all the time: a directory that exists at our `mkdir` and is
/// gone at our look, or a parent gone again right after we made it, is a
/// lost race, not a failure, and the `mkdir` is tried again
/// ([`ENSURE_TRIES`] times in all).
pub fn ensure_dir(at: &Beneath, rel: &Rel) -> Result<(), StoreError> {
    let failed = |e| StoreError::io("create directory", &at.display(rel), e);
    let mut lost = io::Error::from(io::ErrorKind::NotFound);
    for _ in 0..ENSURE_TRIES {
        match at.mkdir(rel, DIR_MODE) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match at.stat(rel) {
                Ok(stat) if Kind::of(&stat) == Kind::Dir => return Ok(()),
                Ok(stat) => {
                    tracing::warn!(path = %at.display(rel).display(), kind = ?Kind::of(&stat),
                        "removed an entry where a cache directory belongs");
                    let _ = at.unlink(rel);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => lost = e,
                Err(e) => return Err(failed(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(&e) => {
                // Ancestors are made below the root only: the root is made by
                // the store's set-up alone, which first checks that `DIR` is the
                // filesystem it was (a vanished mount leaves an empty directory).
                let parent = rel
                    .as_path()
                    .parent()
                    .filter(|p| p.components().count() > 1);
                let Some(parent) = parent else {
                    return Err(failed(e));
                };
                ensure_dir(at, &Rel::trusted(parent.to_path_buf()))?;
                lost = e;
            }
            Err(e) => return Err(failed(e)),
        }
    }
    Err(failed(lost))
}

/// How many times [`ensure_dir`] tries its `mkdir` against lost races.
const ENSURE_TRIES: usize = 4;

/// This machine's host name, reduced to `[A-Za-z0-9_-]` (at most 64 characters)
/// so it can be a part of a file name with `.` as separator.
pub fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        #[allow(clippy::disallowed_methods, reason = "procfs, not a cache directory")]
        let raw = fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(libc_hostname)
            .unwrap_or_default();
        let clean: String = raw
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if clean.is_empty() {
            "unknown-host".to_string()
        } else {
            clean
        }
    })
}

fn libc_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A 64-bit value no other call (in this process or, with overwhelming
/// probability, any other) returns: the standard library's randomly keyed
/// SipHash over a process-wide counter and the clock.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish()
}

/// `<hostname>.<pid>.<random u64 as 16 hex>`: the unique stem of temp and
/// moved-aside file names.
pub fn unique_stem() -> String {
    format!(
        "{}.{}.{:016x}",
        hostname(),
        std::process::id(),
        random_u64()
    )
}

/// Whether `rel` still names the file `opened` was `fstat`ed as (same
/// device and inode), so a block another worker already replaced is not
/// moved aside in its stead.
pub fn still_names(at: &Beneath, rel: &Rel, opened: &FileStat) -> bool {
    at.stat(rel)
        .is_ok_and(|now| now.st_dev == opened.st_dev && now.st_ino == opened.st_ino)
}

/// How long ago an entry was last modified, by its `stat` (zero if in the
/// future).
pub fn age(stat: &FileStat) -> Duration {
    let mtime = Duration::new(
        u64::try_from(stat.st_mtime).unwrap_or(0),
        u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
    );
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(mtime)
}

/// Remove the entries of the directory `dir` for which `doomed(name, age)`
/// holds; best effort, never following anything (a directory among them is
/// removed with what it holds). Returns how many were removed.
pub fn remove_entries_where(
    at: &Beneath,
    dir: &Rel,
    doomed: impl Fn(&str, Duration) -> bool,
) -> usize {
    let Ok(entries) = at.entries(Some(dir)) else {
        return 0;
    };
    entries
        .into_iter()
        .filter(|(name, stat)| doomed(&name.to_string_lossy(), age(stat)))
        .filter(|(name, _)| {
            dir.join(name)
                .is_ok_and(|rel| at.remove_tree(&rel).1.is_ok())
        })
        .count()
}

/// Whether a failed exclusive create or `link` of `rel` means "already
/// exists". sshfs answers `EPERM` where the server said `EEXIST` (SFTP has one
/// generic failure code, which sshfs maps to `EPERM`) unless the kernel saw
/// the file first, so an `EPERM` with `rel` now present is taken for
/// `EEXIST`; one with nothing there stays a refusal.
pub fn already_exists(at: &Beneath, e: &io::Error, rel: &Rel) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists || (maybe_raced(e) && at.stat(rel).is_ok())
}

/// Whether `e` may be sshfs's `EPERM` for a name that existed (and may be
/// gone again by the time we look): worth one more try before it counts.
pub fn maybe_raced(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EPERM)
}

/// Whether opening a name failed on the way to it: a link (`ELOOP`) or a
/// non-directory (`ENOTDIR`) where one of its directories belongs.
pub fn is_link_on_the_way(e: &io::Error) -> bool {
    matches!(crate::error::errno(e), libc::ELOOP | libc::ENOTDIR)
}
