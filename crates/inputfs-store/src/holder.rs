//! Who holds an exclusive file (a claim, the sweep lease), told apart well
//! enough to take over at once from a holder that died on this very host.
//!
//! A claim names its holder as `<host>@<boot id> <pid>:<start time>`: the
//! host name for people, the kernel's boot id (`/proc/sys/kernel/random/
//! boot_id`, new at every boot and different on VMs cloned from one image,
//! which share a host name) and the process's start time (field 22 of
//! `/proc/<pid>/stat`, so a reused pid is not taken for the holder). A live
//! claim whose boot id is ours and whose process is gone, or is another
//! process by now, is dead: it is taken over at once instead of after its
//! time to live (a remount right after `kill -9` used to wait ~20 s on its
//! own claims). Holders on other hosts are judged by expiry alone. Lines of
//! older versions (no `@`, no `:`) are never judged dead here.
#![allow(clippy::disallowed_methods, reason = "procfs, not a cache directory")]

use std::sync::OnceLock;

use crate::fsutil;

/// This boot's id, reduced to `[0-9a-f-]`.
fn boot_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect()
    })
}

/// The start time of process `pid` (clock ticks since boot), if it runs.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'. Field 22 is the 20th after it.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The holder's host field: `<host name>@<boot id>`.
pub(crate) fn host_field() -> String {
    format!("{}@{}", fsutil::hostname(), boot_id())
}

/// The holder's process field: `<pid>:<start time>`.
pub(crate) fn process_field() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_time(pid).unwrap_or(0))
}

/// Whether the holder named by `host` and `process` ran on this boot of this
/// host and is gone (or its pid is another process's by now).
pub(crate) fn dead_here(host: &str, process: &str) -> bool {
    let id = boot_id();
    let ours = !id.is_empty() && host.rsplit_once('@').is_some_and(|(_, boot)| boot == id);
    let Some((pid, start)) = process.split_once(':') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    ours && pid > 0 && start_time(pid) != Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_or_reused_local_holder_is_dead_and_others_are_not() {
        assert!(!dead_here(&host_field(), &process_field()), "we are alive");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid);
        child.wait().unwrap();
        let gone = format!("{pid}:{}", start.unwrap_or(1));
        assert!(dead_here(&host_field(), &gone), "exited process");
        let reused = format!(
            "{}:{}",
            std::process::id(),
            start_time(std::process::id()).unwrap() + 1
        );
        assert!(
            dead_here(&host_field(), &reused),
            "pid reused by another process"
        );
        // Another boot (a cloned VM with our host name), or an old line.
        let other = format!(
            "{}@00000000-1111-2222-3333-444444444444",
            fsutil::hostname()
        );
        assert!(!dead_here(&other, &gone));
        assert!(!dead_here(fsutil::hostname(), &pid.to_string()));
    }
}
