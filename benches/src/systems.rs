//! The FUSE systems under test, each mounted read-only over the same bucket
//! through the same shaping proxy, behind one guard that unmounts and reaps the
//! process it started (by PID) on drop:
//!
//! - `inputfs`: the release binary through the test harness's [`Mount`] (it
//!   finds `target/release/inputfs` beside this bench binary), logging at `warn`
//!   so that logging costs nothing measurable.
//! - `rclone mount --vfs-cache-mode full --read-only`, configured with
//!   `RCLONE_CONFIG_BENCH_*` variables only (an empty config file), defaults
//!   otherwise.
//! - `s3fs -f -o ro,use_cache=DIR,use_path_request_style,sigv4`, defaults
//!   otherwise.
//!
//! Each guard knows where the big object and the small files appear in its
//! tree, because inputfs names its inputs while the peers show a bucket.
//! Daemon logs are beside each mount point in the work directory (kept with
//! `--keep-work`); `BENCH_S3FS_OPTS` appends `-o` options to s3fs (e.g.
//! `dbglevel=info,logfile=/tmp/s3fs.log`), since s3fs logs to syslog otherwise.
//!
//! The small files live at the root of a bucket of their own rather than under
//! a prefix of the big object's bucket: s3s-fs answers `HEAD` of a "directory"
//! key (`small`, `small/`) with HTTP 500 where S3 says 404, and s3fs retries
//! 500s with back-off for minutes before listing; on S3 those probes cost s3fs
//! a few round trips once per mount. A bucket root has no such probe.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use inputfs_tests::bins::stop_child;
use inputfs_tests::mounts::{Mount, is_mounted, unmount};
use inputfs_tests::s3::{ACCESS_KEY, REGION, SECRET_KEY};

/// The bucket and keys every system reads.
pub const BUCKET: &str = "bench";
pub const BIG_KEY: &str = "big.bin";
/// The bucket of the small files (at its root).
pub const SMALL_BUCKET: &str = "bench-small";

/// A mounted system.
pub enum Mounted {
    Inputfs(Mount),
    Peer(PeerMount),
}

impl Mounted {
    /// The big object inside the mount.
    pub fn big(&self) -> PathBuf {
        match self {
            Mounted::Inputfs(m) => m.path(&format!("big/{BIG_KEY}")),
            Mounted::Peer(p) => p.mountpoint.join(BIG_KEY),
        }
    }

    /// The directory holding the small files.
    pub fn small_dir(&self) -> PathBuf {
        match self {
            Mounted::Inputfs(m) => m.path("small"),
            Mounted::Peer(p) => p.mountpoint.clone(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Mounted::Inputfs(m) => m.pid(),
            Mounted::Peer(p) => Some(p.child.id()),
        }
    }

    /// The daemon's peak resident memory so far.
    pub fn peak_rss(&self) -> Option<u64> {
        self.pid().and_then(crate::measure::peak_rss)
    }

    /// Unmount and wait for the daemon to exit (inputfs drains its cache
    /// publishes first, so the caches are complete afterwards).
    pub fn stop(self) {
        match self {
            Mounted::Inputfs(m) => {
                m.stop();
            }
            Mounted::Peer(p) => drop(p),
        }
    }
}

/// Mount inputfs at `mnt` reading the big object and the small-file prefix
/// through `endpoint`, with `args` (cache flags, then the user's extra flags).
pub fn mount_inputfs(mnt: &Path, endpoint: &str, args: &[String]) -> Result<Mounted> {
    let inputs = [
        format!("--input=big=s3://{BUCKET}/{BIG_KEY}"),
        format!("--input=small=s3://{SMALL_BUCKET}/"),
    ];
    let env = inputfs_tests::s3::aws_env(endpoint, ACCESS_KEY, SECRET_KEY, REGION);
    mount_inputfs_with(mnt, &inputs, env, args)
}

/// Mount inputfs at `mnt` with these `--input` flags and environment, then `args`.
pub fn mount_inputfs_with(
    mnt: &Path,
    inputs: &[String],
    mut env: Vec<(String, String)>,
    args: &[String],
) -> Result<Mounted> {
    let mut all = inputs.to_vec();
    all.extend_from_slice(args);
    // The daemons log warnings only; `BENCH_INPUTFS_LOG` sets another filter
    // (e.g. `warn,inputfs_core::engine::reader=trace` shows every read's
    // readahead plan in `<mountpoint>.stderr.log` under `--keep-work`).
    env.push((
        "INPUTFS_LOG".into(),
        std::env::var("BENCH_INPUTFS_LOG").unwrap_or("warn".into()),
    ));
    not_interrupted()?;
    Mount::start(mnt, &all, &env)
        .map(Mounted::Inputfs)
        .map_err(|e| anyhow::anyhow!("inputfs mount at {}: {e}", mnt.display()))
}

/// A peer's FUSE process (rclone or s3fs) and its mount point.
pub struct PeerMount {
    pub mountpoint: PathBuf,
    child: Child,
    log: PathBuf,
}

impl PeerMount {
    fn start(name: &str, mut cmd: Command, mountpoint: &Path, log: PathBuf) -> Result<PeerMount> {
        not_interrupted()?;
        // Hermetic like the inputfs mounts: no cloud or rclone settings of the
        // machine (e.g. an AWS_CA_BUNDLE, which rclone 1.60 cannot apply).
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if ["AWS_", "AZURE_", "GOOGLE_", "RCLONE_"]
                .iter()
                .any(|p| k.starts_with(p))
                && !k.starts_with("RCLONE_CONFIG_BENCH_")
            {
                cmd.env_remove(&key);
            }
        }
        let stderr = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let mut mount = PeerMount {
            mountpoint: mountpoint.to_path_buf(),
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&mount.mountpoint) {
            if let Ok(Some(status)) = mount.child.try_wait() {
                bail!("{name} exited ({status}): {}", mount.log_text());
            }
            if Instant::now() > deadline {
                bail!("{name} not mounted after 30 s: {}", mount.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(mount)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PeerMount {
    fn drop(&mut self) {
        unmount(&self.mountpoint);
        // Give the daemon a moment to exit on its own after the unmount, then
        // SIGTERM/SIGKILL the PID we started.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop_child(&mut self.child);
    }
}

/// Mount `bucket` with rclone at `mnt`, caching in `cache`.
pub fn mount_rclone(
    mnt: &Path,
    endpoint: &str,
    bucket: &str,
    cache: &Path,
    work: &Path,
) -> Result<Mounted> {
    std::fs::create_dir_all(mnt)?;
    std::fs::create_dir_all(cache)?;
    let config = work.join("rclone.conf");
    if !config.exists() {
        std::fs::write(&config, "")?;
    }
    let mut cmd = Command::new("rclone");
    cmd.arg("mount")
        .arg(format!("bench:{bucket}"))
        .arg(mnt)
        .args(["--vfs-cache-mode", "full", "--read-only"])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--config")
        .arg(&config);
    for (k, v) in [
        ("TYPE", "s3"),
        ("PROVIDER", "Other"),
        ("ENDPOINT", endpoint),
        ("ACCESS_KEY_ID", ACCESS_KEY),
        ("SECRET_ACCESS_KEY", SECRET_KEY),
        ("REGION", REGION),
        ("FORCE_PATH_STYLE", "true"),
        ("ENV_AUTH", "false"),
    ] {
        cmd.env(format!("RCLONE_CONFIG_BENCH_{k}"), v);
    }
    PeerMount::start("rclone", cmd, mnt, mnt.with_extension("rclone.log")).map(Mounted::Peer)
}

/// Mount `bucket` with s3fs at `mnt`, caching in `cache`.
pub fn mount_s3fs(
    mnt: &Path,
    endpoint: &str,
    bucket: &str,
    cache: &Path,
    work: &Path,
) -> Result<Mounted> {
    std::fs::create_dir_all(mnt)?;
    std::fs::create_dir_all(cache)?;
    let passwd = work.join("s3fs.passwd");
    if !passwd.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&passwd)?;
        writeln!(f, "{ACCESS_KEY}:{SECRET_KEY}")?;
    }
    let mut cmd = Command::new("s3fs");
    cmd.arg(bucket).arg(mnt).arg("-f").arg("-o").arg(format!(
        "ro,url={endpoint},endpoint={REGION},use_path_request_style,sigv4,use_cache={},passwd_file={}{}",
        cache.display(),
        passwd.display(),
        std::env::var("BENCH_S3FS_OPTS").map(|o| format!(",{o}")).unwrap_or_default()
    ));
    PeerMount::start("s3fs", cmd, mnt, mnt.with_extension("s3fs.log")).map(Mounted::Peer)
}

/// Set once a signal asked the run to stop: no new mount is started after it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a signal asked the run to stop (its cleanup then ends the process).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn not_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Lazily unmount every mount point under `work`, and SIGTERM each child of
/// this process whose command line names `work` (the daemons this run started,
/// nothing else).
fn stop_daemons_under(work: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mp in info.lines().filter_map(|l| l.split(' ').nth(4)) {
        if Path::new(mp).starts_with(work) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z", mp])
                .stderr(Stdio::null())
                .status();
        }
    }
    let me = std::process::id().to_string();
    let work = work.to_string_lossy();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let parent = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .map(str::trim);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if parent == Some(me.as_str()) && String::from_utf8_lossy(&cmdline).contains(work.as_ref())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// On SIGINT or SIGTERM (Ctrl-C during a long run), unmount every mount under
/// `work` (lazily: a reader may be inside it), which makes each daemon this run
/// started exit, remove `work` unless `keep`, and exit 130. Without this, an
/// interrupted run would leave mounts and daemons behind: destructors do not
/// run when a signal kills the process.
pub fn cleanup_on_signal(work: PathBuf, keep: bool) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered here, before returning, so no signal slips between.
    let (mut int, mut term) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
            });
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("bench: interrupted: unmounting and cleaning up");
            // Passes for a few seconds: a mount being started right now by the
            // main thread is caught by a later pass.
            for _ in 0..30 {
                stop_daemons_under(&work);
                std::thread::sleep(Duration::from_millis(100));
            }
            if !keep {
                let _ = std::fs::remove_dir_all(&work);
            }
            std::process::exit(130);
        })?;
    Ok(())
}
