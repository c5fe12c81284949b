//! Daemonizing without `fork` in a threaded process.
//!
//! `inputfs mount` must return only once the tree is mounted and serving, or fail
//! with the real reason. The parent re-executes itself in a new session with a pipe
//! on fd 3; the child does all the work (resolve, open caches, mount) and writes
//! one line to the pipe — `ok`, or `error: <reason>` — before serving. The parent
//! relays that line and exits. If the child dies first, the parent says so and
//! points at the log.
#![allow(
    clippy::disallowed_methods,
    reason = "the daemon log and the readiness pipe, not a cache directory"
)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Set in the child's environment to the fd number of the readiness pipe.
const READY_FD_ENV: &str = "INPUTFS_INTERNAL_READY_FD";
const READY_FD: i32 = 3;

/// Whether this process is the daemon child of a `mount` without `--foreground`.
pub fn is_child() -> bool {
    std::env::var_os(READY_FD_ENV).is_some()
}

/// Start the daemon child and wait until it reports ready or fails.
pub fn spawn_and_wait(log_file: &Path) -> Result<()> {
    if let Some(dir) = log_file.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create log directory {}", dir.display()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("cannot open log file {}", log_file.display()))?;
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    let write_fd = writer.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe().context("cannot find own executable")?);
    cmd.args(std::env::args_os().skip(1))
        .env(READY_FD_ENV, READY_FD.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls (setsid, dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if write_fd == READY_FD {
                // dup2 onto itself would keep close-on-exec: clear it instead.
                if libc::fcntl(READY_FD, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(write_fd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the mount process")?;
    drop(writer);
    drop(cmd);
    let mut line = String::new();
    BufReader::new(reader)
        .read_line(&mut line)
        .context("lost contact with the mount process")?;
    if line.trim_end() == "ok" {
        return Ok(());
    }
    if let Some(reason) = line.strip_prefix("error: ") {
        let _ = child.wait();
        bail!("{}", reason.trim_end());
    }
    let status = child.wait().context("cannot wait for the mount process")?;
    bail!(
        "the mount process exited ({status}) before the mount was ready; see {}",
        log_file.display()
    )
}

/// The child's end of the readiness pipe.
pub struct Ready(File);

impl Ready {
    /// Take the pipe if this is the daemon child.
    pub fn take() -> Option<Ready> {
        let fd: i32 = std::env::var(READY_FD_ENV).ok()?.parse().ok()?;
        // SAFETY: the parent put the pipe's write end on this fd for us alone, and
        // this is called once, so the File is its only owner.
        Some(Ready(unsafe { File::from_raw_fd(fd) }))
    }

    /// Tell the parent the mount is serving.
    pub fn ok(mut self) {
        let _ = self.0.write_all(b"ok\n");
    }

    /// Tell the parent why the mount failed (one line).
    pub fn fail(mut self, reason: &str) {
        let line = reason.replace('\n', " ");
        let _ = writeln!(self.0, "error: {line}");
    }
}
