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
//! Each guard knows where the big object and the small-file prefix appear in its
//! tree, because inputfs names its inputs while the peers show the bucket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use inputfs_tests::bins::stop_child;
use inputfs_tests::mounts::{Mount, is_mounted, unmount};
use inputfs_tests::s3::{ACCESS_KEY, REGION, SECRET_KEY};

/// The bucket and keys every system reads.
pub const BUCKET: &str = "bench";
pub const BIG_KEY: &str = "big.bin";
pub const SMALL_PREFIX: &str = "small/";

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
            Mounted::Peer(p) => p.mountpoint.join(SMALL_PREFIX.trim_end_matches('/')),
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
    let mut all = vec![
        format!("--input=big=s3://{BUCKET}/{BIG_KEY}"),
        format!("--input=small=s3://{BUCKET}/{SMALL_PREFIX}"),
    ];
    all.extend_from_slice(args);
    let mut env = inputfs_tests::s3::aws_env(endpoint, ACCESS_KEY, SECRET_KEY, REGION);
    env.push(("INPUTFS_LOG".into(), "warn".into()));
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

/// Mount the bucket with rclone at `mnt`, caching in `cache`.
pub fn mount_rclone(mnt: &Path, endpoint: &str, cache: &Path, work: &Path) -> Result<Mounted> {
    std::fs::create_dir_all(mnt)?;
    std::fs::create_dir_all(cache)?;
    let config = work.join("rclone.conf");
    if !config.exists() {
        std::fs::write(&config, "")?;
    }
    let mut cmd = Command::new("rclone");
    cmd.arg("mount")
        .arg(format!("bench:{BUCKET}"))
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

/// Mount the bucket with s3fs at `mnt`, caching in `cache`.
pub fn mount_s3fs(mnt: &Path, endpoint: &str, cache: &Path, work: &Path) -> Result<Mounted> {
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
    cmd.arg(BUCKET).arg(mnt).arg("-f").arg("-o").arg(format!(
        "ro,url={endpoint},endpoint={REGION},use_path_request_style,sigv4,use_cache={},passwd_file={}{}",
        cache.display(),
        passwd.display(),
        std::env::var("BENCH_S3FS_OPTS").map(|o| format!(",{o}")).unwrap_or_default()
    ));
    PeerMount::start("s3fs", cmd, mnt, mnt.with_extension("s3fs.log")).map(Mounted::Peer)
}
