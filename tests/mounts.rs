//! Running the real `inputfs` binary against a real FUSE mount, with cleanup that
//! holds even when a test panics: the guard unmounts and reaps the process it
//! started (by PID, nothing else) in `Drop`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `inputfs` binary built by `cargo build` for this profile.
pub fn inputfs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("INPUTFS_BIN") {
        return PathBuf::from(p);
    }
    // A test binary lives in target/<profile>/deps/, a bench binary in
    // target/<profile>/: the inputfs binary is in target/<profile>/.
    let exe = std::env::current_exe().expect("own executable path");
    let dir = exe.parent().expect("executable directory");
    [dir.join("inputfs"), dir.join("../inputfs")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no inputfs binary beside {}: run `cargo build --workspace --bins` first (scripts/test does)",
                exe.display()
            )
        })
}

/// A command for the `inputfs` binary that sees no cloud settings of the machine
/// it runs on (`AWS_*`, `AZURE_*`, `GOOGLE_*`), only the test's own `env`: tests
/// stay hermetic and never reach a real cloud.
pub fn inputfs_command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(inputfs_bin());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if ["AWS_", "AZURE_", "GOOGLE_", "INPUTFS_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Whether `path` is a mount point right now (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == want)
}

/// Unmount `path` if mounted, lazily if it is busy.
pub fn unmount(path: &Path) {
    if !is_mounted(path) {
        return;
    }
    let ok = Command::new("fusermount3")
        .arg("-u")
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(path)
            .status();
    }
}

/// A foreground `inputfs mount` process and its mount point.
pub struct Mount {
    pub mountpoint: PathBuf,
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Mount {
    /// Run `inputfs mount MOUNTPOINT --foreground ARGS...` and wait until the tree
    /// is mounted. Err carries the process's stderr if it exited instead.
    pub fn start(
        mountpoint: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<Mount, String> {
        Self::start_as(mountpoint, args, env, None)
    }

    /// Like [`start`](Self::start), running inputfs as `user` (uid, gid).
    pub fn start_as(
        mountpoint: &Path,
        args: &[String],
        env: &[(String, String)],
        user: Option<(u32, u32)>,
    ) -> Result<Mount, String> {
        std::fs::create_dir_all(mountpoint).map_err(|e| e.to_string())?;
        let mountpoint = mountpoint.canonicalize().map_err(|e| e.to_string())?;
        let stderr_path = mountpoint.with_extension("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut cmd = inputfs_command(env);
        if !env.iter().any(|(k, _)| k == "INPUTFS_LOG") {
            cmd.env("INPUTFS_LOG", "warn,inputfs_core=debug");
        }
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .arg("mount")
            .arg(&mountpoint)
            .arg("--foreground")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start inputfs: {e}"))?;
        let mut mount = Mount {
            mountpoint,
            child: Some(child),
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(&mount.mountpoint) {
            if let Some(status) = mount
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                mount.child = None;
                return Err(format!("inputfs exited ({status}): {}", mount.stderr()));
            }
            if Instant::now() > deadline {
                return Err(format!("not mounted after 60 s: {}", mount.stderr()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(mount)
    }

    /// What the process wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The PID of the running inputfs process (None once it has exited or been
    /// killed), e.g. to read its peak memory from /proc.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Path of a file inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// Unmount and wait for the process to exit cleanly (it drains cache publishes
    /// first). Returns its stderr.
    pub fn stop(mut self) -> String {
        self.shutdown();
        self.stderr()
    }

    /// SIGKILL the inputfs process (as a crashing VM would), then clear its dead
    /// mount. Returns its PID.
    pub fn kill(&mut self) -> u32 {
        let mut child = self.child.take().expect("process still running");
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        unmount(&self.mountpoint);
        pid
    }

    /// SIGKILL the inputfs process and leave its dead mount in place (for
    /// tests of what the next mount says about it; the caller clears it).
    pub fn kill_leaving_mount(&mut self) {
        let mut child = self.child.take().expect("process still running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Wait (at most `limit`) for the process to exit by itself, without
    /// unmounting anything. Its exit status, or None if it did not exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
    }

    fn shutdown(&mut self) {
        unmount(&self.mountpoint);
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Run `inputfs ARGS...` to completion (for commands expected to fail fast).
pub fn run_inputfs(args: &[String], env: &[(String, String)]) -> Output {
    inputfs_command(env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run inputfs")
}
