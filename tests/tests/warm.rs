//! End to end: `inputfs warm` and `mount --copy-to-local` against a real S3
//! server (which counts the object bytes it serves). Proves that a warm fills the
//! shared cache with exactly one copy of the data, that a second warm and a
//! copy-to-local mount read nothing from the origin, that after the copy every
//! block is on local disk and reads are served from it, and that progress shows
//! up as log lines when stderr is not a terminal. Every byte read is checked
//! with SHA-256.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::path::{Path, PathBuf};

use inputfs_tests::cached_blocks;
use inputfs_tests::mounts::{Mount, run_inputfs};
use inputfs_tests::{S3Server, sha256_hex};

const BUCKET: &str = "datasets";
const BLOCK: u64 = 256 * 1024;

struct Rig {
    server: S3Server,
    tmp: tempfile::TempDir,
    objects: Vec<(String, Vec<u8>)>,
}

fn rig() -> Rig {
    let objects = inputfs_tests::data::training_set(500);
    let server = S3Server::with_objects(BUCKET, &objects);
    Rig {
        server,
        tmp: tempfile::tempdir().unwrap(),
        objects,
    }
}

impl Rig {
    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn total(&self) -> u64 {
        self.objects.iter().map(|(_, d)| d.len() as u64).sum()
    }

    fn blocks(&self) -> usize {
        self.objects
            .iter()
            .map(|(_, d)| (d.len() as u64).div_ceil(BLOCK) as usize)
            .sum()
    }

    /// The server's settings, a private cache home, and info-level logs.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.server.env();
        env.push((
            "XDG_CACHE_HOME".into(),
            self.dir("home-cache").display().to_string(),
        ));
        env.push(("INPUTFS_LOG".into(), "warn,inputfs=info".into()));
        env
    }

    fn input_args(&self) -> Vec<String> {
        vec![
            format!("--input=train=s3://{BUCKET}/train/"),
            format!("--block-size={BLOCK}"),
        ]
    }

    /// Run `inputfs warm` with `extra` flags; (stdout, stderr), asserting success.
    fn warm(&self, extra: &[String]) -> (String, String) {
        let mut args = vec!["warm".to_string()];
        args.extend(self.input_args());
        args.extend_from_slice(extra);
        let out = run_inputfs(&args, &self.env());
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "warm failed: {stderr}");
        (stdout, stderr)
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

fn flag(name: &str, p: &Path) -> String {
    format!("--{name}={}", p.display())
}

#[test]
fn warm_then_copy_to_local_reads_nothing_more_from_the_origin() {
    let r = rig();
    let shared = r.dir("shared");
    std::fs::create_dir_all(&shared).unwrap();

    // 1. A cold warm of the shared cache reads every byte once from the origin.
    let (stdout, stderr) = r.warm(&[flag("shared-cache", &shared)]);
    assert_eq!(r.server.get_bytes(), r.total(), "{stdout}");
    assert!(stdout.contains("4 files"), "{stdout}");
    assert!(
        !stdout.contains("everything was already cached"),
        "{stdout}"
    );
    // Progress as log lines (stderr is a pipe here): a start and an end line.
    assert!(stderr.contains("warm: 4 files"), "{stderr}");
    assert!(
        stderr.contains("warm done:") && stderr.contains("(100%)"),
        "{stderr}"
    );
    let (n, bytes) = cached_blocks(&shared, BLOCK);
    assert_eq!(n, r.blocks(), "shared cache blocks");
    assert!(bytes >= r.total());
    // Only the shared tier was filled: no local cache appeared.
    assert_eq!(cached_blocks(&r.dir("home-cache/inputfs"), BLOCK).0, 0);

    // 2. Again: nothing from the origin, and the summary says so.
    r.server.reset_counts();
    let (stdout, _) = r.warm(&[flag("shared-cache", &shared)]);
    assert_eq!(r.server.get_requests(), 0, "{stdout}");
    assert_eq!(r.server.get_bytes(), 0);
    assert!(stdout.contains("0 B from the origin"), "{stdout}");
    assert!(stdout.contains("everything was already cached"), "{stdout}");

    // 3. A fresh worker mounts with --copy-to-local: the copy comes from the
    // shared cache, and is complete before the mount appears.
    let local = r.dir("local");
    let mut args = r.input_args();
    args.extend([
        flag("cache-dir", &local),
        flag("shared-cache", &shared),
        "--copy-to-local".into(),
    ]);
    let m = Mount::start(&r.dir("mnt"), &args, &r.env()).expect("mount");
    assert_eq!(r.server.get_bytes(), 0, "copy to local read the origin");
    let (n, bytes) = cached_blocks(&local, BLOCK);
    assert_eq!(n, r.blocks(), "local cache blocks after the copy");
    assert!(bytes >= r.total());
    let log = m.stderr();
    assert!(log.contains("copy to local: 4 files"), "{log}");
    assert!(log.contains("copy to local done:"), "{log}");
    assert!(log.contains("copied to local:"), "{log}");

    // 4. Reads are local: with the shared cache gone, still nothing from the origin.
    std::fs::rename(&shared, r.dir("shared-moved")).unwrap();
    r.read_all(&m);
    let log = m.stop();
    assert_eq!(
        r.server.get_requests(),
        0,
        "reads went to the origin: {log}"
    );
    assert_eq!(r.server.get_bytes(), 0);
    assert_eq!(cached_blocks(&local, BLOCK).0, r.blocks());
}

#[test]
fn warm_without_a_shared_cache_fills_the_local_one_and_to_local_fills_both() {
    let r = rig();
    let local = r.dir("local");
    let (stdout, _) = r.warm(&[flag("cache-dir", &local)]);
    assert_eq!(r.server.get_bytes(), r.total(), "{stdout}");
    assert_eq!(cached_blocks(&local, BLOCK).0, r.blocks());

    // --to-local with a shared cache: the local blocks are copied up, the origin
    // is not asked again.
    r.server.reset_counts();
    let shared = r.dir("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let (stdout, _) = r.warm(&[
        flag("cache-dir", &local),
        flag("shared-cache", &shared),
        "--to-local".into(),
    ]);
    assert_eq!(r.server.get_bytes(), 0, "{stdout}");
    assert_eq!(cached_blocks(&shared, BLOCK).0, r.blocks());
    assert!(stdout.contains("copied from local"), "{stdout}");

    // And the blocks hold the right bytes: a mount over only the shared cache
    // reads them all without the origin.
    let mut args = r.input_args();
    args.extend(["--no-local-cache".into(), flag("shared-cache", &shared)]);
    let m = Mount::start(&r.dir("mnt"), &args, &r.env()).expect("mount");
    r.read_all(&m);
    drop(m);
    assert_eq!(r.server.get_bytes(), 0);
}

#[test]
fn warm_and_copy_to_local_fail_in_one_line() {
    let r = rig();
    let one_line = |args: Vec<String>, culprit: &str| {
        let out = run_inputfs(&args, &r.env());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        let lines: Vec<_> = stderr.lines().filter(|l| !l.contains(" INFO ")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(culprit), "{culprit:?} not in {stderr}");
    };
    one_line(
        vec![
            "warm".into(),
            format!("--input=x=s3://{BUCKET}/train/nope.bin"),
            flag("cache-dir", &r.dir("c")),
        ],
        "s3://datasets/train/nope.bin",
    );
    // (A fetch that fails after resolving is covered by the engine's unit tests:
    // the error names the URL too.)
    let mnt = r.dir("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    one_line(
        vec![
            "mount".into(),
            mnt.display().to_string(),
            "--foreground".into(),
            format!("--input=x=s3://{BUCKET}/train/c.txt"),
            "--no-local-cache".into(),
            "--copy-to-local".into(),
        ],
        "--copy-to-local",
    );
}
