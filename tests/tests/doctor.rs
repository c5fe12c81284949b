//! `inputfs doctor` on real directories and a real S3 endpoint: it passes where
//! inputfs works (a local directory, sshfs), says the truth about SMB (no hard
//! links: a warning, since inputfs publishes by rename there), fails with a fix
//! on a read-only or missing directory, resolves URLs exactly as mount does
//! (a wrong secret or a missing bucket is one failing line), and leaves no probe
//! file behind.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use inputfs_tests::mounts::{Mount, is_mounted, run_inputfs};
use inputfs_tests::netfs::SharedDir;
use inputfs_tests::s3::{ACCESS_KEY, REGION, aws_env};
use inputfs_tests::{S3Server, pattern, sha256_hex};
use serde_json::Value;

/// Every check id for one local and one shared directory.
const DIR_IDS: [&str; 9] = [
    "cache.exists",
    "cache.writable",
    "cache.o_excl",
    "cache.rename_over",
    "cache.link",
    "cache.free_space",
    "cache.free_inodes",
    "cache.small_file_latency",
    "cache.throughput",
];

/// `inputfs doctor ARGS... --json`: exit code and the parsed report.
fn doctor_json(args: &[String], env: &[(String, String)]) -> (i32, Vec<Value>) {
    let mut all = vec!["doctor".to_string(), "--json".to_string()];
    all.extend(args.iter().cloned());
    let out = run_inputfs(&all, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let checks = report.as_array().expect("a JSON array").clone();
    for c in &checks {
        for field in ["id", "status", "target", "detail", "fix", "measurements"] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
        if c["status"] == "fail" || c["status"] == "warn" {
            assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
        }
    }
    (out.status.code().expect("an exit code"), checks)
}

/// `inputfs doctor ARGS...` as text: exit code and stdout lines.
fn doctor_text(args: &[String], env: &[(String, String)]) -> (i32, Vec<String>) {
    let mut all = vec!["doctor".to_string()];
    all.extend(args.iter().cloned());
    let out = run_inputfs(&all, env);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (out.status.code().expect("an exit code"), lines)
}

/// The check `id` about `target` (a directory or URL).
fn check<'a>(checks: &'a [Value], id: &str, target: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["id"] == id && c["target"] == target)
        .unwrap_or_else(|| panic!("no {id} for {target} in {checks:#?}"))
}

fn status<'a>(checks: &'a [Value], id: &str, target: &str) -> &'a str {
    check(checks, id, target)["status"].as_str().unwrap()
}

/// Probe directories left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("doctor-"))
        .collect()
}

fn args(local: &Path, shared: &Path) -> Vec<String> {
    vec![
        format!("--cache-dir={}", local.display()),
        format!("--shared-cache={}", shared.display()),
        "--throughput-size=16MiB".into(),
    ]
}

/// Doctor on `shared` (one client's view of a network directory): the report
/// has every id for both directories and no probe file remains, on the client
/// or on the server.
fn run_on(mut shared: SharedDir) -> (i32, Vec<Value>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let view = shared.mount_point(0);
    let (code, checks) = doctor_json(&args(&local, &view), &[]);
    for c in &checks {
        eprintln!("{} {} {} | {}", c["status"], c["id"], c["detail"], c["fix"]);
    }
    let shared_target = view.display().to_string();
    for id in DIR_IDS {
        check(&checks, id, &shared_target);
        if !id.starts_with("cache.small") && id != "cache.throughput" {
            check(&checks, id, &local.display().to_string());
        }
    }
    check(&checks, "fuse.device", "/dev/fuse");
    assert!(leftovers(&view).is_empty(), "{:?}", leftovers(&view));
    assert!(leftovers(shared.server_dir()).is_empty());
    assert!(leftovers(&local).is_empty());
    (code, checks, shared_target)
}

/// Everything but speed and "is this a local filesystem" must be ok.
fn assert_correct(checks: &[Value], target: &str, link: &str) {
    for id in ["cache.writable", "cache.o_excl", "cache.rename_over"] {
        assert_eq!(
            status(checks, id, target),
            "ok",
            "{}",
            check(checks, id, target)
        );
    }
    assert_eq!(
        status(checks, "cache.link", target),
        link,
        "{}",
        check(checks, "cache.link", target)
    );
    // Measured: the size asked for (--throughput-size=16MiB) was written and
    // read back, and both took time. A rate is the bytes over the time taken
    // (floored at 1 µs): one from a clock that never ran is ~16.8 million MB/s;
    // no disk or network here moves 100 GB/s.
    let throughput = check(checks, "cache.throughput", target);
    let m = &throughput["measurements"];
    assert_eq!(m["bytes"].as_u64(), Some(16 << 20), "{throughput}");
    for key in ["read_mb_s", "write_mb_s"] {
        let rate = m[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key}: {throughput}"));
        assert!(rate > 0.0 && rate < 100_000.0, "{key}: {throughput}");
    }
    // 50 files timed: a median above zero, no higher than the p99, and a p99
    // under a minute (the test would have timed out first).
    let latency = check(checks, "cache.small_file_latency", target);
    let m = &latency["measurements"];
    assert_eq!(m["files"].as_u64(), Some(50), "{latency}");
    let ms = |key: &str| {
        m[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key}: {latency}"))
    };
    assert!(
        ms("median_ms") > 0.0 && ms("median_ms") <= ms("p99_ms") && ms("p99_ms") < 60_000.0,
        "{latency}"
    );
}

#[test]
fn doctor_passes_on_a_local_directory() {
    let (code, checks, target) = run_on(SharedDir::local());
    assert_eq!(code, 0, "{checks:#?}");
    assert_correct(&checks, &target, "ok");
    // A shared cache on this machine's own disk is suspicious: said, not failed.
    assert_eq!(status(&checks, "cache.exists", &target), "warn");
}

#[test]
fn doctor_passes_on_sshfs() {
    let (code, checks, target) = run_on(SharedDir::sshfs(true));
    assert_eq!(code, 0, "{checks:#?}");
    assert_correct(&checks, &target, "ok");
    let exists = check(&checks, "cache.exists", &target);
    assert_eq!(exists["status"], "ok", "{exists}");
    assert!(
        exists["detail"].as_str().unwrap().contains("fuse.sshfs"),
        "{exists}"
    );
}

#[test]
fn doctor_on_smb_warns_that_links_are_missing_and_still_passes() {
    let (code, checks, target) = run_on(SharedDir::smb());
    assert_correct(&checks, &target, "warn");
    let link = check(&checks, "cache.link", &target);
    assert!(
        link["detail"].as_str().unwrap().contains("os error 1"),
        "EPERM: {link}"
    );
    assert!(
        link["fix"]
            .as_str()
            .unwrap()
            .contains("publishes blocks by rename")
    );
    // Warnings (no links; smbnetfs's ~25 MB/s may warn too) do not fail.
    assert!(checks.iter().all(|c| c["status"] != "fail"), "{checks:#?}");
    assert_eq!(code, 0);
}

/// A tmpfs mounted read-only at `dir`, unmounted on drop.
struct ReadOnlyTmpfs(PathBuf);

impl ReadOnlyTmpfs {
    fn mount(dir: &Path) -> ReadOnlyTmpfs {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test mounts a tmpfs: run it as root"
        );
        std::fs::create_dir_all(dir).unwrap();
        let guard = ReadOnlyTmpfs(dir.canonicalize().unwrap());
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2g,ro", "tmpfs"])
            .arg(&guard.0)
            .status()
            .unwrap();
        assert!(status.success() && is_mounted(&guard.0), "mount tmpfs ro");
        guard
    }
}

impl Drop for ReadOnlyTmpfs {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
}

#[test]
fn a_read_only_directory_fails_cache_writable_with_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let ro = ReadOnlyTmpfs::mount(&tmp.path().join("ro"));
    let target = ro.0.display().to_string();
    let mut a = args(&tmp.path().join("local"), &ro.0);
    let (code, checks) = doctor_json(&a, &[]);
    assert_eq!(code, 1, "{checks:#?}");
    let writable = check(&checks, "cache.writable", &target);
    assert_eq!(writable["status"], "fail");
    assert!(
        writable["detail"]
            .as_str()
            .unwrap()
            .contains("Read-only file system")
    );
    assert!(
        writable["fix"]
            .as_str()
            .unwrap()
            .contains("read-only: remount it read-write")
    );
    for id in [
        "cache.o_excl",
        "cache.small_file_latency",
        "cache.throughput",
    ] {
        assert_eq!(status(&checks, id, &target), "skip");
    }
    // Space can still be measured on a read-only filesystem.
    assert_eq!(status(&checks, "cache.free_space", &target), "ok");
    // As text: one FAIL line naming the check, the directory and the fix.
    a.push("--no-local-cache".into());
    a.retain(|x| !x.starts_with("--cache-dir"));
    let (code, lines) = doctor_text(&a, &[]);
    assert_eq!(code, 1);
    let fail: Vec<_> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "{lines:#?}");
    assert!(
        fail[0].starts_with("FAIL cache.writable ")
            && fail[0].contains(&target)
            && fail[0].contains(" — fix: "),
        "{}",
        fail[0]
    );
}

#[test]
fn a_missing_directory_fails_cache_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("not-mounted");
    let a = vec![
        "--no-local-cache".into(),
        format!("--shared-cache={}", missing.display()),
    ];
    let (code, checks) = doctor_json(&a, &[]);
    assert_eq!(code, 1);
    let target = missing.display().to_string();
    assert_eq!(status(&checks, "cache.exists", &target), "fail");
    assert!(
        check(&checks, "cache.exists", &target)["fix"]
            .as_str()
            .unwrap()
            .contains("mount the network filesystem")
    );
    assert!(!missing.exists(), "doctor never creates a shared directory");
}

#[test]
fn bad_usage_exits_2() {
    let out = run_inputfs(&["doctor".into(), "--no-such-flag".into()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

const BUCKET: &str = "doctor";

#[test]
fn urls_resolve_as_mount_resolves_them() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let (a, b) = (pattern(1, 100_000), pattern(2, 12_345));
    server.put_object(BUCKET, "data/a.bin", &a);
    server.put_object(BUCKET, "data/b.bin", &b);
    let object = format!("s3://{BUCKET}/data/a.bin");
    let prefix = format!("s3://{BUCKET}/data/");
    let missing_bucket = "s3://no-such-bucket/data/".to_string();
    let missing_object = format!("s3://{BUCKET}/data/nope.bin");
    let urls = vec![
        "--no-local-cache".to_string(),
        object.clone(),
        prefix.clone(),
        missing_bucket.clone(),
        missing_object.clone(),
    ];
    let (code, checks) = doctor_json(&urls, &server.env());
    for c in &checks {
        eprintln!("{} {} {} | {}", c["status"], c["id"], c["detail"], c["fix"]);
    }
    assert_eq!(code, 1, "{checks:#?}");
    let one = check(&checks, "url.resolve", &object);
    assert_eq!(one["status"], "ok", "{one}");
    assert_eq!(one["measurements"]["objects"], 1);
    assert_eq!(one["measurements"]["bytes"], a.len() as u64);
    let all = check(&checks, "url.resolve", &prefix);
    assert_eq!(all["status"], "ok", "{all}");
    assert_eq!(all["measurements"]["objects"], 2);
    assert_eq!(all["measurements"]["bytes"], (a.len() + b.len()) as u64);
    let nb = check(&checks, "url.resolve", &missing_bucket);
    assert_eq!(nb["status"], "fail", "{nb}");
    assert_eq!(
        nb["detail"],
        format!("{missing_bucket}: no such bucket or container")
    );
    let no = check(&checks, "url.resolve", &missing_object);
    assert_eq!(no["status"], "fail");
    assert_eq!(
        no["detail"],
        format!("{missing_object}: no such object"),
        "the line mount prints, without the input name"
    );

    // A wrong secret: one failing line, the mount's reason, and the fix.
    let wrong = aws_env(&server.endpoint(), ACCESS_KEY, "wrong-secret", REGION);
    let (code, lines) = doctor_text(&["--no-local-cache".into(), object.clone()], &wrong);
    assert_eq!(code, 1, "{lines:#?}");
    let fail: Vec<_> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "{lines:#?}");
    assert!(
        fail[0].starts_with("FAIL url.resolve ")
            && fail[0].contains(&object)
            && fail[0].contains("access denied")
            && fail[0].contains(" — fix: "),
        "{}",
        fail[0]
    );
    assert!(!fail[0].contains("wrong-secret"), "no secret in the output");
}

/// `inputfs ARGS...` in a mount namespace of its own with `/proc` unmounted
/// (a container that does not mount it): exit code, stdout, stderr.
fn without_proc(args: &[String]) -> (i32, String, String) {
    let mut script = String::from("umount -l /proc && exec \"$0\"");
    for i in 1..=args.len() {
        script.push_str(&format!(" \"${i}\""));
    }
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(&script)
        .arg(inputfs_tests::mounts::inputfs_bin())
        .args(args)
        .output()
        .expect("run unshare (util-linux; CI runs as root, which unshare --mount needs)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_proc_doctor_fails_and_a_job_warns_naming_proc_and_reads_right() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "unshare --mount needs root (CI runs as root): run the suite as root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("a.bin");
    let data = pattern(5, 3 << 20);
    std::fs::write(&src, &data).unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let warm = |local: &Path| {
        vec![
            "warm".to_string(),
            format!("--input=a=file://{}", src.display()),
            format!("--cache-dir={}", local.display()),
            format!("--shared-cache={}", shared.display()),
            "--block-size=1MiB".to_string(),
        ]
    };
    // The shared cache filled with /proc there.
    let out = run_inputfs(&warm(&tmp.path().join("first")), &[]);
    assert!(out.status.success(), "{out:?}");

    let (code, stdout, stderr) =
        without_proc(&["doctor".into(), "--json".into(), "--no-local-cache".into()]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let checks: Vec<Value> = serde_json::from_str(&stdout).expect("doctor --json");
    let proc = check(&checks, "system.proc", "/proc/self/fd");
    assert_eq!(proc["status"], "fail", "{proc}");
    assert!(
        proc["detail"]
            .as_str()
            .unwrap()
            .contains("/proc is not mounted"),
        "{proc}"
    );

    // A job without /proc: the shared tier fails visibly (not a silent cold
    // cache) and every byte still comes right, from the origin.
    let local = tmp.path().join("second");
    let (code, stdout, stderr) = without_proc(&warm(&local));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("WARN")
            && l.contains("cache tier shared failing")
            && l.contains("/proc is not mounted")),
        "{stderr}"
    );
    assert!(stdout.contains("from the origin"), "{stdout}");

    // A mount cannot start without /proc (the daemon re-executes itself): one
    // line naming /proc, not a silent cold cache.
    let mountpoint = tmp.path().join("m");
    std::fs::create_dir(&mountpoint).unwrap();
    let (code, _, stderr) = without_proc(&[
        "mount".into(),
        mountpoint.display().to_string(),
        format!("--input=a=file://{}", src.display()),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/proc"), "{stderr}");
    assert!(!is_mounted(&mountpoint));

    // Nothing the job without /proc did left a wrong byte behind: a mount
    // with /proc over both caches it touched reads the source's bytes.
    let mount = Mount::start(
        &mountpoint,
        &[
            format!("--input=a=file://{}", src.display()),
            format!("--cache-dir={}", local.display()),
            format!("--shared-cache={}", shared.display()),
            "--block-size=1MiB".to_string(),
        ],
        &[],
    )
    .expect("mount");
    let read = std::fs::read(mount.path("a/a.bin")).unwrap();
    assert_eq!(sha256_hex(&read), sha256_hex(&data));
    mount.stop();
}
