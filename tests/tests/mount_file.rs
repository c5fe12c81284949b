//! End to end over `file://`: a real FUSE mount of the real binary, read with the
//! tools users use (ls, find, stat, cat, cp -r, sha256sum, dd, mmap), every byte
//! checked against the source files; and what the origin served, from the
//! mount's metrics: each distinct block once however often it is read, nothing
//! on a warm remount.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use inputfs_tests::mounts::{Mount, is_mounted, run_inputfs};
use inputfs_tests::scrape::scrape;
use inputfs_tests::{free_port, pattern, sha256_hex, tier_copies};

const BLOCK: u64 = 64 * 1024;

/// Source files: relative path -> content.
fn make_source(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let files: BTreeMap<String, Vec<u8>> = [
        ("empty.bin", 0usize),
        ("one.bin", 1),
        ("page.bin", 4095),
        ("sub/mid.bin", (1 << 20) + 17),
        ("sub/deeper/big.bin", 5 * (1 << 20) + 3),
        ("sub/other.txt", 70_000),
        ("données/ファイル.bin", 12_345),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (p, n))| (p.to_string(), pattern(i as u64 + 1, n)))
    .collect();
    for (rel, data) in &files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    files
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

struct Rig {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    cache: PathBuf,
    mnt: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let files = make_source(&src);
    Rig {
        src: src.canonicalize().unwrap(),
        cache: tmp.path().join("cache"),
        mnt: tmp.path().join("mnt"),
        files,
        _tmp: tmp,
    }
}

impl Rig {
    fn mount(&self, extra: &[String]) -> Mount {
        let mut a = vec![
            format!("--input=data=file://{}/", self.src.display()),
            format!("--input=single=file://{}/sub/mid.bin", self.src.display()),
            format!("--input=glob=file://{}/sub/*.bin", self.src.display()),
            format!("--cache-dir={}", self.cache.display()),
            format!("--block-size={BLOCK}"),
        ];
        a.extend_from_slice(extra);
        Mount::start(&self.mnt, &a, &[]).expect("mount")
    }
}

fn sh(cmd: &str, dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `file://` has no server to count requests: the mount's own counters are the
/// origin's (`--metrics-addr`), scraped once nothing is in flight.
fn origin_counts(addr: &str) -> (u64, u64) {
    let s = scrape(addr);
    assert_eq!(
        s.get("inputfs_memory_inflight_bytes"),
        0,
        "fetches in flight"
    );
    (
        s.get("inputfs_origin_requests_total"),
        s.get("inputfs_origin_bytes_total"),
    )
}

#[test]
fn tree_sizes_mtimes_and_bytes_match_the_source() {
    let r = rig();
    let addr = format!("127.0.0.1:{}", free_port());
    let m = r.mount(&[format!("--metrics-addr={addr}")]);
    // Layout: prefix keeps relative paths, single object appears under its basename,
    // glob matches only the last segment.
    let listed = sh("find . -type f | sort", &m.path("data"));
    let want: Vec<String> = r.files.keys().map(|k| format!("./{k}")).collect();
    assert_eq!(listed.lines().collect::<Vec<_>>(), want);
    assert_eq!(sh("ls", &m.path("single")).trim(), "mid.bin");
    assert_eq!(sh("ls", &m.path("glob")).trim(), "mid.bin");
    for (rel, data) in &r.files {
        let meta = std::fs::metadata(m.path("data").join(rel)).unwrap();
        assert_eq!(meta.len(), data.len() as u64, "{rel}");
        let src_mtime = std::fs::metadata(r.src.join(rel))
            .unwrap()
            .modified()
            .unwrap();
        let secs =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(meta.modified().unwrap()), secs(src_mtime), "{rel}");
        // std read
        let got = std::fs::read(m.path("data").join(rel)).unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(data), "{rel}");
    }
    // ls -lR and stat see the sizes.
    let ls = sh("ls -lR", &m.mountpoint);
    assert!(ls.contains(&format!(" {} ", (1 << 20) + 17)), "{ls}");
    let st = sh("stat -c %s sub/deeper/big.bin", &m.path("data"));
    assert_eq!(st.trim(), (5 * (1 << 20) + 3).to_string());
    // sha256sum over the mount equals sha256 of the source.
    let sums = sh(
        "find . -type f -exec sha256sum {} + | sort -k2",
        &m.path("data"),
    );
    let want_sums = sh("find . -type f -exec sha256sum {} + | sort -k2", &r.src);
    assert_eq!(sums, want_sums);
    // cat and cp -r
    let cat = Command::new("cat")
        .arg(m.path("data/sub/other.txt"))
        .output()
        .unwrap();
    assert_eq!(cat.stdout, r.files["sub/other.txt"]);
    let copy = r.mnt.parent().unwrap().join("copy");
    sh(&format!("cp -r data {}", copy.display()), &m.mountpoint);
    assert_eq!(
        sh("find . -type f -exec sha256sum {} + | sort -k2", &copy),
        want_sums
    );
    // single/ and glob/ are data/sub/mid.bin again: the same object.
    for rel in ["single/mid.bin", "glob/mid.bin"] {
        let got = std::fs::read(m.path(rel)).unwrap();
        assert_eq!(
            sha256_hex(&got),
            sha256_hex(&r.files["sub/mid.bin"]),
            "{rel}"
        );
    }
    // Each file was read four times over (std, sha256sum, cp -r, and cat or
    // the inputs naming mid.bin again): the origin gave each block once.
    let blocks: u64 = r
        .files
        .values()
        .map(|d| (d.len() as u64).div_ceil(BLOCK))
        .sum();
    let bytes: u64 = r.files.values().map(|d| d.len() as u64).sum();
    assert_eq!(
        origin_counts(&addr),
        (blocks, bytes),
        "(requests, bytes) cold"
    );
    drop(m);
    assert!(!is_mounted(&r.mnt), "the guard unmounted");
}

#[test]
fn a_warm_remount_reads_nothing_from_the_origin() {
    let r = rig();
    let sums = "find . -type f -exec sha256sum {} + | sort -k2";
    let want_sums = sh(sums, &r.src);
    let addr = format!("127.0.0.1:{}", free_port());
    let m = r.mount(&[format!("--metrics-addr={addr}")]);
    assert_eq!(sh(sums, &m.path("data")), want_sums);
    let bytes: u64 = r.files.values().map(|d| d.len() as u64).sum();
    assert_eq!(origin_counts(&addr).1, bytes, "origin bytes cold");
    let log = m.stop(); // drains the publishes into the local cache
    // Every block was due in the local cache: made there, or counted as
    // dropped (its copy was put off while the tier was busy, and the copies
    // kept for later were at their bound). A warm remount fetches exactly those.
    let dropped = tier_copies(&log, "local", "dropped");
    assert_eq!(tier_copies(&log, "local", "pending"), 0, "{log}");
    let m = r.mount(&[format!("--metrics-addr={addr}")]);
    assert_eq!(sh(sums, &m.path("data")), want_sums);
    let (requests, _) = origin_counts(&addr);
    assert_eq!(
        requests, dropped,
        "blocks fetched by a warm remount vs local copies the cold mount dropped; its log:\n{log}"
    );
    println!("warm remount: {requests} origin requests = {dropped} copies dropped");
}

#[test]
fn odd_offsets_dd_and_mmap_return_exact_bytes() {
    let r = rig();
    let m = r.mount(&[]);
    let rel = "sub/deeper/big.bin";
    let data = &r.files[rel];
    let f = std::fs::File::open(m.path("data").join(rel)).unwrap();
    for (off, len) in [
        (0, 1),
        (1, 65_535),
        (65_535, 3),
        (1_000_003, 777_777),
        (data.len() - 5, 100),
    ] {
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, off as u64).unwrap();
        let end = (off + len).min(data.len());
        assert_eq!(n, end - off);
        assert_eq!(&buf[..n], &data[off..end], "pread at {off}+{len}");
    }
    // dd with odd block size, skip and count.
    let out = Command::new("dd")
        .arg(format!("if={}", m.path("data").join(rel).display()))
        .args(["bs=4093", "skip=77", "count=300", "status=none"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, data[4093 * 77..4093 * 377]);
    // A memory-mapped reader.
    let map = unsafe { memmap2::Mmap::map(&f).unwrap() };
    assert_eq!(sha256_hex(&map[..]), sha256_hex(data));
    assert_eq!(&map[3_000_001..3_000_100], &data[3_000_001..3_000_100]);
}

#[test]
fn writes_fail_with_erofs() {
    let r = rig();
    let m = r.mount(&[]);
    let erofs = |e: std::io::Error| assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    let path = m.path("data/one.bin");
    erofs(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_err(),
    );
    erofs(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_err(),
    );
    erofs(std::fs::File::create(m.path("data/new.bin")).unwrap_err());
    erofs(std::fs::create_dir(m.path("data/newdir")).unwrap_err());
    erofs(std::fs::remove_file(&path).unwrap_err());
    erofs(std::fs::rename(&path, m.path("data/renamed.bin")).unwrap_err());
    // Still intact and readable.
    assert_eq!(std::fs::read(&path).unwrap(), r.files["one.bin"]);
}

#[test]
fn origin_failure_is_eio_for_that_read_and_the_mount_stays_up() {
    let r = rig();
    let m = r.mount(&[]);
    std::fs::remove_file(r.src.join("sub/other.txt")).unwrap();
    let err = std::fs::read(m.path("data/sub/other.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // Other files still read correctly: the mount is up.
    let got = std::fs::read(m.path("data/sub/mid.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&r.files["sub/mid.bin"]));
    assert!(is_mounted(&m.mountpoint));
}

#[test]
fn daemonized_mount_returns_when_ready_and_unmounts_cleanly() {
    let r = rig();
    std::fs::create_dir_all(&r.mnt).unwrap();
    let log = r.mnt.with_extension("log");
    let out = run_inputfs(
        &[
            "mount".into(),
            r.mnt.display().to_string(),
            format!("--input=data=file://{}/", r.src.display()),
            format!("--cache-dir={}", r.cache.display()),
            format!("--log-file={}", log.display()),
        ],
        &[],
    );
    // From here on, whatever happens, unmount.
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            inputfs_tests::mounts::unmount(&self.0);
        }
    }
    let _guard = Unmount(r.mnt.canonicalize().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ready means serving: no polling needed.
    assert!(is_mounted(&r.mnt.canonicalize().unwrap()));
    let got = std::fs::read(r.mnt.join("data/sub/mid.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&r.files["sub/mid.bin"]));
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&r.mnt)
        .status()
        .unwrap();
    assert!(status.success());
    // The daemon notices and exits; its log says so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("unmounted")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "daemon did not exit: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Run a mount that must fail; check the one-line error and that nothing is mounted.
fn must_fail(mnt: &Path, extra: &[String], culprit: &str) {
    let mut a = vec![
        "mount".into(),
        mnt.display().to_string(),
        "--foreground".into(),
    ];
    a.extend_from_slice(extra);
    let out = run_inputfs(&a, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{a:?} succeeded");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line, got: {stderr}");
    assert!(lines[0].starts_with("inputfs: error: "), "{stderr}");
    assert!(lines[0].contains(culprit), "{culprit:?} not in: {stderr}");
    if mnt.exists() {
        assert!(!is_mounted(&mnt.canonicalize().unwrap()));
    }
}

#[test]
fn bad_input_is_one_line_naming_the_culprit_and_mounts_nothing() {
    let r = rig();
    std::fs::create_dir_all(&r.mnt).unwrap();
    let cache = format!("--cache-dir={}", r.cache.display());
    let good = format!("--input=data=file://{}/", r.src.display());
    must_fail(
        &r.mnt,
        &args(&["--input=x=ftp://host/file", &cache]),
        "ftp://host/file",
    );
    must_fail(&r.mnt, &args(&["--input=x=s3://", &cache]), "s3://");
    must_fail(&r.mnt, &args(&["--input=x=not a url", &cache]), "not a url");
    let missing = format!("file://{}/nope.bin", r.src.display());
    must_fail(
        &r.mnt,
        &args(&[&format!("--input=x={missing}"), &cache]),
        &missing,
    );
    must_fail(&r.mnt, &args(&["--input=noequals", &cache]), "noequals");
    must_fail(
        &r.mnt,
        &args(&[&good, &good, &cache]),
        "two inputs are named \"data\"",
    );
    must_fail(
        &r.mnt,
        &args(&[&good, "--block-size=12", &cache]),
        "block size",
    );
    must_fail(
        &r.mnt,
        &args(&[&good, "--block-size=lots", &cache]),
        "--block-size",
    );
    // Listing snapshots live in the shared cache, and a lock file lists nothing.
    must_fail(
        &r.mnt,
        &args(&[&good, "--listing-max-age=1h", &cache]),
        "required arguments were not provided: --shared-cache <DIR>",
    );
    must_fail(
        &r.mnt,
        &args(&[&good, "--listing-max-age=soon", &cache]),
        "--listing-max-age",
    );
    // Mount point problems.
    let nowhere = r.mnt.join("does-not-exist");
    must_fail(&nowhere, &args(&[&good, &cache]), "does not exist");
    let file = r.src.join("one.bin");
    must_fail(&file, &args(&[&good, &cache]), "is not a directory");
    must_fail(&r.src, &args(&[&good, &cache]), "is not empty");
    // The daemonizing path reports the same one line.
    let out = run_inputfs(
        &args(&[
            "mount",
            &r.mnt.display().to_string(),
            "--input=x=ftp://h/f",
            &cache,
        ]),
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ftp://h/f"));
    assert!(!is_mounted(&r.mnt.canonicalize().unwrap()));
}

#[test]
fn manifest_mounts_the_same_tree() {
    let r = rig();
    let manifest = r.mnt.with_extension("json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{"inputs": [{{"name": "m", "url": "file://{}/sub/"}}]}}"#,
            r.src.display()
        ),
    )
    .unwrap();
    let m = Mount::start(
        &r.mnt,
        &[
            format!("--inputs={}", manifest.display()),
            format!("--cache-dir={}", r.cache.display()),
        ],
        &[],
    )
    .unwrap();
    let got = std::fs::read(m.path("m/deeper/big.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&r.files["sub/deeper/big.bin"]));
}
