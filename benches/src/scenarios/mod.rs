//! The scenarios, in the order they run, each measured for the baseline and
//! every selected system on the same stage:
//!
//! | id | rows | baseline |
//! |---|---|---|
//! | `cold` | cold sequential read of the big object | `direct` |
//! | `warm-shared` | read with no local tier from the shared tier filled by `cold` | the shared tier's block files read straight from the directory |
//! | `warm-local` | remount on the filled local tier, no shared tier (the first read includes checking the plain file against its sidecar); inputfs also read again in the same mount (checked already) and with `--passthrough off` | a local file |
//! | `page-cache` | second read through one mount | a local file's second read |
//! | `random` | 4 KiB and 64 KiB random `pread`s on a warm remount (IOPS) | a local file |
//! | `random-direct` | the same with the file opened `O_DIRECT` (issue 14's fio case: databases, some loaders) | a local file opened `O_DIRECT`: its disk |
//! | `small-files` | cold read of every small file, listing included (files/s) | `direct` GETs, same parallelism |
//! | `https` | cold sequential read over https (nginx + private CA, same proxy), inputfs and direct only | `direct` over https |
//! | `workers` | N mounts cold-reading the big object at once: wall time, origin bytes / size | N `direct` readers |
//! | `ttfb` | cold open and 4 KiB `pread` in the middle of the big object: time to the first byte | one `direct` GET of the block holding it (one round trip plus the block's transfer); a GET of just the 4 KiB beside it |
//! | `ml` | real ML readers (pyarrow, safetensors, h5py, tar shards, small files): origin bytes / what they need, time to first batch, total time (`ml`) | the same reader on a local copy; direct GETs for tar shards and small files |
//!
//! Before every warm or cold read, the page cache of the files involved (cache
//! directories, baseline files) is evicted, so "warm local" means "from the
//! local disk" for every system. The peers have no shared tier (`n/a` there);
//! their "warm local" is a remount on the cache directory their cold run filled.
//! A scenario that needs a filled cache fills it itself when the scenario that
//! normally does was not selected.
//!
//! Choices, and why:
//! - The warm-shared row reads with no local tier, so it does what its
//!   baseline does (read the block files from the directory) and nothing
//!   else: with a local tier the read also copied every block into it, and
//!   the row measured the copy (issue 14). inputfs's local tier for the warm
//!   rows is then filled by a read over the shared tier with an empty local
//!   tier, as on a worker that started from a shared cache; the
//!   `--passthrough off` row remounts the same directory, so both rows read
//!   the same cached bytes.
//! - Peak RSS is the daemon's VmHWM read at the end of the scenario, before
//!   unmounting: a peak over that mount's whole life (fills included).
//! - Origin bytes are object bytes counted by the S3 server (GetObject content
//!   lengths), not proxy bytes, so HTTP overhead does not blur "x data size".
//! - `direct`'s parallelism follows the flags given to inputfs
//!   (`--inputfs-arg=--block-size=..`, `--max-readahead`), so a tuning sweep
//!   keeps comparing like with like.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::measure::{self, OpenMode, evict};
use crate::report::{Better, Cell, Row, Target};
use crate::setup::{Config, Stage};
use crate::systems::{self, BIG_KEY, Mounted};

mod fanout;
mod https;
mod ml;
mod ttfb;
mod warm;

pub const ALL: [&str; 11] = [
    "cold",
    "warm-shared",
    "warm-local",
    "page-cache",
    "random",
    "random-direct",
    "small-files",
    "workers",
    "https",
    "ttfb",
    "ml",
];
pub const PEERS: [&str; 2] = ["rclone", "s3fs"];

const MIB: f64 = (1u64 << 20) as f64;

/// The runner: the stage, the rows filled so far and which caches are filled.
pub struct Bench<'a> {
    cfg: &'a Config,
    st: &'a Stage,
    pub rows: Vec<Row>,
    /// inputfs's shared tier filled with the big object.
    shared_filled: bool,
    /// inputfs's local tier (`inputfs-local`) filled with the big object.
    local_filled: bool,
    /// Peers whose cache directory (`<peer>-cache`) holds the big object.
    peer_filled: Vec<String>,
}

impl<'a> Bench<'a> {
    pub fn new(cfg: &'a Config, st: &'a Stage) -> Bench<'a> {
        Bench {
            cfg,
            st,
            rows: Vec::new(),
            shared_filled: false,
            local_filled: false,
            peer_filled: Vec::new(),
        }
    }

    /// Run every selected scenario.
    pub fn run(&mut self) -> Result<()> {
        for id in ALL {
            if !self.cfg.has_scenario(id) {
                continue;
            }
            eprintln!("bench: scenario {id}");
            match id {
                "cold" => self.cold(),
                "warm-shared" => self.warm_shared(),
                "warm-local" => self.warm_local(),
                "page-cache" => self.page_cache(),
                "random" => self.random(OpenMode::Buffered),
                "random-direct" => self.random(OpenMode::Direct),
                "small-files" => self.small_files(),
                "https" => self.https(),
                "ttfb" => self.ttfb(),
                "ml" => self.ml(),
                _ => self.workers(),
            }
            .with_context(|| format!("scenario {id}"))?;
        }
        Ok(())
    }

    fn peers(&self) -> Vec<&'static str> {
        PEERS
            .into_iter()
            .filter(|p| self.cfg.has_system(p))
            .collect()
    }

    fn mib_s(&self, d: Duration) -> f64 {
        self.st.size() as f64 / MIB / d.as_secs_f64()
    }

    /// Run `work` (reads through `m`, if a mount) and the CPU seconds per
    /// GiB the mount's daemon spent on it, from the start until its CPU
    /// settles (publishes and plain copies after the read included), per
    /// the bytes `bytes` says `work` read. `None` without a daemon process.
    fn with_cpu<T>(
        m: Option<&Mounted>,
        work: impl FnOnce() -> Result<T>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> Result<(T, Option<f64>)> {
        let pid = m.and_then(Mounted::pid);
        let before = pid.and_then(measure::process_cpu);
        let out = work()?;
        let cpu = match (pid, before) {
            (Some(pid), Some(before)) => measure::settled_cpu(pid)
                .map(|c| measure::cpu_per_gib(c.saturating_sub(before), bytes(&out))),
            _ => None,
        };
        Ok((out, cpu))
    }

    /// Time one read of the big object through a mount, after eviction.
    fn timed_big(&self, m: &Mounted, evict_dirs: &[&Path]) -> Result<(Cell, Duration)> {
        evict(evict_dirs);
        self.st.server.reset_counts();
        let (d, cpu) = Self::with_cpu(
            Some(m),
            || measure::read_sequential(&m.big(), self.st.size(), &self.st.big_sha),
            |_| self.st.size(),
        )?;
        let (origin_bytes, origin_gets) =
            (self.st.server.get_bytes(), self.st.server.get_requests());
        Ok((
            Cell {
                value: self.mib_s(d),
                peak_rss: m.peak_rss(),
                raw: json!({
                    "secs": d.as_secs_f64(),
                    "origin_bytes": origin_bytes,
                    "origin_gets": origin_gets,
                    "cpu_s_per_gib": cpu,
                }),
            },
            d,
        ))
    }

    fn inputfs(&self, name: &str, args: &[String]) -> Result<Mounted> {
        let mut all = args.to_vec();
        all.extend(self.cfg.inputfs_args.iter().cloned());
        systems::mount_inputfs(&self.st.dir(name), &self.st.proxy.endpoint(), &all)
    }

    fn peer(&self, peer: &str, name: &str, cache: &Path) -> Result<Mounted> {
        self.peer_of(peer, name, systems::BUCKET, cache)
    }

    fn peer_of(&self, peer: &str, name: &str, bucket: &str, cache: &Path) -> Result<Mounted> {
        let mnt = self.st.dir(name);
        let ep = self.st.proxy.endpoint();
        match peer {
            "rclone" => systems::mount_rclone(&mnt, &ep, bucket, cache, self.st.work.path()),
            _ => systems::mount_s3fs(&mnt, &ep, bucket, cache, self.st.work.path()),
        }
    }

    fn local_args(&self) -> Vec<String> {
        vec![format!(
            "--cache-dir={}",
            self.st.dir("inputfs-local").display()
        )]
    }

    fn add(&mut self, row: Row) {
        self.rows.push(row);
    }

    fn cold(&mut self) -> Result<()> {
        let mut row = Row::new(
            "cold",
            "cold sequential read",
            "MiB/s",
            Better::Higher,
            "direct: ranged GETs of one block each, max-readahead/block-size in flight, no FUSE, no cache",
            Some(Target::RatioAtLeast(0.9)),
        );
        if self.cfg.has_system("direct") {
            self.st.server.reset_counts();
            let before = self.st.direct.client_cpu();
            let d = self
                .st
                .direct
                .read(
                    BIG_KEY,
                    self.st.size(),
                    &self.st.big_sha,
                    self.cfg.block_size,
                    self.cfg.direct_in_flight(),
                )
                .context("direct")?;
            row.cells.insert("baseline".into(), Cell {
                value: self.mib_s(d),
                peak_rss: None,
                raw: json!({"secs": d.as_secs_f64(), "origin_bytes": self.st.server.get_bytes(),
                    "origin_gets": self.st.server.get_requests(), "in_flight": self.cfg.direct_in_flight(),
                    "cpu_s_per_gib": measure::cpu_per_gib(self.st.direct.client_cpu().saturating_sub(before), self.st.size())}),
            });
        }
        if self.cfg.has_system("inputfs") {
            let cell = self.fill_shared().context("inputfs")?;
            row.cells.insert("inputfs".into(), cell);
        }
        for p in self.peers() {
            let cell = self.fill_peer(p).with_context(|| p.to_string())?;
            row.cells.insert(p.into(), cell);
        }
        self.add(row);
        Ok(())
    }

    /// Cold read through inputfs with a fresh local tier and a fresh shared tier
    /// (`inputfs-shared`), which it fills.
    fn fill_shared(&mut self) -> Result<Cell> {
        let shared = self.st.fresh_dir("inputfs-shared")?;
        let local = self.st.fresh_dir("inputfs-cold-local")?;
        let m = self.inputfs(
            "mnt-inputfs-cold",
            &[
                format!("--cache-dir={}", local.display()),
                format!("--shared-cache={}", shared.display()),
            ],
        )?;
        let (cell, _) = self.timed_big(&m, &[])?;
        m.stop();
        self.shared_filled = true;
        Ok(cell)
    }

    /// Cold read through a peer with a fresh cache directory, which it fills.
    fn fill_peer(&mut self, peer: &str) -> Result<Cell> {
        let cache = self.st.fresh_dir(&format!("{peer}-cache"))?;
        let m = self.peer(peer, &format!("mnt-{peer}"), &cache)?;
        let (cell, _) = self.timed_big(&m, &[])?;
        drop(m);
        self.peer_filled.push(peer.to_string());
        Ok(cell)
    }

    fn ensure_shared(&mut self) -> Result<()> {
        if !self.shared_filled {
            self.fill_shared()?;
        }
        Ok(())
    }

    /// Read through inputfs with a fresh local tier over the filled shared tier:
    /// the local tier (`inputfs-local`) ends up filled.
    fn fill_local(&mut self) -> Result<Cell> {
        self.ensure_shared()?;
        let shared = self.st.dir("inputfs-shared");
        let local = self.st.fresh_dir("inputfs-local")?;
        let m = self.inputfs(
            "mnt-inputfs-ws",
            &[
                format!("--cache-dir={}", local.display()),
                format!("--shared-cache={}", shared.display()),
            ],
        )?;
        let (cell, _) = self.timed_big(&m, &[&shared])?;
        m.stop();
        self.local_filled = true;
        Ok(cell)
    }

    fn ensure_local(&mut self) -> Result<()> {
        if !self.local_filled {
            self.fill_local()?;
        }
        Ok(())
    }

    fn ensure_peer(&mut self, peer: &str) -> Result<PathBuf> {
        if !self.peer_filled.iter().any(|p| p == peer) {
            self.fill_peer(peer)?;
        }
        Ok(self.st.dir(&format!("{peer}-cache")))
    }
}
