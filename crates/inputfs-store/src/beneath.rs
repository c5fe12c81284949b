//! Confinement: every file operation on a cache directory, done so that no
//! entry in it can lead anywhere else.
//!
//! A shared cache directory is written by every worker of a fleet, by other
//! inputfs versions and by anyone with write access to the export, while the
//! daemon runs as root: its entries are untrusted input. A symlink planted at
//! `inputfs-v1/trash` must not make a sweep delete another tree, a symlink or
//! a device node at a block's name must not be opened, a FIFO must not block
//! a reader. Checking with `lstat` before acting on a path does not help (the
//! entry can be swapped between the check and the act), so the rules are
//! enforced by the kernel, per call:
//!
//! - Every name is a [`Rel`]: relative, plain components only (no `..`, no
//!   absolute path), checked when it is made.
//! - The directory a name lives in is opened relative to a handle on the
//!   configured directory with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//!   (no step may leave the directory or pass through a symlink); on kernels
//!   without `openat2` (before 5.6), component by component with
//!   `O_NOFOLLOW | O_DIRECTORY`, each checked to be a directory.
//! - The last component is then acted on with the `*at` call that does not
//!   follow it: `unlinkat`, `renameat`, `linkat` without `AT_SYMLINK_FOLLOW`,
//!   `mkdirat`, `fstatat(AT_SYMLINK_NOFOLLOW)`, and `O_NOFOLLOW | O_EXCL` for
//!   creation.
//! - A file is opened for reading in two steps: `O_PATH | O_NOFOLLOW` (which
//!   opens nothing: no FIFO blocks, no device driver runs), `fstat`, and only a
//!   regular file is then opened for reading, through `/proc/self/fd` (the
//!   same inode, which the first handle pins).
//! - Modes are set on handles (`fchmod`), never by path after the fact.
//!
//! The configured directory itself is opened by the path the user gave (it is
//! configuration, not cache content). Each call resolves its name afresh from
//! that handle, so a root removed and re-created under a running daemon is
//! seen at once, as with plain paths.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use crate::ops::{DirOp, DirOps};

/// Why a cache file cannot be opened when `/proc` is missing.
pub const PROC_MISSING: &str = "/proc is not mounted: inputfs opens cache files through /proc/self/fd (mount proc in the container)";

/// A name relative to a cache directory: plain components only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rel(PathBuf);

impl Rel {
    /// `name` as a [`Rel`], or `InvalidInput` if it is empty, absolute or has
    /// an empty, `.` or `..` component (`a//b`, `a/`, `a/./b`).
    pub fn new(name: impl Into<PathBuf>) -> io::Result<Rel> {
        let path = name.into();
        // By bytes: `Path::components` would quietly drop a `.` or an empty
        // component in the middle.
        let plain = path
            .as_os_str()
            .as_bytes()
            .split(|&b| b == b'/')
            .all(|part| !matches!(part, b"" | b"." | b".."));
        if !plain {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a plain relative name: {}", path.display()),
            ));
        }
        Ok(Rel(path))
    }

    /// A name the crate composed itself from constants and hex (see
    /// `layout`): checked in debug builds only.
    pub(crate) fn trusted(path: PathBuf) -> Rel {
        debug_assert!(Rel::new(path.clone()).is_ok(), "{}", path.display());
        Rel(path)
    }

    /// [`join`](Self::join) for a name the crate composed itself.
    pub(crate) fn trusted_join(&self, name: &str) -> Rel {
        Rel::trusted(self.0.join(name))
    }

    /// This name with `name` (one plain component) appended.
    pub fn join(&self, name: impl AsRef<OsStr>) -> io::Result<Rel> {
        Rel::new(self.0.join(name.as_ref()))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The directory part (`None` for a single component) and the last one.
    fn split(&self) -> (Option<&Path>, &OsStr) {
        let last = self.0.file_name().unwrap_or_default();
        let parent = self.0.parent().filter(|p| !p.as_os_str().is_empty());
        (parent, last)
    }
}

/// What kind of entry a name holds, by `fstatat` without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device: never opened.
    Special,
}

impl Kind {
    pub fn of(stat: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Special,
        }
    }
}

/// What [`Beneath::open_file`] found at a name that exists.
#[derive(Debug)]
pub enum Found {
    /// A regular file, opened, and what `fstat` said of it.
    File(File, FileStat),
    /// Something else, left unopened: the caller removes it (by name, which
    /// never follows it) and counts it.
    NotRegular(Kind),
}

/// Read `file` (of `size` bytes by `fstat`) to its end, if that is at most
/// `limit` bytes; `InvalidData` otherwise (a file may grow while read: never
/// more than `limit` bytes are read).
pub fn read_at_most(file: File, size: u64, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {limit} bytes such a file may hold"),
        )
    };
    if size > limit {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(buf)
}

/// A handle on a configured cache directory, through which every name below
/// it is reached (see the module docs).
#[derive(Debug)]
pub struct Beneath {
    dir: OwnedFd,
    path: PathBuf,
    ops: Arc<DirOps>,
}

/// Whether `openat2` is missing here (learnt from the first `ENOSYS`).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

impl Beneath {
    /// Open the configured directory `path` (it must be a directory).
    pub fn open(path: &Path) -> io::Result<Beneath> {
        Beneath::open_counting(path, Arc::default())
    }

    /// [`open`](Self::open), counting every operation in `ops`.
    pub fn open_counting(path: &Path, ops: Arc<DirOps>) -> io::Result<Beneath> {
        let dir = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Beneath {
            dir,
            path: path.to_path_buf(),
            ops,
        })
    }

    /// The configured directory, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` as a full path, for messages only (never to open).
    pub fn display(&self, rel: &Rel) -> PathBuf {
        self.path.join(rel.as_path())
    }

    /// Open the directory `rel` (or the configured one for `None`) with
    /// `flags`, never leaving the configured directory nor following a link.
    fn open_dir(&self, rel: Option<&Path>, flags: OFlag) -> io::Result<OwnedFd> {
        let flags = flags | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let Some(rel) = rel else {
            return Ok(nix::fcntl::openat(&self.dir, ".", flags, Mode::empty())?);
        };
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let how = OpenHow::new().flags(flags).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
            match nix::fcntl::openat2(&self.dir, rel, how) {
                Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                other => return Ok(other?),
            }
        }
        self.walk(rel, flags)
    }

    /// [`open_dir`](Self::open_dir) without `openat2`: one component at a
    /// time, each opened as `O_PATH | O_NOFOLLOW` and checked to be a
    /// directory (`ELOOP` for a link, as `openat2` says). The last is opened
    /// again with `flags` unless those are `O_PATH` too; `O_NOFOLLOW |
    /// O_DIRECTORY` there refuse a link or file swapped in meanwhile.
    fn walk(&self, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let step = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut at = nix::fcntl::openat(&self.dir, ".", step, Mode::empty())?;
        let mut parent = None;
        let mut last = None;
        for part in rel.components() {
            let Component::Normal(name) = part else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            let next = nix::fcntl::openat(&at, name, step, Mode::empty())?;
            match Kind::of(&nix::sys::stat::fstat(&next)?) {
                Kind::Dir => {}
                Kind::Symlink => return Err(Errno::ELOOP.into()),
                _ => return Err(Errno::ENOTDIR.into()),
            }
            parent = Some(std::mem::replace(&mut at, next));
            last = Some(name);
        }
        match (parent, last) {
            (Some(parent), Some(name)) if !flags.contains(OFlag::O_PATH) => {
                Ok(nix::fcntl::openat(&parent, name, flags, Mode::empty())?)
            }
            _ => Ok(at),
        }
    }

    /// The directory holding `rel`, as a handle for `*at` calls, and `rel`'s
    /// last component.
    fn parent<'a>(&self, rel: &'a Rel) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (parent, last) = rel.split();
        Ok((self.open_dir(parent, OFlag::O_PATH)?, last))
    }

    /// What `rel` is, without following it.
    pub fn stat(&self, rel: &Rel) -> io::Result<FileStat> {
        self.ops.add(DirOp::Stat, 1);
        let (at, name) = self.parent(rel)?;
        Ok(nix::sys::stat::fstatat(
            &at,
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }

    /// Open `rel` for reading if it is a regular file. Anything else is
    /// never opened: [`Found::NotRegular`] with its kind, for the caller to
    /// remove and count.
    pub fn open_file(&self, rel: &Rel) -> io::Result<Found> {
        self.open_regular(rel, OFlag::O_RDONLY)
    }

    /// [`open_file`](Self::open_file), for writing (an existing file: see
    /// [`create_new`](Self::create_new) for a new one).
    pub fn open_file_write(&self, rel: &Rel) -> io::Result<Found> {
        self.open_regular(rel, OFlag::O_WRONLY)
    }

    fn open_regular(&self, rel: &Rel, access: OFlag) -> io::Result<Found> {
        match self.open_regular_once(rel, access) {
            // The name was replaced between the steps (another worker's
            // publish by rename) and a network filesystem called the first
            // handle stale: look the name up again, once.
            Err(e) if e.raw_os_error() == Some(libc::ESTALE) => self.open_regular_once(rel, access),
            other => other,
        }
    }

    fn open_regular_once(&self, rel: &Rel, access: OFlag) -> io::Result<Found> {
        self.ops.add(DirOp::Open, 1);
        let (at, name) = self.parent(rel)?;
        let handle = nix::fcntl::openat(
            &at,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let stat = nix::sys::stat::fstat(&handle)?;
        match Kind::of(&stat) {
            Kind::File => {}
            other => return Ok(Found::NotRegular(other)),
        }
        let proc = format!("/proc/self/fd/{}", handle.as_raw_fd());
        let file = match nix::fcntl::open(proc.as_str(), access | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(file) => file,
            // The handle pins the file, so `ENOENT` here means no /proc (a
            // container or chroot without it), not a miss: say so, or every
            // read would look like a cold cache.
            Err(Errno::ENOENT) if nix::sys::stat::stat("/proc/self/fd").is_err() => {
                return Err(io::Error::other(PROC_MISSING));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Found::File(File::from(file), stat))
    }

    /// The whole of the regular file `rel`, if it holds at most `limit`
    /// bytes (`InvalidData` if more: another worker's file is no reason to
    /// read without end). `Ok(None)` if it is not a regular file.
    pub fn read_small(&self, rel: &Rel, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Found::File(file, stat) = self.open_file(rel)? else {
            return Ok(None);
        };
        read_at_most(file, u64::try_from(stat.st_size).unwrap_or(0), limit).map(Some)
    }

    /// Space of the filesystem holding the directory `rel`: (total,
    /// available) bytes.
    pub fn space(&self, rel: &Rel) -> io::Result<(u64, u64)> {
        self.ops.add(DirOp::Stat, 1);
        let fd = self.open_dir(Some(rel.as_path()), OFlag::O_RDONLY)?;
        let st = nix::sys::statvfs::fstatvfs(&fd)?;
        let frsize = st.fragment_size();
        Ok((st.blocks() * frsize, st.blocks_available() * frsize))
    }

    /// Create the new file `rel` (`EEXIST` if any entry has the name) for
    /// writing, with `mode` set on the handle whatever the umask.
    pub fn create_new(&self, rel: &Rel, mode: u32) -> io::Result<File> {
        self.ops.add(DirOp::Create, 1);
        let (at, name) = self.parent(rel)?;
        let mode = Mode::from_bits_truncate(mode);
        let fd = nix::fcntl::openat(
            &at,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            mode,
        )?;
        // Best effort: SMB and directories of other owners refuse it.
        let _ = nix::sys::stat::fchmod(&fd, mode);
        Ok(File::from(fd))
    }

    /// Make the directory `rel` with `mode` (set on its handle). `EEXIST` if
    /// any entry has the name.
    pub fn mkdir(&self, rel: &Rel, mode: u32) -> io::Result<()> {
        self.ops.add(DirOp::Mkdir, 1);
        let (at, name) = self.parent(rel)?;
        let mode = Mode::from_bits_truncate(mode);
        nix::sys::stat::mkdirat(&at, name, mode)?;
        // Opened to set its mode whatever the umask: one more operation.
        self.ops.add(DirOp::Open, 1);
        if let Ok(made) = self.open_dir(Some(rel.as_path()), OFlag::O_RDONLY) {
            let _ = nix::sys::stat::fchmod(&made, mode);
        }
        Ok(())
    }

    /// Hard-link `from` to the new name `to`; neither is followed.
    pub fn link(&self, from: &Rel, to: &Rel) -> io::Result<()> {
        self.ops.add(DirOp::Link, 1);
        let (from_at, from_name) = self.parent(from)?;
        let (to_at, to_name) = self.parent(to)?;
        nix::unistd::linkat(&from_at, from_name, &to_at, to_name, AtFlags::empty())?;
        Ok(())
    }

    /// Rename `from` to `to` (replacing a file there); neither is followed.
    pub fn rename(&self, from: &Rel, to: &Rel) -> io::Result<()> {
        self.ops.add(DirOp::Rename, 1);
        let (from_at, from_name) = self.parent(from)?;
        let (to_at, to_name) = self.parent(to)?;
        nix::fcntl::renameat(&from_at, from_name, &to_at, to_name)?;
        Ok(())
    }

    /// Remove the name `rel` if it is not a directory (a link is removed,
    /// never followed).
    pub fn unlink(&self, rel: &Rel) -> io::Result<()> {
        self.ops.add(DirOp::Unlink, 1);
        let (at, name) = self.parent(rel)?;
        nix::unistd::unlinkat(&at, name, nix::unistd::UnlinkatFlags::NoRemoveDir)?;
        Ok(())
    }

    /// Remove the empty directory `rel`.
    pub fn rmdir(&self, rel: &Rel) -> io::Result<()> {
        self.ops.add(DirOp::Rmdir, 1);
        let (at, name) = self.parent(rel)?;
        nix::unistd::unlinkat(&at, name, nix::unistd::UnlinkatFlags::RemoveDir)?;
        Ok(())
    }

    /// The entries of the directory `rel` (`None`: the configured one), each
    /// with what it is, unfollowed. An entry gone between listing and
    /// `fstatat` is left out.
    pub fn entries(&self, rel: Option<&Rel>) -> io::Result<Vec<(OsString, FileStat)>> {
        self.ops.add(DirOp::Readdir, 1);
        let fd = self.open_dir(rel.map(Rel::as_path), OFlag::O_RDONLY)?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let at = dir.as_fd().try_clone_to_owned()?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            self.ops.add(DirOp::Stat, 1);
            if let Ok(stat) = nix::sys::stat::fstatat(&at, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                out.push((name.to_os_string(), stat));
            }
        }
        Ok(out)
    }

    /// Remove `rel` and, if it is a directory, everything below it; links
    /// are removed, never followed. Best effort: returns how many entries
    /// were removed, and the first error.
    pub fn remove_tree(&self, rel: &Rel) -> (usize, io::Result<()>) {
        let mut removed = 0;
        let result = self.remove_tree_counting(rel, &mut removed);
        (removed, result)
    }

    fn remove_tree_counting(&self, rel: &Rel, removed: &mut usize) -> io::Result<()> {
        match self.unlink(rel) {
            Ok(()) => {
                *removed += 1;
                return Ok(());
            }
            Err(e) if !is_a_directory(&e) => return Err(e),
            Err(_) => {}
        }
        let mut first = Ok(());
        for (name, _) in self.entries(Some(rel))? {
            let child = rel.join(&name);
            if let Err(e) = child.and_then(|child| self.remove_tree_counting(&child, removed))
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        self.rmdir(rel)?;
        *removed += 1;
        first
    }
}

/// Whether `unlinkat` refused because the name is a directory (`EISDIR` on
/// Linux, `EPERM` where POSIX allows it).
fn is_a_directory(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM))
}

#[cfg(test)]
#[path = "beneath_tests.rs"]
mod tests;
