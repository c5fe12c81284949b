//! The unprivileged test users scripts/setup creates (`inputfs-worker1`,
//! `inputfs-worker2`, group `inputfs-share`), for tests of workers running as
//! different users. A FUSE mount only answers the user that mounted it, so such
//! tests also read files as that user.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (uid, gid) of a test user, or a loud failure naming the fix.
pub fn user(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(name).output().unwrap();
        assert!(
            out.status.success(),
            "user {name} is missing: run scripts/setup (as root)"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// sha256 of a file, read as `who`.
pub fn sha256_as(who: (u32, u32), path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .uid(who.0)
        .gid(who.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Create `path` (and parents) owned by `who`.
pub fn owned_dir(path: &Path, who: (u32, u32)) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::os::unix::fs::chown(path, Some(who.0), Some(who.1)).unwrap();
    path.to_path_buf()
}
