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

use std::fs;
use std::time::Duration;

use crate::dir::DirStore;
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

impl DirStore {
    /// Count temp files (and those older than `stale_after`) and claims.
    pub fn strays(&self, stale_after: Duration) -> Strays {
        let mut strays = Strays::default();
        for e in fs::read_dir(self.tmp_dir()).into_iter().flatten().flatten() {
            strays.temp_files += 1;
            if fsutil::age(&e) >= stale_after {
                strays.stale_temp_files += 1;
            }
        }
        strays.claims = fs::read_dir(self.claims_dir())
            .into_iter()
            .flatten()
            .count();
        strays
    }

    /// Remove leftovers of dead workers (see the module docs). Never fails:
    /// anything it cannot remove is left for the next sweep.
    pub fn sweep(&self, stale_after: Duration, claim_ttl: Duration) -> Swept {
        let swept = Swept {
            temp_files: fsutil::remove_files_where(self.tmp_dir(), |name, age| {
                dead_local_writer(name) || age >= stale_after
            }),
            claims: self.sweep_claims(claim_ttl),
            corrupt: fsutil::remove_files_where(self.corrupt_dir(), |_, age| age >= stale_after),
        };
        if swept != Swept::default() {
            tracing::info!(
                tier = self.name_str(),
                ?swept,
                "removed leftovers of dead workers"
            );
        }
        swept
    }
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
