//! Owning a mount point, so mounts never race: two mounts started at once on
//! one path cannot both succeed, and a daemon only ever unmounts its own
//! mount.
//!
//! - **Claim.** The mount point is opened and `flock`ed (exclusive, not
//!   waiting) for the whole set-up, until the mount is made; a second mount
//!   started meanwhile fails in one line. One started after the mount exists finds a mount point (its
//!   device differs from its parent's) and fails too. The checks that follow
//!   (a directory, empty) are made on the opened handle, not the path again.
//! - **A dead mount** (its daemon was killed) answers `ENOTCONN`: the error
//!   says how to clear it.
//! - **Unmounting.** fuser 0.18 unmounts by path when a session ends, even
//!   when the kernel already ended the connection (`fusermount3 -u` from
//!   outside): its "still mounted?" poll of `/dev/fuse` reads `POLLERR` as
//!   "mounted" (libfuse reads it as "already unmounted"). A new mount made on
//!   the same path in between was then unmounted ~200 ms after it started.
//!   So the daemon records its mount's device, unmounts only while the path
//!   still shows that device, and otherwise ends the session without
//!   unmounting anything (see [`end`]).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use nix::fcntl::{Flock, FlockArg};

/// A mount point this process holds for its set-up and its mount.
pub struct MountPoint {
    /// The canonical path.
    pub path: PathBuf,
    /// The directory under the mount, locked until the mount is made (then
    /// the mount itself keeps others off: they find a mount point).
    lock: Option<Flock<File>>,
    /// The device of our FUSE mount, once mounted.
    mounted_dev: Option<u64>,
}

/// How to clear a mount point whose daemon died.
fn dead_mount_hint(shown: &str) -> String {
    format!(
        "mount point {shown} is a dead FUSE mount (its daemon was killed?): clear it with `fusermount3 -u {shown}` (or `umount -l {shown}` as root), then mount again"
    )
}

/// Claim `path` for a mount: an existing, empty directory that is not a
/// mount point and that no other mount is being set up on.
#[allow(
    clippy::disallowed_methods,
    reason = "the mount point and its parent, not a cache directory"
)]
pub fn claim(path: &Path) -> Result<MountPoint> {
    let shown = path.display().to_string();
    let dir = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => bail!(dead_mount_hint(&shown)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("mount point {shown} does not exist")
        }
        Err(e) => bail!("mount point {shown}: {e}"),
    };
    let meta = dir
        .metadata()
        .map_err(|e| anyhow::anyhow!("mount point {shown}: {e}"))?;
    if !meta.is_dir() {
        bail!("mount point {shown} is not a directory");
    }
    let lock = Flock::lock(dir, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        if e == nix::errno::Errno::EWOULDBLOCK {
            anyhow::anyhow!(
                "mount point {shown}: another inputfs mount is being set up there right now"
            )
        } else {
            anyhow::anyhow!("mount point {shown}: cannot lock it: {e}")
        }
    })?;
    let canonical = path
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("mount point {shown}: {e}"))?;
    let parent = canonical.parent().unwrap_or(Path::new("/"));
    let parent_dev = std::fs::metadata(parent).map(|m| m.dev()).ok();
    if canonical != Path::new("/") && parent_dev.is_some_and(|d| d != meta.dev()) {
        bail!(
            "mount point {shown} is already a mount point (another inputfs mount?): unmount it first (`fusermount3 -u {shown}`) or choose another directory"
        );
    }
    let fd = lock.as_fd().try_clone_to_owned()?;
    let mut entries = nix::dir::Dir::from_fd(fd)
        .map_err(|e| anyhow::anyhow!("mount point {shown}: cannot list: {e}"))?;
    let busy = entries
        .iter()
        .flatten()
        .any(|e| !matches!(e.file_name().to_bytes(), b"." | b".."));
    if busy {
        bail!("mount point {shown} is not empty");
    }
    Ok(MountPoint {
        path: canonical,
        lock: Some(lock),
        mounted_dev: None,
    })
}

impl MountPoint {
    /// Record the device of the mount just made on this path, and let the
    /// lock go: a daemon still draining after an unmount from outside must
    /// not keep the next mount off the path.
    #[allow(
        clippy::disallowed_methods,
        reason = "the mount point, not a cache directory"
    )]
    pub fn mounted(&mut self) {
        self.mounted_dev = std::fs::metadata(&self.path).map(|m| m.dev()).ok();
        self.lock = None;
    }

    /// Whether the path still shows our mount (not another one made since).
    #[allow(
        clippy::disallowed_methods,
        reason = "the mount point, not a cache directory"
    )]
    fn still_ours(&self) -> bool {
        self.mounted_dev
            .is_some_and(|ours| std::fs::metadata(&self.path).is_ok_and(|m| m.dev() == ours))
    }
}

/// End the FUSE session: unmount it if it is still mounted here and
/// `unmount` is asked (a signal), then wait for its threads. A session the
/// kernel already ended (unmounted from outside) is joined without letting
/// fuser unmount the path again (see the module docs).
pub fn end(
    mut session: fuser::BackgroundSession,
    point: &MountPoint,
    unmount: bool,
) -> io::Result<()> {
    if unmount && point.still_ours() {
        return session.umount_and_join();
    }
    // The serving thread has ended (or ends once the kernel drops the
    // connection): take its handle, join it, and forget the session so its
    // drop never unmounts by path.
    let guard = std::mem::replace(&mut session.guard, std::thread::spawn(|| Ok(())));
    std::mem::forget(session);
    guard
        .join()
        .map_err(|_| io::Error::other("the FUSE session thread panicked"))?
}
