//! Cleaning up after workers that died mid-publish or mid-fetch.
//!
//! A worker killed with SIGKILL leaves its temp file in `tmp/` and its claim in
//! `claims/`. Neither can ever be served (temp files are not block paths; claims
//! are not blocks), so they only cost space and a bounded wait; later workers
//! remove them. A temp file is removed at once when it names this host and a
//! process that no longer exists, otherwise once it is older than `stale_after`
//! (another host's worker may still be writing it). Expired claims go as soon as
//! they are expired. Blocks moved aside into `corrupt/` are kept `stale_after`
//! for a post-mortem, then removed.

use std::time::Duration;

use crate::cache_dir::CacheDir;
use crate::error::StoreError;
use crate::fsutil;

/// Leftovers a cache directory holds right now (for `inputfs status`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Strays {
    pub temp_files: usize,
    /// Temp files older than the sweep's limit: leftovers, not publishes.
    pub stale_temp_files: usize,
    pub claims: usize,
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub temp_files: usize,
    pub claims: usize,
    pub corrupt: usize,
}

/// Count temp files (and those older than `stale_after`) and claims.
pub(crate) fn strays(cd: &CacheDir, stale_after: Duration) -> Strays {
    let mut strays = Strays::default();
    let Ok(at) = cd.at() else {
        return strays;
    };
    for (_, stat) in at.entries(Some(&cd.layout.tmp)).unwrap_or_default() {
        strays.temp_files += 1;
        if fsutil::age(&stat) >= stale_after {
            strays.stale_temp_files += 1;
        }
    }
    strays.claims = at.entries(Some(&cd.layout.claims)).map_or(0, |e| e.len());
    strays
}

/// Remove leftovers of dead workers (see the module docs), or with
/// `dry_run` only count what would go, by the same rules. Fails only if
/// the cache directory cannot be opened: anything it cannot remove is
/// left for the next sweep.
pub(crate) fn sweep(
    cd: &CacheDir,
    stale_after: Duration,
    claim_ttl: Duration,
    dry_run: bool,
) -> Result<Swept, StoreError> {
    let at = cd.at()?;
    let temp = |name: &str, age: Duration| dead_local_writer(name) || age >= stale_after;
    let corrupt = |_: &str, age: Duration| age >= stale_after;
    let swept = if dry_run {
        let count = |dir, rule: &dyn Fn(&str, Duration) -> bool| {
            at.entries(Some(dir)).map_or(0, |entries| {
                entries
                    .iter()
                    .filter(|(name, stat)| rule(&name.to_string_lossy(), fsutil::age(stat)))
                    .count()
            })
        };
        Swept {
            temp_files: count(&cd.layout.tmp, &temp),
            claims: crate::claim::sweep(cd, &at, claim_ttl, true),
            corrupt: count(&cd.layout.corrupt, &corrupt),
        }
    } else {
        Swept {
            temp_files: fsutil::remove_entries_where(&at, &cd.layout.tmp, temp),
            claims: crate::claim::sweep(cd, &at, claim_ttl, false),
            corrupt: fsutil::remove_entries_where(&at, &cd.layout.corrupt, corrupt),
        }
    };
    if swept != Swept::default() && !dry_run {
        tracing::info!(
            tier = cd.name(),
            ?swept,
            "removed leftovers of dead workers"
        );
    }
    Ok(swept)
}

/// Whether a temp file name (`<host>.<pid>.<random>.tmp`) was written by a
/// process of this host that has exited.
fn dead_local_writer(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".tmp") else {
        return false;
    };
    // The host name may itself contain dots: split from the right.
    let mut parts = stem.rsplitn(3, '.');
    let (Some(_random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    host == fsutil::hostname() && pid > 0 && !process_exists(pid)
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; no signal is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_of_dead_local_processes_are_recognised() {
        let host = fsutil::hostname();
        let me = std::process::id();
        assert!(!dead_local_writer(&format!("{host}.{me}.00ff.tmp")));
        // PID 2^22+ is above Linux's pid_max default: nobody has it.
        assert!(dead_local_writer(&format!("{host}.4194999.00ff.tmp")));
        assert!(!dead_local_writer("other.host.example.4194999.00ff.tmp"));
        assert!(!dead_local_writer("garbage"));
        assert!(!dead_local_writer(&format!("{host}.notapid.00ff.tmp")));
    }
}
