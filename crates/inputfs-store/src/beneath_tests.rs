//! Unit tests of `beneath`: every operation against planted links, FIFOs and
//! escapes, with a canary tree outside the directory that must not change.
//! The same cases run once through `openat2` and once through the
//! component-by-component walk of older kernels.
#![allow(
    clippy::disallowed_methods,
    reason = "tests plant and inspect cache entries by path on purpose"
)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::*;

/// A cache directory and, beside it, a canary tree nothing may touch.
struct Rig {
    _tmp: tempfile::TempDir,
    cache: PathBuf,
    canary: PathBuf,
    beneath: Beneath,
}

fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let canary = tmp.path().join("canary");
    fs::create_dir_all(cache.join("sub")).unwrap();
    fs::create_dir_all(canary.join("deeper")).unwrap();
    fs::write(canary.join("secret"), b"keep me").unwrap();
    fs::write(canary.join("deeper/file"), b"me too").unwrap();
    let beneath = Beneath::open(&cache).unwrap();
    Rig {
        _tmp: tmp,
        cache,
        canary,
        beneath,
    }
}

impl Rig {
    fn canary_intact(&self) {
        assert_eq!(fs::read(self.canary.join("secret")).unwrap(), b"keep me");
        assert_eq!(
            fs::read(self.canary.join("deeper/file")).unwrap(),
            b"me too"
        );
        assert_eq!(fs::read_dir(&self.canary).unwrap().count(), 2);
    }
}

fn rel(s: &str) -> Rel {
    Rel::new(s).unwrap()
}

/// Run `case` with `openat2`, then with the fallback walk. The flag is
/// process-wide: the cases serialise on a lock.
fn both_ways(case: impl Fn()) {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    NO_OPENAT2.store(false, Ordering::Relaxed);
    case();
    NO_OPENAT2.store(true, Ordering::Relaxed);
    case();
    NO_OPENAT2.store(false, Ordering::Relaxed);
}

#[test]
fn names_must_be_plain_and_relative() {
    for bad in ["", "/etc", "../x", "a/../b", "./a", "a/./b", "a//b", "a/"] {
        assert!(Rel::new(bad).is_err(), "{bad:?} accepted");
    }
    assert!(rel("a").join("..").is_err());
    assert_eq!(rel("a/b").join("c").unwrap().as_path(), Path::new("a/b/c"));
}

#[test]
fn regular_files_are_read_and_written() {
    both_ways(|| {
        let r = rig();
        let mut f = r.beneath.create_new(&rel("sub/f"), 0o664).unwrap();
        f.write_all(b"data").unwrap();
        drop(f);
        let mode = fs::metadata(r.cache.join("sub/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o664, "mode set on the handle");
        assert_eq!(
            r.beneath
                .create_new(&rel("sub/f"), 0o664)
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        let Found::File(mut f, stat) = r.beneath.open_file(&rel("sub/f")).unwrap() else {
            panic!("a regular file not opened")
        };
        let mut got = String::new();
        f.read_to_string(&mut got).unwrap();
        assert_eq!((got.as_str(), stat.st_size), ("data", 4));
        r.beneath.link(&rel("sub/f"), &rel("g")).unwrap();
        r.beneath.rename(&rel("g"), &rel("sub/h")).unwrap();
        assert_eq!(fs::read(r.cache.join("sub/h")).unwrap(), b"data");
        r.beneath.mkdir(&rel("sub/d"), 0o2775).unwrap();
        let mode = fs::metadata(r.cache.join("sub/d"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o2775);
        let mut names: Vec<_> = r
            .beneath
            .entries(Some(&rel("sub")))
            .unwrap()
            .into_iter()
            .map(|(n, s)| (n.into_string().unwrap(), Kind::of(&s)))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            names,
            [
                ("d".to_string(), Kind::Dir),
                ("f".to_string(), Kind::File),
                ("h".to_string(), Kind::File)
            ]
        );
    });
}

#[test]
fn links_are_never_followed() {
    both_ways(|| {
        let r = rig();
        // A directory link in the middle of a name.
        symlink(&r.canary, r.cache.join("sub/out")).unwrap();
        // A file link at the end of one.
        symlink(r.canary.join("secret"), r.cache.join("sub/leaf")).unwrap();
        // The configured directory's own child swapped for a link.
        symlink(&r.canary, r.cache.join("top")).unwrap();
        for name in ["sub/out/secret", "top/secret", "top/deeper/file"] {
            // ELOOP from a link met on the way, ENOTDIR from one at the
            // end of the directory part (opened O_NOFOLLOW | O_DIRECTORY).
            let e = r.beneath.open_file(&rel(name)).unwrap_err();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
                "{name}: {e}"
            );
            assert!(r.beneath.unlink(&rel(name)).is_err(), "{name}");
            assert!(r.beneath.create_new(&rel(name), 0o664).is_err(), "{name}");
            assert!(r.beneath.mkdir(&rel(&format!("{name}x")), 0o775).is_err());
            assert!(r.beneath.entries(Some(&rel(name))).is_err());
        }
        assert!(matches!(
            r.beneath.open_file(&rel("sub/leaf")).unwrap(),
            Found::NotRegular(Kind::Symlink)
        ));
        assert!(r.beneath.create_new(&rel("sub/leaf"), 0o664).is_err());
        assert!(r.beneath.entries(Some(&rel("top"))).is_err());
        // Removing a tree through links removes the links only.
        let (removed, result) = r.beneath.remove_tree(&rel("sub"));
        result.unwrap();
        assert_eq!(removed, 3, "two links and the directory");
        let (removed, result) = r.beneath.remove_tree(&rel("top"));
        result.unwrap();
        assert_eq!(removed, 1);
        r.canary_intact();
        assert_eq!(fs::read_dir(&r.cache).unwrap().count(), 0);
    });
}

#[test]
fn fifos_and_devices_are_never_opened() {
    both_ways(|| {
        let r = rig();
        nix::unistd::mkfifo(&r.cache.join("sub/fifo"), Mode::from_bits_truncate(0o666)).unwrap();
        // A FIFO opened for reading with no writer would block this test.
        assert!(matches!(
            r.beneath.open_file(&rel("sub/fifo")).unwrap(),
            Found::NotRegular(Kind::Special)
        ));
        assert!(matches!(
            r.beneath.open_file_write(&rel("sub/fifo")).unwrap(),
            Found::NotRegular(Kind::Special)
        ));
        assert_eq!(r.beneath.read_small(&rel("sub/fifo"), 10).unwrap(), None);
        let stat = r.beneath.stat(&rel("sub/fifo")).unwrap();
        assert_eq!(Kind::of(&stat), Kind::Special);
        assert!(matches!(
            r.beneath.open_file(&rel("sub")).unwrap(),
            Found::NotRegular(Kind::Dir)
        ));
        r.beneath.unlink(&rel("sub/fifo")).unwrap();
        r.canary_intact();
    });
}

#[test]
fn a_removed_directory_is_seen_at_once() {
    let r = rig();
    r.beneath.mkdir(&rel("sub/x"), 0o775).unwrap();
    fs::rename(r.cache.join("sub"), r.cache.join("gone")).unwrap();
    let e = r.beneath.create_new(&rel("sub/x/f"), 0o664).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    fs::create_dir(r.cache.join("sub")).unwrap();
    r.beneath.mkdir(&rel("sub/x"), 0o775).unwrap();
    drop(r.beneath.create_new(&rel("sub/x/f"), 0o664).unwrap());
    assert!(r.cache.join("sub/x/f").is_file());
}

#[test]
fn small_reads_are_bounded() {
    let r = rig();
    fs::write(r.cache.join("sub/ten"), b"0123456789").unwrap();
    assert_eq!(
        r.beneath.read_small(&rel("sub/ten"), 10).unwrap().unwrap(),
        b"0123456789"
    );
    let e = r.beneath.read_small(&rel("sub/ten"), 9).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    // A symlink to an endless file is not followed, let alone read.
    symlink("/dev/zero", r.cache.join("sub/zero")).unwrap();
    assert_eq!(r.beneath.read_small(&rel("sub/zero"), 9).unwrap(), None);
}
