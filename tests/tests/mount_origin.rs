//! End to end against real origins: an S3-protocol server (s3s) and nginx. Proves
//! with the origin's own counters that a warm remount reads nothing from it, that
//! the shared tier serves a second worker, and that a random read of a 1 GiB object
//! fetches only the blocks it needs.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use inputfs_tests::mounts::{Mount, is_mounted, run_inputfs};
use inputfs_tests::{NginxServer, S3Server, pattern, sha256_hex};
use inputfs_tests::{cached_blocks, tier_copies};

const BUCKET: &str = "datasets";

fn objects() -> Vec<(String, Vec<u8>)> {
    inputfs_tests::data::training_set(100)
}

struct S3Rig {
    server: S3Server,
    tmp: tempfile::TempDir,
    objects: Vec<(String, Vec<u8>)>,
}

fn s3_rig() -> S3Rig {
    let objects = objects();
    let server = S3Server::with_objects(BUCKET, &objects);
    S3Rig {
        server,
        tmp: tempfile::tempdir().unwrap(),
        objects,
    }
}

impl S3Rig {
    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn mount(&self, mnt: &str, cache: &[String]) -> Mount {
        let mut args = vec![
            format!("--input=train=s3://{BUCKET}/train/"),
            "--block-size=256KiB".to_string(),
        ];
        args.extend_from_slice(cache);
        Mount::start(&self.dir(mnt), &args, &self.server.env()).expect("mount")
    }

    /// Read every object through the mount and check its bytes.
    fn read_all(&self, m: &Mount) -> u64 {
        let mut total = 0;
        for (key, data) in &self.objects {
            let rel = key.strip_prefix("train/").unwrap();
            let got = std::fs::read(m.path("train").join(rel)).unwrap();
            assert_eq!(sha256_hex(&got), sha256_hex(data), "{key}");
            total += data.len() as u64;
        }
        total
    }
}

fn flag(name: &str, p: &Path) -> String {
    format!("--{name}={}", p.display())
}

#[test]
fn second_mount_over_a_warm_local_cache_reads_nothing_from_the_origin() {
    let r = s3_rig();
    let cache = [flag("cache-dir", &r.dir("cache"))];
    let m = r.mount("mnt1", &cache);
    let total = r.read_all(&m);
    m.stop(); // drains background publishes
    assert!(
        r.server.get_bytes() >= total,
        "cold mount read from the origin"
    );
    r.server.reset_counts();

    let m = r.mount("mnt2", &cache);
    r.read_all(&m);
    drop(m);
    assert_eq!(r.server.get_requests(), 0, "warm remount issued GETs");
    assert_eq!(
        r.server.get_bytes(),
        0,
        "warm remount read bytes from the origin"
    );
}

#[test]
fn a_second_worker_reads_the_shared_tier_not_the_origin() {
    let r = s3_rig();
    let shared = r.dir("shared");
    std::fs::create_dir_all(&shared).unwrap();
    // Worker 1: no local tier at all, only the shared one.
    let m = r.mount(
        "w1",
        &["--no-local-cache".into(), flag("shared-cache", &shared)],
    );
    let total = r.read_all(&m);
    m.stop();
    assert!(r.server.get_bytes() >= total);
    r.server.reset_counts();
    // Worker 2: a fresh local disk, the same shared directory.
    let local2 = r.dir("local2");
    let m = r.mount(
        "w2",
        &[flag("cache-dir", &local2), flag("shared-cache", &shared)],
    );
    r.read_all(&m);
    let log = m.stop();
    assert_eq!(r.server.get_bytes(), 0, "worker 2 went to the origin");
    // ...and the shared hits were copied to worker 2's local tier: every copy
    // due is there, except those the daemon counts as dropped (skipped while
    // the tier was busy, and out of memory before a retry), none pending.
    let (local_blocks, shared_blocks) = (
        cached_blocks(&local2, 256 << 10).0,
        cached_blocks(&shared, 256 << 10).0,
    );
    let dropped = tier_copies(&log, "local", "dropped") as usize;
    assert_eq!(tier_copies(&log, "local", "pending"), 0, "{log}");
    assert_eq!(
        local_blocks + dropped,
        shared_blocks,
        "local blocks + copies dropped = blocks due; log:\n{log}"
    );
}

#[test]
fn missing_object_bad_credentials_and_dead_endpoint_fail_in_one_line() {
    let r = s3_rig();
    let mnt = r.dir("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cache = flag("cache-dir", &r.dir("cache"));
    let case = |input: &str, env: &[(String, String)], culprit: &str| {
        let args = vec![
            "mount".to_string(),
            mnt.display().to_string(),
            "--foreground".into(),
            format!("--input=x={input}"),
            cache.clone(),
        ];
        let out = run_inputfs(&args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{input} mounted");
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(culprit), "{culprit:?} not in {stderr}");
        assert!(!is_mounted(&mnt.canonicalize().unwrap()));
    };
    let good_env = r.server.env();
    case(
        &format!("s3://{BUCKET}/train/nope.bin"),
        &good_env,
        "s3://datasets/train/nope.bin",
    );
    case(
        &format!("s3://{BUCKET}/nothing-here/"),
        &good_env,
        "s3://datasets/nothing-here/",
    );
    // The working settings with one variable replaced.
    let with = |key: &str, value: String| -> Vec<(String, String)> {
        let mut env: Vec<_> = good_env.iter().filter(|(k, _)| k != key).cloned().collect();
        env.push((key.to_string(), value));
        env
    };
    let bad_secret = with("AWS_SECRET_ACCESS_KEY", "wrong".into());
    case(
        &format!("s3://{BUCKET}/train/c.txt"),
        &bad_secret,
        "access denied",
    );
    let dead = with("AWS_ENDPOINT_URL", inputfs_tests::dead_endpoint());
    case(
        &format!("s3://{BUCKET}/train/c.txt"),
        &dead,
        "s3://datasets/train/c.txt",
    );
    // Keys colliding in the tree ("x" and "x/y") cannot be stored by s3s-fs, which
    // keeps objects as files; the resolver's and the tree's unit tests cover them.
}

/// A sparse 1 GiB file whose region of interest holds real random bytes.
fn big_sparse_file(path: &Path, offset: u64, region: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(1 << 30).unwrap();
    f.write_all_at(region, offset).unwrap();
}

#[test]
fn random_read_of_a_1gib_object_fetches_only_the_blocks_it_touches() {
    let root = tempfile::tempdir().unwrap();
    let offset = 700 * (1u64 << 20) + 12_345;
    let region = pattern(7, 3 << 20);
    big_sparse_file(&root.path().join("big.bin"), offset - (1 << 20), &region);
    let nginx = NginxServer::start(root.path());
    let tmp = tempfile::tempdir().unwrap();
    let m = Mount::start(
        &tmp.path().join("mnt"),
        &[
            format!("--input=big={}", nginx.url("big.bin")),
            flag("cache-dir", &tmp.path().join("cache")),
        ],
        &[],
    )
    .unwrap();
    nginx.reset_counts();
    let f = std::fs::File::open(m.path("big/big.bin")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    f.read_exact_at(&mut buf, offset).unwrap();
    let start = (1 << 20) as usize;
    assert_eq!(
        sha256_hex(&buf),
        sha256_hex(&region[start..start + (1 << 20)])
    );
    drop(f);
    let (requests, bytes) = (nginx.get_requests(), nginx.get_bytes());
    drop(m);
    // Default 4 MiB blocks: this read lies in one block, and may touch a second.
    assert!(requests <= 2, "{requests} origin GETs for a 1 MiB read");
    assert!(
        bytes <= 2 * 4 * (1 << 20),
        "{bytes} origin bytes for a 1 MiB read"
    );
    assert!(requests >= 1);
}

#[test]
fn signed_url_credentials_stay_out_of_the_cache_and_logs_and_do_not_change_identity() {
    let root = tempfile::tempdir().unwrap();
    let data = pattern(9, 2 * (1 << 20) + 5);
    std::fs::write(root.path().join("signed.bin"), &data).unwrap();
    let nginx = NginxServer::start(root.path());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let sign = |sig: &str| {
        format!(
            "{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDSECRETID%2F20261122&X-Amz-Signature={sig}&sig={sig}&se=2026-12-01&sp=r&X-Goog-Signature={sig}",
            nginx.url("signed.bin")
        )
    };
    let mount = |n: u32, sig: &str| {
        Mount::start(
            &tmp.path().join(format!("mnt{n}")),
            &[
                format!("--input=s={}", sign(sig)),
                flag("cache-dir", &cache),
                "--block-size=256KiB".into(),
            ],
            &[("INPUTFS_LOG".into(), "debug".into())],
        )
        .unwrap()
    };
    let m = mount(1, "firstsignaturevalue0123456789");
    let got = std::fs::read(m.path("s/signed.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    let log1 = m.stop();
    nginx.reset_counts();
    // The same object under a new signature is the same cache identity.
    let m = mount(2, "secondsignaturevalue987654321");
    let got = std::fs::read(m.path("s/signed.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    let log2 = m.stop();
    assert_eq!(nginx.get_bytes(), 0, "a new signature refetched the object");
    // No secret anywhere: not in cache paths, not in any cache file, not in logs.
    for secret in [
        "firstsignaturevalue",
        "secondsignaturevalue",
        "AKIDSECRETID",
    ] {
        for log in [&log1, &log2] {
            assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        }
        let mut stack = vec![cache.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                assert!(
                    !p.to_string_lossy().contains(secret),
                    "{secret} in {}",
                    p.display()
                );
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let bytes = std::fs::read(&p).unwrap();
                    let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                    assert!(!found, "{secret} inside {}", p.display());
                }
            }
        }
    }
    assert!(
        log1.contains("DEBUG"),
        "debug logging was on, so the check saw everything"
    );
}
