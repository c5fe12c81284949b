//! The hostile-cache suite through real mounts and the binary's commands:
//! every kind of entry a hostile writer could leave (`inputfs_tests::hostile`:
//! links to a file, a directory or a device outside, FIFOs, sockets, device
//! nodes, directories, a huge sparse file, garbage, another object's block)
//! at every place of the shared cache's layout (the root, each subdirectory,
//! a lease, an index snapshot, a journal, a claim, a fan-out and a key
//! directory, block files, a plain file and its sidecar). Per case: mount with
//! the planted directory as `--shared-cache`, read every byte, run `inputfs
//! gc --dry-run`, `gc`, `status` and `warm` on it meanwhile, read every byte
//! again, unmount. Asserted: the bytes right (SHA-256 against the source),
//! nothing hangs past [`BOUND`], no panic, and a canary tree beside the cache
//! unchanged (names, bytes, mode, owner and mtime of every entry).
//!
//! The places are in four groups of names none of which lies below another
//! (a plant at `inputfs-v1` would hide one at `inputfs-v1/tmp`); each group
//! runs ten cases, case `k` planting kind `(i + k) mod 10` at its place `i`,
//! so every kind meets every place once in 40 mounts. The store-level suite
//! (`hostile_store.rs`) adds random trees against the store directly.
//!
//! Device nodes need root (CI runs as root); elsewhere the test fails with
//! that reason rather than skip it.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use inputfs_tests::hostile::{PLANTS, bounded, canary, plant, snapshot};
use inputfs_tests::mounts::{Mount, inputfs_command};
use inputfs_tests::{pattern, sha256_hex};

/// No read or command may take longer: a FIFO opened, `/dev/zero` read to
/// its end or a walk through a link loop would.
const BOUND: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;
const BLOCK: &str = "--block-size=1MiB";

/// The source: `a.bin` (3 blocks) and `b.bin` (2 blocks).
struct Source {
    dir: PathBuf,
    a: Vec<u8>,
    b: Vec<u8>,
}

impl Source {
    fn new(root: &Path) -> Source {
        let dir = root.join("src");
        fs::create_dir(&dir).unwrap();
        let (a, b) = (pattern(71, 2 * MIB + 5000), pattern(72, MIB + 7));
        fs::write(dir.join("a.bin"), &a).unwrap();
        fs::write(dir.join("b.bin"), &b).unwrap();
        Source { dir, a, b }
    }

    fn input(&self) -> String {
        format!("--input=data=file://{}/", self.dir.display())
    }

    /// Read both objects through `mount`, on a thread bounded by [`BOUND`],
    /// and compare them with the source.
    fn check(&self, mount: &Mount, case: &str) {
        let paths = [mount.path("data/a.bin"), mount.path("data/b.bin")];
        let want = [sha256_hex(&self.a), sha256_hex(&self.b)];
        let got = bounded(&format!("{case}: reading every byte"), BOUND, move || {
            paths.map(|p| {
                fs::read(&p)
                    .map(|d| sha256_hex(&d))
                    .map_err(|e| e.to_string())
            })
        });
        for (name, (got, want)) in ["a.bin", "b.bin"].iter().zip(got.iter().zip(&want)) {
            assert_eq!(
                got.as_ref(),
                Ok(want),
                "{case}: {name}: wrong bytes or error"
            );
        }
    }
}

/// A child that is killed (by its PID, which we started) if the test fails
/// before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Run `inputfs ARGS`; it must exit within [`BOUND`] without a panic.
/// Returns whether it succeeded and its stderr.
fn command(case: &str, args: &[String]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let child = inputfs_command(&[("INPUTFS_LOG".into(), "warn".into())])
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("run inputfs");
    let mut child = Running(child);
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{case}: `inputfs {}` still running after {BOUND:?}",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    assert!(
        status.code() != Some(101) && !stderr.contains("panicked"),
        "{case}: `inputfs {}` panicked: {stderr}",
        args.join(" ")
    );
    (status.success(), stderr)
}

/// The four groups of places (relative to the shared cache directory) of a
/// cache holding `a` and `b`, whose key directories are given.
fn groups(key_a: &Path, key_b: &Path) -> [Vec<PathBuf>; 4] {
    let v1 = Path::new("inputfs-v1");
    let under = |names: &[&str]| -> Vec<PathBuf> { names.iter().map(|n| v1.join(n)).collect() };
    let key_a_name = key_a.file_name().unwrap().to_str().unwrap();
    let mut third = under(&[
        "index/lease",
        "index/usage.9999999999999.ffffffffffffffff",
        "journal/planted.0000.log",
        "trash/planted",
        "tmp/planted.1.0.tmp",
        "workers/planted.json",
    ]);
    third.push(v1.join(format!("claims/{key_a_name}-0000000000000000.claim")));
    third.push(key_b.parent().unwrap().to_path_buf());
    [
        vec![v1.to_path_buf()],
        under(&[
            "objects", "tmp", "claims", "corrupt", "trash", "index", "journal", "workers",
        ]),
        third,
        vec![
            key_a.join("0000000000000000.blk"),
            key_a.join("0000000000000001.blk"),
            key_a.join("object.data"),
            key_a.join("object.sums"),
            key_b.to_path_buf(),
        ],
    ]
}

/// The key directories (relative to `dir`) of `a` (the one with a third
/// block) and `b` in a populated cache.
fn key_dirs(dir: &Path) -> (PathBuf, PathBuf) {
    let objects = dir.join("inputfs-v1/objects");
    let mut keys: Vec<PathBuf> = fs::read_dir(&objects)
        .unwrap()
        .flat_map(|fan| fs::read_dir(fan.unwrap().path()).unwrap())
        .map(|k| k.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 2, "two objects in the template: {keys:?}");
    keys.sort_by_key(|k| !k.join("0000000000000002.blk").is_file());
    let rel = |p: &PathBuf| p.strip_prefix(dir).unwrap().to_path_buf();
    (rel(&keys[0]), rel(&keys[1]))
}

/// Copy the tree `from` to `to` (regular files and directories only: the
/// template is the cache a worker made).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn every_kind_at_every_place_through_a_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Source::new(tmp.path());
    let canary = canary(tmp.path());
    // Another worker's shared cache as it was: both objects read through a
    // mount, so every entry is real.
    let template = tmp.path().join("template");
    fs::create_dir(&template).unwrap();
    let args = |local: &Path, shared: &Path| {
        vec![
            src.input(),
            format!("--cache-dir={}", local.display()),
            format!("--shared-cache={}", shared.display()),
            BLOCK.to_string(),
        ]
    };
    let mnt = tmp.path().join("mnt");
    let first = Mount::start(&mnt, &args(&tmp.path().join("local0"), &template), &[])
        .unwrap_or_else(|e| panic!("populating the template: {e}"));
    src.check(&first, "template");
    first.stop();
    let (key_a, key_b) = key_dirs(&template);
    let other_block = fs::read(template.join(key_b.join("0000000000000000.blk"))).unwrap();

    let mut cases = 0;
    for (g, places) in groups(&key_a, &key_b).iter().enumerate() {
        for k in 0..PLANTS.len() {
            let case_dir = tmp.path().join(format!("case{g}.{k}"));
            fs::create_dir(&case_dir).unwrap();
            let shared = case_dir.join("shared");
            copy_tree(&template, &shared);
            let planted: Vec<String> = places
                .iter()
                .enumerate()
                .map(|(i, place)| {
                    let what = PLANTS[(i + k) % PLANTS.len()];
                    plant(&shared, place, what, &canary, &other_block);
                    format!("{what:?} at {}", place.display())
                })
                .collect();
            let case = format!("case {g}.{k} ({})", planted.join(", "));
            let before = snapshot(&canary);
            run_case(&case, &src, &case_dir, &shared, &args);
            assert_eq!(snapshot(&canary), before, "{case}: the canary tree changed");
            fs::remove_dir_all(&case_dir).unwrap();
            cases += 1;
        }
    }
    eprintln!(
        "hostile mounts: {cases} cases, every kind at every place, bytes right and the canary untouched"
    );
}

/// One case: mount over the planted `shared`, read, run the commands, read
/// again, unmount.
fn run_case(
    case: &str,
    src: &Source,
    case_dir: &Path,
    shared: &Path,
    args: &dyn Fn(&Path, &Path) -> Vec<String>,
) {
    let mount = Mount::start(
        &case_dir.join("mnt"),
        &args(&case_dir.join("local"), shared),
        &[],
    )
    .unwrap_or_else(|e| panic!("{case}: mount: {e}"));
    src.check(&mount, case);
    let dir = format!("--shared-cache={}", shared.display());
    command(case, &["gc".into(), dir.clone(), "--dry-run".into()]);
    command(case, &["gc".into(), dir.clone()]);
    command(case, &["status".into(), dir.clone()]);
    let mut warm = args(&case_dir.join("local-warm"), shared);
    warm.insert(0, "warm".into());
    let (ok, stderr) = command(case, &warm);
    assert!(ok, "{case}: warm failed: {stderr}");
    src.check(&mount, case);
    let log = mount.stop();
    assert!(
        !log.contains("panicked"),
        "{case}: the daemon panicked: {log}"
    );
}
