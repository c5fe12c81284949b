//! A shared cache that becomes unusable under a running mount — full, read-only,
//! removed, not writable, on a vanished mount, or missing at mount time — never
//! costs a read: every byte still comes right (from the origin), the mount stays
//! up, the log says so once (not once per read), and the tier comes back by
//! itself once the directory works again. `--require-shared-cache` turns an
//! unusable directory at mount time into a one-line error instead.
//!
//! The small and read-only filesystems are real tmpfs mounts (the tests run as
//! root); each is unmounted by a guard, also when a test panics. The tests of
//! this binary run one at a time (`SERIAL`): one of them depends on which
//! device number a new tmpfs gets, and a tmpfs mounted or unmounted by a test
//! running beside it would take or free one.
//!
//! No test waits for a retry timer: a store that is down sets itself up on the
//! first call after the directory works, so the next read after a fix uses it.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use inputfs_tests::mounts::{Mount, is_mounted, run_inputfs};
use inputfs_tests::scrape::scrape;
use inputfs_tests::users::{sha256_as, user};
use inputfs_tests::{S3Server, cached_blocks, free_port, pattern, sha256_hex};

const BUCKET: &str = "unusable";
const BLOCK: usize = 256 * 1024;

/// Held by every test of this binary for its whole run (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests mount tmpfs and switch users: run them as root"
    );
}

/// A tmpfs mounted at `dir`, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            &dir,
        );
        assert!(is_mounted(&dir), "tmpfs not mounted at {}", dir.display());
        Tmpfs { dir }
    }

    fn remount(&self, options: &str) {
        run("mount", &["-o", &format!("remount,{options}")], &self.dir);
    }

    fn unmount(&self) {
        run("umount", &[], &self.dir);
        assert!(!is_mounted(&self.dir));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Run `cmd ARGS... PATH`, failing loudly.
fn run(cmd: &str, args: &[&str], path: &Path) {
    let out = Command::new(cmd).args(args).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An S3 origin holding `objects`, and a scratch directory.
struct Rig {
    server: S3Server,
    tmp: tempfile::TempDir,
    objects: Vec<(String, Vec<u8>)>,
    /// The `--metrics-addr` of the rig's mounts.
    metrics: String,
    _serial: MutexGuard<'static, ()>,
}

/// Objects of whole blocks (a short last block could fit where a full one does
/// not, and make a nearly full cache flap between working and not).
fn rig(objects: &[(&str, usize)]) -> Rig {
    require_root();
    // A test that failed while holding it poisoned it; the next may still run.
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let objects: Vec<(String, Vec<u8>)> = objects
        .iter()
        .enumerate()
        .map(|(i, (name, blocks))| (name.to_string(), pattern(40 + i as u64, blocks * BLOCK)))
        .collect();
    for (name, data) in &objects {
        server.put_object(BUCKET, name, data);
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Rig {
        server,
        tmp,
        objects,
        metrics: format!("127.0.0.1:{}", free_port()),
        _serial: serial,
    }
}

impl Rig {
    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn args(&self, shared: &Path) -> Vec<String> {
        vec![
            format!("--input=d=s3://{BUCKET}/"),
            format!("--shared-cache={}", shared.display()),
            "--no-local-cache".into(),
            "--block-size=256KiB".into(),
            format!("--metrics-addr={}", self.metrics),
        ]
    }

    /// Publishes to the shared tier that failed so far (refused ones too).
    fn failed_publishes(&self) -> u64 {
        scrape(&self.metrics).get("inputfs_tier_publish_errors_total{tier=\"shared\"}")
    }

    fn mount(&self, shared: &Path) -> Mount {
        Mount::start(&self.dir("mnt"), &self.args(shared), &self.server.env()).expect("mount")
    }

    fn data(&self, name: &str) -> &[u8] {
        &self
            .objects
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no object {name}"))
            .1
    }

    fn blocks(&self, name: &str) -> usize {
        self.data(name).len() / BLOCK
    }

    /// Read `name` through the mount (as root) and check every byte.
    fn read(&self, m: &Mount, name: &str) {
        let got = std::fs::read(m.path("d").join(name))
            .unwrap_or_else(|e| panic!("reading {name}: {e}\n{}", m.stderr()));
        assert_eq!(sha256_hex(&got), sha256_hex(self.data(name)), "{name}");
        assert!(is_mounted(&m.mountpoint), "the mount went away");
    }
}

fn wait_for(what: &str, m: &Mount, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            m.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Warnings about the shared tier in a log.
fn shared_warnings(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains("shared"))
        .count()
}

fn recoveries(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("cache tier shared recovered"))
        .count()
}

/// Wait until the shared tier has warned (publishes run in the background).
fn wait_for_warning(m: &Mount) {
    wait_for("a warning about the shared tier", m, || {
        shared_warnings(&m.stderr()) >= 1
    });
}

/// Read `name`, then wait until its blocks are in `shared` and the log says the
/// tier recovered.
fn read_and_see_it_published(r: &Rig, m: &Mount, shared: &Path, name: &str) {
    let before = cached_blocks(shared, BLOCK as u64).0;
    r.read(m, name);
    let want = before + r.blocks(name);
    wait_for(&format!("{want} blocks in the shared cache"), m, || {
        cached_blocks(shared, BLOCK as u64).0 >= want
    });
    wait_for("the recovery in the log", m, || {
        recoveries(&m.stderr()) >= 1
    });
}

/// The final log: exactly one warning and one recovery for the shared tier.
fn one_episode(log: &str) {
    assert_eq!(
        shared_warnings(log),
        1,
        "warnings about the shared tier:\n{log}"
    );
    assert_eq!(recoveries(log), 1, "recoveries of the shared tier:\n{log}");
}

#[test]
fn a_full_shared_cache_is_read_through_and_recovers_when_it_grows() {
    let r = rig(&[("a.bin", 12), ("b.bin", 12), ("c.bin", 12)]);
    let fs = Tmpfs::mount(&r.dir("shared"), "2m");
    let m = r.mount(&fs.dir);
    // 24 blocks of 256 KiB into 2 MiB: the first few fit, the rest get ENOSPC.
    r.read(&m, "a.bin");
    r.read(&m, "b.bin");
    wait_for_warning(&m);
    let log = m.stderr();
    // At the edge of full, a block can fit between two that do not (a failed
    // write's temp file is removed, freeing room): the tier may flap a few
    // times, each time one warning and one recovery — never one per block.
    let (warnings, recovered) = (shared_warnings(&log), recoveries(&log));
    assert!(
        (1..=3).contains(&warnings) && recovered <= warnings && recovered + 1 >= warnings,
        "a warning per episode, not per block ({warnings} warnings, {recovered} recoveries):\n{log}"
    );
    assert!(log.contains("No space left"), "{log}");
    assert!(
        cached_blocks(&fs.dir, BLOCK as u64).0 < 24,
        "everything fitted: no ENOSPC tested"
    );
    // Room again: the next object lands in the shared cache, and the episode
    // that was open ends with one recovery.
    fs.remount("size=64m");
    read_and_see_it_published(&r, &m, &fs.dir, "c.bin");
    let log = m.stop();
    assert_eq!(recoveries(&log), warnings, "{log}");
}

#[test]
fn a_read_only_shared_cache_is_read_through_and_recovers_when_writable() {
    let r = rig(&[("a.bin", 4), ("b.bin", 8), ("c.bin", 4)]);
    let fs = Tmpfs::mount(&r.dir("shared"), "64m");
    let m = r.mount(&fs.dir);
    r.read(&m, "a.bin");
    wait_for("a.bin published", &m, || {
        cached_blocks(&fs.dir, BLOCK as u64).0 == 4
    });
    fs.remount("ro");
    r.read(&m, "b.bin");
    wait_for_warning(&m);
    let log = m.stderr();
    assert_eq!(shared_warnings(&log), 1, "{log}");
    assert!(log.contains("Read-only file system"), "{log}");
    assert_eq!(cached_blocks(&fs.dir, BLOCK as u64).0, 4);
    fs.remount("rw");
    read_and_see_it_published(&r, &m, &fs.dir, "c.bin");
    one_episode(&m.stop());
}

#[test]
fn a_shared_cache_root_removed_while_mounted_is_recreated() {
    let r = rig(&[("a.bin", 4), ("b.bin", 12), ("c.bin", 4)]);
    let shared = r.dir("shared");
    std::fs::create_dir(&shared).unwrap();
    let m = r.mount(&shared);
    r.read(&m, "a.bin");
    wait_for("a.bin published", &m, || {
        cached_blocks(&shared, BLOCK as u64).0 == 4
    });
    std::fs::remove_dir_all(shared.join("inputfs-v1")).unwrap();
    // The directory is on the device it was on at mount: the root comes back.
    r.read(&m, "b.bin");
    wait_for("the root re-created", &m, || {
        shared.join("inputfs-v1").is_dir()
    });
    read_and_see_it_published(&r, &m, &shared, "c.bin");
    one_episode(&m.stop());
}

#[test]
fn a_vanished_shared_mount_is_never_written_to_until_a_cache_is_back() {
    let r = rig(&[("a.bin", 4), ("b.bin", 4), ("c.bin", 4), ("d.bin", 4)]);
    let fs = Tmpfs::mount(&r.dir("shared"), "64m");
    let first_dev = dev(&fs.dir);
    let m = r.mount(&fs.dir);
    r.read(&m, "a.bin");
    wait_for("a.bin published", &m, || {
        cached_blocks(&fs.dir, BLOCK as u64).0 == 4
    });
    // The network mount goes away, leaving its empty mount point on the local
    // disk: nothing may be written there.
    fs.unmount();
    r.read(&m, "b.bin");
    wait_for_warning(&m);
    let listing = || std::fs::read_dir(&fs.dir).unwrap().count();
    assert_eq!(listing(), 0, "wrote into the bare mount point");
    // Another, empty filesystem there (a new device) holds no cache either.
    // Device numbers of tmpfs are recycled: a bystander takes the freed one
    // (no other test of this binary mounts or unmounts meanwhile: `SERIAL`).
    let _bystander = Tmpfs::mount(&r.dir("bystander"), "1m");
    let fs2 = Tmpfs::mount(&fs.dir, "64m");
    assert_ne!(
        dev(&fs2.dir),
        first_dev,
        "the new tmpfs got the old device number"
    );
    // Every block of c.bin is published (and refused) before we look.
    let failed = r.failed_publishes();
    r.read(&m, "c.bin");
    wait_for("c.bin's publishes refused", &m, || {
        r.failed_publishes() >= failed + r.blocks("c.bin") as u64
    });
    assert_eq!(
        listing(),
        0,
        "created a cache on a new device: {:?}\n{}",
        std::fs::read_dir(&fs.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        m.stderr()
    );
    // An administrator puts the cache back: it is used again.
    std::fs::create_dir(fs2.dir.join("inputfs-v1")).unwrap();
    read_and_see_it_published(&r, &m, &fs2.dir, "d.bin");
    let log = m.stop();
    one_episode(&log);
    drop(fs2);
}

fn dev(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().dev()
}

#[test]
fn a_shared_cache_the_worker_may_not_write_is_read_through_until_it_may() {
    let r = rig(&[("a.bin", 4), ("b.bin", 4)]);
    let who = user("inputfs-worker1");
    // The directory as root left it: not writable by the worker's user.
    let shared = r.dir("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = r.dir("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::os::unix::fs::chown(&mnt, Some(who.0), Some(who.1)).unwrap();
    let m = Mount::start_as(&mnt, &r.args(&shared), &r.server.env(), Some(who)).expect("mount");
    let read = |name: &str| {
        assert_eq!(
            sha256_as(who, &m.path("d").join(name)),
            sha256_hex(r.data(name)),
            "{name}"
        );
        assert!(is_mounted(&m.mountpoint), "the mount went away");
    };
    read("a.bin");
    let log = m.stderr();
    assert_eq!(shared_warnings(&log), 1, "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    assert!(!shared.join("inputfs-v1").exists());
    // The administrator fixes the permissions: the worker sets the cache up by
    // itself at its next try.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    read("b.bin");
    wait_for("b.bin published", &m, || {
        cached_blocks(&shared, BLOCK as u64).0 >= 4
    });
    wait_for("the recovery in the log", &m, || {
        recoveries(&m.stderr()) >= 1
    });
    one_episode(&m.stop());
}

#[test]
fn a_missing_shared_cache_at_mount_is_a_warning_or_with_require_an_error() {
    let r = rig(&[("a.bin", 4), ("b.bin", 4)]);
    let missing = r.dir("not-mounted");
    let m = r.mount(&missing);
    r.read(&m, "a.bin");
    let log = m.stderr();
    assert_eq!(shared_warnings(&log), 1, "{log}");
    let warning = log.lines().find(|l| l.contains("WARN")).unwrap();
    assert!(warning.contains(&*missing.to_string_lossy()), "{warning}");
    assert!(!missing.exists(), "the shared directory itself was created");
    // The network mount shows up later: the tier starts working by itself.
    std::fs::create_dir(&missing).unwrap();
    read_and_see_it_published(&r, &m, &missing, "b.bin");
    one_episode(&m.stop());

    // Required: one line naming the directory, non-zero exit, nothing mounted.
    std::fs::remove_dir_all(&missing).unwrap();
    let mnt = r.dir("mnt-required");
    std::fs::create_dir(&mnt).unwrap();
    let mut args = vec![
        "mount".to_string(),
        mnt.display().to_string(),
        "--foreground".into(),
    ];
    args.extend(r.args(&missing));
    let mut env = r.server.env();
    let with_flag = [args.clone(), vec!["--require-shared-cache".into()]].concat();
    env.push(("INPUTFS_REQUIRE_SHARED_CACHE".into(), "true".into()));
    for (args, env) in [(&with_flag, &r.server.env()), (&args, &env)] {
        let out = run_inputfs(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mounted without its shared cache");
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(&*missing.to_string_lossy()), "{stderr}");
        assert!(!is_mounted(&mnt.canonicalize().unwrap()));
        assert!(!missing.exists());
    }
}
