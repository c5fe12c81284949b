//! Can this user mount a FUSE filesystem? `/dev/fuse` must be a character device
//! this user can open read-write, and — for anyone but root, whom fuser mounts
//! directly with mount(2) — `fusermount3` must be installed setuid root, since
//! that is how an unprivileged process mounts (and how anyone unmounts with
//! `fusermount3 -u`).
#![allow(
    clippy::disallowed_methods,
    reason = "/dev/fuse, fusermount3 and PATH, not a cache directory"
)]

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Check;

const DEVICE: &str = "/dev/fuse";

pub fn checks() -> Vec<Check> {
    let root = nix::unistd::Uid::effective().is_root();
    vec![device(Path::new(DEVICE)), fusermount(root)]
}

fn device(path: &Path) -> Check {
    const ID: &str = "fuse.device";
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                ID,
                DEVICE,
                format!("{shown}: {e}"),
                "load the FUSE module (`modprobe fuse`); in a container, pass the device in (docker run --device /dev/fuse --cap-add SYS_ADMIN)",
            );
        }
    };
    if !meta.file_type().is_char_device() {
        return Check::fail(
            ID,
            DEVICE,
            format!("{shown} exists but is not a character device"),
            "remove it and load the FUSE module (`modprobe fuse`), which creates the device",
        );
    }
    let (major, minor) = (
        nix::sys::stat::major(meta.rdev()),
        nix::sys::stat::minor(meta.rdev()),
    );
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => Check::ok(
            ID,
            DEVICE,
            format!(
                "{shown}: character device {major}:{minor}, mode {:o}, opens read-write",
                meta.permissions().mode() & 0o7777
            ),
        ),
        Err(e) => Check::fail(
            ID,
            DEVICE,
            format!("{shown}: cannot open read-write: {e}"),
            "make it readable and writable by every user, as distributions ship it: `chmod 0666 /dev/fuse`; in a container, allow the device (docker run --device /dev/fuse)",
        ),
    }
}

/// `fusermount3` (or fuser's fallback `fusermount`) from `$PATH`.
fn fusermount(root: bool) -> Check {
    const ID: &str = "fuse.fusermount3";
    let Some(path) = ["fusermount3", "fusermount"].into_iter().find_map(on_path) else {
        if root {
            return Check::warn(
                ID,
                "fusermount3",
                "fusermount3 is not on PATH: root mounts without it, but `fusermount3 -u MOUNTPOINT` will not unmount",
                "install it (Debian/Ubuntu: `apt-get install fuse3`), or unmount with `umount MOUNTPOINT`",
            );
        }
        return Check::fail(
            ID,
            "fusermount3",
            "fusermount3 is not on PATH: a user other than root cannot mount without it",
            "install it (Debian/Ubuntu: `apt-get install fuse3`; scripts/setup does)",
        );
    };
    let target = path.display().to_string();
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                ID,
                &target,
                format!("{target}: {e}"),
                "reinstall it (Debian/Ubuntu: `apt-get install --reinstall fuse3`)",
            );
        }
    };
    let mode = meta.permissions().mode();
    let setuid_root = mode & 0o4000 != 0 && meta.uid() == 0;
    if root {
        return Check::ok(
            ID,
            &target,
            format!("{target} (running as root: mounts directly, `fusermount3 -u` unmounts)"),
        );
    }
    if setuid_root {
        Check::ok(
            ID,
            &target,
            format!("{target}: setuid root, mode {:o}", mode & 0o7777),
        )
    } else {
        Check::fail(
            ID,
            &target,
            format!(
                "{target} is not setuid root (owner uid {}, mode {:o}): this user cannot mount",
                meta.uid(),
                mode & 0o7777
            ),
            &format!(
                "`chown root {target} && chmod u+s {target}` (as the fuse3 package installs it)"
            ),
        )
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn a_missing_or_wrong_device_fails_with_a_fix() {
        let missing = device(Path::new("/nonexistent/fuse"));
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.fix.unwrap().contains("modprobe fuse"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fuse");
        std::fs::write(&file, b"").unwrap();
        let plain = device(&file);
        assert_eq!(plain.status, Status::Fail);
        assert!(plain.detail.contains("not a character device"), "{plain:?}");
    }
}
