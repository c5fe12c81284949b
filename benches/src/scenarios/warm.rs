//! The warm scenarios: from the shared tier, from the local tier (with and
//! without passthrough), from the page cache, and random reads on a warm mount.
//!
//! The random rows run for a fixed time on a file much smaller than this
//! machine's memory, so after the first touches most reads hit the page cache
//! for every system that lets the kernel keep pages (the local file, inputfs
//! with passthrough or keep-cache): those rows show each system's per-read
//! overhead on warm data more than disk speed.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::Bench;
use crate::measure::{self, OpenMode, evict};
use crate::report::{Better, Cell, Row, Target};
use crate::systems::Mounted;

impl Bench<'_> {
    pub(super) fn warm_shared(&mut self) -> Result<()> {
        let mut row = Row::new(
            "warm-shared",
            "warm from shared tier",
            "MiB/s",
            Better::Higher,
            "the shared tier's block files of the object, read one after the other straight from the directory; inputfs with no local tier (nothing copied); the page cache of the directory evicted before each",
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
            // No local tier: the read does what the baseline does, and no
            // copy into a local cache (which `fill_local` measures) rides on it.
            let m = self
                .inputfs(
                    "mnt-inputfs-ws",
                    &[
                        "--no-local-cache".to_string(),
                        format!("--shared-cache={}", shared.display()),
                    ],
                )
                .context("inputfs")?;
            let (cell, _) = self.timed_big(&m, &[&shared]).context("inputfs")?;
            m.stop();
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

    pub(super) fn warm_local(&mut self) -> Result<()> {
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
        // A fresh mount checks a plain file it did not make against its
        // sidecar (one full read) before passing it through; a second open in
        // the same mount does not. The two cells side by side are that check's
        // cost.
        let mut reopen = Row::new(
            "warm-local-reopen",
            "warm from local tier, reopened in the same mount (plain file already checked)",
            "MiB/s",
            Better::Higher,
            base,
            target,
        );
        let baseline = self.local_baseline()?;
        row.cells.insert("baseline".into(), baseline.clone());
        off.cells.insert("baseline".into(), baseline.clone());
        reopen.cells.insert("baseline".into(), baseline);
        if self.cfg.has_system("inputfs") {
            self.ensure_local().context("inputfs")?;
            let local = self.st.dir("inputfs-local");
            for (r, extra) in [(&mut row, None), (&mut off, Some("--passthrough=off"))] {
                let mut args = self.local_args();
                args.extend(extra.map(String::from));
                let m = self.inputfs("mnt-inputfs-wl", &args).context("inputfs")?;
                let (cell, _) = self.timed_big(&m, &[&local]).context("inputfs")?;
                r.cells.insert("inputfs".into(), cell);
                if extra.is_none() {
                    let (cell, _) = self.timed_big(&m, &[&local]).context("inputfs")?;
                    reopen.cells.insert("inputfs".into(), cell);
                }
                m.stop();
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
            self.add(reopen);
            self.add(off);
        }
        Ok(())
    }

    /// Read `path` once, then time a second read (all from the page cache).
    fn reread(&self, path: &Path, rss_of: Option<&Mounted>) -> Result<Cell> {
        measure::read_sequential(path, self.st.size(), &self.st.big_sha)?;
        self.st.server.reset_counts();
        let (d, cpu) = Self::with_cpu(
            rss_of,
            || measure::read_sequential(path, self.st.size(), &self.st.big_sha),
            |_| self.st.size(),
        )?;
        Ok(Cell {
            value: self.mib_s(d),
            peak_rss: rss_of.and_then(|m| m.peak_rss()),
            raw: json!({"secs": d.as_secs_f64(), "origin_bytes": self.st.server.get_bytes(),
                "cpu_s_per_gib": cpu}),
        })
    }

    pub(super) fn page_cache(&mut self) -> Result<()> {
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
        mode: OpenMode,
    ) -> Result<[Cell; 2]> {
        let mut out = Vec::new();
        for (i, io) in [4096usize, 65536].into_iter().enumerate() {
            evict(dirs);
            self.st.server.reset_counts();
            let (r, cpu) = Self::with_cpu(
                rss_of,
                || {
                    measure::random_reads(
                        path,
                        &self.st.big,
                        (io, mode),
                        self.cfg.threads,
                        self.cfg.random_duration,
                        7 + i as u64,
                    )
                },
                |r| r.ops * io as u64,
            )?;
            out.push(Cell {
                value: r.iops,
                peak_rss: rss_of.and_then(|m| m.peak_rss()),
                raw: json!({"ops": r.ops, "secs": r.secs, "io_size": io,
                    "threads": self.cfg.threads, "origin_bytes": self.st.server.get_bytes(),
                    "cpu_s_per_gib": cpu}),
            });
        }
        let [a, b]: [Cell; 2] = out.try_into().map_err(|_| anyhow::anyhow!("two sizes"))?;
        Ok([a, b])
    }

    /// The `random` rows (buffered readers) or the `random-direct` ones
    /// (`O_DIRECT` readers: the baseline then reads the disk, and each
    /// system shows where it serves such reads from).
    pub(super) fn random(&mut self, mode: OpenMode) -> Result<()> {
        let (ids, title, base) = match mode {
            OpenMode::Buffered => (
                ["random-4k", "random-64k"],
                "",
                "a plain local file, page cache evicted, same readers",
            ),
            OpenMode::Direct => (
                ["random-4k-direct", "random-64k-direct"],
                ", O_DIRECT",
                "a plain local file opened O_DIRECT (its disk), same readers",
            ),
        };
        let row = |id: &'static str, kib: u32| {
            Row::new(
                id,
                format!("random {kib} KiB reads (warm{title})"),
                "IOPS",
                Better::Higher,
                base,
                None,
            )
        };
        let mut rows = [row(ids[0], 4), row(ids[1], 64)];
        let put = |rows: &mut [Row; 2], sys: &str, cells: [Cell; 2]| {
            for (r, c) in rows.iter_mut().zip(cells) {
                r.cells.insert(sys.into(), c);
            }
        };
        let cells = self
            .random_pair(&self.st.local_file, &[&self.st.local_file], None, mode)
            .context("baseline")?;
        put(&mut rows, "baseline", cells);
        if self.cfg.has_system("inputfs") {
            self.ensure_local().context("inputfs")?;
            let local = self.st.dir("inputfs-local");
            let m = self
                .inputfs("mnt-inputfs-wl", &self.local_args())
                .context("inputfs")?;
            let cells = self
                .random_pair(&m.big(), &[&local], Some(&m), mode)
                .context("inputfs")?;
            m.stop();
            put(&mut rows, "inputfs", cells);
        }
        for p in self.peers() {
            let cache = self.ensure_peer(p).with_context(|| p.to_string())?;
            let m = self.peer(p, &format!("mnt-{p}"), &cache)?;
            let cells = self
                .random_pair(&m.big(), &[&cache], Some(&m), mode)
                .with_context(|| p.to_string())?;
            drop(m);
            put(&mut rows, p, cells);
        }
        self.rows.extend(rows);
        Ok(())
    }
}
