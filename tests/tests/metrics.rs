//! `--metrics-addr` end to end: a mount over the in-process S3 server is scraped
//! during and after a cold read (origin counters move, by exactly the object
//! bytes), then remounted over the same cache and read again (tier hit counters
//! move, the origin ones stay at zero), and the numbers are checked against the
//! S3 server's own counts. A taken address fails the mount in one line.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use inputfs_tests::mounts::{Mount, is_mounted, run_inputfs};
use inputfs_tests::scrape::{get, scrape};
use inputfs_tests::{S3Server, free_port, sha256_hex};

const BUCKET: &str = "metrics";
const BLOCK: u64 = 256 * 1024;

/// An address nobody listens on right now.
fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

struct Rig {
    server: S3Server,
    tmp: tempfile::TempDir,
    objects: Vec<(String, Vec<u8>)>,
}

impl Rig {
    fn new() -> Rig {
        let objects = inputfs_tests::data::training_set(7);
        let server = S3Server::with_objects(BUCKET, &objects);
        Rig {
            server,
            tmp: tempfile::tempdir().unwrap(),
            objects,
        }
    }

    fn mount(&self, name: &str, metrics: &str) -> Mount {
        let args = [
            format!("--input=train=s3://{BUCKET}/train/"),
            format!("--block-size={BLOCK}"),
            format!("--cache-dir={}", self.tmp.path().join("cache").display()),
            format!("--metrics-addr={metrics}"),
            // Every read through the daemon, so the warm read is counted too.
            "--passthrough=off".to_string(),
        ];
        Mount::start(&self.tmp.path().join(name), &args, &self.server.env()).expect("mount")
    }

    fn total(&self) -> u64 {
        self.objects.iter().map(|(_, v)| v.len() as u64).sum()
    }

    fn blocks(&self) -> u64 {
        self.objects
            .iter()
            .map(|(_, v)| (v.len() as u64).div_ceil(BLOCK))
            .sum()
    }

    /// Read every object through the mount and check its bytes.
    fn read_all(&self, m: &Mount) {
        for (key, data) in &self.objects {
            let rel = key.strip_prefix("train/").unwrap();
            let got = std::fs::read(m.path("train").join(rel)).unwrap();
            assert_eq!(sha256_hex(&got), sha256_hex(data), "{key}");
        }
    }
}

#[test]
fn scrapes_follow_a_cold_read_then_a_warm_one() {
    let r = Rig::new();
    let (total, blocks) = (r.total(), r.blocks());

    // Cold: an empty cache.
    let addr = free_addr();
    let m = r.mount("cold", &addr);
    let before = scrape(&addr);
    assert_eq!(before.get("inputfs_origin_requests_total"), 0);
    assert!(
        before.has("inputfs_origin_requests_total"),
        "counters are exported from the start"
    );
    assert!(before.has("inputfs_tier_degraded{tier=\"local\"}"));

    // During a read: part of the biggest file is in, the origin counters moved.
    let (key, data) = &r.objects[0];
    let mut file =
        std::fs::File::open(m.path("train").join(key.strip_prefix("train/").unwrap())).unwrap();
    let mut head = vec![0u8; 512 * 1024];
    file.read_exact(&mut head).unwrap();
    assert_eq!(sha256_hex(&head), sha256_hex(&data[..head.len()]));
    let during = scrape(&addr);
    let origin_bytes = during.get("inputfs_origin_bytes_total");
    assert!(origin_bytes >= head.len() as u64, "{origin_bytes}");
    assert!(origin_bytes <= data.len() as u64, "{origin_bytes}");
    assert!(during.get("inputfs_origin_requests_total") >= 2);
    assert!(during.get("inputfs_read_bytes_total") >= head.len() as u64);

    // The handle stays open until every object was read: closing it would
    // cancel the blocks its stream (from the start of the file) has in flight
    // ahead of it, which the server counts as sent and inputfs, having
    // dropped the request, as never received: then "every byte once" below
    // could not be exact.
    r.read_all(&m);
    drop(file);
    let cold = scrape(&addr);
    // Exactly every byte once from the origin, as the server counted it.
    assert_eq!(cold.get("inputfs_origin_bytes_total"), total);
    assert_eq!(cold.get("inputfs_origin_bytes_total"), r.server.get_bytes());
    assert_eq!(cold.get("inputfs_origin_requests_total"), blocks);
    assert_eq!(
        cold.get("inputfs_origin_requests_total"),
        r.server.get_requests()
    );
    assert_eq!(cold.get("inputfs_origin_errors_total"), 0);
    assert_eq!(cold.get("inputfs_origin_throttled_total"), 0);
    assert_eq!(cold.get("inputfs_origin_retries_total"), 0);
    assert_eq!(
        cold.get("inputfs_tier_misses_total{tier=\"local\"}"),
        blocks
    );
    assert_eq!(cold.get("inputfs_tier_hits_total{tier=\"local\"}"), 0);
    // Reads that loaded a block themselves; the rest (a block's later pages,
    // blocks a readahead was already loading) were served by memory.
    let memory_misses = cold.get("inputfs_tier_misses_total{tier=\"memory\"}");
    assert!((1..=blocks).contains(&memory_misses), "{memory_misses}");
    assert!(cold.get("inputfs_tier_hits_total{tier=\"memory\"}") > 0);
    assert!(cold.get("inputfs_tier_read_bytes_total{tier=\"memory\"}") < total);
    assert_eq!(cold.get("inputfs_read_bytes_total"), total);
    let reads = cold.get("inputfs_read_seconds_count");
    assert!(reads >= r.objects.len() as u64, "{reads} FUSE reads");
    assert_eq!(
        cold.get("inputfs_read_seconds_bucket{le=\"+Inf\"}"),
        reads,
        "every read in the histogram"
    );
    assert_eq!(cold.get("inputfs_tier_degraded{tier=\"local\"}"), 0);
    assert_eq!(cold.get("inputfs_memory_inflight_bytes"), 0);
    assert!(cold.get("inputfs_memory_cached_bytes") > 0);
    m.stop(); // drains the publishes into the local cache
    r.server.reset_counts();

    // Warm: a new process over the same cache.
    let addr = free_addr();
    let m = r.mount("warm", &addr);
    r.read_all(&m);
    let warm = scrape(&addr);
    assert_eq!(warm.get("inputfs_origin_requests_total"), 0);
    assert_eq!(warm.get("inputfs_origin_bytes_total"), 0);
    assert_eq!(warm.get("inputfs_tier_hits_total{tier=\"local\"}"), blocks);
    assert_eq!(
        warm.get("inputfs_tier_read_bytes_total{tier=\"local\"}"),
        total
    );
    assert_eq!(warm.get("inputfs_tier_misses_total{tier=\"local\"}"), 0);
    assert_eq!(warm.get("inputfs_read_bytes_total"), total);
    assert!(warm.get("inputfs_read_seconds_count") >= r.objects.len() as u64);
    // The store counts its operations on the directory: each block found
    // there was (at least) one open.
    let ops = |op: &str| {
        warm.get(&format!(
            "inputfs_store_ops_total{{tier=\"local\",op=\"{op}\"}}"
        ))
    };
    assert!(
        ops("open") >= blocks,
        "{} opens for {blocks} hits",
        ops("open")
    );
    for op in [
        "create", "link", "rename", "unlink", "stat", "readdir", "mkdir", "rmdir",
    ] {
        assert!(
            warm.has(&format!(
                "inputfs_store_ops_total{{tier=\"local\",op=\"{op}\"}}"
            )),
            "{op} not exported"
        );
    }
    // Read again in the same mount: the kernel's page cache or the memory tier
    // answers, never the origin.
    r.read_all(&m);
    let again = scrape(&addr);
    assert_eq!(again.get("inputfs_origin_requests_total"), 0);
    assert_eq!(again.get("inputfs_tier_hits_total{tier=\"local\"}"), blocks);
    // The local directory's usage is estimated off the read path: wait for the
    // estimate to cover every block read.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let used = scrape(&addr).get("inputfs_cache_used_bytes{tier=\"local\"}");
        if used >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "local cache used {used} < {total} bytes read, 10 s after the reads"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = get(&addr, "/other");
    assert!(status.contains(" 404 "), "{status}");
    m.stop();
    // The server's own count, once the mount is gone.
    assert_eq!(r.server.get_requests(), 0, "the warm mount sent GETs");
}

#[test]
fn origin_throttling_is_one_warning_and_counted() {
    let r = Rig::new();
    let addr = free_addr();
    let m = r.mount("throttled", &addr);
    for (key, data) in &r.objects {
        // Fewer refusals than the retry attempts (4), so every read succeeds
        // however they fall on concurrent block fetches; all within one
        // episode (30 s without a throttled response ends it).
        r.server.throttle_next_gets(3);
        let rel = key.strip_prefix("train/").unwrap();
        let got = std::fs::read(m.path("train").join(rel)).unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(data), "{key}");
    }
    let refused = r.server.throttled_gets();
    assert_eq!(refused, 3 * r.objects.len() as u64);
    let s = scrape(&addr);
    assert_eq!(s.get("inputfs_origin_throttled_total"), refused);
    // Each refused GET was asked again.
    assert_eq!(s.get("inputfs_origin_retries_total"), refused);
    assert_eq!(s.get("inputfs_origin_errors_total"), 0);
    assert_eq!(s.get("inputfs_origin_bytes_total"), r.total());
    let log = m.stop();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("origin is throttling"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per episode:\n{log}");
    // It says what the origin answered.
    assert!(
        warnings[0].contains("503 Service Unavailable"),
        "{}",
        warnings[0]
    );
    for secret in [inputfs_tests::s3::ACCESS_KEY, inputfs_tests::s3::SECRET_KEY] {
        assert!(!log.contains(secret), "a credential was logged:\n{log}");
    }
}

#[test]
fn a_taken_metrics_address_fails_the_mount_in_one_line() {
    let r = Rig::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mnt = r.tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = run_inputfs(
        &[
            "mount".into(),
            mnt.display().to_string(),
            format!("--input=train=s3://{BUCKET}/train/"),
            format!("--cache-dir={}", r.tmp.path().join("cache").display()),
            format!("--log-file={}", r.tmp.path().join("log").display()),
            format!("--metrics-addr={addr}"),
        ],
        &r.server.env(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mount succeeded: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics-addr {addr}")),
        "{stderr}"
    );
    assert!(!is_mounted(&mnt), "something was mounted");
    assert!(dir_is_empty(&mnt));
    // Nothing was resolved either: the address is checked first.
    assert_eq!(r.server.head_requests() + r.server.list_requests(), 0);
}

fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

#[test]
fn the_readme_documents_every_metric() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    for metric in inputfs_core::metric_names::ALL {
        assert!(
            readme.contains(&format!("`{}", metric.name)),
            "README.md does not list {}",
            metric.name
        );
    }
}
