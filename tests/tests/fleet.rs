//! Several workers, one shared cache: N inputfs processes, each with its own FUSE
//! mount and local cache, all pointed at one shared cache directory, read the
//! same and different objects concurrently — sequentially and at random offsets —
//! with every byte checked. Run with the shared cache on a local directory, on
//! sshfs (strict and default attribute caching) and on SMB.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::sync::Arc;
use std::thread;

use inputfs_tests::mounts::Mount;
use inputfs_tests::netfs::SharedDir;
use inputfs_tests::{S3Server, pattern, sha256_hex};

const WORKERS: usize = 4;
const BUCKET: &str = "fleet";
const MIB: usize = 1 << 20;

struct Data {
    shared_seq: Vec<u8>,
    shared_random: Vec<u8>,
    own: Vec<Vec<u8>>,
}

fn data() -> Data {
    Data {
        shared_seq: pattern(1, 12 * MIB + 5),
        shared_random: pattern(2, 8 * MIB + 3),
        own: (0..WORKERS)
            .map(|w| pattern(10 + w as u64, 2 * MIB + w))
            .collect(),
    }
}

/// Read `len` bytes at `off` through `path` and compare with `want`.
fn check_range(path: &std::path::Path, want: &[u8], off: usize, len: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let end = (off + len).min(want.len());
    let mut buf = vec![0u8; end - off];
    f.read_exact_at(&mut buf, off as u64).unwrap();
    assert!(
        buf == want[off..end],
        "{}: wrong bytes at {off}+{len}",
        path.display()
    );
}

fn run_fleet(mut shared: SharedDir) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let d = Arc::new(data());
    server.put_object(BUCKET, "shared/seq.bin", &d.shared_seq);
    server.put_object(BUCKET, "shared/random.bin", &d.shared_random);
    for (w, own) in d.own.iter().enumerate() {
        server.put_object(BUCKET, &format!("own/w{w}.bin"), own);
    }
    let tmp = tempfile::tempdir().unwrap();
    let mounts: Vec<Mount> = (0..WORKERS)
        .map(|w| {
            let cache = shared.mount_point(w);
            let args = vec![
                format!("--input=shared=s3://{BUCKET}/shared/"),
                format!("--input=own=s3://{BUCKET}/own/w{w}.bin"),
                format!(
                    "--cache-dir={}",
                    tmp.path().join(format!("local{w}")).display()
                ),
                format!("--shared-cache={}", cache.display()),
                "--block-size=1MiB".into(),
                "--claim-timeout=20s".into(),
            ];
            Mount::start(&tmp.path().join(format!("mnt{w}")), &args, &server.env())
                .unwrap_or_else(|e| panic!("worker {w} ({}): {e}", shared.kind()))
        })
        .collect();
    let paths: Vec<_> = mounts.iter().map(|m| m.mountpoint.clone()).collect();
    thread::scope(|s| {
        for (w, root) in paths.iter().enumerate() {
            let d = d.clone();
            s.spawn(move || {
                // Everyone reads the same file sequentially, at the same time.
                let got = std::fs::read(root.join("shared/seq.bin")).unwrap();
                assert_eq!(
                    sha256_hex(&got),
                    sha256_hex(&d.shared_seq),
                    "worker {w} seq"
                );
                // Random ranges of a shared file, different per worker.
                let mut x = 0x9E37_79B9u64 + w as u64;
                for _ in 0..40 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let off = (x >> 20) as usize % d.shared_random.len();
                    let len = 1 + (x >> 44) as usize % (300 * 1024);
                    check_range(&root.join("shared/random.bin"), &d.shared_random, off, len);
                }
                // A file only this worker reads.
                let got = std::fs::read(root.join(format!("own/w{w}.bin"))).unwrap();
                assert_eq!(sha256_hex(&got), sha256_hex(&d.own[w]), "worker {w} own");
            });
        }
    });
    let logs: Vec<String> = mounts.into_iter().map(|m| m.stop()).collect();
    for (w, log) in logs.iter().enumerate() {
        assert!(!log.contains("panicked"), "worker {w} panicked: {log}");
    }
    let distinct =
        d.shared_seq.len() + d.shared_random.len() + d.own.iter().map(Vec::len).sum::<usize>();
    let blocks = |n: usize| n.div_ceil(MIB) as u64;
    let distinct_blocks = blocks(d.shared_seq.len())
        + blocks(d.shared_random.len())
        + d.own.iter().map(|o| blocks(o.len())).sum::<u64>();
    // Exact accounting from the origin's own log (read after every mount
    // stopped): each block fetched at least once, and every fetch beyond the
    // first of a block is a duplicate that some worker counted, when its
    // publish to the shared tier found the block already there. Claims make
    // duplicates rare (a lost claim race, a stale lookup on a caching network
    // filesystem), never uncounted.
    // A random read that opens a stream in the second half of a block and
    // runs into the next fetches that part as a range (a lead-in, never cached):
    // every worker may fetch its own, so they are counted apart from blocks.
    let (by_range, lead_ins): (Vec<_>, Vec<_>) = server
        .gets_by_range()
        .into_iter()
        .partition(|((_, range), _)| starts_a_block(range));
    let lead_ins: u64 = lead_ins.iter().map(|(_, n)| n).sum();
    let fetched_blocks = by_range.len() as u64;
    let duplicates: u64 = by_range.iter().map(|(_, n)| n - 1).sum();
    let found: u64 = logs
        .iter()
        .map(|log| inputfs_tests::tier_copies(log, "shared", "found already there"))
        .sum();
    let dropped: u64 = logs
        .iter()
        .map(|log| inputfs_tests::tier_copies(log, "shared", "dropped"))
        .sum();
    // A copy still owed at unmount to a shared tier that kept failing (an
    // SMB client answering EIO for seconds, say): that worker fetched
    // without the shared tier, and its publish never looked.
    let pending: u64 = logs
        .iter()
        .map(|log| inputfs_tests::tier_copies(log, "shared", "pending"))
        .sum();
    // A request asked again after an error or a timeout is one more GET of
    // its range, counted by the worker that repeated it.
    let repeated: u64 = logs
        .iter()
        .map(|log| inputfs_tests::origin_summary(log, "requests repeated"))
        .sum();
    let reads: u64 = logs
        .iter()
        .map(|log| inputfs_tests::origin_summary(log, "block reads"))
        .sum();
    eprintln!(
        "fleet on {}: {WORKERS} workers pulled {:.2}x the distinct bytes from the origin \
         ({} GETs of {distinct_blocks} blocks and {lead_ins} lead-ins: {duplicates} duplicates, \
         {found} counted by the workers, {dropped} shared copies dropped, {repeated} requests \
         repeated)",
        shared.kind(),
        server.get_bytes() as f64 / distinct as f64,
        server.get_requests(),
    );
    assert_eq!(
        fetched_blocks,
        distinct_blocks,
        "{}: blocks fetched",
        shared.kind()
    );
    assert_eq!(
        server.get_requests(),
        distinct_blocks + duplicates + lead_ins
    );
    // Every GET the server answered is a block read of some worker, or a
    // request one of them asked again.
    assert!(
        (reads..=reads + repeated).contains(&server.get_requests()),
        "{}: {} GETs answered, the workers made {reads} block reads and repeated {repeated}",
        shared.kind(),
        server.get_requests()
    );
    // A duplicate whose shared copy was dropped (never published) is not
    // seen by a publish: it is counted as dropped (or pending) instead; a
    // request asked again is counted by its worker as repeated.
    assert!(
        duplicates <= found + dropped + pending + repeated,
        "{}: {duplicates} duplicate fetches ({:?}), {found} counted by the workers ({dropped} \
         dropped, {pending} pending, {repeated} repeated); what the workers said:\n{}",
        shared.kind(),
        by_range.iter().filter(|(_, n)| *n > 1).collect::<Vec<_>>(),
        logs.iter()
            .enumerate()
            .flat_map(|(w, log)| {
                log.lines()
                    .filter(|l| {
                        l.contains("WARN") || l.contains("copies:") || l.contains("origin: ")
                    })
                    .map(move |l| format!("worker {w}: {l}"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Whether a GET's range, as the server logged it (`Some(Int { first: N, ..
/// })`), starts on a block boundary: a block read. Lead-ins start inside one.
fn starts_a_block(range: &str) -> bool {
    range
        .split("first: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|first| first % MIB == 0)
}

#[test]
fn fleet_on_a_local_directory() {
    run_fleet(SharedDir::local());
}

#[test]
fn fleet_on_sshfs_strict() {
    run_fleet(SharedDir::sshfs(true));
}

#[test]
fn fleet_on_sshfs_default_caching() {
    run_fleet(SharedDir::sshfs(false));
}

#[test]
fn fleet_on_smb() {
    run_fleet(SharedDir::smb());
}
