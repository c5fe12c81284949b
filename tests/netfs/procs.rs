//! The processes behind a [`super::SharedDir`]: spawning them tied to the test
//! process, and stopping, waiting for and reaping them (and what they forked) by
//! PID only.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// A server we started (sshd, smbd). Dropping it stops it by PID, waits for it,
/// then for the processes it had forked (SIGKILL by PID after 10 s).
pub(super) struct Daemon {
    pub(super) child: Child,
    pub(super) log: PathBuf,
    /// Wait for its children to exit before stopping it (sshd: the sessions of
    /// clients already gone), so that it reaps them.
    pub(super) drain_children_first: bool,
}

impl Daemon {
    pub(super) fn log(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        if self.drain_children_first {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !descendants(pid).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let forked = descendants(pid);
        terminate(&mut self.child, Duration::from_secs(10));
        reap(forked);
    }
}

/// Wait up to 10 s for processes a server or client had forked to exit (SIGKILL
/// after that), and reap those orphaned to us: the test process is a child
/// subreaper (see [`spawn_tied`]), so none is left a zombie for init to collect.
pub(super) fn reap(procs: Vec<Proc>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while procs.iter().any(|p| p.alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in procs.iter().filter(|p| p.alive()) {
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
    }
    let me = std::process::id() as i32;
    for p in procs {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(s) = p.stat().filter(|s| s.ppid == me) {
            if s.state == 'Z' || Instant::now() > deadline {
                let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Spawn `command` with `PR_SET_PDEATHSIG = SIGTERM`. The signal fires when the
/// *thread* that forked the child exits, and every test runs on its own thread,
/// so all children are forked by one helper thread that lives as long as the
/// process. The process also becomes a child subreaper, so that what sshd, smbd
/// or smbnetfs fork and leave behind when they exit is reaped by [`reap`].
pub(super) fn spawn_tied(mut command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    // SAFETY: prctl is async-signal-safe and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("netfs-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    let request = (command, reply);
    let sender = spawner.lock().unwrap_or_else(|e| e.into_inner()).clone();
    sender.send(request).expect("spawner thread is alive");
    answer.recv().expect("spawner thread answers")
}

/// Wait up to `timeout` for `child` to exit (reaping it).
pub(super) fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return false,
        }
    }
}

/// SIGTERM `child`, give it `grace` to exit, then SIGKILL; always reaps it.
pub(super) fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(None) = child.try_wait() {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        if !wait_exit(child, grace) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process we did not spawn ourselves, by PID and start time (a PID alone may
/// be reused as soon as the process is reaped, and pid_max may be 32768).
#[derive(Clone, Copy)]
pub(super) struct Proc {
    pid: i32,
    start: u64,
}

struct ProcStat {
    ppid: i32,
    state: char,
    start: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm)": state ppid ... with starttime the 20th field.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

impl Proc {
    /// Its state, if this very process still exists (zombie or not).
    fn stat(&self) -> Option<ProcStat> {
        proc_stat(self.pid).filter(|s| s.start == self.start)
    }

    fn alive(&self) -> bool {
        self.stat().is_some_and(|s| s.state != 'Z')
    }
}

/// Every live process, with its parent's PID.
fn processes() -> Vec<(Proc, i32)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(|pid| {
            let s = proc_stat(pid).filter(|s| s.state != 'Z')?;
            Some((
                Proc {
                    pid,
                    start: s.start,
                },
                s.ppid,
            ))
        })
        .collect()
}

/// Every live process descended from `pid`.
pub(super) fn descendants(pid: i32) -> Vec<Proc> {
    let procs = processes();
    let mut parents = vec![pid];
    let mut found = Vec::new();
    while let Some(parent) = parents.pop() {
        for (p, _) in procs.iter().filter(|(_, ppid)| *ppid == parent) {
            parents.push(p.pid);
            found.push(*p);
        }
    }
    found
}

/// Our own live children, other than `except`, whose command line mentions `marker`.
pub(super) fn children_mentioning(marker: &str, except: u32) -> Vec<Proc> {
    let me = std::process::id() as i32;
    processes()
        .into_iter()
        .filter(|(p, ppid)| *ppid == me && p.pid != except as i32)
        .filter(|(p, _)| {
            std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .map(|(p, _)| p)
        .collect()
}

/// A log file opened for appending (several handles may share it).
pub(super) fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open a log file")
}

pub(super) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
