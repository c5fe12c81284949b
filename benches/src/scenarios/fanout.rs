//! The fan-out scenarios: many small files read cold by several readers, and
//! several workers (each its own mount) cold-starting on the big object at once.

use std::sync::Barrier;
use std::time::{Duration, Instant};

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
        let mut bytes = Row::new(
            "workers-origin",
            format!("{w} workers cold start: origin bytes / size"),
            "x size",
            Better::Lower,
            "as many direct readers at once",
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
