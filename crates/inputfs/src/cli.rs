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
}
