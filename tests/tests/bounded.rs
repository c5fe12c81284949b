//! Bounded everything, end to end through the real binary: an origin that
//! accepts connections and never answers (a `TcpListener` of the test that
//! holds every connection) costs a read ~20 s and one warning, not minutes; a
//! mount or `doctor` on it fails in one line; a 70,000-character URL or
//! `--inputs /dev/zero` is one line naming the limit, never a panic; and
//! `--locked` refuses sizes it cannot serve, checking entries of size 0 at a
//! real origin (nginx). Every byte read is checked.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use inputfs_tests::mounts::{Mount, run_inputfs};
use inputfs_tests::{NginxServer, pattern, sha256_hex};
use serde_json::Value;

/// An origin that accepts every connection and never sends a byte.
struct Silent {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    count.fetch_add(1, Ordering::SeqCst);
                    held.push(conn);
                }
            }
        });
        Silent {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn s(v: impl Into<String>) -> String {
    v.into()
}

/// Run `inputfs ARGS`; (exit code, stderr lines, stdout) once it has ended.
fn run(args: &[String]) -> (i32, Vec<String>, String) {
    let out = run_inputfs(args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().expect("exited, not killed"),
        stderr.lines().map(str::to_string).collect(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Lines of a daemon's log at WARN level.
fn warnings(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN ")).collect()
}

#[test]
fn a_read_from_an_origin_that_never_answers_is_eio_within_30_s_with_one_warning() {
    let origin = Silent::start();
    let tmp = tempfile::tempdir().unwrap();
    // A lock file: the mount itself asks the origin nothing (no HEAD for a
    // non-empty entry), so only the read meets the silence.
    let lock = tmp.path().join("lock.json");
    let entry = serde_json::json!({
        "input": "x", "path": "obj.bin", "url": origin.url("obj.bin"), "kind": "http",
        "size": 3u64 << 20, "block_size": 4u64 << 20, "version": {"etag": "\"e\""}
    });
    let text = serde_json::json!({"inputfs_lock": 1, "files": [entry]}).to_string();
    std::fs::write(&lock, text).unwrap();
    let m = Mount::start(
        &tmp.path().join("mnt"),
        &[
            format!("--locked={}", lock.display()),
            format!("--cache-dir={}", tmp.path().join("cache").display()),
        ],
        // The daemon's default filter (fuser's "unmount failed" at a normal
        // unmount is hidden, as `logging` does), at info level.
        &[(
            s("INPUTFS_LOG"),
            s("info,fuser=error,rustls_platform_verifier=off"),
        )],
    )
    .expect("a --locked mount needs no answer from the origin");
    let mut f = std::fs::File::open(m.path("x/obj.bin")).unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let e = f.read(&mut buf).expect_err("a silent origin served bytes");
    let elapsed = started.elapsed();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // Default timeouts: two first-byte timeouts of 10 s, then EIO.
    assert!(elapsed < Duration::from_secs(30), "EIO after {elapsed:?}");
    assert!(elapsed >= Duration::from_secs(19), "EIO after {elapsed:?}");
    // One fetch and one retry. The kernel's synchronous re-read of the page
    // its failed readahead wanted is answered at once, from the same failure.
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2);
    drop(f);
    let log = m.stop();
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("origin read failed") && warned[0].contains("first-byte timeout"),
        "{log}"
    );
}

#[test]
fn mount_and_doctor_fail_in_one_line_when_the_origin_never_answers() {
    let origin = Silent::start();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let started = Instant::now();
    let (code, lines, _) = run(&[
        s("mount"),
        mnt.display().to_string(),
        s("--foreground"),
        format!("--input=x={}", origin.url("f.bin")),
        format!("--cache-dir={}", tmp.path().join("cache").display()),
        s("--first-byte-timeout=1s"),
    ]);
    let elapsed = started.elapsed();
    assert_eq!(code, 1, "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let want = format!("no answer from http://{}", origin.addr);
    assert!(
        lines[0].contains(&want) && lines[0].contains("first-byte timeout"),
        "{lines:?}"
    );
    // Two 1 s timeouts and a backoff, not four.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let (code, lines, stdout) = run(&[
        s("doctor"),
        s("--no-local-cache"),
        s("--first-byte-timeout=1s"),
        origin.url("f.bin"),
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(
        stdout.contains(&want) && stdout.contains("--first-byte-timeout"),
        "{stdout}"
    );
}

#[test]
fn a_70000_character_url_is_one_short_line_and_no_panic() {
    let url = format!("http://127.0.0.1:1/{}", "a".repeat(70_000));
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let (code, lines, _) = run(&[
        s("mount"),
        mnt.display().to_string(),
        s("--foreground"),
        format!("--input=x={url}"),
        format!("--cache-dir={}", tmp.path().join("cache").display()),
    ]);
    assert_eq!(code, 1, "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("70019 bytes is too long (at most 8192 bytes, 8 KiB)"),
        "{}",
        &lines[0][..300.min(lines[0].len())]
    );
    assert!(lines[0].len() < 1000, "{} bytes", lines[0].len());
    let (code, lines, stdout) = run(&[s("doctor"), s("--no-local-cache"), url]);
    assert_eq!(code, 1, "{stdout}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(stdout.contains("too long (at most 8192 bytes"), "{stdout}");
    assert!(stdout.len() < 3000, "{} bytes", stdout.len());
}

#[test]
fn inputs_from_dev_zero_fail_fast_naming_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let started = Instant::now();
    for flag in ["--inputs", "--locked"] {
        let (code, lines, _) = run(&[
            s("mount"),
            mnt.display().to_string(),
            s("--foreground"),
            format!("{flag}=/dev/zero"),
        ]);
        assert_eq!(code, 1, "{lines:?}");
        assert_eq!(
            lines,
            [format!(
                "inputfs: error: {flag} /dev/zero: larger than 64.0 MiB (67108864 bytes), the most inputfs reads from it"
            )]
        );
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// nginx serving a 3 MB object and an empty one, and a lock file of both
/// written by a real mount (whose reads are checked).
struct LockRig {
    // Dropped in this order: the server, then what it served.
    _nginx: NginxServer,
    _root: tempfile::TempDir,
    tmp: tempfile::TempDir,
    data: Vec<u8>,
    lock: Value,
}

fn lock_rig() -> LockRig {
    let root = tempfile::tempdir().unwrap();
    let data = pattern(21, 3 << 20);
    std::fs::write(root.path().join("obj.bin"), &data).unwrap();
    std::fs::write(root.path().join("_SUCCESS"), b"").unwrap();
    let nginx = NginxServer::start(root.path());
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("lock.json");
    let m = Mount::start(
        &tmp.path().join("mnt0"),
        &[
            format!("--input=x={}", nginx.url("obj.bin")),
            format!("--input=e={}", nginx.url("_SUCCESS")),
            format!("--cache-dir={}", tmp.path().join("cache0").display()),
            format!("--lock-out={}", lock.display()),
        ],
        &[],
    )
    .unwrap();
    check_bytes(&m, &data);
    drop(m);
    let lock = serde_json::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    LockRig {
        _nginx: nginx,
        _root: root,
        tmp,
        data,
        lock,
    }
}

fn check_bytes(m: &Mount, data: &[u8]) {
    let got = std::fs::read(m.path("x/obj.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(data));
    assert_eq!(std::fs::read(m.path("e/_SUCCESS")).unwrap(), b"");
}

impl LockRig {
    /// The lock with `files[i].size` set to `size`, written to a file.
    fn with_size(&self, name: &str, size: u64) -> std::path::PathBuf {
        let mut lock = self.lock.clone();
        let files = lock["files"].as_array_mut().unwrap();
        let i = files.iter().position(|f| f["path"] == name).unwrap();
        files[i]["size"] = size.into();
        let path = self.tmp.path().join(format!("{name}.{size}.json"));
        std::fs::write(&path, lock.to_string()).unwrap();
        path
    }

    fn mount(&self, lock: &Path, n: &str) -> Result<Mount, String> {
        Mount::start(
            &self.tmp.path().join(format!("mnt-{n}")),
            &[
                format!("--locked={}", lock.display()),
                format!("--cache-dir={}", self.tmp.path().join(n).display()),
            ],
            &[],
        )
    }
}

#[test]
fn locked_sizes_are_checked_and_an_empty_entry_against_the_origin() {
    let r = lock_rig();
    // As written: mounts, both files right.
    let m = r.mount(&r.with_size("obj.bin", 3 << 20), "ok").unwrap();
    check_bytes(&m, &r.data);
    drop(m);
    // An empty entry for a 3 MB object: refused at mount, naming file, entry, field.
    let lock = r.with_size("obj.bin", 0);
    let e = r.mount(&lock, "zero").err().expect("size 0 mounted");
    assert!(
        e.contains(&format!("--locked {}: files[", lock.display()))
            && e.contains("(input \"x\", path \"obj.bin\"): \"size\" is 0, but the origin has 3145728 bytes for this version"),
        "{e}"
    );
    // Sizes no file can have: refused before anything is asked.
    for size in [1u64 << 63, u64::MAX] {
        let lock = r.with_size("obj.bin", size);
        let e = r
            .mount(&lock, &format!("big{size}"))
            .err()
            .expect("mounted");
        assert!(
            e.contains(&format!("\"size\" {size} is more than a file can hold")),
            "{e}"
        );
    }
    // A wrong size a file could have mounts, and every read of it fails:
    // the origin's size is checked on each GET, no other bytes are served.
    let m = r
        .mount(&r.with_size("obj.bin", (3 << 20) - 1), "short")
        .unwrap();
    let e = std::fs::read(m.path("x/obj.bin")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(std::fs::read(m.path("e/_SUCCESS")).unwrap(), b"");
}
