//! Small file-system helpers shared by the read and the write side.
//!
//! They exist to put the cache's sharing rules in one place: directories are
//! created group-writable and setgid, files group-writable, whatever the umask;
//! temp and moved-aside files carry a name no other worker can produce; and
//! nothing is ever created above the directory the store was given.

use std::fs::{self, DirBuilder, File};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StoreError;

/// Mode of every directory the store creates: group-writable, and setgid so
/// everything below inherits the directory's group.
pub const DIR_MODE: u32 = 0o2775;
/// Mode of every file the store creates.
pub const FILE_MODE: u32 = 0o664;

/// Create `path` and any missing ancestors strictly below `base`, with
/// [`DIR_MODE`]. `base` itself is never created: if it is gone (say, a network
/// mount went away and left its empty mountpoint), this fails instead of quietly
/// building a cache somewhere else. A directory that already exists is fine.
pub fn ensure_dir(path: &Path, base: &Path) -> Result<(), StoreError> {
    match mkdir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match path.parent() {
            Some(parent) if parent != base && parent.starts_with(base) => {
                ensure_dir(parent, base)?;
                match mkdir(path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(StoreError::io("create directory", path, e)),
                }
            }
            _ => Err(StoreError::io("create directory", path, e)),
        },
        Err(e) => Err(StoreError::io("create directory", path, e)),
    }
}

/// One `mkdir`, then an explicit `chmod` since the umask may have stripped the
/// group bits. A failed `chmod` (SMB, a directory of another owner) is ignored.
fn mkdir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(path)?;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE));
    Ok(())
}

/// Give a freshly created file [`FILE_MODE`] whatever the umask; ignore failure.
pub fn set_file_mode(file: &File) {
    let _ = file.set_permissions(fs::Permissions::from_mode(FILE_MODE));
}

/// This machine's host name, reduced to `[A-Za-z0-9_-]` (at most 64 characters)
/// so it can be a part of a file name with `.` as separator.
pub fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
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

/// Whether `path` still names the file `opened` (same device and inode), so a
/// block another worker already replaced is not moved aside in its stead.
pub fn still_names(path: &Path, opened: &File) -> bool {
    match (fs::symlink_metadata(path), opened.metadata()) {
        (Ok(now), Ok(was)) => now.dev() == was.dev() && now.ino() == was.ino(),
        _ => false,
    }
}

/// (total, available) bytes of the filesystem holding `path`, if it can tell.
pub fn space(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = st.fragment_size();
    Some((st.blocks() * frsize, st.blocks_available() * frsize))
}

/// How long ago a directory entry was last modified (zero if it cannot tell).
pub fn age(entry: &fs::DirEntry) -> std::time::Duration {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

/// Remove the files of `dir` for which `doomed(name, age)` holds; best effort.
/// Returns how many were removed.
pub fn remove_files_where(dir: &Path, doomed: impl Fn(&str, std::time::Duration) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| doomed(&e.file_name().to_string_lossy(), age(e)))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// Whether a failed exclusive create or `link` of `path` means "already
/// exists". sshfs answers `EPERM` where the server said `EEXIST` (SFTP has one
/// generic failure code, which sshfs maps to `EPERM`) unless the kernel saw
/// the file first, so an `EPERM` with `path` now present is taken for
/// `EEXIST`; one with nothing there stays a refusal.
pub fn already_exists(e: &io::Error, path: &Path) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists
        || (maybe_raced(e) && fs::symlink_metadata(path).is_ok())
}

/// Whether `e` may be sshfs's `EPERM` for a name that existed (and may be
/// gone again by the time we look): worth one more try before it counts.
pub fn maybe_raced(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EPERM)
}
