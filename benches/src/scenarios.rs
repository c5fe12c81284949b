//! The scenarios, in the order they run, each measured for the baseline and
//! every selected system on the same stage:
//!
//! | id | rows | baseline |
//! |---|---|---|
//! | `cold` | cold sequential read of the big object | `direct` |
//! | `warm-shared` | read with an empty local tier and the shared tier filled by `cold` | the shared tier's block files read straight from the directory |
//! | `warm-local` | remount on the filled local tier, no shared tier; inputfs also with `--passthrough off` | a local file |
//! | `page-cache` | second read through one mount | a local file's second read |
//! | `random` | 4 KiB and 64 KiB random `pread`s on a warm remount (IOPS) | a local file |
//! | `small-files` | cold read of every small file, listing included (files/s) | `direct` GETs, same parallelism |
//! | `workers` | N mounts cold-reading the big object at once: wall time, origin bytes / size | N `direct` readers |
//!
//! Before every warm or cold read, the page cache of the files involved (cache
//! directories, baseline files) is evicted, so "warm local" means "from the
//! local disk" for every system. The peers have no shared tier (`n/a` there);
//! their "warm local" is a remount on the cache directory their cold run filled.
//! A scenario that needs a filled cache fills it itself when the scenario that
//! normally does was not selected.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::measure::{self, evict};
use crate::report::{Better, Cell, Row, Target};
use crate::setup::{Config, Stage};
use crate::systems::{self, BIG_KEY, Mounted};

pub const ALL: [&str; 7] = [
    "cold",
    "warm-shared",
    "warm-local",
    "page-cache",
    "random",
    "small-files",
    "workers",
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
                "random" => self.random(),
                "small-files" => self.small_files(),
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

    /// Time one read of the big object through a mount, after eviction.
    fn timed_big(&self, m: &Mounted, evict_dirs: &[&Path]) -> Result<(Cell, Duration)> {
        evict(evict_dirs);
        self.st.server.reset_counts();
        let d = measure::read_sequential(&m.big(), self.st.size(), &self.st.big_sha)?;
        Ok((
            Cell {
                value: self.mib_s(d),
                peak_rss: m.peak_rss(),
                raw: json!({
                    "secs": d.as_secs_f64(),
                    "origin_bytes": self.st.server.get_bytes(),
                    "origin_gets": self.st.server.get_requests(),
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
        let mnt = self.st.dir(name);
        let ep = self.st.proxy.endpoint();
        match peer {
            "rclone" => systems::mount_rclone(&mnt, &ep, cache, self.st.work.path()),
            _ => systems::mount_s3fs(&mnt, &ep, cache, self.st.work.path()),
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
                    "origin_gets": self.st.server.get_requests(), "in_flight": self.cfg.direct_in_flight()}),
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

    fn warm_shared(&mut self) -> Result<()> {
        let mut row = Row::new(
            "warm-shared",
            "warm from shared tier",
            "MiB/s",
            Better::Higher,
            "the shared tier's block files of the object, read one after the other straight from the directory",
            Some(Target::RatioAtLeast(0.85)),
        );
        if self.cfg.has_system("inputfs") {
            self.ensure_shared().context("inputfs")?;
            let shared = self.st.dir("inputfs-shared");
            let blocks = measure::cached_block_files(&shared)?;
            evict(&[&shared]);
            let d = measure::read_block_files(&blocks, self.st.size(), &self.st.big_sha)
                .context("baseline")?;
            row.cells.insert(
                "baseline".into(),
                Cell {
                    value: self.mib_s(d),
                    peak_rss: None,
                    raw: json!({"secs": d.as_secs_f64(), "block_files": blocks.len()}),
                },
            );
            let cell = self.fill_local().context("inputfs")?;
            row.cells.insert("inputfs".into(), cell);
        }
        self.add(row);
        Ok(())
    }

    fn local_baseline(&self) -> Result<Cell> {
        evict(&[&self.st.local_file]);
        let d = measure::read_sequential(&self.st.local_file, self.st.size(), &self.st.big_sha)
            .context("baseline")?;
        Ok(Cell {
            value: self.mib_s(d),
            peak_rss: None,
            raw: json!({"secs": d.as_secs_f64()}),
        })
    }

    fn warm_local(&mut self) -> Result<()> {
        let target = Some(Target::RatioAtLeast(0.9));
        let base = "a plain local file of the same size, page cache evicted";
        let mut row = Row::new(
            "warm-local",
            "warm from local tier",
            "MiB/s",
            Better::Higher,
            base,
            target,
        );
        let mut off = Row::new(
            "warm-local-passthrough-off",
            "warm from local tier, --passthrough off",
            "MiB/s",
            Better::Higher,
            base,
            target,
        );
        let baseline = self.local_baseline()?;
        row.cells.insert("baseline".into(), baseline.clone());
        off.cells.insert("baseline".into(), baseline);
        if self.cfg.has_system("inputfs") {
            self.ensure_local().context("inputfs")?;
            let local = self.st.dir("inputfs-local");
            for (r, extra) in [(&mut row, None), (&mut off, Some("--passthrough=off"))] {
                let mut args = self.local_args();
                args.extend(extra.map(String::from));
                let m = self.inputfs("mnt-inputfs-wl", &args).context("inputfs")?;
                let (cell, _) = self.timed_big(&m, &[&local]).context("inputfs")?;
                m.stop();
                r.cells.insert("inputfs".into(), cell);
            }
        }
        for p in self.peers() {
            let cache = self.ensure_peer(p).with_context(|| p.to_string())?;
            let m = self.peer(p, &format!("mnt-{p}"), &cache)?;
            let (cell, _) = self
                .timed_big(&m, &[&cache])
                .with_context(|| p.to_string())?;
            drop(m);
            row.cells.insert(p.into(), cell);
        }
        self.add(row);
        if self.cfg.has_system("inputfs") {
            self.add(off);
        }
        Ok(())
    }

    /// Read `path` once, then time a second read (all from the page cache).
    fn reread(&self, path: &Path, rss_of: Option<&Mounted>) -> Result<Cell> {
        measure::read_sequential(path, self.st.size(), &self.st.big_sha)?;
        self.st.server.reset_counts();
        let d = measure::read_sequential(path, self.st.size(), &self.st.big_sha)?;
        Ok(Cell {
            value: self.mib_s(d),
            peak_rss: rss_of.and_then(|m| m.peak_rss()),
            raw: json!({"secs": d.as_secs_f64(), "origin_bytes": self.st.server.get_bytes()}),
        })
    }

    fn page_cache(&mut self) -> Result<()> {
        let mut row = Row::new(
            "page-cache",
            "page-cache re-read",
            "MiB/s",
            Better::Higher,
            "a plain local file's second read (page cache)",
            Some(Target::RatioAtLeast(0.9)),
        );
        let base = self.reread(&self.st.local_file, None).context("baseline")?;
        row.cells.insert("baseline".into(), base);
        if self.cfg.has_system("inputfs") {
            self.ensure_local().context("inputfs")?;
            let m = self
                .inputfs("mnt-inputfs-wl", &self.local_args())
                .context("inputfs")?;
            let cell = self.reread(&m.big(), Some(&m)).context("inputfs")?;
            m.stop();
            row.cells.insert("inputfs".into(), cell);
        }
        for p in self.peers() {
            let cache = self.ensure_peer(p).with_context(|| p.to_string())?;
            let m = self.peer(p, &format!("mnt-{p}"), &cache)?;
            let cell = self
                .reread(&m.big(), Some(&m))
                .with_context(|| p.to_string())?;
            drop(m);
            row.cells.insert(p.into(), cell);
        }
        self.add(row);
        Ok(())
    }

    /// Random reads of both sizes on `path` after evicting `dirs`.
    fn random_pair(
        &self,
        path: &Path,
        dirs: &[&Path],
        rss_of: Option<&Mounted>,
    ) -> Result<[Cell; 2]> {
        let mut out = Vec::new();
        for (i, io) in [4096usize, 65536].into_iter().enumerate() {
            evict(dirs);
            self.st.server.reset_counts();
            let r = measure::random_reads(
                path,
                &self.st.big,
                io,
                self.cfg.threads,
                self.cfg.random_duration,
                7 + i as u64,
            )?;
            out.push(Cell {
                value: r.iops,
                peak_rss: rss_of.and_then(|m| m.peak_rss()),
                raw: json!({"ops": r.ops, "secs": r.secs, "io_size": io,
                    "threads": self.cfg.threads, "origin_bytes": self.st.server.get_bytes()}),
            });
        }
        let [a, b]: [Cell; 2] = out.try_into().map_err(|_| anyhow::anyhow!("two sizes"))?;
        Ok([a, b])
    }

    fn random(&mut self) -> Result<()> {
        let base = "a plain local file, page cache evicted, same readers";
        let mut rows = [
            Row::new(
                "random-4k",
                "random 4 KiB reads (warm)",
                "IOPS",
                Better::Higher,
                base,
                None,
            ),
            Row::new(
                "random-64k",
                "random 64 KiB reads (warm)",
                "IOPS",
                Better::Higher,
                base,
                None,
            ),
        ];
        let put = |rows: &mut [Row; 2], sys: &str, cells: [Cell; 2]| {
            for (r, c) in rows.iter_mut().zip(cells) {
                r.cells.insert(sys.into(), c);
            }
        };
        let cells = self
            .random_pair(&self.st.local_file, &[&self.st.local_file], None)
            .context("baseline")?;
        put(&mut rows, "baseline", cells);
        if self.cfg.has_system("inputfs") {
            self.ensure_local().context("inputfs")?;
            let local = self.st.dir("inputfs-local");
            let m = self
                .inputfs("mnt-inputfs-wl", &self.local_args())
                .context("inputfs")?;
            let cells = self
                .random_pair(&m.big(), &[&local], Some(&m))
                .context("inputfs")?;
            m.stop();
            put(&mut rows, "inputfs", cells);
        }
        for p in self.peers() {
            let cache = self.ensure_peer(p).with_context(|| p.to_string())?;
            let m = self.peer(p, &format!("mnt-{p}"), &cache)?;
            let cells = self
                .random_pair(&m.big(), &[&cache], Some(&m))
                .with_context(|| p.to_string())?;
            drop(m);
            put(&mut rows, p, cells);
        }
        self.rows.extend(rows);
        Ok(())
    }

    fn small_files(&mut self) -> Result<()> {
        let mut row = Row::new(
            "small-files",
            "small files, cold",
            "files/s",
            Better::Higher,
            "direct: one GET per file, as many in flight as the mounts get readers",
            None,
        );
        let n = self.st.small.len() as f64;
        let t = self.cfg.threads;
        if self.cfg.has_system("direct") {
            self.st.server.reset_counts();
            let d = self
                .st
                .direct
                .read_all(&self.st.small_keys, t)
                .context("direct")?;
            row.cells.insert("baseline".into(), Cell {
                value: n / d.as_secs_f64(),
                peak_rss: None,
                raw: json!({"secs": d.as_secs_f64(), "origin_gets": self.st.server.get_requests()}),
            });
        }
        let mut mounts: Vec<(&str, Mounted)> = Vec::new();
        if self.cfg.has_system("inputfs") {
            let local = self.st.fresh_dir("inputfs-small-local")?;
            let shared = self.st.fresh_dir("inputfs-small-shared")?;
            mounts.push((
                "inputfs",
                self.inputfs(
                    "mnt-inputfs-small",
                    &[
                        format!("--cache-dir={}", local.display()),
                        format!("--shared-cache={}", shared.display()),
                    ],
                )?,
            ));
        }
        for p in self.peers() {
            let cache = self.st.fresh_dir(&format!("{p}-small-cache"))?;
            mounts.push((p, self.peer(p, &format!("mnt-{p}-small"), &cache)?));
        }
        for (sys, m) in mounts {
            self.st.server.reset_counts();
            let d = measure::read_tree(&m.small_dir(), &self.st.small, t)
                .with_context(|| sys.to_string())?;
            row.cells.insert(sys.into(), Cell {
                value: n / d.as_secs_f64(),
                peak_rss: m.peak_rss(),
                raw: json!({"secs": d.as_secs_f64(), "files": n, "readers": t,
                    "origin_gets": self.st.server.get_requests(), "origin_bytes": self.st.server.get_bytes()}),
            });
            m.stop();
        }
        self.add(row);
        Ok(())
    }

    fn workers(&mut self) -> Result<()> {
        let w = self.cfg.workers;
        let mut wall = Row::new(
            "workers-wall",
            "N workers cold start: wall time",
            "s",
            Better::Lower,
            "N direct readers at once",
            None,
        );
        let mut bytes = Row::new(
            "workers-origin",
            "N workers cold start: origin bytes / size",
            "x size",
            Better::Lower,
            "N direct readers at once",
            Some(Target::ValueAtMost(1.1)),
        );
        let size = self.st.size() as f64;
        let (st, cfg) = (self.st, self.cfg);
        let mut put = |sys: &str, d: Duration, origin: u64, rss: Option<u64>| {
            let raw = json!({"workers": w, "secs": d.as_secs_f64(), "origin_bytes": origin});
            wall.cells.insert(
                sys.into(),
                Cell {
                    value: d.as_secs_f64(),
                    peak_rss: rss,
                    raw: raw.clone(),
                },
            );
            bytes.cells.insert(
                sys.into(),
                Cell {
                    value: origin as f64 / size,
                    peak_rss: rss,
                    raw,
                },
            );
        };
        if self.cfg.has_system("direct") {
            self.st.server.reset_counts();
            let barrier = Barrier::new(w);
            let started = Instant::now();
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..w)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            st.direct.read(
                                BIG_KEY,
                                st.size(),
                                &st.big_sha,
                                cfg.block_size,
                                cfg.direct_in_flight(),
                            )
                        })
                    })
                    .collect();
                hs.into_iter().try_for_each(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a reader panicked"))
                        .map(drop)
                })
            })
            .context("direct")?;
            put(
                "baseline",
                started.elapsed(),
                self.st.server.get_bytes(),
                None,
            );
        }
        let mut systems: Vec<&str> = Vec::new();
        if self.cfg.has_system("inputfs") {
            systems.push("inputfs");
        }
        systems.extend(self.peers());
        for sys in systems {
            let shared = self.st.fresh_dir("inputfs-workers-shared")?;
            let mut mounts = Vec::new();
            for i in 0..w {
                let cache = self.st.fresh_dir(&format!("{sys}-worker{i}-cache"))?;
                let name = format!("mnt-{sys}-worker{i}");
                mounts.push(if sys == "inputfs" {
                    self.inputfs(
                        &name,
                        &[
                            format!("--cache-dir={}", cache.display()),
                            format!("--shared-cache={}", shared.display()),
                        ],
                    )?
                } else {
                    self.peer(sys, &name, &cache)?
                });
            }
            self.st.server.reset_counts();
            let barrier = Barrier::new(w);
            let started = Instant::now();
            std::thread::scope(|s| {
                let hs: Vec<_> = mounts
                    .iter()
                    .map(|m| {
                        let (path, barrier) = (m.big(), &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            measure::read_sequential(&path, st.size(), &st.big_sha)
                        })
                    })
                    .collect();
                hs.into_iter().try_for_each(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a reader panicked"))
                        .map(drop)
                })
            })
            .with_context(|| sys.to_string())?;
            let d = started.elapsed();
            let origin = self.st.server.get_bytes();
            let rss = mounts.iter().filter_map(|m| m.peak_rss()).max();
            for m in mounts {
                m.stop();
            }
            put(sys, d, origin, rss);
        }
        self.rows.push(wall);
        self.rows.push(bytes);
        Ok(())
    }
}
