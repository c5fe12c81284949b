//! Capacity benchmarks, side by side in one run:
//! - warm restart: how long `inputfs mount` takes over a local cache of many
//!   blocks against an empty one (mounting must not scan the cache);
//! - sweeping: how fast the usage accounting goes on sshfs and on a local
//!   directory — a full rescan (objects and blocks per second), an incremental
//!   sweep after new placements (journal records per second), and a sweep with
//!   nothing new.
#![allow(
    clippy::disallowed_methods,
    reason = "the benchmarks' own data, logs and result files, not a cache directory read by the product"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use inputfs_core::{BlockId, BlockStore, CacheKey, SourceKind};
use inputfs_store::{DirStore, Limits};
use inputfs_tests::mounts::{run_inputfs, unmount};
use inputfs_tests::netfs::SharedDir;

#[derive(Parser)]
struct Args {
    /// Blocks in the cache for the warm-restart comparison.
    #[arg(long, default_value_t = 100_000)]
    restart_blocks: u64,
    /// Mounts timed per case (the median is reported).
    #[arg(long, default_value_t = 5)]
    mounts: usize,
    /// Objects created for the sweep measurements.
    #[arg(long, default_value_t = 400)]
    sweep_objects: u32,
    /// Blocks per object for the sweep measurements.
    #[arg(long, default_value_t = 10)]
    sweep_blocks: u64,
}

const BLOCK: usize = 4096;

fn key(n: u32) -> CacheKey {
    CacheKey::new(
        SourceKind::S3,
        &format!("s3://bench/object-{n}"),
        "etag:1",
        1 << 40,
        BLOCK as u64,
    )
}

/// Fill `store` with `objects` x `blocks` blocks; returns blocks per second.
fn fill(store: &DirStore, first: u32, objects: u32, blocks: u64) -> f64 {
    let data = vec![7u8; BLOCK];
    let start = Instant::now();
    for n in first..first + objects {
        for index in 0..blocks {
            store
                .put(&BlockId { key: key(n), index }, &data)
                .expect("put");
        }
    }
    (objects as u64 * blocks) as f64 / start.elapsed().as_secs_f64()
}

fn main() -> Result<()> {
    let args = Args::parse();
    warm_restart(&args)?;
    println!();
    println!(
        "| shared directory | placing (blocks/s) | full rescan (objects/s) | full rescan (blocks/s) | incremental sweep (records/s) | sweep with nothing new |"
    );
    println!("|---|---|---|---|---|---|");
    for mut shared in [
        SharedDir::local(),
        SharedDir::sshfs(true),
        SharedDir::sshfs(false),
    ] {
        sweeps(&args, &mut shared)?;
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_mounts(n: usize, mnt: &Path, cache: &Path, origin: &Path) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        let out = run_inputfs(
            &[
                "mount".into(),
                mnt.display().to_string(),
                format!("--input=d=file://{}/", origin.display()),
                format!("--cache-dir={}", cache.display()),
                format!("--log-file={}", mnt.with_extension("log").display()),
            ],
            &[],
        );
        times.push(start.elapsed());
        unmount(&mnt.canonicalize()?);
        if !out.status.success() {
            bail!("mount failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(300)); // let the daemon exit
    }
    Ok(median(times))
}

fn warm_restart(args: &Args) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let origin = tmp.path().join("origin");
    std::fs::create_dir_all(&origin)?;
    std::fs::write(origin.join("f.bin"), vec![1u8; 10_000])?;
    let (empty, full, mnt) = (
        tmp.path().join("empty"),
        tmp.path().join("full"),
        tmp.path().join("mnt"),
    );
    for d in [&empty, &full, &mnt] {
        std::fs::create_dir_all(d)?;
    }
    let objects = (args.restart_blocks / 100).max(1) as u32;
    eprintln!(
        "filling a local cache with {} blocks...",
        objects as u64 * 100
    );
    let store = DirStore::open(&full, "local")?;
    let rate = fill(&store, 0, objects, 100);
    store.flush_usage()?;
    drop(store);
    eprintln!("  ({rate:.0} blocks/s)");
    let t_empty = time_mounts(args.mounts, &mnt, &empty, &origin)?;
    let t_full = time_mounts(args.mounts, &mnt, &full, &origin)?;
    println!(
        "\nWarm restart: `inputfs mount` until serving, median of {} mounts\n",
        args.mounts
    );
    println!("| local cache | mount time | vs empty |");
    println!("|---|---|---|");
    println!(
        "| empty | {:.0} ms | 1.00x |",
        t_empty.as_secs_f64() * 1000.0
    );
    println!(
        "| {} blocks | {:.0} ms | {:.2}x |",
        objects as u64 * 100,
        t_full.as_secs_f64() * 1000.0,
        t_full.as_secs_f64() / t_empty.as_secs_f64()
    );
    Ok(())
}

fn sweeps(args: &Args, shared: &mut SharedDir) -> Result<()> {
    let (a_dir, b_dir) = (shared.mount_point(0), shared.mount_point(1));
    let a = DirStore::open(&a_dir, "shared")?;
    let b = DirStore::open(&b_dir, "shared")?;
    let objects = args.sweep_objects;
    eprintln!(
        "{}: placing {} blocks...",
        shared.kind(),
        objects as u64 * args.sweep_blocks
    );
    let placing = fill(&a, 0, objects, args.sweep_blocks);
    a.flush_usage()?;
    let none = Limits::default();
    // Full rescan: no index yet.
    let start = Instant::now();
    let r = b.evict(&none, false)?.expect("lease");
    let rescan = start.elapsed().as_secs_f64();
    assert!(r.rescanned);
    // Incremental: another worker places more, then a sweep folds its journal in.
    fill(&a, objects, objects / 10, args.sweep_blocks);
    a.flush_usage()?;
    let start = Instant::now();
    let r2 = b.evict(&none, false)?.expect("lease");
    let incremental = start.elapsed().as_secs_f64();
    assert!(!r2.rescanned);
    let start = Instant::now();
    b.evict(&none, false)?.expect("lease");
    let noop = start.elapsed();
    println!(
        "| {} | {:.0} | {:.0} | {:.0} | {:.0} ({} records in {:.0} ms) | {:.0} ms |",
        shared.kind(),
        placing,
        objects as f64 / rescan,
        (objects as u64 * args.sweep_blocks) as f64 / rescan,
        r2.records_ingested as f64 / incremental,
        r2.records_ingested,
        incremental * 1000.0,
        noop.as_secs_f64() * 1000.0
    );
    Ok(())
}
