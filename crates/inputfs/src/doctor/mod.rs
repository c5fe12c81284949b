//! `inputfs doctor`: can this machine run inputfs, and will it run well?
//!
//! A mount that fails tells the user one thing at a time, and a slow or
//! half-working shared directory does not fail at all: it only makes every job
//! slower. The doctor checks everything a mount depends on in one go — FUSE, the
//! cache directories' semantics, space and speed, and that each URL resolves
//! with the credentials at hand — and prints one line per check, each failing
//! or doubtful one with its fix. Exit code: 0 when nothing failed (warnings
//! allowed), 1 when a check failed (2, from clap, for bad usage).
//!
//! - [`fuse`]: `/dev/fuse` and `fusermount3`.
//! - [`proc`]: `/proc/self/fd`, through which cache files are opened.
//! - [`dir`]: a cache directory's existence and filesystem, writability, file
//!   semantics (`O_EXCL`, rename over a file, hard links), free space and inodes.
//! - [`perf`]: small-file latency and sequential throughput of a directory.
//! - [`url`]: resolving URLs exactly as `inputfs mount` does.
//!
//! Every probe file lives in a `doctor-<pid>-<random>/` directory of its own
//! inside the cache directory (never inside the cache's `inputfs-v1/` tree) and
//! is removed afterwards, also when a check fails. Filesystem checks run on
//! plain threads, one per directory, while the URLs resolve on an async runtime.

mod dir;
mod fuse;
mod perf;
mod proc;
mod url;

use anyhow::Result;
use serde::Serialize;

use crate::cli::DoctorArgs;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but worse than it could (slow, nearly full, no hard links).
    Warn,
    /// inputfs cannot work (well) like this: there is a fix.
    Fail,
    /// Not run, because a check it depends on failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check's result: a stable `id`, what was checked (`target`), what was
/// found, the fix when it is not ok, and any numbers measured.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub target: String,
    pub detail: String,
    pub fix: Option<String>,
    pub measurements: serde_json::Map<String, serde_json::Value>,
}

impl Check {
    pub fn ok(id: &'static str, target: &str, detail: impl Into<String>) -> Check {
        Check {
            id,
            status: Status::Ok,
            target: target.to_string(),
            detail: detail.into(),
            fix: None,
            measurements: Default::default(),
        }
    }

    pub fn warn(id: &'static str, target: &str, detail: impl Into<String>, fix: &str) -> Check {
        Check {
            status: Status::Warn,
            fix: Some(fix.to_string()),
            ..Check::ok(id, target, detail)
        }
    }

    pub fn fail(id: &'static str, target: &str, detail: impl Into<String>, fix: &str) -> Check {
        Check {
            status: Status::Fail,
            fix: Some(fix.to_string()),
            ..Check::ok(id, target, detail)
        }
    }

    pub fn skip(id: &'static str, target: &str, because: &str) -> Check {
        Check {
            status: Status::Skip,
            ..Check::ok(id, target, format!("{target}: not run: {because}"))
        }
    }

    /// Record a measured number (for `--json`).
    pub fn measure(mut self, name: &str, value: impl Into<serde_json::Value>) -> Check {
        self.measurements.insert(name.to_string(), value.into());
        self
    }

    /// The line `inputfs doctor` prints for this check.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<4} {:<24}  {}",
            self.status.label(),
            self.id,
            self.detail
        );
        if let Some(fix) = &self.fix {
            line.push_str(" — fix: ");
            line.push_str(fix);
        }
        line.replace('\n', " ")
    }
}

/// Run every check; print the report; Ok(true) when nothing failed.
pub fn run(args: DoctorArgs) -> Result<bool> {
    let mut dirs = Vec::new();
    if !args.no_local_cache {
        let local = args
            .cache_dir
            .clone()
            .unwrap_or_else(crate::stack::cache_home);
        dirs.push(dir::Target::local(local));
    }
    if let Some(shared) = &args.shared_cache {
        dirs.push(dir::Target::shared(
            shared.clone(),
            args.throughput_size.as_u64(),
        ));
    }
    let checks = std::thread::scope(|scope| {
        let fuse = scope.spawn(fuse::checks);
        let per_dir: Vec<_> = dirs
            .iter()
            .map(|target| scope.spawn(move || target.checks()))
            .collect();
        // Network I/O meanwhile, on this thread's async runtime.
        let urls = url::checks(&args.urls, &args.origin);
        let mut all = join(fuse);
        all.push(proc::check());
        for handle in per_dir {
            all.extend(join(handle));
        }
        all.extend(urls);
        all
    });
    print(&checks, args.json)?;
    Ok(!checks.iter().any(|c| c.status == Status::Fail))
}

/// The checks of a thread; a panicking check (a bug) is reported as a failure.
fn join(handle: std::thread::ScopedJoinHandle<'_, Vec<Check>>) -> Vec<Check> {
    handle.join().unwrap_or_else(|_| {
        vec![Check::fail(
            "doctor",
            "",
            "a check crashed",
            "report this as a bug in inputfs",
        )]
    })
}

fn print(checks: &[Check], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(checks)?);
        return Ok(());
    }
    for check in checks {
        println!("{}", check.line());
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    println!(
        "{} ok, {} warnings, {} failed, {} not run",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_status_id_detail_and_fix() {
        let c = Check::fail(
            "cache.writable",
            "/mnt/x",
            "shared cache /mnt/x: Read-only file system (os error 30)",
            "remount it read-write",
        );
        assert_eq!(
            c.line(),
            "FAIL cache.writable            shared cache /mnt/x: Read-only file system (os error 30) — fix: remount it read-write"
        );
        let ok = Check::ok("fuse.device", "/dev/fuse", "fine\nreally").measure("n", 3);
        assert_eq!(ok.line(), "ok   fuse.device               fine really");
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["measurements"]["n"], 3);
        assert!(json["fix"].is_null());
    }
}
