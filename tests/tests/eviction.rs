//! Size limits end to end: four workers read random ranges of objects larger than
//! a tiny shared limit while their sweeps evict under them — no read fails, every
//! byte is right, and the shared cache is back within its limit afterwards; then
//! `inputfs status` and `inputfs gc` report and act on the same directory, and
//! `gc --dry-run` reports exactly what the real `gc` then removes of what dead
//! workers left behind.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use inputfs_tests::mounts::{Mount, run_inputfs};
use inputfs_tests::netfs::SharedDir;
use inputfs_tests::{S3Server, pattern};

const BUCKET: &str = "evict";
const MIB: usize = 1 << 20;
const LIMIT: u64 = 3 * MIB as u64;

fn block_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.join("inputfs-v1/objects")];
    while let Some(d) = stack.pop() {
        // Every worker has stopped: nothing moves under the walk, so any
        // error is the filesystem's and fails the test (never counted as 0).
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for e in entries {
            let e = e.unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            let m = e
                .metadata()
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

fn json(args: &[&str]) -> serde_json::Value {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = run_inputfs(&args, &[]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run(mut shared: SharedDir) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let objects: Vec<Vec<u8>> = (0..3)
        .map(|i| pattern(40 + i, 4 * MIB + 1000 * i as usize))
        .collect();
    for (i, o) in objects.iter().enumerate() {
        server.put_object(BUCKET, &format!("o{i}.bin"), o);
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = shared.mount_point(0);
    let mut mounts = Vec::new();
    for w in 0..4 {
        let args = vec![
            format!("--input=d=s3://{BUCKET}/"),
            "--no-local-cache".into(),
            format!("--shared-cache={}", shared.mount_point(w).display()),
            format!("--shared-cache-max-size={LIMIT}"),
            "--block-size=256KiB".into(),
        ];
        let mut env = server.env();
        env.push(("INPUTFS_LOG".into(), "warn,inputfs_store=debug".into()));
        mounts.push(Mount::start(&tmp.path().join(format!("mnt{w}")), &args, &env).unwrap());
    }
    std::thread::scope(|s| {
        for (w, m) in mounts.iter().enumerate() {
            let objects = &objects;
            s.spawn(move || {
                let mut x = 0x5DEECE66Du64 * (w as u64 + 1);
                for _ in 0..150 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let i = (x >> 60) as usize % objects.len();
                    let want = &objects[i];
                    let off = (x >> 16) as usize % want.len();
                    let len = (1 + (x >> 40) as usize % (700 * 1024)).min(want.len() - off);
                    let f = std::fs::File::open(m.path(&format!("d/o{i}.bin"))).unwrap();
                    let mut buf = vec![0u8; len];
                    f.read_exact_at(&mut buf, off as u64)
                        .unwrap_or_else(|e| panic!("worker {w}: read of o{i} at {off}+{len}: {e}"));
                    assert!(
                        buf == want[off..off + len],
                        "worker {w}: wrong bytes in o{i} at {off}"
                    );
                }
            });
        }
    });
    // Stop one by one: each flushes its journal; the last one's final sweep
    // therefore sees every block placed.
    let logs: Vec<String> = mounts.into_iter().map(Mount::stop).collect();
    if std::env::var_os("EVICTION_LOGS").is_some() {
        eprintln!("{}", logs.join("\n"));
    }
    let evictions: usize = logs
        .iter()
        .map(|l| l.matches("evicted least recently read").count())
        .sum();
    assert!(
        evictions > 0,
        "no sweep evicted anything while reading:\n{}",
        logs.join("\n")
    );
    let used = block_bytes(&cache);
    assert!(
        used <= LIMIT,
        "{}: {used} bytes of blocks left, limit {LIMIT}",
        shared.kind()
    );
    // status sees the same directory the same way.
    let dir = cache.display().to_string();
    // On a local directory status is exact. On network filesystems it may count
    // a few blocks placed into an object's directory while a sweep moved it away
    // (their metadata caches lag by about a second): bounded, and removed by the
    // next sweep that evicts.
    let slack = if shared.kind() == "local" {
        0
    } else {
        8 * (256 * 1024 + 72) // 8 blocks of 256 KiB; seen up to 4
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let status = json(&["status", "--shared-cache", &dir, "--json"]);
        let seen = status[0]["used_bytes"].as_u64().unwrap();
        if seen.abs_diff(used) <= slack {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: status says {seen} bytes, {used} on disk",
            shared.kind()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(status[0]["max_bytes"].as_u64().unwrap(), LIMIT);
    // gc --dry-run removes nothing; gc does, down to the size asked.
    let dry = json(&[
        "gc",
        "--shared-cache",
        &dir,
        "--max-size",
        "0",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(dry[0]["used_after"].as_u64().unwrap(), 0);
    assert_eq!(block_bytes(&cache), used, "a dry run removed blocks");
    let done = json(&["gc", "--shared-cache", &dir, "--max-size", "0", "--json"]);
    assert!(done[0]["bytes_removed"].as_u64().unwrap().abs_diff(used) <= slack);
    assert_eq!(block_bytes(&cache), 0);
    eprintln!(
        "eviction on {}: {evictions} evicting sweeps during reads, {used} bytes left",
        shared.kind()
    );
}

#[test]
fn eviction_never_breaks_readers_on_a_local_directory() {
    run(SharedDir::local());
}

#[test]
fn eviction_never_breaks_readers_on_sshfs() {
    run(SharedDir::sshfs(true));
}

#[test]
fn eviction_never_breaks_readers_on_smb() {
    run(SharedDir::smb());
}

/// What dead workers leave: claims past their expiry (of this release, a
/// directory with its line; of the previous one, a file), a claim without a
/// line older than its lifetime, and temp files older than an hour. `gc
/// --dry-run` counts them and removes nothing; `gc` removes exactly as many.
#[test]
fn gc_dry_run_reports_what_gc_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    drop(inputfs_store::DirStore::open(&dir, "shared").unwrap());
    let v1 = dir.join("inputfs-v1");
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let age = |p: &Path| {
        std::fs::File::open(p)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap()
    };
    let expired = "inputfs-claim 1 deadhost@boot 1:1 00 1000\n";
    let mut planted = Vec::new();
    for i in 0..2 {
        let file = v1.join(format!("claims/{i:064x}-0000000000000000.claim"));
        std::fs::write(&file, expired).unwrap();
        let made = v1.join(format!("claims/{i:064x}-0000000000000001.claim"));
        std::fs::create_dir(&made).unwrap();
        std::fs::write(made.join("holder"), expired).unwrap();
        planted.extend([file, made]);
    }
    let torn = v1.join(format!("claims/{:064x}-0000000000000002.claim", 9));
    std::fs::create_dir(&torn).unwrap();
    age(&torn);
    planted.push(torn);
    for i in 0..4 {
        let temp = v1.join(format!("tmp/deadhost.{i}.0.tmp"));
        std::fs::write(&temp, b"half a block").unwrap();
        age(&temp);
        planted.push(temp);
    }
    let live = v1.join("tmp/livehost.1.0.tmp");
    std::fs::write(&live, b"being written").unwrap();

    let dir = dir.display().to_string();
    let dry = json(&["gc", "--shared-cache", &dir, "--dry-run", "--json"]);
    let counts = |r: &serde_json::Value| {
        (
            r[0]["claims_removed"].as_u64().unwrap(),
            r[0]["temp_files_removed"].as_u64().unwrap(),
        )
    };
    assert_eq!(counts(&dry), (5, 4), "dry run: {dry}");
    for p in &planted {
        assert!(p.exists(), "the dry run removed {}", p.display());
    }
    let done = json(&["gc", "--shared-cache", &dir, "--json"]);
    assert_eq!(counts(&done), counts(&dry), "gc: {done}");
    for p in &planted {
        assert!(!p.exists(), "gc left {}", p.display());
    }
    assert!(live.exists(), "gc removed a young temp file");
}
