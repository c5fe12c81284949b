//! Pin, record, reproduce, end to end: `--lock-out` records what a mount
//! resolved, `--locked` mounts exactly it again, and an object overwritten at the
//! origin never reaches a reader — against servers that honour `If-Match` and
//! versioning (moto for S3, nginx ETags for http). Every byte read is checked.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use inputfs_tests::mounts::{Mount, is_mounted, run_inputfs};
use inputfs_tests::{MotoServer, NginxServer, pattern, sha256_hex};

fn flag(name: &str, p: &Path) -> String {
    format!("--{name}={}", p.display())
}

/// Read blocks `blocks` of `f` one `pread` each, in reverse order (so no
/// readahead runs past them), checking each against `want`.
fn read_blocks_reverse(f: &std::fs::File, want: &[u8], bs: usize, blocks: std::ops::Range<usize>) {
    for b in blocks.rev() {
        let start = b * bs;
        let end = (start + bs).min(want.len());
        let mut buf = vec![0u8; end - start];
        f.read_exact_at(&mut buf, start as u64).unwrap();
        assert!(buf == want[start..end], "block {b} differs");
    }
}

#[test]
fn versioned_s3_serves_the_pinned_version_after_an_overwrite_and_locked_remounts_it() {
    let moto = MotoServer::start();
    moto.create_versioned_bucket("pinned");
    let bs = 4096;
    let old = pattern(11, 16 * bs + 123);
    let v1 = moto
        .put_object("pinned", "data/obj.bin", &old)
        .expect("a versioned bucket returns a version id");
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("inputs.lock.json");
    let m = Mount::start(
        &tmp.path().join("mnt1"),
        &[
            "--input=d=s3://pinned/data/obj.bin".into(),
            "--block-size=4KiB".into(),
            flag("cache-dir", &tmp.path().join("cache1")),
            flag("lock-out", &lock),
        ],
        &moto.env(),
    )
    .unwrap();
    // The lock file is there once the mount serves, and records the version id.
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    assert_eq!(recorded["inputfs_lock"], 1);
    let entry = &recorded["files"][0];
    assert_eq!(entry["input"], "d");
    assert_eq!(entry["path"], "obj.bin");
    assert_eq!(entry["url"], "s3://pinned/data/obj.bin");
    assert_eq!(entry["kind"], "s3");
    assert_eq!(entry["size"], old.len() as u64);
    assert_eq!(entry["block_size"], bs as u64);
    assert_eq!(entry["version"]["version_id"], v1.as_str());
    assert!(entry["version"]["etag"].is_string(), "{entry}");

    // Part of the file is cached, then the object is overwritten at the origin.
    let file = m.path("d/obj.bin");
    let f = std::fs::File::open(&file).unwrap();
    read_blocks_reverse(&f, &old, bs, 0..8);
    let new = pattern(12, old.len());
    let v2 = moto.put_object("pinned", "data/obj.bin", &new).unwrap();
    assert_ne!(v1, v2);
    let overwritten = moto.requests().len();
    // The rest comes from the origin by version id: still the old bytes.
    read_blocks_reverse(&f, &old, bs, 8..17);
    drop(f);
    let whole = std::fs::read(&file).unwrap();
    assert_eq!(sha256_hex(&whole), sha256_hex(&old));
    let log = m.stop();
    assert!(!log.contains("changed since it was pinned"), "{log}");
    // moto's request log, read once the mount is gone: every block after the
    // overwrite was fetched once, after it, by the pinned version id.
    let requests = moto.requests();
    let before = &requests[..overwritten];
    assert!(
        before
            .iter()
            .any(|r| r.method == "PUT" && r.path == "/pinned/data/obj.bin"),
        "the overwrite is not in moto's log: {before:?}"
    );
    assert_eq!(
        block_gets(
            &requests[overwritten..],
            "/pinned/data/obj.bin",
            &v1,
            bs,
            old.len()
        ),
        (8..17).collect::<Vec<_>>(),
        "{:?}",
        &requests[overwritten..]
    );
    // The blocks before it were fetched by the same version id.
    let gets: Vec<_> = before
        .iter()
        .filter(|r| r.method == "GET")
        .cloned()
        .collect();
    assert_eq!(
        block_gets(&gets, "/pinned/data/obj.bin", &v1, bs, old.len()),
        (0..8).collect::<Vec<_>>(),
        "{before:?}"
    );
    let pinned_requests = requests.len();

    // A --locked remount on a fresh cache: the old version, though the origin's
    // current one is the new.
    let m = Mount::start(
        &tmp.path().join("mnt2"),
        &[
            flag("locked", &lock),
            flag("cache-dir", &tmp.path().join("cache2")),
        ],
        &moto.env(),
    )
    .unwrap();
    let names: Vec<_> = std::fs::read_dir(m.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["obj.bin"]);
    let whole = std::fs::read(m.path("d/obj.bin")).unwrap();
    assert_eq!(sha256_hex(&whole), sha256_hex(&old));
    let log = m.stop();
    assert!(!log.contains("changed since it was pinned"), "{log}");
    // No HEAD, no listing: only the blocks, each once, by the locked version id.
    let requests = &moto.requests()[pinned_requests..];
    assert_eq!(
        block_gets(requests, "/pinned/data/obj.bin", &v1, bs, old.len()),
        (0..17).collect::<Vec<_>>(),
        "{requests:?}"
    );
}

/// The blocks (sorted) that `requests` fetched of `path`, checking
/// that every request is a GET of `path` by `version` for exactly one whole
/// block of an object of `len` bytes.
fn block_gets(
    requests: &[inputfs_tests::moto::MotoRequest],
    path: &str,
    version: &str,
    bs: usize,
    len: usize,
) -> Vec<usize> {
    let mut blocks: Vec<usize> = requests
        .iter()
        .map(|r| {
            assert!(
                r.method == "GET" && r.path == path && r.version_id.as_deref() == Some(version),
                "not a GET of {path} by version {version}: {r:?}"
            );
            let range = r
                .range
                .as_deref()
                .unwrap_or_else(|| panic!("no Range: {r:?}"));
            let (start, end) = range
                .strip_prefix("bytes=")
                .and_then(|x| x.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .unwrap_or_else(|| panic!("not a bytes=START-END range: {r:?}"));
            let block = start / bs;
            assert_eq!(start, block * bs, "not at a block start: {r:?}");
            assert_eq!(end + 1, (start + bs).min(len), "not one whole block: {r:?}");
            block
        })
        .collect();
    blocks.sort();
    blocks
}

#[test]
fn unversioned_http_fails_reads_of_a_changed_object_once_logged_never_mixing() {
    let root = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let blocks = 32;
    let old = pattern(21, blocks * bs);
    let origin_file = root.path().join("data.bin");
    std::fs::write(&origin_file, &old).unwrap();
    let nginx = NginxServer::start(root.path());
    let url = nginx.url("data.bin");
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("lock.json");
    let m = Mount::start(
        &tmp.path().join("mnt"),
        &[
            format!("--input=h={url}"),
            "--block-size=64KiB".into(),
            flag("cache-dir", &tmp.path().join("cache")),
            flag("lock-out", &lock),
        ],
        &[],
    )
    .unwrap();
    let f = std::fs::File::open(m.path("h/data.bin")).unwrap();
    read_blocks_reverse(&f, &old, bs, 0..blocks / 2);

    // Change the object at the origin: new bytes, same size, a new mtime (and so
    // a new ETag), swapped in atomically.
    let new = pattern(22, old.len());
    let staged = root.path().join(".data.bin.new");
    std::fs::write(&staged, &new).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(later)
        .unwrap();
    std::fs::rename(&staged, &origin_file).unwrap();

    // The second half: whatever reads succeed are the old bytes (blocks a cache
    // held), and reads that need the origin fail with EIO.
    let mut eio = 0;
    for b in blocks / 2..blocks {
        let mut buf = vec![0u8; bs];
        match f.read_exact_at(&mut buf, (b * bs) as u64) {
            Ok(()) => assert!(buf == old[b * bs..(b + 1) * bs], "block {b}: new bytes"),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "block {b}: {e}");
                eio += 1;
            }
        }
    }
    assert!(eio > 0, "no read of the changed object failed");
    // A whole-file read fails rather than mixing versions.
    let err = std::fs::read(m.path("h/data.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // The first half still reads, old bytes, from the caches.
    read_blocks_reverse(&f, &old, bs, 0..blocks / 2);
    let mut first = vec![0u8; blocks / 2 * bs];
    f.read_exact_at(&mut first, 0).unwrap();
    assert_eq!(sha256_hex(&first), sha256_hex(&old[..first.len()]));
    drop(f);
    let log = m.stop();
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("changed since it was pinned"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains(&url), "{}", lines[0]);
    // The lock file recorded nginx's ETag, and a --locked mount of it now fails
    // reads the same way (no HEAD, no listing: the tree is the lock's).
    let recorded = std::fs::read_to_string(&lock).unwrap();
    assert!(recorded.contains("\"etag\""), "{recorded}");
    nginx.reset_counts();
    let m = Mount::start(
        &tmp.path().join("mnt2"),
        &[
            flag("locked", &lock),
            flag("cache-dir", &tmp.path().join("cache-fresh")),
        ],
        &[],
    )
    .unwrap();
    let err = std::fs::read(m.path("h/data.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    m.stop();
    // Read once the mount is gone: the read asked the origin, only with GETs
    // pinned to the recorded ETag, and every one was refused.
    let etag = serde_json::from_str::<serde_json::Value>(&recorded).unwrap()["files"][0]["version"]
        ["etag"]
        .as_str()
        .expect("an ETag in the lock file")
        .to_string();
    let requests = nginx.requests();
    assert!(!requests.is_empty(), "the read never reached the origin");
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.uri.as_str(), r.status),
            ("GET", "/data.bin", 412),
            "{r:?}"
        );
        assert_eq!(r.if_match, etag, "not pinned to the locked ETag: {r:?}");
        assert_ne!(r.range, "-", "not a ranged GET: {r:?}");
    }
}

#[test]
fn locked_refuses_corrupt_foreign_and_invalid_lock_files_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let good = serde_json::json!({
        "inputfs_lock": 1,
        "files": [{
            "input": "d", "path": "a.bin", "url": "s3://bkt/a.bin", "kind": "s3",
            "size": 10, "block_size": 4096, "version": {"etag": "\"x\""}
        }]
    });
    let with = |field: &str, value: Option<serde_json::Value>| {
        let mut v = good.clone();
        let obj = v["files"][0].as_object_mut().unwrap();
        match value {
            Some(x) => obj.insert(field.into(), x),
            None => obj.remove(field),
        };
        v.to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "corrupt",
            "{\"inputfs_lock\": 1, \"files\": [".into(),
            "not a JSON lock file",
        ),
        (
            "foreign",
            r#"{"inputs": [{"name": "a", "url": "s3://b/k"}]}"#.into(),
            "not an inputfs lock file",
        ),
        (
            "missing",
            with("size", None),
            "files[0] (input \"d\", path \"a.bin\"): missing field \"size\"",
        ),
        (
            "wrongtype",
            with("block_size", Some("4096".into())),
            "files[0] (input \"d\", path \"a.bin\"): \"block_size\": expected a non-negative integer",
        ),
        (
            "badurl",
            with("url", Some("s3://bkt/dir/".into())),
            "files[0] (input \"d\", path \"a.bin\"): \"url\" names a prefix",
        ),
        ("escape", with("path", Some("../x".into())), "files[0]"),
    ];
    let env = [(
        "AWS_ENDPOINT_URL".to_string(),
        inputfs_tests::dead_endpoint(),
    )];
    for (name, text, want) in cases {
        let file = tmp.path().join(format!("{name}.json"));
        std::fs::write(&file, text).unwrap();
        let out = run_inputfs(
            &[
                "mount".into(),
                mnt.display().to_string(),
                "--foreground".into(),
                flag("locked", &file),
                flag("cache-dir", &tmp.path().join("cache")),
            ],
            &env,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} mounted");
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {stderr}");
        assert!(
            lines[0].contains(&file.display().to_string()),
            "{name}: {stderr}"
        );
        assert!(lines[0].contains(want), "{name}: {want:?} not in {stderr}");
        assert!(!is_mounted(&mnt.canonicalize().unwrap()), "{name}");
    }
    // --locked with --input is a usage error; so is a missing file, in one line.
    let file = tmp.path().join("ok.json");
    std::fs::write(&file, good.to_string()).unwrap();
    for (args, want) in [
        (
            vec![flag("locked", &file), "--input=a=s3://b/k".into()],
            "cannot be used with",
        ),
        (
            vec![flag("locked", &tmp.path().join("none.json"))],
            "cannot read",
        ),
        (
            vec![
                "--input=s=http://127.0.0.1:9/x?X-Amz-Signature=abc".into(),
                flag("lock-out", &tmp.path().join("out.json")),
            ],
            "a signed URL cannot be locked",
        ),
    ] {
        let mut full = vec![
            "mount".into(),
            mnt.display().to_string(),
            "--foreground".into(),
        ];
        full.extend(args);
        let out = run_inputfs(&full, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{full:?} mounted");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
        assert!(!stderr.contains("abc"), "signature in {stderr}");
        assert!(!is_mounted(&mnt.canonicalize().unwrap()));
    }
    assert!(!tmp.path().join("out.json").exists());
}

/// S3 consoles create empty "folder" objects (`sub/`): a prefix holding one
/// mounts, the marker is not a file, and the files below it read right.
#[test]
fn folder_marker_objects_are_dropped_not_refused() {
    let server = MotoServer::start();
    server.create_bucket("markers");
    server.put_object("markers", "data/sub/", b"");
    let body = inputfs_tests::pattern(3, 300_000);
    server.put_object("markers", "data/sub/f.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let m = Mount::start(
        &tmp.path().join("mnt"),
        &[
            "--input=d=s3://markers/data/".into(),
            format!("--cache-dir={}", tmp.path().join("cache").display()),
        ],
        &server.env(),
    )
    .unwrap();
    let got = std::fs::read(m.path("d/sub/f.bin")).unwrap();
    assert_eq!(
        inputfs_tests::sha256_hex(&got),
        inputfs_tests::sha256_hex(&body)
    );
    let names: Vec<_> = std::fs::read_dir(m.path("d/sub"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["f.bin"]);
}
