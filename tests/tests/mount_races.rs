//! Mounts never race (issue 12, item 4), through the real binary and real
//! FUSE mounts:
//! - a daemon only ever unmounts its own mount: `fusermount3 -u M` then a new
//!   mount on `M` at once, 50 times, and every new mount is still there, and
//!   serves the right bytes, after the old daemon has exited;
//! - two mounts started at once on one path: exactly one succeeds, the other
//!   fails with one line naming the mount point (20 simultaneous pairs);
//! - a mount point left by a killed daemon gets a one-line error saying how
//!   to clear it.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use inputfs_tests::mounts::{Mount, inputfs_bin, is_mounted, run_inputfs, unmount};
use inputfs_tests::{pattern, sha256_file, sha256_hex};

/// A source directory with one file, and its checksum.
fn source(root: &Path) -> (String, String) {
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = pattern(91, 300_000);
    std::fs::write(src.join("f.bin"), &data).unwrap();
    (format!("x=file://{}/", src.display()), sha256_hex(&data))
}

fn args(root: &Path, input: &str, cache: &str) -> Vec<String> {
    vec![
        format!("--input={input}"),
        format!("--cache-dir={}", root.join(cache).display()),
    ]
}

#[test]
fn a_daemon_never_unmounts_the_next_mount_on_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (input, sha) = source(root);
    let mp = root.join("m");
    for i in 0..50 {
        let mut old = Mount::start(&mp, &args(root, &input, "c"), &[]).unwrap();
        unmount(&old.mountpoint);
        let new = Mount::start(&mp, &args(root, &input, "c"), &[])
            .unwrap_or_else(|e| panic!("iteration {i}: the new mount failed: {e}"));
        // The old daemon ends by itself (its mount was taken from it);
        // whatever it does on its way out happens before this returns.
        let status = old.wait_exit(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "iteration {i}: old daemon {status:?}: {}",
            old.stderr()
        );
        assert!(
            is_mounted(&new.mountpoint),
            "iteration {i}: the old daemon took the new mount down"
        );
        assert_eq!(
            sha256_file(new.path("x/f.bin")).unwrap(),
            sha,
            "iteration {i}"
        );
        new.stop();
    }
}

/// A foreground mount process of a race, and where its stderr goes.
struct Racer {
    child: Child,
    stderr: PathBuf,
}

impl Racer {
    fn start(mp: &Path, args: &[String], stderr: PathBuf) -> Racer {
        let child = Command::new(inputfs_bin())
            .arg("mount")
            .arg(mp)
            .arg("--foreground")
            .args(args)
            .env("INPUTFS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Racer { child, stderr }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn of_two_mounts_started_at_once_on_one_path_exactly_one_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (input, sha) = source(root);
    let mp = root.join("m");
    std::fs::create_dir(&mp).unwrap();
    for pair in 0..20 {
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<Racer> = ["a", "b"]
            .map(|name| {
                let (barrier, mp) = (barrier.clone(), mp.clone());
                let args = args(root, &input, &format!("c-{name}"));
                let stderr = root.join(format!("{name}.stderr"));
                std::thread::spawn(move || {
                    barrier.wait();
                    Racer::start(&mp, &args, stderr)
                })
            })
            .map(|t| t.join().unwrap())
            .into();
        let mut racers = racers;
        // The loser exits by itself; the winner serves until unmounted.
        let deadline = Instant::now() + Duration::from_secs(60);
        let loser = loop {
            if let Some(i) = (0..2).find(|&i| racers[i].exited().is_some()) {
                break i;
            }
            assert!(
                Instant::now() < deadline,
                "pair {pair}: neither mount failed"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let status = racers[loser].exited().unwrap();
        let said = racers[loser].stderr();
        assert!(
            !status.success(),
            "pair {pair}: the second mount succeeded too"
        );
        let errors: Vec<_> = said.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "pair {pair}: one line: {said}");
        assert!(errors[0].contains("mount point"), "pair {pair}: {said}");
        let winner = 1 - loser;
        while !is_mounted(&mp) {
            assert!(
                racers[winner].exited().is_none(),
                "pair {pair}: neither mounted: {}",
                racers[winner].stderr()
            );
            assert!(
                Instant::now() < deadline,
                "pair {pair}: the winner never mounted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(&*mp.to_string_lossy()))
            .count();
        assert_eq!(mounts, 1, "pair {pair}: mounts stacked on {}", mp.display());
        assert_eq!(sha256_file(mp.join("x/f.bin")).unwrap(), sha, "pair {pair}");
        unmount(&mp);
        let status = racers[winner].child.wait().unwrap();
        assert!(status.success(), "pair {pair}: {}", racers[winner].stderr());
    }
}

#[test]
fn a_mount_point_left_by_a_killed_daemon_says_how_to_clear_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (input, sha) = source(root);
    let mp = root.join("m");
    let mut dead = Mount::start(&mp, &args(root, &input, "c"), &[]).unwrap();
    dead.kill_leaving_mount();
    let mut cmd = vec!["mount".to_string(), mp.display().to_string()];
    cmd.extend(args(root, &input, "c"));
    let out = run_inputfs(&cmd, &[]);
    unmount(&mp);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(
        said.contains("dead FUSE mount")
            && said.contains(&format!("fusermount3 -u {}", mp.display())),
        "{said}"
    );
    // Cleared as it says, the path mounts again.
    let again = Mount::start(&mp, &args(root, &input, "c"), &[]).unwrap();
    assert_eq!(sha256_file(again.path("x/f.bin")).unwrap(), sha);
    again.stop();
}
