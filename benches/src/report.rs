//! The benchmark's results and how they are reported: every raw measurement in
//! `results.json`, a markdown table of ratios against the targets of the issue
//! (`results.md`, also printed), and a bar chart (`results.png`).
//!
//! A row is one scenario; its cells are the systems (`baseline`, `inputfs`,
//! `rclone`, `s3fs`) measured in the same run. Ratios are what matters: these
//! machines are shared, so absolute figures drift from run to run, while
//! systems measured side by side on the same data and origin compare fairly.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Whether a bigger value is better (throughput) or a smaller one (time, bytes).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub enum Better {
    Higher,
    Lower,
}

/// What a row must show for inputfs.
#[derive(Clone, Copy, Debug, Serialize)]
pub enum Target {
    /// inputfs / baseline (as "how many times as good") at least this.
    RatioAtLeast(f64),
    /// inputfs's own value at most this (e.g. origin bytes / data size).
    ValueAtMost(f64),
}

/// Peak RSS every daemon must stay under, in every scenario.
pub const RSS_TARGET: u64 = 300 << 20;

/// One system's measurement in one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub value: f64,
    /// Peak RSS of the daemon (max over workers), where there is one.
    pub peak_rss: Option<u64>,
    /// Everything measured on the way (times, byte counts, ops...).
    pub raw: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub id: &'static str,
    pub title: String,
    pub unit: &'static str,
    pub better: Better,
    /// What the baseline cell is.
    pub baseline: &'static str,
    pub target: Option<Target>,
    pub cells: BTreeMap<String, Cell>,
}

pub const PEERS: [&str; 2] = ["rclone", "s3fs"];

impl Row {
    pub fn new(
        id: &'static str,
        title: impl Into<String>,
        unit: &'static str,
        better: Better,
        baseline: &'static str,
        target: Option<Target>,
    ) -> Row {
        Row {
            id,
            title: title.into(),
            unit,
            better,
            baseline,
            target,
            cells: BTreeMap::new(),
        }
    }

    fn value(&self, system: &str) -> Option<f64> {
        self.cells.get(system).map(|c| c.value)
    }

    /// How many times as good `a` is as `b` (>1: `a` is better).
    fn goodness(&self, a: f64, b: f64) -> Option<f64> {
        let r = match self.better {
            Better::Higher => a / b,
            Better::Lower => b / a,
        };
        r.is_finite().then_some(r)
    }

    /// inputfs relative to the baseline, as "times as good".
    pub fn vs_baseline(&self, system: &str) -> Option<f64> {
        self.goodness(self.value(system)?, self.value("baseline")?)
    }

    /// inputfs relative to the better of the peers measured.
    pub fn vs_best_peer(&self) -> Option<f64> {
        let peers: Vec<f64> = PEERS.iter().filter_map(|p| self.value(p)).collect();
        let best = match self.better {
            Better::Higher => peers.iter().cloned().reduce(f64::max)?,
            Better::Lower => peers.iter().cloned().reduce(f64::min)?,
        };
        self.goodness(self.value("inputfs")?, best)
    }

    /// (the target as text, whether inputfs meets it) where both are known.
    pub fn target_check(&self) -> Option<(String, bool)> {
        Some(match self.target? {
            Target::RatioAtLeast(t) => (format!("≥{t}x"), self.vs_baseline("inputfs")? >= t),
            Target::ValueAtMost(t) => (format!("≤{t}"), self.value("inputfs")? <= t),
        })
    }
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}x"))
}

/// CPU seconds per GiB a cell measured, if it did.
fn cpu(c: &Cell) -> Option<f64> {
    c.raw.get("cpu_s_per_gib").and_then(|v| v.as_f64())
}

fn fmt_rss(c: Option<&Cell>) -> String {
    match c.and_then(|c| c.peak_rss) {
        Some(b) => format!("{:.0}", b as f64 / (1u64 << 20) as f64),
        None => "n/a".into(),
    }
}

/// The markdown report: a header with the setup, the table of ratios, the
/// memory table, and what each baseline is.
pub fn markdown(title: &str, setup: &[(String, String)], rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {title}\n");
    for (k, v) in setup {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let _ = writeln!(
        s,
        "\nRatios are \"times as good\" (>1 = inputfs better; for times and bytes the inverse). n/a = not measured or not applicable.\n"
    );
    let _ = writeln!(
        s,
        "| scenario | unit | baseline | inputfs | rclone | s3fs | inputfs / baseline | target | met | inputfs / best peer |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (target, met) = match (r.target, r.target_check()) {
            (_, Some((t, ok))) => (t, if ok { "yes" } else { "**MISS**" }.to_string()),
            (Some(Target::RatioAtLeast(t)), None) => (format!("≥{t}x"), "n/a".into()),
            (Some(Target::ValueAtMost(t)), None) => (format!("≤{t}"), "n/a".into()),
            (None, None) => ("—".into(), "".into()),
        };
        let peer = r.vs_best_peer();
        let peer_met = match peer {
            Some(p) if p < 1.0 => " **MISS**",
            _ => "",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            r.title,
            r.unit,
            fmt_value(r.value("baseline")),
            fmt_value(r.value("inputfs")),
            fmt_value(r.value("rclone")),
            fmt_value(r.value("s3fs")),
            fmt_ratio(r.vs_baseline("inputfs")),
            target,
            met,
            fmt_ratio(peer),
            peer_met,
        );
    }
    let _ = writeln!(
        s,
        "\nPeak RSS (VmHWM) of each daemon at the end of each scenario, MiB (max over workers); target for inputfs ≤{} MiB.\n",
        RSS_TARGET >> 20
    );
    let _ = writeln!(s, "| scenario | inputfs | rclone | s3fs | inputfs met |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for r in rows {
        let met = match r.cells.get("inputfs").and_then(|c| c.peak_rss) {
            Some(b) if b <= RSS_TARGET => "yes",
            Some(_) => "**MISS**",
            None => "n/a",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {met} |",
            r.title,
            fmt_rss(r.cells.get("inputfs")),
            fmt_rss(r.cells.get("rclone")),
            fmt_rss(r.cells.get("s3fs")),
        );
    }
    let with_cpu: Vec<&Row> = rows
        .iter()
        .filter(|r| r.cells.values().any(|c| cpu(c).is_some()))
        .collect();
    if !with_cpu.is_empty() {
        let _ = writeln!(
            s,
            "\nCPU seconds per GiB read, user + system: each daemon's from the start of the read until it settles (its publishes and plain-file copies included); the direct client's GET threads (hashing, which every reader does, excluded).\n"
        );
        let _ = writeln!(s, "| scenario | direct client | inputfs | rclone | s3fs |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for r in with_cpu {
            let cell = |name: &str| {
                r.cells
                    .get(name)
                    .and_then(cpu)
                    .map_or("n/a".into(), |v| format!("{v:.2}"))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.title,
                cell("baseline"),
                cell("inputfs"),
                cell("rclone"),
                cell("s3fs")
            );
        }
    }
    let _ = writeln!(s, "\nBaselines:\n");
    for r in rows {
        let _ = writeln!(s, "- {}: {}", r.title, r.baseline);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(better: Better, target: Option<Target>, cells: &[(&str, f64)]) -> Row {
        let mut r = Row::new("t", "t", "u", better, "b", target);
        for (s, v) in cells {
            r.cells.insert(
                s.to_string(),
                Cell {
                    value: *v,
                    peak_rss: None,
                    raw: serde_json::Value::Null,
                },
            );
        }
        r
    }

    #[test]
    fn ratios_say_how_many_times_as_good() {
        let r = row(
            Better::Higher,
            Some(Target::RatioAtLeast(0.9)),
            &[
                ("baseline", 200.0),
                ("inputfs", 150.0),
                ("rclone", 50.0),
                ("s3fs", 100.0),
            ],
        );
        assert_eq!(r.vs_baseline("inputfs"), Some(0.75));
        assert_eq!(r.vs_best_peer(), Some(1.5));
        assert_eq!(r.target_check(), Some(("≥0.9x".into(), false)));
        // Times: smaller is better, so the ratio is inverted.
        let t = row(
            Better::Lower,
            Some(Target::ValueAtMost(1.1)),
            &[("baseline", 4.0), ("inputfs", 1.0), ("rclone", 4.0)],
        );
        assert_eq!(t.vs_baseline("inputfs"), Some(4.0));
        assert_eq!(t.vs_best_peer(), Some(4.0));
        assert_eq!(t.target_check(), Some(("≤1.1".into(), true)));
        // Missing cells give no ratio rather than a made-up one.
        let m = row(Better::Higher, None, &[("inputfs", 1.0)]);
        assert_eq!(m.vs_baseline("inputfs"), None);
        assert_eq!(m.vs_best_peer(), None);
        assert!(markdown("x", &[], &[m]).contains("| n/a |"));
    }
}
