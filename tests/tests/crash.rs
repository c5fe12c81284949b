//! Crash safety and integrity of the shared cache, end to end: workers killed with
//! SIGKILL in the middle of fetches and publishes, and block files corrupted
//! behind the workers' backs, never make another worker serve a wrong byte; what
//! dead workers leave behind is cleaned up by later ones.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use inputfs_tests::mounts::Mount;
use inputfs_tests::{S3Server, pattern, sha256_hex};

const BUCKET: &str = "crash";

struct Rig {
    server: S3Server,
    tmp: tempfile::TempDir,
    shared: PathBuf,
    data: Vec<u8>,
    n: usize,
}

fn rig() -> Rig {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let data = pattern(77, 24 * (1 << 20) + 11);
    server.put_object(BUCKET, "big.bin", &data);
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    Rig {
        server,
        tmp,
        shared,
        data,
        n: 0,
    }
}

impl Rig {
    /// A new worker with a fresh local cache over the shared one.
    fn worker(&mut self, claim_timeout: &str) -> Mount {
        self.n += 1;
        let n = self.n;
        let args = vec![
            format!("--input=d=s3://{BUCKET}/big.bin"),
            format!(
                "--cache-dir={}",
                self.tmp.path().join(format!("local{n}")).display()
            ),
            format!("--shared-cache={}", self.shared.display()),
            "--block-size=512KiB".into(),
            format!("--claim-timeout={claim_timeout}"),
        ];
        Mount::start(
            &self.tmp.path().join(format!("mnt{n}")),
            &args,
            &self.server.env(),
        )
        .unwrap()
    }

    fn read_and_check(&self, m: &Mount) {
        let got = std::fs::read(m.path("d/big.bin")).unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(&self.data));
    }

    fn root(&self) -> PathBuf {
        self.shared.join("inputfs-v1")
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out
}

#[test]
fn workers_killed_mid_fetch_never_make_others_serve_wrong_bytes() {
    let mut r = rig();
    let mut seen_leftovers = 0;
    for round in 0..6u64 {
        // A worker starts a cold read and is killed somewhere in it.
        let mut victim = r.worker("2s");
        let path = victim.path("d/big.bin");
        let reader = std::thread::spawn(move || {
            // Whatever this read gets before the kill is irrelevant; it may fail.
            let _ = std::fs::read(path);
        });
        // Not a wait for anything: the kill lands at a different point of the
        // cold read each round (30 ms to 380 ms in).
        std::thread::sleep(Duration::from_millis(30 + 70 * round));
        victim.kill();
        let _ = reader.join();
        seen_leftovers +=
            files_in(&r.root().join("tmp")).len() + files_in(&r.root().join("claims")).len();
        // A fresh worker reads everything, from whatever the dead one left.
        let m = r.worker("2s");
        r.read_and_check(&m);
        m.stop();
        // It left every block in the shared cache: take them away, so that the
        // next victim's read is cold too and its kill lands mid-fetch (what the
        // dead workers left in tmp/ and claims/ stays, for the sweep below).
        std::fs::remove_dir_all(r.root().join("objects")).unwrap();
    }
    assert!(
        seen_leftovers > 0,
        "no kill landed mid-fetch: the sweep was not exercised"
    );
    // Let the last claims of the killed workers expire (2 s claims, all taken
    // before the last kill): claims expiring is what is under test here, so
    // time passing is the condition. Then a later worker's start-up sweep
    // removes them and the dead workers' temp files.
    std::thread::sleep(Duration::from_secs(3));
    let m = r.worker("2s");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let leftovers =
            files_in(&r.root().join("tmp")).len() + files_in(&r.root().join("claims")).len();
        if leftovers == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{leftovers} leftovers not swept"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    r.read_and_check(&m);
}

/// Every way a block file can go bad, applied to every block of the shared cache.
fn corrupt(path: &Path, how: usize, other_block: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    match how % 6 {
        0 => {
            let i = bytes.len() - 1 - (how * 7919) % (bytes.len() - 80);
            bytes[i] ^= 0x10; // a flipped bit in the data
        }
        1 => bytes[20] ^= 0x01, // a flipped bit in the header
        2 => bytes.truncate(bytes.len() / 2),
        3 => bytes.clear(),
        4 => bytes = other_block.to_vec(), // the header and data of another block
        _ => bytes = pattern(how as u64, bytes.len()), // garbage
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_shared_blocks_are_never_served_and_are_refetched() {
    let mut r = rig();
    let m = r.worker("20s");
    r.read_and_check(&m);
    m.stop();
    let blocks: Vec<_> = files_in(&r.root().join("objects"));
    assert!(blocks.len() >= 48, "{} blocks published", blocks.len());
    let other = std::fs::read(&blocks[0]).unwrap();
    for (i, b) in blocks.iter().enumerate().skip(1) {
        corrupt(b, i, &other);
    }
    // A directory where the first block file should be.
    std::fs::remove_file(&blocks[0]).unwrap();
    std::fs::create_dir(&blocks[0]).unwrap();
    r.server.reset_counts();
    let m = r.worker("20s");
    r.read_and_check(&m);
    m.stop();
    // Every block came again from the origin, and was published again intact.
    assert_eq!(r.server.get_bytes(), r.data.len() as u64);
    r.server.reset_counts();
    let m = r.worker("20s");
    r.read_and_check(&m);
    m.stop();
    assert_eq!(
        r.server.get_bytes(),
        0,
        "the repaired shared cache was not used"
    );
}
