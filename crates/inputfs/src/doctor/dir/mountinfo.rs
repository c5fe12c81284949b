//! Which filesystem a directory is on, from `/proc/self/mountinfo`: shown in
//! `cache.exists`, and the reason for its warning when a shared cache is on
//! this machine's own disk.
#![allow(clippy::disallowed_methods, reason = "procfs, not a cache directory")]

use std::fs;
use std::path::{Path, PathBuf};

/// The filesystem a directory is on, from /proc/self/mountinfo.
pub(super) struct Filesystem {
    fstype: String,
    mount_point: PathBuf,
    read_only: bool,
}

impl Filesystem {
    /// The mount holding `dir` (the longest mount point above it).
    pub(super) fn of(dir: &Path) -> Option<Filesystem> {
        let dir = dir.canonicalize().ok()?;
        let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let sep = fields.iter().position(|f| *f == "-")?;
                let mount_point = PathBuf::from(unescape(fields.get(4)?));
                dir.starts_with(&mount_point).then(|| Filesystem {
                    read_only: fields
                        .get(5)
                        .is_some_and(|o| o.split(',').any(|o| o == "ro")),
                    fstype: fields.get(sep + 1).unwrap_or(&"?").to_string(),
                    mount_point,
                })
            })
            .max_by_key(|f| f.mount_point.components().count())
    }

    /// A filesystem of this machine's own disks or memory, which no other
    /// machine sees.
    pub(super) fn is_local(&self) -> bool {
        const LOCAL: [&str; 10] = [
            "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "vfat",
        ];
        LOCAL.contains(&self.fstype.as_str())
    }

    /// `ext4 mounted at /, read-only`
    pub(super) fn describe(&self) -> String {
        format!(
            "{} mounted at {}{}",
            self.fstype,
            self.mount_point.display(),
            if self.read_only { ", read-only" } else { "" }
        )
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(super) fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}
