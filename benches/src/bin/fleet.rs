//! The fleet simulator (issue 15): N workers start cold together on one
//! dataset (a large object and a prefix of small ones) over one shared
//! directory, against the shaped S3 origin of `scripts/bench`, each behind a
//! link of its own. Workers are engines without FUSE (`inputfs_benches::fleet`
//! says why and what they are). For each shared directory and each N it
//! prints: origin bytes / dataset, origin requests by kind, the shared
//! directory's operations by kind (counted by the store itself) and per block
//! served, the slowest worker's time against one worker alone, and whether
//! every byte was right (a wrong one fails the run).
#![allow(
    clippy::disallowed_methods,
    reason = "the benchmark's own data, not a cache directory read by the product"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::Parser;
use inputfs_benches::fleet::{Dataset, WorkerRun, WorkerSetup, list, open_shared, worker};
use inputfs_benches::shape::{Shaping, ShapingProxy};
use inputfs_source::{AmazonS3ConfigKey, Origin, Snapshots};
use inputfs_store::ops::DirOp;
use inputfs_tests::netfs::SharedDir;
use inputfs_tests::{S3Server, pattern};
use sha2::{Digest, Sha256};

const BUCKET: &str = "fleet";
/// The claim timeout of every worker (the product's default).
const CLAIM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Parser)]
struct Args {
    /// Fleet sizes to run (comma-separated); one worker alone always runs first.
    #[arg(long, value_delimiter = ',', default_value = "8,32,128")]
    workers: Vec<usize>,
    /// Size of the large object.
    #[arg(long, default_value = "256MiB")]
    size: ByteSize,
    /// Number of small objects under the prefix (0: no prefix input).
    #[arg(long, default_value_t = 10_000)]
    small_files: usize,
    /// Size of each small object.
    #[arg(long, default_value = "4KiB")]
    small_size: ByteSize,
    /// Each worker's link (bytes per second over all its connections).
    #[arg(long, default_value = "32MiB")]
    worker_bandwidth: ByteSize,
    /// Bandwidth of one origin connection (the shaping proxy's cap).
    #[arg(long, default_value = "64MiB")]
    conn_bandwidth: ByteSize,
    /// Round-trip time the proxy adds to every exchange with the origin.
    #[arg(long, default_value = "20ms")]
    latency: humantime::Duration,
    /// Shared directories to run on (comma-separated): local, sshfs.
    #[arg(long, value_delimiter = ',', default_value = "local,sshfs")]
    shared: Vec<String>,
    /// Memory of all workers together; each gets its share (at least 4 blocks).
    #[arg(long, default_value = "4GiB")]
    memory: ByteSize,
    /// Block size of every worker.
    #[arg(long, default_value = "4MiB")]
    block_size: ByteSize,
    /// Small objects each worker reads at once.
    #[arg(long, default_value_t = 8)]
    small_readers: usize,
    /// Share listings through snapshots in the shared directory, as
    /// `inputfs mount --listing-max-age` does (default: every worker lists).
    #[arg(long, value_name = "DURATION")]
    listing_max_age: Option<humantime::Duration>,
}

/// One fleet run's totals.
struct FleetRun {
    workers: usize,
    slowest: f64,
    origin_bytes: u64,
    gets: u64,
    heads: u64,
    lists: u64,
    ops: BTreeMap<&'static str, u64>,
    blocks_served: u64,
    /// Bytes read and checked against their digests, by all workers.
    checked: u64,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("bench-fleet: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    for s in &args.shared {
        if !["local", "sshfs"].contains(&s.as_str()) {
            bail!("--shared: unknown shared directory {s:?} (local, sshfs)");
        }
    }
    if args.workers.contains(&0) || args.small_readers == 0 || args.worker_bandwidth.0 == 0 {
        bail!("--workers, --small-readers and --worker-bandwidth must be above 0");
    }
    let (server, data) = stage(&args)?;
    let shaping = Shaping {
        rtt: *args.latency,
        conn_bandwidth: args.conn_bandwidth.as_u64(),
    };
    let proxy = ShapingProxy::start(server.addr(), shaping)?;
    let blocks = args.size.as_u64().div_ceil(args.block_size.as_u64()) + args.small_files as u64;
    println!(
        "# inputfs fleet simulator\n\n- dataset: one object of {}, {} objects of {} under a prefix ({} in all, {blocks} blocks)\n\
         - origin: in-process S3 (s3s) behind a shaping proxy: RTT {}, {}/s per connection; each worker's link {}/s\n\
         - workers: engines without FUSE, each its own origin client and listing, the shared directory its one tier (claims on), no local tier; memory {} shared out (at least 4 blocks each), block size {}\n\
         - listings: {}\n\
         - machine: {} cores\n",
        args.size,
        args.small_files,
        args.small_size,
        ByteSize(data.bytes),
        humantime::format_duration(*args.latency),
        args.conn_bandwidth,
        args.worker_bandwidth,
        args.memory,
        args.block_size,
        args.listing_max_age.map_or_else(
            || "every worker lists".to_string(),
            |age| format!("shared through snapshots younger than {age} (--listing-max-age)")
        ),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let data = Arc::new(data);
    for kind in &args.shared {
        header(kind);
        let mut one = None;
        for n in std::iter::once(1).chain(args.workers.iter().copied()) {
            let mut shared = match kind.as_str() {
                "sshfs" => SharedDir::sshfs(false),
                _ => SharedDir::local(),
            };
            server.reset_counts();
            let run = fleet(
                &runtime,
                &args,
                &mut shared,
                &proxy,
                &server,
                &data,
                n,
                blocks,
            )
            .with_context(|| format!("{kind}, {n} workers"))?;
            let one = *one.get_or_insert(run.slowest);
            row(&run, one, data.bytes);
        }
        println!();
    }
    Ok(())
}

/// The dataset on a fresh S3 server, and what every read is checked against.
fn stage(args: &Args) -> Result<(S3Server, Dataset)> {
    let big = pattern(1, usize::try_from(args.size.as_u64())?);
    let small_len = usize::try_from(args.small_size.as_u64())?;
    let mut objects = vec![("big.bin".to_string(), big)];
    let mut small_sha = HashMap::new();
    for i in 0..args.small_files {
        let name = format!("{i:05}.jpg");
        let bytes = pattern(1000 + i as u64, small_len);
        small_sha.insert(name.clone(), Sha256::digest(&bytes).into());
        objects.push((format!("small/{name}"), bytes));
    }
    let big_sha = Sha256::digest(&objects[0].1).into();
    let bytes = objects.iter().map(|(_, b)| b.len() as u64).sum();
    let server = S3Server::with_objects(BUCKET, &objects);
    let data = Dataset {
        big_url: format!("s3://{BUCKET}/big.bin"),
        big_sha,
        small_url: (args.small_files > 0).then(|| format!("s3://{BUCKET}/small/")),
        small_sha,
        bytes,
    };
    Ok((server, data))
}

/// Run `n` workers at once over a fresh shared directory.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, all of it the run's setup"
)]
fn fleet(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    shared: &mut SharedDir,
    proxy: &ShapingProxy,
    server: &S3Server,
    data: &Arc<Dataset>,
    n: usize,
    blocks: u64,
) -> Result<FleetRun> {
    // sshfs: one client mount per worker up to 8 (each VM has its own
    // client; hundreds of sshfs processes would not fit here).
    let dirs: Vec<_> = (0..n.min(8)).map(|i| shared.mount_point(i)).collect();
    let block_size = args.block_size.as_u64();
    let memory_budget = (args.memory.as_u64() / n as u64).max(4 * block_size);
    let stores = (0..n)
        .map(|i| open_shared(&dirs[i % dirs.len()]).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    let origins: Vec<Origin> = stores
        .iter()
        .map(|store| {
            let snapshots = args.listing_max_age.map(|age| Snapshots {
                store: store.clone(),
                max_age: age.into(),
                claim_timeout: CLAIM_TIMEOUT,
            });
            origin(server, proxy, snapshots)
        })
        .collect();
    let runs: Vec<Result<WorkerRun>> = runtime.block_on(async {
        let listed = futures::future::join_all(origins.iter().map(|o| list(o, data))).await;
        let tasks: Vec<_> = origins
            .into_iter()
            .zip(listed)
            .zip(stores)
            .enumerate()
            .map(|(index, ((origin, listed), shared))| {
                let setup = WorkerSetup {
                    index,
                    shared,
                    origin,
                    nic_bytes_per_sec: args.worker_bandwidth.as_u64(),
                    memory_budget,
                    block_size,
                    small_readers: args.small_readers,
                };
                let data = data.clone();
                tokio::spawn(async move {
                    let listed = listed.with_context(|| format!("worker {index}: list"))?;
                    worker(setup, listed, data).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(
                t.await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("a worker panicked: {e}"))),
            );
        }
        out
    });
    let mut ops: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut slowest: f64 = 0.0;
    let mut checked = 0;
    for run in runs {
        let run = run?;
        slowest = slowest.max(run.secs);
        for (op, count) in run.ops {
            *ops.entry(op.name()).or_default() += count;
        }
        checked += run.checked;
    }
    Ok(FleetRun {
        workers: n,
        slowest,
        origin_bytes: server.get_bytes(),
        gets: server.get_requests(),
        heads: server.head_requests(),
        lists: server.list_requests(),
        ops,
        blocks_served: blocks * n as u64,
        checked,
    })
}

/// A worker's own origin client, through the shaping proxy, sharing
/// listings if `snapshots` says how.
fn origin(server: &S3Server, proxy: &ShapingProxy, snapshots: Option<Snapshots>) -> Origin {
    let builder = server
        .s3_options()
        .into_iter()
        .map(|(k, v)| match k {
            AmazonS3ConfigKey::Endpoint => (k, proxy.endpoint()),
            _ => (k, v),
        })
        .fold(Origin::builder().without_env(), |b, (k, v)| {
            b.s3_option(k, v)
        });
    match snapshots {
        Some(s) => builder.listing_snapshots(s),
        None => builder,
    }
    .build()
}

fn header(kind: &str) {
    println!("## shared directory: {kind}\n");
    let op_names: Vec<&str> = DirOp::ALL.iter().map(|op| op.name()).collect();
    println!(
        "| workers | origin bytes / dataset | GET | HEAD | LIST | {} | shared-dir ops per block served | slowest worker (s) | vs one worker | bytes checked / dataset |",
        op_names.join(" | ")
    );
    println!("|{}", "---|".repeat(9 + op_names.len()));
}

/// One fleet run's row (`one`: one worker's time alone).
fn row(r: &FleetRun, one: f64, dataset: u64) {
    let total: u64 = r.ops.values().sum();
    let per_op: Vec<String> = DirOp::ALL
        .iter()
        .map(|op| r.ops.get(op.name()).copied().unwrap_or(0).to_string())
        .collect();
    println!(
        "| {} | {:.3} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2}x | {:.0} |",
        r.workers,
        r.origin_bytes as f64 / dataset as f64,
        r.gets,
        r.heads,
        r.lists,
        per_op.join(" | "),
        total as f64 / r.blocks_served as f64,
        r.slowest,
        r.slowest / one,
        r.checked as f64 / dataset as f64,
    );
}
