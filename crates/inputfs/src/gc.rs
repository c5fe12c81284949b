//! `inputfs gc`: sweep a cache directory now — evict least recently read objects
//! down to `--max-size` (or the limits its mounts configured), and remove what
//! dead workers left — and say what was removed. `--dry-run` says what would be.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use inputfs_store::Limits;
use serde::Serialize;

use crate::cli::TierDirs;
use crate::status::open_existing;

/// How long to wait for a sweep another worker is running.
const WAIT_FOR_LEASE: Duration = Duration::from_secs(60);
/// How long the sweep lease may be seen without a holder's line, look after
/// look, before `gc` says so instead of waiting: a worker writes its line
/// at once.
const LEASE_WITHOUT_HOLDER: Duration = Duration::from_secs(5);
/// Leftovers older than this are removed (as mounts do at start).
const STALE_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Serialize)]
struct GcReport {
    tier: String,
    dry_run: bool,
    used_before: u64,
    used_after: u64,
    target: u64,
    objects_removed: usize,
    blocks_removed: usize,
    bytes_removed: u64,
    objects_not_removable: usize,
    temp_files_removed: usize,
    claims_removed: usize,
}

pub fn run(dirs: &TierDirs, max_size: Option<ByteSize>, dry_run: bool, json: bool) -> Result<()> {
    let mut reports = Vec::new();
    for (tier, dir) in dirs.list()? {
        let store = open_existing(tier, &dir)?;
        let recorded = store.usage_index()?.limits;
        let limits = Limits {
            max_bytes: max_size.map(|s| s.as_u64()).or(recorded.max_bytes),
            min_free_percent: recorded.min_free_percent,
        };
        let started = Instant::now();
        let mut unnamed_since = None;
        let eviction = loop {
            if let Some(e) = store.evict(&limits, dry_run)? {
                break e;
            }
            let unnamed = store.sweep_lease_holder() == inputfs_store::Holder::Unnamed;
            let since = if unnamed {
                *unnamed_since.get_or_insert_with(Instant::now)
            } else {
                unnamed_since = None;
                Instant::now()
            };
            if since.elapsed() > LEASE_WITHOUT_HOLDER {
                bail!(
                    "{}: the sweep lease {} names no worker (a worker writes its line at once); \
                     it is taken over when 5 minutes old, or remove it if no worker is sweeping",
                    dir.display(),
                    store.lease_path().display()
                );
            }
            if started.elapsed() > WAIT_FOR_LEASE {
                bail!(
                    "{}: another worker has been sweeping for over {}s; try again later",
                    dir.display(),
                    WAIT_FOR_LEASE.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        // The same rules either way, so a dry run reports what the real run
        // then removes.
        let swept = store
            .sweep(STALE_AFTER, Duration::from_secs(20), dry_run)
            .with_context(|| format!("{}: sweeping leftovers", dir.display()))?;
        reports.push(GcReport {
            tier: tier.to_string(),
            dry_run,
            used_before: eviction.used_before,
            used_after: eviction.used_after,
            target: eviction.target,
            objects_removed: eviction.objects,
            blocks_removed: eviction.blocks,
            bytes_removed: eviction.bytes,
            objects_not_removable: eviction.failed,
            temp_files_removed: swept.temp_files,
            claims_removed: swept.claims,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    for r in &reports {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        println!(
            "{} tier: {verb} {} objects ({} blocks, {}); usage {} -> {} (target {}); {verb} {} temp files and {} stale claims{}",
            r.tier,
            r.objects_removed,
            r.blocks_removed,
            ByteSize(r.bytes_removed),
            ByteSize(r.used_before),
            ByteSize(r.used_after),
            ByteSize(r.target),
            r.temp_files_removed,
            r.claims_removed,
            if r.objects_not_removable > 0 {
                format!(
                    "; {} objects in use could not be removed yet",
                    r.objects_not_removable
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
