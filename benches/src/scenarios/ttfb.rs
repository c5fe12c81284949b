//! Time to first byte (`ttfb`, issue 13): a cold open and one 4 KiB `pread`
//! in the middle of the big object, through a fresh mount of each system
//! with an empty cache. inputfs fetches the block holding the range, so its
//! bound is one origin round trip plus that block's transfer: the baseline is
//! one direct GET of that block. A direct GET of just the 4 KiB is reported
//! beside it (what a reader with no block cache pays).

use std::os::unix::fs::FileExt;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::Bench;
use crate::report::{Better, Cell, Row, Target};
use crate::systems::{BIG_KEY, Mounted};

const LEN: u64 = 4096;

impl Bench<'_> {
    pub(super) fn ttfb(&mut self) -> Result<()> {
        let size = self.st.size();
        // The middle, off any block boundary.
        let offset = (size / 2 + 3 * LEN).min(size.saturating_sub(LEN));
        let want = &self.st.big[offset as usize..(offset + LEN).min(size) as usize];
        let mut row = Row::new(
            "ttfb",
            "time to first byte: cold 4 KiB read mid-object",
            "ms",
            Better::Lower,
            "one direct GET of the block holding the range (one round trip plus the block's transfer)",
            Some(Target::RatioAtLeast(0.9)),
        );
        if self.cfg.has_system("direct") {
            let bs = self.cfg.block_size;
            let block = offset / bs * bs..((offset / bs + 1) * bs).min(size);
            let (whole, _) = self.st.direct.get_range(BIG_KEY, block)?;
            let (small, got) = self.st.direct.get_range(BIG_KEY, offset..offset + LEN)?;
            if got != want {
                bail!("direct GET of {offset}+{LEN}: wrong bytes");
            }
            row.cells.insert(
                "baseline".into(),
                Cell {
                    value: whole.as_secs_f64() * 1000.0,
                    peak_rss: None,
                    raw: json!({ "block_ms": whole.as_secs_f64() * 1000.0,
                    "range_4k_ms": small.as_secs_f64() * 1000.0 }),
                },
            );
        }
        if self.cfg.has_system("inputfs") {
            let cache = self.st.fresh_dir("ttfb-inputfs-cache")?;
            let m = self.inputfs(
                "mnt-ttfb-inputfs",
                &[format!("--cache-dir={}", cache.display())],
            )?;
            let cell = self.first_byte(&m, offset, want)?;
            m.stop();
            row.cells.insert("inputfs".into(), cell);
        }
        for p in self.peers() {
            let cache = self.st.fresh_dir(&format!("ttfb-{p}-cache"))?;
            let m = self.peer(p, &format!("mnt-ttfb-{p}"), &cache)?;
            let cell = self
                .first_byte(&m, offset, want)
                .with_context(|| p.to_string())?;
            drop(m);
            row.cells.insert(p.into(), cell);
        }
        self.add(row);
        Ok(())
    }

    /// Open the big object through `m` and read `want.len()` bytes at `offset`.
    fn first_byte(&self, m: &Mounted, offset: u64, want: &[u8]) -> Result<Cell> {
        self.st.server.reset_counts();
        let started = Instant::now();
        let file = std::fs::File::open(m.big())?;
        let mut buf = vec![0u8; want.len()];
        file.read_exact_at(&mut buf, offset)?;
        let elapsed = started.elapsed();
        if buf != want {
            bail!("{}: wrong bytes at {offset}", m.big().display());
        }
        Ok(Cell {
            value: elapsed.as_secs_f64() * 1000.0,
            peak_rss: m.peak_rss(),
            raw: json!({ "origin_bytes": self.st.server.get_bytes(),
                "origin_gets": self.st.server.get_requests() }),
        })
    }
}
