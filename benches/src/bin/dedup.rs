//! Cross-worker de-duplication: N workers, each its own inputfs mount, cold-read
//! the same object at the same moment over one shared cache, once with claims
//! and once without. Prints what each run pulled from the origin, as a multiple
//! of the object's size, counted by the origin (nginx's access log).
#![allow(
    clippy::disallowed_methods,
    reason = "the benchmarks' own data, logs and result files, not a cache directory read by the product"
)]

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::Parser;
use inputfs_tests::mounts::Mount;
use inputfs_tests::{NginxServer, pattern, sha256_hex};
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    /// Size of the object every worker reads.
    #[arg(long, default_value = "1GiB")]
    size: ByteSize,
    /// Number of workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

struct Run {
    origin_bytes: u64,
    origin_gets: u64,
    wall: Duration,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let size = usize::try_from(args.size.as_u64()).context("--size")?;
    let root = tempfile::tempdir()?;
    let data_dir = root.path().join("origin");
    std::fs::create_dir_all(&data_dir)?;
    eprintln!("generating {} of test data...", args.size);
    let data = pattern(42, size);
    let want = sha256_hex(&data);
    std::fs::write(data_dir.join("object.bin"), &data)?;
    drop(data);
    let nginx = NginxServer::start(&data_dir);
    let mut rows = Vec::new();
    for (label, claim_timeout) in [("claims on", "20s"), ("claims off", "0s")] {
        let run = cold_start(
            &nginx,
            root.path(),
            label,
            claim_timeout,
            args.workers,
            &want,
        )?;
        rows.push((label, run));
    }
    println!(
        "\n{} workers cold-reading one {} object at once over one shared cache (local directory)\n",
        args.workers, args.size
    );
    println!("| mode | origin bytes | x object size | origin GETs | wall time |");
    println!("|---|---|---|---|---|");
    for (label, r) in &rows {
        println!(
            "| {label} | {} | {:.2}x | {} | {:.1} s |",
            r.origin_bytes,
            r.origin_bytes as f64 / size as f64,
            r.origin_gets,
            r.wall.as_secs_f64()
        );
    }
    Ok(())
}

fn cold_start(
    nginx: &NginxServer,
    root: &Path,
    label: &str,
    claim_timeout: &str,
    workers: usize,
    want: &str,
) -> Result<Run> {
    let run_dir = root.join(label.replace(' ', "-"));
    let shared = run_dir.join("shared");
    std::fs::create_dir_all(&shared)?;
    let mounts = (0..workers)
        .map(|w| {
            let args = vec![
                format!("--input=data={}", nginx.url("object.bin")),
                format!(
                    "--cache-dir={}",
                    run_dir.join(format!("local{w}")).display()
                ),
                format!("--shared-cache={}", shared.display()),
                format!("--claim-timeout={claim_timeout}"),
            ];
            Mount::start(&run_dir.join(format!("mnt{w}")), &args, &[])
                .map_err(|e| anyhow::anyhow!("worker {w}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    nginx.reset_counts();
    let barrier = Barrier::new(workers);
    let start = Instant::now();
    let sums: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = mounts
            .iter()
            .map(|m| {
                let path = m.path("data/object.bin");
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    sha256_of(&path)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .collect::<Result<_>>()
    })?;
    let wall = start.elapsed();
    for (w, sum) in sums.iter().enumerate() {
        if sum != want {
            bail!("{label}: worker {w} read wrong bytes");
        }
    }
    drop(mounts);
    Ok(Run {
        origin_bytes: nginx.get_bytes(),
        origin_gets: nginx.get_requests(),
        wall,
    })
}

fn sha256_of(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
