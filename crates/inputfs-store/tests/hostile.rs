//! A hostile shared cache, against the store and its sweeps directly: random
//! trees of what another worker or a person could leave under `inputfs-v1/`
//! (links to a file, a directory or a device outside; FIFOs, sockets, device
//! nodes, directories, a huge sparse file, garbage, a block of another
//! object) at every place of the layout, then everything a worker and
//! `inputfs gc` do. Asserted every case: no panic, no call hangs past
//! [`BOUND`], every byte served is right, the store heals (two publishes at
//! most and the block reads back right), a dry sweep counts what the real
//! one removes, and a canary tree beside the cache is unchanged (names,
//! bytes, mode, owner and mtime of every entry).
//!
//! Device nodes need root (CI runs as root); elsewhere the test fails with
//! that reason rather than skip it.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::{block, pattern};
use inputfs_core::store::{Claim, Lookup};
use inputfs_core::{BlockId, BlockLayout, BlockStore};
use inputfs_store::DirStore;
use inputfs_store::usage::Limits;
use proptest::prelude::*;

/// No store call may take longer (a FIFO opened for reading, `/dev/zero`
/// read to its end, a walk through a link loop would).
const BOUND: Duration = Duration::from_secs(30);
const BLOCK: u64 = 4096;

/// What is planted.
#[derive(Debug, Clone, Copy)]
enum Plant {
    LinkToFile,
    LinkToDir,
    LinkToDevice,
    Fifo,
    Socket,
    Device,
    Dir,
    Sparse,
    Garbage,
    /// The bytes of another object's block (a valid file, the wrong one).
    OtherBlock,
}

const PLANTS: [Plant; 10] = [
    Plant::LinkToFile,
    Plant::LinkToDir,
    Plant::LinkToDevice,
    Plant::Fifo,
    Plant::Socket,
    Plant::Device,
    Plant::Dir,
    Plant::Sparse,
    Plant::Garbage,
    Plant::OtherBlock,
];

/// The places of the layout, relative to the cache directory.
fn places(store: &DirStore, a: &BlockId) -> Vec<PathBuf> {
    let dir = store.dir();
    let rel = |p: PathBuf| p.strip_prefix(dir).unwrap().to_path_buf();
    let object = rel(store.object_dir(&a.key));
    let mut out: Vec<PathBuf> = [
        "inputfs-v1",
        "inputfs-v1/objects",
        "inputfs-v1/tmp",
        "inputfs-v1/claims",
        "inputfs-v1/corrupt",
        "inputfs-v1/trash",
        "inputfs-v1/index",
        "inputfs-v1/journal",
        "inputfs-v1/workers",
        "inputfs-v1/index/lease",
        "inputfs-v1/index/usage.9999999999999.ffffffffffffffff",
        "inputfs-v1/journal/planted.0000.log",
        "inputfs-v1/trash/planted",
        "inputfs-v1/tmp/planted.1.0.tmp",
        "inputfs-v1/workers/planted.json",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    out.push(object.parent().unwrap().to_path_buf());
    out.push(object.clone());
    out.push(rel(store.block_path(a)));
    out.push(rel(store.block_path(&BlockId { index: 1, ..*a })));
    out.push(rel(store.plain_path(&a.key)));
    out.push(rel(store.claim_path(a)));
    out
}

/// One entry's description, for the canary comparison.
type Seen = (u32, u32, i64, Option<Vec<u8>>);

/// Every entry below `dir` (not following links), with mode, owner, mtime
/// and, for files, bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let bytes = m.is_file().then(|| fs::read(&p).unwrap());
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p, (m.mode(), m.uid(), m.mtime(), bytes));
        }
    }
    out
}

/// A canary tree beside the cache: what a hostile link points at.
fn canary(root: &Path) -> PathBuf {
    let c = root.join("canary");
    fs::create_dir_all(c.join("victim/sub/deeper")).unwrap();
    fs::write(c.join("secret"), b"keep me").unwrap();
    fs::write(c.join("victim/sub/deeper/file"), b"me too").unwrap();
    fs::write(c.join("victim/usage.1.1"), b"not an index").unwrap();
    c
}

/// Plant `what` at `rel` under `dir`, unless an earlier plant made one of
/// its ancestors something else than a directory (planting through a link
/// would change the canary: the test's doing, not the store's).
fn plant(dir: &Path, rel: &Path, what: Plant, canary: &Path, other_block: &[u8]) {
    let mut ancestor = dir.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len() - 1] {
        ancestor.push(part);
        match fs::symlink_metadata(&ancestor) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return,
            Err(_) => fs::create_dir(&ancestor).unwrap(),
        }
    }
    let at = &dir.join(rel);
    if let Ok(m) = fs::symlink_metadata(at) {
        if m.is_dir() {
            fs::remove_dir_all(at).unwrap();
        } else {
            fs::remove_file(at).unwrap();
        }
    }
    match what {
        Plant::LinkToFile => symlink(canary.join("secret"), at).unwrap(),
        Plant::LinkToDir => symlink(canary.join("victim"), at).unwrap(),
        Plant::LinkToDevice => symlink("/dev/zero", at).unwrap(),
        Plant::Fifo => {
            nix::unistd::mkfifo(at, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap()
        }
        Plant::Socket => {
            // The socket file stays when the listener is dropped. Bound at a
            // short name (socket paths are limited to 107 bytes), then moved.
            let short = dir.parent().unwrap().join("s");
            drop(std::os::unix::net::UnixListener::bind(&short).unwrap());
            fs::rename(&short, at).unwrap();
        }
        Plant::Device => nix::sys::stat::mknod(
            at,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        )
        .unwrap_or_else(|e| {
            panic!(
                "mknod {}: {e} (this test needs root, as CI runs it)",
                at.display()
            )
        }),
        Plant::Dir => {
            fs::create_dir(at).unwrap();
            fs::write(at.join("inside"), b"x").unwrap();
            symlink(canary.join("victim"), at.join("link")).unwrap();
        }
        Plant::Sparse => fs::File::create(at).unwrap().set_len(1 << 40).unwrap(),
        Plant::Garbage => fs::write(at, b"inputfs-claim 1 h 1 0 99999999999999999\n").unwrap(),
        Plant::OtherBlock => fs::write(at, other_block).unwrap(),
    }
}

/// Run `f` on its own thread; fail if it takes longer than [`BOUND`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(t) => t,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {BOUND:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked (above)"),
    }
}

/// A lookup must never give wrong bytes; a miss, a corrupt report or an
/// error is fine.
fn never_wrong(store: &DirStore, id: &BlockId, want: &[u8]) -> bool {
    match store.get(id, want.len() as u64) {
        Ok(Lookup::Hit(got)) => {
            assert!(got == want, "{id:?}: wrong bytes served");
            true
        }
        _ => false,
    }
}

/// Everything a worker and `gc` do, on a store over `dir`.
fn exercise(dir: PathBuf, a: BlockId, b: BlockId, data: Vec<u8>, other: Vec<u8>) {
    let store = DirStore::open_lenient(&dir, "shared")
        .0
        .with_claims()
        .with_plain_files(BLOCK);
    for id in [a, BlockId { index: 1, ..a }] {
        never_wrong(&store, &id, &data);
    }
    never_wrong(&store, &b, &other);
    // The store heals: at most two publishes and the block reads back right.
    let healed = (0..2).any(|_| store.put(&a, &data).is_ok() && never_wrong(&store, &a, &data));
    assert!(healed, "block {a:?} not readable after two publishes");
    let _ = store.put(&BlockId { index: 1, ..a }, &data);
    if store.claim(&a, Duration::from_secs(5)).ok() == Some(Claim::Acquired) {
        store.release(&a);
    }
    let layout = BlockLayout::new(BLOCK, 2 * BLOCK);
    if store.make_plain(&a.key, &layout).unwrap_or(false) {
        let file = store.open_plain(&a.key, 2 * BLOCK);
        assert!(matches!(file, Ok(Some(_))), "{file:?}");
    }
    never_wrong(&store, &a, &data);
    let _ = store.usage_index();
    let _ = store.strays(Duration::from_secs(3600));
    let _ = store.worker_notes();
    let _ = store.write_worker_note("me.1.json", b"{}");
    let stale = Duration::ZERO;
    let dry = store.sweep(stale, stale, true);
    let real = store.sweep(stale, stale, false);
    if let (Ok(dry), Ok(real)) = (&dry, &real) {
        assert_eq!(dry, real, "a dry sweep counts what the real one removes");
    }
    let tiny = Limits {
        max_bytes: Some(1),
        min_free_percent: None,
    };
    let _ = store.evict(&tiny, true);
    let _ = store.evict(&tiny, false);
    let _ = store.flush_usage();
}

fn run_case(plants: &[(usize, Plant)]) {
    let tmp = tempfile::tempdir().unwrap();
    let canary = canary(tmp.path());
    let dir = tmp.path().join("cache");
    fs::create_dir(&dir).unwrap();
    let a = block("s3://b/hostile-a", 0);
    let b = block("s3://b/hostile-b", 0);
    let (data, other) = (pattern(1, BLOCK as usize), pattern(2, BLOCK as usize));
    // Another worker's cache as it was, then the planting.
    let store = DirStore::open(&dir, "shared").unwrap();
    store.put(&b, &other).unwrap();
    store.put(&a, &data).unwrap();
    let other_block = fs::read(store.block_path(&b)).unwrap();
    let places = places(&store, &a);
    drop(store);
    let before = snapshot(&canary);
    for &(place, what) in plants {
        plant(
            &dir,
            &places[place % places.len()],
            what,
            &canary,
            &other_block,
        );
    }
    bounded("a worker over the planted cache", move || {
        exercise(dir, a, b, data, other)
    });
    assert_eq!(snapshot(&canary), before, "the canary tree changed");
}

/// Every kind at every place, one at a time.
#[test]
fn every_kind_at_every_place() {
    let tmp = tempfile::tempdir().unwrap();
    let count = places(
        &DirStore::open(tmp.path(), "x").unwrap(),
        &block("s3://b/x", 0),
    )
    .len();
    for place in 0..count {
        for what in PLANTS {
            run_case(&[(place, what)]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random trees of them.
    #[test]
    fn random_hostile_trees(plants in prop::collection::vec((0usize..64, prop::sample::select(PLANTS.to_vec())), 1..6)) {
        run_case(&plants);
    }
}
