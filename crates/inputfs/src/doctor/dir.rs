//! Checks of one cache directory, in order: does it exist (and on which
//! filesystem: `mountinfo`), can this user write there, does its filesystem
//! honour the operations the cache relies on (`semantics`), free space and
//! inodes (`space`), and for the shared directory its latency and throughput
//! ([`super::perf`]). A check that cannot run because one before it failed is
//! reported as skipped, so every id is always in the report.
//!
//! Every probe file is made inside a [`Probe`] directory of our own and removed
//! with it; nothing under the cache's `inputfs-v1/` tree is touched.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::{Check, perf};
use mountinfo::Filesystem;
pub use probe::Probe;

mod mountinfo;
mod probe;
mod semantics;
mod space;

/// Which cache a directory is for: decides the flag named in fixes, whether a
/// missing directory is created (the local one, as mount does) and whether
/// its speed is measured (the shared one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Local,
    Shared,
}

/// A cache directory to check.
#[derive(Debug, Clone)]
pub struct Target {
    tier: Tier,
    dir: PathBuf,
    /// Bytes to write and read back to measure throughput (shared only).
    throughput_bytes: u64,
}

/// The ids, in the order they are reported.
const IDS: [&str; 7] = [
    "cache.exists",
    "cache.writable",
    "cache.o_excl",
    "cache.rename_over",
    "cache.link",
    "cache.free_space",
    "cache.free_inodes",
];
const PERF_IDS: [&str; 2] = ["cache.small_file_latency", "cache.throughput"];

impl Target {
    pub fn local(dir: PathBuf) -> Target {
        Target {
            tier: Tier::Local,
            dir,
            throughput_bytes: 0,
        }
    }

    pub fn shared(dir: PathBuf, throughput_bytes: u64) -> Target {
        Target {
            tier: Tier::Shared,
            dir,
            throughput_bytes,
        }
    }

    fn flag(&self) -> &'static str {
        match self.tier {
            Tier::Local => "--cache-dir",
            Tier::Shared => "--shared-cache",
        }
    }

    /// `shared cache /mnt/x`: how lines name this directory.
    fn name(&self) -> String {
        let tier = match self.tier {
            Tier::Local => "local",
            Tier::Shared => "shared",
        };
        format!("{tier} cache {}", self.dir.display())
    }

    fn ids(&self) -> Vec<&'static str> {
        let mut ids = IDS.to_vec();
        if self.tier == Tier::Shared {
            ids.extend(PERF_IDS);
        }
        ids
    }

    /// Every check of this directory, in [`IDS`] order.
    pub fn checks(&self) -> Vec<Check> {
        let target = self.dir.display().to_string();
        let mut out = vec![self.exists()];
        if out[0].status == super::Status::Fail {
            out.extend(
                self.ids()[1..]
                    .iter()
                    .map(|id| Check::skip(id, &target, "cache.exists failed")),
            );
            return out;
        }
        let probe = match Probe::create(&self.dir).and_then(|p| {
            p.write_new("writable", b"inputfs doctor")?;
            Ok(p)
        }) {
            Ok(p) => p,
            Err(e) => {
                out.push(Check::fail(
                    "cache.writable",
                    &target,
                    format!("{}: cannot create and write a file: {e}", self.name()),
                    &self.fix_for(&e),
                ));
                let skipped = ["cache.o_excl", "cache.rename_over", "cache.link"];
                out.extend(
                    skipped
                        .iter()
                        .map(|id| Check::skip(id, &target, "cache.writable failed")),
                );
                out.push(self.free_space());
                out.push(self.free_inodes());
                if self.tier == Tier::Shared {
                    out.extend(
                        PERF_IDS
                            .iter()
                            .map(|id| Check::skip(id, &target, "cache.writable failed")),
                    );
                }
                return out;
            }
        };
        out.push(Check::ok(
            "cache.writable",
            &target,
            format!(
                "{}: created {} and wrote a file in it",
                self.name(),
                probe.dir.display()
            ),
        ));
        out.push(self.o_excl(&probe));
        out.push(self.rename_over(&probe));
        out.push(self.link(&probe));
        out.push(self.free_space());
        out.push(self.free_inodes());
        if self.tier == Tier::Shared {
            out.push(perf::small_files(&probe, &target, &self.name()));
            out.push(perf::throughput(
                &probe,
                self.throughput_bytes,
                &target,
                &self.name(),
            ));
        }
        out
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "DIR itself is configuration (and the local one the mount's to create)"
    )]
    fn exists(&self) -> Check {
        const ID: &str = "cache.exists";
        let target = self.dir.display().to_string();
        let name = self.name();
        match fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => self.found(),
            Ok(_) => Check::fail(
                ID,
                &target,
                format!("{name}: exists but is not a directory"),
                &format!("point {} at a directory", self.flag()),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.tier == Tier::Local => {
                // The local directory is the mount's to create: do as it does.
                match fs::create_dir_all(&self.dir) {
                    Ok(()) => {
                        let mut check = self.found();
                        check.detail = format!(
                            "{} (it did not exist: created it, as mount does)",
                            check.detail
                        );
                        check
                    }
                    Err(e) => Check::fail(
                        ID,
                        &target,
                        format!("{name}: does not exist and cannot be created: {e}"),
                        &self.fix_for(&e),
                    ),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Check::fail(
                ID,
                &target,
                format!("{name}: does not exist"),
                "mount the network filesystem and create the directory on it (`install -d -m 2775 DIR`); inputfs never creates a shared cache directory, since a missing one usually means the network mount is missing",
            ),
            Err(e) => Check::fail(ID, &target, format!("{name}: {e}"), &self.fix_for(&e)),
        }
    }

    /// An existing directory: which filesystem it is on, and a warning when a
    /// shared cache is on this machine's own disk (usually: the network
    /// filesystem is not mounted, and the empty mount point is being used).
    fn found(&self) -> Check {
        const ID: &str = "cache.exists";
        let (target, name) = (self.dir.display().to_string(), self.name());
        let Some(fs) = Filesystem::of(&self.dir) else {
            return Check::ok(ID, &target, format!("{name}: a directory"));
        };
        let detail = format!("{name}: a directory on {}", fs.describe());
        if self.tier == Tier::Shared && fs.is_local() {
            return Check::warn(
                ID,
                &target,
                format!("{detail}: a local filesystem, which other machines do not see"),
                "if workers on other machines should share it, mount the network filesystem there first; if only this machine's workers share it, nothing to do",
            );
        }
        Check::ok(ID, &target, detail)
    }

    /// The fix for an I/O error on this directory, by errno.
    fn fix_for(&self, e: &io::Error) -> String {
        let flag = self.flag();
        match e.raw_os_error().unwrap_or(0) {
            libc::EROFS => format!(
                "the filesystem is mounted read-only: remount it read-write, or point {flag} at a writable directory"
            ),
            libc::EACCES | libc::EPERM => format!(
                "let this user write there: create it for the workers' group (`install -d -g GROUP -m 2775 DIR`) or chown it to this user, or point {flag} elsewhere"
            ),
            libc::ENOSPC | libc::EDQUOT => format!(
                "free space (or raise the quota) on that filesystem, or point {flag} at one with room"
            ),
            libc::ENOTCONN | libc::ESTALE | libc::EIO | libc::ETIMEDOUT | libc::EHOSTDOWN => {
                "the network filesystem is not answering: unmount it (`umount -l DIR`) and mount it again".to_string()
            }
            libc::ENOTDIR => format!("point {flag} at a directory"),
            _ => format!("check the directory and the filesystem it is on, or point {flag} elsewhere"),
        }
    }
}

#[cfg(test)]
mod tests;
