//! `scripts/bench`: inputfs against `direct` origin reads, local-disk baselines,
//! rclone and s3fs, in one run on the same data and the same shaped S3 origin.
//! Writes `results.json`, `results.md` (also printed) and `results.png` to
//! `--out`. What each scenario and baseline is: `inputfs_benches::scenarios`;
//! how the origin is shaped: `inputfs_benches::shape`.
#![allow(
    clippy::disallowed_methods,
    reason = "the benchmarks' own data, logs and result files, not a cache directory read by the product"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::Parser;
use inputfs_benches::scenarios::{ALL, Bench, PEERS};
use inputfs_benches::setup::{Config, Stage, flag_value};
use inputfs_benches::shape::Shaping;
use inputfs_benches::{chart, report};

#[derive(Parser)]
#[command(
    about = "Benchmark inputfs against direct reads, rclone and s3fs on one shaped S3 origin"
)]
struct Args {
    /// Small sizes and short random runs: the whole run in under 5 minutes.
    #[arg(long)]
    quick: bool,
    /// Size of the big object [default: 1GiB, --quick: 256MiB].
    #[arg(long)]
    size: Option<ByteSize>,
    /// Number of small files.
    #[arg(long, default_value_t = 1000)]
    small_files: usize,
    /// Size of each small file.
    #[arg(long, default_value = "64KiB")]
    small_size: ByteSize,
    /// Round-trip time the proxy adds to every exchange with the origin.
    #[arg(long, default_value = "20ms")]
    latency: humantime::Duration,
    /// Bandwidth of one origin connection (response direction); 0 = no cap.
    #[arg(long, default_value = "64MiB")]
    conn_bandwidth: ByteSize,
    /// Systems to measure (comma-separated): direct,inputfs,rclone,s3fs.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,inputfs,rclone,s3fs"
    )]
    systems: Vec<String>,
    /// Scenarios to run (comma-separated): cold,warm-shared,warm-local,page-cache,random,random-direct,small-files,workers,https,ttfb,ml.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cold,warm-shared,warm-local,page-cache,random,random-direct,small-files,workers,https,ttfb,ml"
    )]
    scenarios: Vec<String>,
    /// An argument appended to every `inputfs mount` (repeatable), e.g.
    /// `--inputfs-arg=--block-size=8MiB`.
    #[arg(long = "inputfs-arg", value_name = "ARG", allow_hyphen_values = true)]
    inputfs_args: Vec<String>,
    /// Readers of the random-read and small-file scenarios.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// How long each random-read run lasts [default: 10s, --quick: 3s].
    #[arg(long)]
    random_duration: Option<humantime::Duration>,
    /// Workers of the cold-start scenario.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Output directory [default: target/bench/<UTC timestamp>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the work directory (daemon logs, caches) for inspection.
    #[arg(long)]
    keep_work: bool,
    /// A label for this run (shown in the report, e.g. the sweep point).
    #[arg(long)]
    label: Option<String>,
}

fn main() {
    let result = run();
    // An interrupted run is ended by its cleanup thread, once it has unmounted.
    while inputfs_benches::systems::interrupted() {
        std::thread::sleep(Duration::from_secs(1));
    }
    if let Err(e) = result {
        eprintln!("bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn config(args: &Args) -> Result<Config> {
    for s in &args.systems {
        if !["direct", "inputfs"].contains(&s.as_str()) && !PEERS.contains(&s.as_str()) {
            bail!("--systems: unknown system {s:?} (direct, inputfs, rclone, s3fs)");
        }
    }
    for s in &args.scenarios {
        if !ALL.contains(&s.as_str()) {
            bail!("--scenarios: unknown scenario {s:?} ({})", ALL.join(", "));
        }
    }
    let size_of = |flag: &str, default: &str| -> Result<u64> {
        let v = flag_value(&args.inputfs_args, flag).unwrap_or_else(|| default.to_string());
        v.parse::<ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| anyhow::anyhow!("--inputfs-arg {flag}={v}: {e}"))
    };
    let size = args
        .size
        .unwrap_or(ByteSize::mib(if args.quick { 256 } else { 1024 }))
        .as_u64();
    if size == 0 || args.workers == 0 || args.threads == 0 {
        bail!("--size, --workers and --threads must be above 0");
    }
    Ok(Config {
        label: args.label.clone(),
        quick: args.quick,
        size,
        small_files: args.small_files,
        small_size: args.small_size.as_u64(),
        shaping: Shaping {
            rtt: *args.latency,
            conn_bandwidth: args.conn_bandwidth.as_u64(),
        },
        systems: args.systems.clone(),
        scenarios: args.scenarios.clone(),
        inputfs_args: args.inputfs_args.clone(),
        threads: args.threads,
        random_duration: args
            .random_duration
            .map(Into::into)
            .unwrap_or(Duration::from_secs(if args.quick { 3 } else { 10 })),
        workers: args.workers,
        block_size: size_of("--block-size", "4MiB")?,
        max_readahead: size_of("--max-readahead", "64MiB")?,
        keep_work: args.keep_work,
    })
}

/// Check the tools the selected systems need before spending minutes on setup.
fn preflight(cfg: &Config) -> Result<()> {
    let mut need = vec!["fusermount3"];
    need.extend(PEERS.iter().filter(|p| cfg.has_system(p)));
    for bin in need {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join(bin).is_file());
        if !found {
            bail!(
                "`{bin}` is not installed: run scripts/bench (it installs rclone, s3fs and fuse3)"
            );
        }
    }
    if !std::path::Path::new(chart::FONT_PATH).exists() {
        bail!(
            "{} is missing: apt-get install fonts-dejavu-core (scripts/bench does)",
            chart::FONT_PATH
        );
    }
    Ok(())
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "not installed".into())
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "mem_total": std::fs::read_to_string("/proc/meminfo").ok()
            .and_then(|s| s.lines().next().map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))),
        "rclone": command_line("rclone", &["version"]),
        "s3fs": command_line("s3fs", &["--version"]),
    })
}

fn run() -> Result<()> {
    let args = Args::parse();
    let cfg = config(&args)?;
    preflight(&cfg)?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string()
                .replace(':', "-");
            PathBuf::from("target/bench").join(stamp)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let started = Instant::now();
    let stage = Stage::build(&cfg)?;
    inputfs_benches::systems::cleanup_on_signal(stage.work.path().to_path_buf(), cfg.keep_work)?;
    let setup_secs = started.elapsed().as_secs_f64();
    let mut bench = Bench::new(&cfg, &stage);
    bench.run()?;
    let total = started.elapsed();
    let setup = vec![
        (
            "label".to_string(),
            cfg.label.clone().unwrap_or_else(|| "—".into()),
        ),
        (
            "data".into(),
            format!(
                "big object {}, {} small files of {}",
                ByteSize(cfg.size),
                cfg.small_files,
                ByteSize(cfg.small_size)
            ),
        ),
        (
            "origin".into(),
            format!(
                "in-process S3 (s3s) behind a shaping proxy: RTT {}, {} per connection (response direction)",
                humantime::format_duration(cfg.shaping.rtt),
                if cfg.shaping.conn_bandwidth == 0 {
                    "no cap".to_string()
                } else {
                    format!("{}/s", ByteSize(cfg.shaping.conn_bandwidth))
                }
            ),
        ),
        (
            "direct".into(),
            format!(
                "{} ranged GETs, {} in flight",
                ByteSize(cfg.block_size),
                cfg.direct_in_flight()
            ),
        ),
        (
            "inputfs extra args".into(),
            if cfg.inputfs_args.is_empty() {
                "none".into()
            } else {
                cfg.inputfs_args.join(" ")
            },
        ),
        (
            "readers".into(),
            format!(
                "sequential: 1 reader, 1 MiB reads; random and small files: {} threads; random runs {}; {} workers",
                cfg.threads,
                humantime::format_duration(cfg.random_duration),
                cfg.workers
            ),
        ),
        ("machine".into(), {
            let m = machine();
            format!(
                "{} cores, {}, kernel {}",
                m["nproc"],
                m["cpu"].as_str().unwrap_or(""),
                m["kernel"].as_str().unwrap_or("")
            )
        }),
        (
            "run time".into(),
            format!("{:.0} s (setup {:.0} s)", total.as_secs_f64(), setup_secs),
        ),
    ];
    let title = format!(
        "inputfs benchmark{}",
        cfg.label
            .as_ref()
            .map(|l| format!(" — {l}"))
            .unwrap_or_default()
    );
    let md = report::markdown(&title, &setup, &bench.rows);
    let json = serde_json::json!({
        "config": cfg,
        "machine": machine(),
        "run_secs": total.as_secs_f64(),
        "setup_secs": setup_secs,
        "proxy": {"connections": stage.proxy.connections(), "response_bytes": stage.proxy.response_bytes()},
        "rows": bench.rows,
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(out.join("results.md"), &md)?;
    chart::draw(&out.join("results.png"), &title, &bench.rows)?;
    println!("{md}");
    eprintln!("bench: wrote {}/results.{{json,md,png}}", out.display());
    Ok(())
}
