//! What a hostile writer of a shared cache can leave there, for the
//! hostile-cache suites (`tests/hostile_store.rs` against the store and its
//! sweeps, `tests/hostile_mount.rs` through real mounts and the binary's
//! commands): the kinds of entry, planting one at a place of the layout, and
//! a canary tree outside the cache with a snapshot of every entry (names,
//! bytes, mode, owner, mtime) to prove nothing outside was touched.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// What is planted.
#[derive(Debug, Clone, Copy)]
pub enum Plant {
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

pub const PLANTS: [Plant; 10] = [
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

/// One entry's description, for the canary comparison.
pub type Seen = (u32, u32, i64, Option<Vec<u8>>);

/// Every entry below `dir` (not following links), with mode, owner, mtime
/// and, for files, bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Seen> {
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
pub fn canary(root: &Path) -> PathBuf {
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
pub fn plant(dir: &Path, rel: &Path, what: Plant, canary: &Path, other_block: &[u8]) {
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

/// Run `f` on its own thread; fail if it takes longer than `bound` (a FIFO
/// opened, `/dev/zero` read to its end or a walk through a link loop would).
pub fn bounded<T: Send + 'static>(
    what: &str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(bound) {
        Ok(t) => t,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {bound:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked (above)"),
    }
}
