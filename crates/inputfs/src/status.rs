//! `inputfs status`: what a cache directory holds and how it is used, per tier.
//!
//! Read-only: it reads the usage index and the journals since, counts stray
//! temp files and claims, and sums the statistics running workers publish in
//! `workers/` (those updated in the last two minutes) into hit ratios.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use inputfs_store::{DirStore, ROOT_NAME};
use serde::Serialize;

use crate::cli::TierDirs;
use crate::maintain::{WorkerStats, unix_ms};

/// Workers whose statistics are older than this are not running any more.
const LIVE: Duration = Duration::from_secs(120);
/// A temp file older than this is a leftover, not a publish in progress.
const STALE_TEMP: Duration = Duration::from_secs(3600);

#[derive(Debug, Serialize)]
pub struct TierStatus {
    pub tier: String,
    pub dir: PathBuf,
    pub used_bytes: u64,
    pub max_bytes: Option<u64>,
    pub min_free_percent: Option<f64>,
    pub fs_total_bytes: Option<u64>,
    pub fs_free_bytes: Option<u64>,
    pub objects: usize,
    pub blocks: usize,
    pub oldest_access_unix_ms: Option<u64>,
    pub newest_access_unix_ms: Option<u64>,
    pub temp_files: usize,
    pub stale_temp_files: usize,
    pub claims: usize,
    pub running_workers: usize,
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: Option<f64>,
}

pub fn run(dirs: &TierDirs, json: bool) -> Result<()> {
    let mut out = Vec::new();
    for (tier, dir) in dirs.list()? {
        out.push(tier_status(tier, &dir)?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for t in &out {
            print_human(t);
        }
    }
    Ok(())
}

/// Open an existing cache directory without creating anything in it.
pub fn open_existing(tier: &str, dir: &Path) -> Result<DirStore> {
    let holds = DirStore::holds_cache(dir)
        .with_context(|| format!("{}: cannot look for {ROOT_NAME}/ in it", dir.display()))?;
    if !holds {
        bail!(
            "{} holds no inputfs cache (no {ROOT_NAME}/ in it)",
            dir.display()
        );
    }
    DirStore::open(dir, tier).with_context(|| format!("{}", dir.display()))
}

fn tier_status(tier: &str, dir: &Path) -> Result<TierStatus> {
    let store = open_existing(tier, dir)?;
    let index = store
        .usage_index()
        .with_context(|| format!("{}: cannot read the usage index", dir.display()))?;
    let accesses = index.objects.values().map(|o| o.last_access);
    let strays = store.strays(STALE_TEMP);
    let workers = live_workers(&store);
    let (hits, misses) = workers
        .iter()
        .flat_map(|w| w.tiers.iter().filter(|t| t.name == tier))
        .fold((0, 0), |(h, m), t| (h + t.hits, m + t.misses));
    let space = nix::sys::statvfs::statvfs(dir).ok();
    Ok(TierStatus {
        tier: tier.to_string(),
        dir: dir.to_path_buf(),
        used_bytes: index.bytes(),
        max_bytes: index.limits.max_bytes,
        min_free_percent: index.limits.min_free_percent,
        fs_total_bytes: space.as_ref().map(|s| s.blocks() * s.fragment_size()),
        fs_free_bytes: space
            .as_ref()
            .map(|s| s.blocks_available() * s.fragment_size()),
        objects: index.objects.len(),
        blocks: index.blocks(),
        oldest_access_unix_ms: accesses.clone().min(),
        newest_access_unix_ms: accesses.max(),
        temp_files: strays.temp_files,
        stale_temp_files: strays.stale_temp_files,
        claims: strays.claims,
        running_workers: workers.len(),
        hits,
        misses,
        hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
    })
}

fn live_workers(store: &DirStore) -> Vec<WorkerStats> {
    let now = unix_ms();
    store
        .worker_notes()
        .into_iter()
        .filter_map(|bytes| serde_json::from_slice::<WorkerStats>(&bytes).ok())
        .filter(|w| now.saturating_sub(w.updated_unix_ms) < LIVE.as_millis() as u64)
        .collect()
}

fn print_human(t: &TierStatus) {
    let size = |b: u64| bytesize::ByteSize(b).to_string();
    let limit = match (t.max_bytes, t.min_free_percent) {
        (None, None) => "no limit".to_string(),
        (max, free) => [
            max.map(|m| format!("max {}", size(m))),
            free.map(|f| format!("keep {f}% free")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    };
    let ago = |ms: Option<u64>| {
        ms.map_or("-".to_string(), |ms| {
            let secs = unix_ms().saturating_sub(ms) / 1000;
            format!(
                "{} ago",
                humantime::format_duration(Duration::from_secs(secs))
            )
        })
    };
    println!("{} tier: {}", t.tier, t.dir.display());
    println!("  used        {} ({limit})", size(t.used_bytes));
    if let (Some(total), Some(free)) = (t.fs_total_bytes, t.fs_free_bytes) {
        println!("  filesystem  {} free of {}", size(free), size(total));
    }
    println!("  objects     {} ({} blocks)", t.objects, t.blocks);
    println!(
        "  accessed    oldest {}, newest {}",
        ago(t.oldest_access_unix_ms),
        ago(t.newest_access_unix_ms)
    );
    println!(
        "  strays      {} temp files ({} stale), {} claims",
        t.temp_files, t.stale_temp_files, t.claims
    );
    match t.hit_ratio {
        Some(r) => println!(
            "  hit ratio   {:.1}% ({} hits, {} misses) over {} running workers",
            r * 100.0,
            t.hits,
            t.misses,
            t.running_workers
        ),
        None => println!("  hit ratio   - ({} running workers)", t.running_workers),
    }
}
