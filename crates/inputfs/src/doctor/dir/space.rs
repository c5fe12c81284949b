//! Free space and inodes of a cache directory's filesystem (`statvfs`).

use std::io;

use bytesize::ByteSize;

use super::{Target, Tier};
use crate::doctor::Check;

/// Less free space than this is a failure: not even one readahead window of
/// blocks (the default `--max-readahead`) fits.
const FAIL_FREE_BYTES: u64 = 64 << 20;
/// Less free space than this, or than [`WARN_FREE_PERCENT`] of the filesystem, is
/// a warning: the cache will evict constantly (and other users of the disk
/// will hit ENOSPC).
const WARN_FREE_BYTES: u64 = 1 << 30;
const WARN_FREE_PERCENT: f64 = 10.0;
/// Every block is a file: fewer free inodes than this fails, fewer than
/// [`WARN_FREE_INODES`] (or [`WARN_FREE_PERCENT`]) warns. 100 000 blocks of the
/// default 4 MiB are 400 GB.
const FAIL_FREE_INODES: u64 = 1024;
const WARN_FREE_INODES: u64 = 100_000;

impl Target {
    pub(super) fn free_space(&self) -> Check {
        const ID: &str = "cache.free_space";
        let target = self.dir.display().to_string();
        let st = match nix::sys::statvfs::statvfs(&self.dir) {
            Ok(st) => st,
            Err(e) => return self.statvfs_failed(ID, e),
        };
        let unit = st.fragment_size();
        let total = st.blocks().saturating_mul(unit);
        let free = st.blocks_available().saturating_mul(unit);
        if total == 0 {
            return Check::ok(
                ID,
                &target,
                format!(
                    "{}: the filesystem reports no size (as some network filesystems do): not checked",
                    self.name()
                ),
            );
        }
        let percent = free as f64 * 100.0 / total as f64;
        let detail = format!(
            "{}: {} free of {} ({percent:.1}%)",
            self.name(),
            ByteSize(free),
            ByteSize(total)
        );
        let cap = match self.tier {
            Tier::Local => "--cache-max-size or --cache-min-free",
            Tier::Shared => "--shared-cache-max-size or --shared-cache-min-free",
        };
        let check = if free < FAIL_FREE_BYTES {
            Check::fail(
                ID,
                &target,
                format!("{detail}: too little to cache anything"),
                &format!(
                    "free space on that filesystem, or point {} at one with room",
                    self.flag()
                ),
            )
        } else if free < WARN_FREE_BYTES || percent < WARN_FREE_PERCENT {
            Check::warn(
                ID,
                &target,
                format!(
                    "{detail}: under {} or {WARN_FREE_PERCENT}%",
                    ByteSize(WARN_FREE_BYTES)
                ),
                &format!(
                    "free space there, or keep the cache below what is free with {cap} (`inputfs gc` evicts now)"
                ),
            )
        } else {
            Check::ok(ID, &target, detail)
        };
        check
            .measure("free_bytes", free)
            .measure("total_bytes", total)
            .measure("free_percent", percent)
    }

    pub(super) fn free_inodes(&self) -> Check {
        const ID: &str = "cache.free_inodes";
        let target = self.dir.display().to_string();
        let st = match nix::sys::statvfs::statvfs(&self.dir) {
            Ok(st) => st,
            Err(e) => return self.statvfs_failed(ID, e),
        };
        let (total, free) = (st.files(), st.files_available());
        if total == 0 {
            return Check::ok(
                ID,
                &target,
                format!(
                    "{}: the filesystem reports no inode counts (as some do): not checked",
                    self.name()
                ),
            );
        }
        let percent = free as f64 * 100.0 / total as f64;
        let detail = format!(
            "{}: {free} inodes free of {total} ({percent:.1}%)",
            self.name()
        );
        let fix = "remove files there or evict with `inputfs gc`, or use a filesystem with more inodes (a larger --block-size also makes fewer files)";
        let check = if free < FAIL_FREE_INODES {
            Check::fail(ID, &target, format!("{detail}: nearly none left"), fix)
        } else if free < WARN_FREE_INODES || percent < WARN_FREE_PERCENT {
            Check::warn(
                ID,
                &target,
                format!("{detail}: under {WARN_FREE_INODES} or {WARN_FREE_PERCENT}%"),
                fix,
            )
        } else {
            Check::ok(ID, &target, detail)
        };
        check
            .measure("free_inodes", free)
            .measure("total_inodes", total)
            .measure("free_percent", percent)
    }

    fn statvfs_failed(&self, id: &'static str, e: nix::errno::Errno) -> Check {
        let e = io::Error::from(e);
        Check::fail(
            id,
            &self.dir.display().to_string(),
            format!("{}: statvfs: {e}", self.name()),
            &self.fix_for(&e),
        )
    }
}
