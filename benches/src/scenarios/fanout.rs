//! The fan-out scenarios: many small files read cold by several readers, and
//! several workers (each its own mount) cold-starting on the big object at once.

use std::sync::Barrier;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::Bench;
use crate::measure;
use crate::report::{Better, Cell, Row, Target};
use crate::systems::{self, BIG_KEY, Mounted};

impl Bench<'_> {
    pub(super) fn small_files(&mut self) -> Result<()> {
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
                .direct_small
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
            mounts.push((
                p,
                self.peer_of(p, &format!("mnt-{p}-small"), systems::SMALL_BUCKET, &cache)?,
            ));
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

    /// `workers` readers (each its own mount, one shared cache) cold-start on
    /// the big object at once; each system also once alone, for the ratio of
    /// the fleet's wall time to one worker's (cooperative cold start: below 1
    /// when the workers' origin connections are pooled).
    pub(super) fn workers(&mut self) -> Result<()> {
        let w = self.cfg.workers;
        let mut wall = Row::new(
            "workers-wall",
            format!("{w} workers cold start: wall time"),
            "s",
            Better::Lower,
            "as many direct readers at once",
            None,
        );
        let mut vs_one = Row::new(
            "workers-vs-one",
            format!("{w} workers cold start: wall time / one worker's"),
            "x one",
            Better::Lower,
            "as many direct readers at once / one direct reader",
            Some(Target::ValueAtMost(0.8)),
        );
        let mut bytes = Row::new(
            "workers-origin",
            format!("{w} workers cold start: origin bytes / size"),
            "x size",
            Better::Lower,
            "as many direct readers at once",
            Some(Target::ValueAtMost(1.1)),
        );
        let size = self.st.size() as f64;
        let mut systems: Vec<&str> = Vec::new();
        if self.cfg.has_system("direct") {
            systems.push("direct");
        }
        if self.cfg.has_system("inputfs") {
            systems.push("inputfs");
        }
        systems.extend(self.peers());
        for sys in systems {
            let one = self.fleet(sys, 1)?;
            let all = self.fleet(sys, w)?;
            let name = if sys == "direct" { "baseline" } else { sys };
            let raw = json!({"workers": w, "secs": all.secs, "origin_bytes": all.origin,
                "one_worker_secs": one.secs, "one_worker_origin_bytes": one.origin});
            let cell = |value| Cell {
                value,
                peak_rss: all.rss,
                raw: raw.clone(),
            };
            wall.cells.insert(name.into(), cell(all.secs));
            vs_one.cells.insert(name.into(), cell(all.secs / one.secs));
            bytes
                .cells
                .insert(name.into(), cell(all.origin as f64 / size));
        }
        self.rows.push(wall);
        self.rows.push(vs_one);
        self.rows.push(bytes);
        Ok(())
    }

    /// `n` readers of `sys` cold-read the big object at once (for a mounted
    /// system, each through its own mount with its own cache; inputfs's
    /// mounts share one shared cache), every byte checked.
    fn fleet(&self, sys: &str, n: usize) -> Result<FleetRun> {
        let (st, cfg) = (self.st, self.cfg);
        let mut mounts = Vec::new();
        if sys != "direct" {
            let shared = self.st.fresh_dir(&format!("{sys}-fleet{n}-shared"))?;
            for i in 0..n {
                let cache = self
                    .st
                    .fresh_dir(&format!("{sys}-fleet{n}-worker{i}-cache"))?;
                let name = format!("mnt-{sys}-fleet{n}-worker{i}");
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
        }
        self.st.server.reset_counts();
        let barrier = Barrier::new(n);
        let started = Instant::now();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let (barrier, path) = (&barrier, mounts.get(i).map(Mounted::big));
                    s.spawn(move || {
                        barrier.wait();
                        match path {
                            Some(path) => {
                                measure::read_sequential(&path, st.size(), &st.big_sha).map(drop)
                            }
                            None => st
                                .direct
                                .read(
                                    BIG_KEY,
                                    st.size(),
                                    &st.big_sha,
                                    cfg.block_size,
                                    cfg.direct_in_flight(),
                                )
                                .map(drop),
                        }
                    })
                })
                .collect();
            hs.into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|_| bail!("a reader panicked")))
        })
        .with_context(|| format!("{sys}, {n} workers"))?;
        let secs = started.elapsed().as_secs_f64();
        let origin = self.st.server.get_bytes();
        let rss = mounts.iter().filter_map(|m| m.peak_rss()).max();
        for m in mounts {
            m.stop();
        }
        Ok(FleetRun { secs, origin, rss })
    }
}

/// One run of [`Bench::fleet`].
struct FleetRun {
    secs: f64,
    origin: u64,
    rss: Option<u64>,
}
