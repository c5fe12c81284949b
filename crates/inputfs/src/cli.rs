//! Flags, as users type them. Every flag also reads an `INPUTFS_*` variable so the
//! same configuration can come from a job's environment.

use std::path::PathBuf;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "inputfs",
    version,
    about = "Mount object-storage inputs as a read-only, cached tree"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount inputs at MOUNTPOINT; returns once the tree is serving.
    Mount(MountArgs),
    /// Fill the caches with every input ahead of a job, with progress, and say
    /// how much came from the origin.
    Warm(WarmArgs),
    /// Show what cache directories hold and how they are used.
    Status {
        #[command(flatten)]
        dirs: TierDirs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sweep cache directories now: evict least recently read objects down to the
    /// limit, and remove what dead workers left behind.
    Gc {
        #[command(flatten)]
        dirs: TierDirs,
        /// Evict down to this size (default: the limits the mounts configured).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<ByteSize>,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check that this machine can run inputfs: FUSE, the cache directories
    /// (semantics, space, speed) and that each URL resolves with the
    /// credentials at hand. Every failing check says how to fix it.
    Doctor(DoctorArgs),
}

/// `inputfs doctor`: what to check.
#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// URLs to resolve exactly as a mount would (HEAD, or LIST for a prefix or glob).
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,
    /// Local cache directory to check [default: as mount uses].
    #[arg(
        long,
        value_name = "DIR",
        env = "INPUTFS_CACHE_DIR",
        conflicts_with = "no_local_cache"
    )]
    pub cache_dir: Option<PathBuf>,
    /// Do not check a local cache directory.
    #[arg(long, env = "INPUTFS_NO_LOCAL_CACHE")]
    pub no_local_cache: bool,
    /// Shared cache directory to check, including its latency and throughput.
    #[arg(long, value_name = "DIR", env = "INPUTFS_SHARED_CACHE")]
    pub shared_cache: Option<PathBuf>,
    /// Bytes written then read back to measure the shared directory's throughput.
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub throughput_size: ByteSize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub origin: OriginArgs,
}

/// The cache directories a maintenance command works on.
#[derive(Args, Debug, Clone)]
pub struct TierDirs {
    /// A local cache directory.
    #[arg(long, value_name = "DIR", env = "INPUTFS_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A shared cache directory.
    #[arg(long, value_name = "DIR", env = "INPUTFS_SHARED_CACHE")]
    pub shared_cache: Option<PathBuf>,
}

impl TierDirs {
    /// (tier name, directory) for each directory given; at least one is needed.
    pub fn list(&self) -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
        let dirs: Vec<_> = [("local", &self.cache_dir), ("shared", &self.shared_cache)]
            .into_iter()
            .filter_map(|(tier, dir)| dir.clone().map(|d| (tier, d)))
            .collect();
        if dirs.is_empty() {
            anyhow::bail!("give --cache-dir DIR and/or --shared-cache DIR");
        }
        Ok(dirs)
    }
}

/// A percentage from 0 to 100, with or without a `%`.
fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s:?} is not between 0 and 100"))
    }
}

/// A duration that is not zero (a zero timeout would fail every request).
fn timeout(s: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{s:?}: a timeout must be longer than 0"));
    }
    Ok(d)
}

/// How long origin requests may take (README, "Timeouts").
#[derive(Args, Debug, Clone, Default)]
pub struct OriginArgs {
    /// Longest wait for a connection to the origin [default: 5s, or the cloud's
    /// AWS_/GOOGLE_/AZURE_CONNECT_TIMEOUT].
    #[arg(long, value_name = "DURATION", env = "INPUTFS_CONNECT_TIMEOUT", value_parser = timeout)]
    pub connect_timeout: Option<humantime::Duration>,
    /// Longest wait for a response to start, from sending the request
    /// (connecting included) [default: 10s].
    #[arg(long, value_name = "DURATION", env = "INPUTFS_FIRST_BYTE_TIMEOUT", value_parser = timeout)]
    pub first_byte_timeout: Option<humantime::Duration>,
    /// Longest pause in the middle of a response [default: 10s].
    #[arg(long, value_name = "DURATION", env = "INPUTFS_STALL_TIMEOUT", value_parser = timeout)]
    pub stall_timeout: Option<humantime::Duration>,
    /// Longest whole request, connect to last byte [default: 60s, or the
    /// cloud's AWS_/GOOGLE_/AZURE_TIMEOUT].
    #[arg(long, value_name = "DURATION", env = "INPUTFS_REQUEST_TIMEOUT", value_parser = timeout)]
    pub request_timeout: Option<humantime::Duration>,
}

/// What to read: the inputs.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// An input as NAME=URL (repeatable). URL ending in '/' is a prefix; '*' or '?'
    /// in the last segment is a glob.
    #[arg(
        long = "input",
        value_name = "NAME=URL",
        env = "INPUTFS_INPUT",
        value_delimiter = ','
    )]
    pub input: Vec<String>,
    /// A JSON manifest of inputs (schema in the README).
    #[arg(long = "inputs", value_name = "FILE", env = "INPUTFS_INPUTS")]
    pub inputs_file: Option<PathBuf>,
}

/// Where to cache, and how.
#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// Local block cache directory [default: $XDG_CACHE_HOME/inputfs or ~/.cache/inputfs].
    #[arg(
        long,
        value_name = "DIR",
        env = "INPUTFS_CACHE_DIR",
        conflicts_with = "no_local_cache"
    )]
    pub cache_dir: Option<PathBuf>,
    /// Do not use a local cache tier.
    #[arg(long, env = "INPUTFS_NO_LOCAL_CACHE")]
    pub no_local_cache: bool,
    /// Shared block cache directory on a network filesystem all workers mount.
    #[arg(long, value_name = "DIR", env = "INPUTFS_SHARED_CACHE")]
    pub shared_cache: Option<PathBuf>,
    /// Fail the mount if the --shared-cache directory is unusable (missing, not
    /// writable...) instead of warning and reading without it until it works.
    #[arg(long, env = "INPUTFS_REQUIRE_SHARED_CACHE")]
    pub require_shared_cache: bool,
    /// Block size: the unit of caching and of origin requests (part of the cache
    /// identity: workers sharing a cache should agree on it).
    #[arg(
        long,
        value_name = "SIZE",
        env = "INPUTFS_BLOCK_SIZE",
        default_value = "4MiB"
    )]
    pub block_size: ByteSize,
    /// Memory for block data in all (in flight plus recently read).
    #[arg(
        long,
        value_name = "SIZE",
        env = "INPUTFS_MEMORY_BUDGET",
        default_value = "256MiB"
    )]
    pub memory_budget: ByteSize,
    /// Largest readahead window of one stream of sequential reads (how many
    /// bytes of blocks ahead of the reader are fetched in parallel); a stream
    /// earns its window as it reads (half of what it has read; all of it
    /// for a stream from the start of the file), and at
    /// most a quarter of --memory-budget is used.
    #[arg(
        long,
        value_name = "SIZE",
        env = "INPUTFS_MAX_READAHEAD",
        default_value = "64MiB"
    )]
    pub max_readahead: ByteSize,
    /// How long a worker's claim on a block of the shared cache lasts, and so the
    /// longest others wait for its fetch before fetching themselves; 0 turns
    /// cross-worker de-duplication off.
    #[arg(
        long,
        value_name = "DURATION",
        env = "INPUTFS_CLAIM_TIMEOUT",
        default_value = "20s"
    )]
    pub claim_timeout: humantime::Duration,
    /// Most bytes the local cache may hold; least recently read objects are
    /// evicted past it.
    #[arg(long, value_name = "SIZE", env = "INPUTFS_CACHE_MAX_SIZE")]
    pub cache_max_size: Option<ByteSize>,
    /// Percent of the local cache's filesystem to keep free.
    #[arg(long, value_name = "PERCENT", env = "INPUTFS_CACHE_MIN_FREE", value_parser = percent)]
    pub cache_min_free: Option<f64>,
    /// Most bytes the shared cache may hold (enforced by whichever worker sweeps).
    #[arg(long, value_name = "SIZE", env = "INPUTFS_SHARED_CACHE_MAX_SIZE")]
    pub shared_cache_max_size: Option<ByteSize>,
    /// Percent of the shared cache's filesystem to keep free.
    #[arg(long, value_name = "PERCENT", env = "INPUTFS_SHARED_CACHE_MIN_FREE", value_parser = percent)]
    pub shared_cache_min_free: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// An existing, empty directory to mount on.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub origin: OriginArgs,
    /// Stay attached to the terminal instead of daemonizing.
    #[arg(long, env = "INPUTFS_FOREGROUND")]
    pub foreground: bool,
    /// Let other users read the mount (non-root needs user_allow_other in /etc/fuse.conf).
    #[arg(long, env = "INPUTFS_ALLOW_OTHER")]
    pub allow_other: bool,
    /// Where the daemon writes its log [default: <cache home>/logs/inputfs-<pid>.log].
    #[arg(long, value_name = "FILE", env = "INPUTFS_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, env = "INPUTFS_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::logging::LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics (ADDR is HOST:PORT,
    /// e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR", env = "INPUTFS_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Before serving, copy every input into the local cache (from the shared
    /// cache where it has them, else the origin): the job then reads local disk.
    #[arg(long, env = "INPUTFS_COPY_TO_LOCAL", conflicts_with = "no_local_cache")]
    pub copy_to_local: bool,
    /// Kernel passthrough for files complete in the local cache: `auto` uses it
    /// where the kernel and privileges allow, `off` serves every read through
    /// the daemon.
    #[arg(long, value_enum, env = "INPUTFS_PASSTHROUGH", default_value = "auto")]
    pub passthrough: Passthrough,
    /// Write what was resolved (every file, its URL, size and version) to this
    /// JSON lock file, for `--locked` to mount again (schema in the README).
    #[arg(long, value_name = "FILE", env = "INPUTFS_LOCK_OUT")]
    pub lock_out: Option<PathBuf>,
    /// Mount exactly the files and versions of a lock file written by
    /// `--lock-out`, without listing or resolving anything again.
    #[arg(
        long,
        value_name = "FILE",
        env = "INPUTFS_LOCKED",
        conflicts_with_all = ["input", "inputs_file"]
    )]
    pub locked: Option<PathBuf>,
    /// Share prefix and glob listings with the fleet through the shared
    /// cache: use the listing another worker published less than DURATION
    /// ago instead of listing (one worker lists, workers starting with it
    /// wait for its listing), and publish this worker's. Off by default:
    /// every worker lists.
    #[arg(
        long,
        value_name = "DURATION",
        env = "INPUTFS_LISTING_MAX_AGE",
        requires = "shared_cache",
        conflicts_with = "locked"
    )]
    pub listing_max_age: Option<humantime::Duration>,
}

/// Whether reads of locally complete files bypass the daemon.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passthrough {
    Auto,
    Off,
}

/// `inputfs warm`: the inputs and caches of a mount, and which tiers to fill.
#[derive(Args, Debug, Clone)]
pub struct WarmArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub origin: OriginArgs,
    /// Fill the local cache too (without --shared-cache, the local cache is the
    /// one filled anyway).
    #[arg(long, env = "INPUTFS_TO_LOCAL")]
    pub to_local: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(extra: &[&str]) -> Result<MountArgs, String> {
        let mut argv = vec!["inputfs", "mount", "/m", "--input", "a=s3://b/k"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Mount(args),
            }) => Ok(args),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn timeout_flags_parse_durations_and_refuse_zero() {
        let args = mount(&["--first-byte-timeout", "3s", "--stall-timeout=1500ms"]).unwrap();
        let o = &args.origin;
        assert_eq!(
            o.first_byte_timeout.map(Into::into),
            Some(std::time::Duration::from_secs(3))
        );
        assert_eq!(
            o.stall_timeout.map(Into::into),
            Some(std::time::Duration::from_millis(1500))
        );
        // Not given: the defaults (or the cloud's own variables) apply.
        assert!(o.connect_timeout.is_none() && o.request_timeout.is_none());
        let e = mount(&["--connect-timeout", "0s"]).unwrap_err();
        assert!(e.contains("a timeout must be longer than 0"), "{e}");
        let e = mount(&["--request-timeout", "soon"]).unwrap_err();
        assert!(e.contains("\"soon\""), "{e}");
    }
}
