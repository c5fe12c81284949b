//! Kernel passthrough end to end: an object read whole is held as a plain file
//! in the local cache once its last handle closes, and later opens (of this mount
//! or the next) use passthrough (reads bypass the daemon); `--passthrough off`
//! and a damaged plain file fall back to reads through the daemon. Every read is
//! checked against the source's checksum, through `read` and through `mmap`.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use inputfs_tests::mounts::Mount;
use inputfs_tests::scrape::scrape;
use inputfs_tests::{free_port, pattern, sha256_hex};

const BLOCK: usize = 1 << 20;

struct Rig {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    cache: PathBuf,
    mnt: PathBuf,
    data: Vec<u8>,
}

fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Several blocks and a short last one.
    let data = pattern(11, 5 * BLOCK + 12_345);
    std::fs::write(src.join("big.bin"), &data).unwrap();
    Rig {
        src: src.canonicalize().unwrap(),
        cache: tmp.path().join("cache"),
        mnt: tmp.path().join("mnt"),
        data,
        _tmp: tmp,
    }
}

impl Rig {
    fn mount(&self, extra: &[&str]) -> Mount {
        let mut args = vec![
            format!("--input=in=file://{}/big.bin", self.src.display()),
            format!("--cache-dir={}", self.cache.display()),
            "--block-size=1MiB".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let env = [(
            "INPUTFS_LOG".to_string(),
            "warn,inputfs_core=debug,inputfs_fuse=debug".to_string(),
        )];
        Mount::start(&self.mnt, &args, &env).expect("mount")
    }

    /// Read the object whole through a cold mount, checking it; once that
    /// mount stops, the local cache holds it as one plain file.
    fn make_plain(&self) {
        let cold = self.mount(&[]);
        check_reads(&cold, &self.data);
        cold.stop();
        assert_eq!(self.plain_files().len(), 1);
    }

    /// Every plain file in the local cache.
    fn plain_files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(&self.cache, &mut |p| {
            if p.file_name()
                .is_some_and(|n| n == inputfs_store::PLAIN_NAME)
            {
                found.push(p.to_path_buf());
            }
        });
        found
    }

    fn block_files(&self) -> usize {
        let mut n = 0;
        walk(&self.cache, &mut |p| {
            if p.extension().is_some_and(|e| e == "blk") {
                n += 1;
            }
        });
        n
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

/// Read the mounted file with `read` (in odd-sized pieces) and with `mmap`;
/// both must match the source.
fn check_reads(mount: &Mount, want: &[u8]) {
    let path = mount.path("in/big.bin");
    let got = std::fs::read(&path).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(want), "read of big.bin");
    let file = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 77_777];
    let offset = 3 * BLOCK as u64 - 1000;
    let n = file.read_at(&mut buf, offset).unwrap();
    assert!(
        buf[..n] == want[offset as usize..offset as usize + n],
        "pread at {offset}"
    );
    // SAFETY: the mount is read-only and pinned: nothing changes the file while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    assert_eq!(sha256_hex(&map), sha256_hex(want), "mmap of big.bin");
}

const PASSTHROUGH_LINE: &str = "opened with kernel passthrough";

#[test]
fn a_wholly_read_object_is_passed_through_on_the_next_mount() {
    let rig = rig();
    let cold = rig.mount(&[]);
    check_reads(&cold, &rig.data);
    // The first read went through the daemon; once its handle closed, the
    // object was made plain, so later opens of this same mount may pass through.
    let log = cold.stop();
    let plain = rig.plain_files();
    assert_eq!(
        plain.len(),
        1,
        "one plain file after the cold mount:\n{log}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&plain[0]).unwrap()),
        sha256_hex(&rig.data),
        "plain file bytes"
    );
    assert_eq!(rig.block_files(), 0, "block files removed once plain");

    let addr = format!("127.0.0.1:{}", free_port());
    let warm = rig.mount(&[&format!("--metrics-addr={addr}")]);
    check_reads(&warm, &rig.data);
    // Passed through: not one read reached the daemon.
    let reads = scrape(&addr).get("inputfs_read_seconds_count");
    assert_eq!(reads, 0, "{reads} reads went through the daemon");
    // Two handles at once share the backing file.
    let a = std::fs::File::open(warm.path("in/big.bin")).unwrap();
    let b = std::fs::File::open(warm.path("in/big.bin")).unwrap();
    let (mut x, mut y) = (vec![0u8; 4096], vec![0u8; 4096]);
    a.read_exact_at(&mut x, 123).unwrap();
    b.read_exact_at(&mut y, 5 * BLOCK as u64).unwrap();
    assert!(x == rig.data[123..123 + 4096]);
    assert!(y == rig.data[5 * BLOCK..5 * BLOCK + 4096]);
    drop((a, b));
    let log = warm.stop();
    assert!(
        log.contains(PASSTHROUGH_LINE),
        "warm mount did not pass through:\n{log}"
    );
}

#[test]
fn passthrough_off_and_a_damaged_plain_file_read_through_the_daemon() {
    let rig = rig();
    rig.make_plain();

    let addr = format!("127.0.0.1:{}", free_port());
    let off = rig.mount(&["--passthrough=off", &format!("--metrics-addr={addr}")]);
    check_reads(&off, &rig.data);
    let read_bytes = scrape(&addr).get("inputfs_read_bytes_total");
    assert!(
        read_bytes >= rig.data.len() as u64,
        "daemon served {read_bytes} bytes"
    );
    let log = off.stop();
    assert!(
        !log.contains(PASSTHROUGH_LINE),
        "--passthrough off passed through:\n{log}"
    );

    // A plain file cut short (a crash, a disk error): never served; the object is
    // read again from the origin, right.
    let plain = &rig.plain_files()[0];
    let cut = &rig.data[..rig.data.len() - 10];
    std::fs::write(plain, cut).unwrap();
    let again = rig.mount(&[]);
    check_reads(&again, &rig.data);
    let log = again.stop();
    assert!(
        log.contains(&format!(
            "plain object file has {} bytes, not the object's {}: removed",
            cut.len(),
            rig.data.len()
        )),
        "{log}"
    );
    // Read whole again, so it is plain again, and right.
    let plain = rig.plain_files();
    assert_eq!(plain.len(), 1, "made plain again:\n{log}");
    assert_eq!(
        sha256_hex(&std::fs::read(&plain[0]).unwrap()),
        sha256_hex(&rig.data)
    );
}

#[test]
fn with_a_shared_cache_a_whole_read_builds_the_local_copy_once_and_a_partial_read_copies_nothing_more()
 {
    let rig = rig();
    let shared = rig.cache.with_file_name("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let with_shared = format!("--shared-cache={}", shared.display());
    // A cold sequential read: blocks fetched ahead of the reader go to the
    // shared tier only; after the read the local copy is made once, as the
    // plain file, from the shared tier.
    let first = rig.mount(&[&with_shared]);
    check_reads(&first, &rig.data);
    let log = first.stop();
    let plain = rig.plain_files();
    assert_eq!(plain.len(), 1, "no local plain file:\n{log}");
    assert_eq!(
        sha256_hex(&std::fs::read(&plain[0]).unwrap()),
        sha256_hex(&rig.data)
    );
    assert_eq!(rig.block_files(), 0, "local block files left");
    assert_eq!(inputfs_tests::cached_blocks(&shared, BLOCK as u64).0, 6);

    // A fresh worker reads only the start of the file (no readahead): the
    // object is complete in the shared tier, but it was not read whole, so
    // nothing beyond what was read is copied to its local disk.
    std::fs::remove_dir_all(&rig.cache).unwrap();
    let second = rig.mount(&[&with_shared, "--max-readahead=0"]);
    let file = std::fs::File::open(second.path("in/big.bin")).unwrap();
    let mut head = vec![0u8; 4096];
    file.read_exact_at(&mut head, 0).unwrap();
    assert!(head == rig.data[..4096]);
    drop(file);
    let log = second.stop();
    assert!(
        rig.plain_files().is_empty(),
        "a partial read made it plain:\n{log}"
    );
    assert!(
        rig.block_files() <= 1,
        "copied {} blocks",
        rig.block_files()
    );
}

const DIRECT_LINE: &str = "O_DIRECT: reads come from the plain local file";

/// `pread`s of `len` bytes at `offsets` through a handle opened `O_DIRECT`
/// (page-aligned buffer, as the flag requires), each checked against `want`.
fn check_direct_reads(file: &std::fs::File, want: &[u8], len: usize, offsets: &[u64]) -> u64 {
    let mut raw = vec![0u8; len + 4096];
    let skip = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[skip..skip + len];
    let mut total = 0;
    for &offset in offsets {
        let n = file.read_at(buf, offset).unwrap();
        let end = (offset as usize + len).min(want.len());
        assert_eq!(n, end - offset as usize, "O_DIRECT read at {offset}");
        assert!(
            buf[..n] == want[offset as usize..end],
            "O_DIRECT bytes at {offset}"
        );
        total += n as u64;
    }
    total
}

/// An `O_DIRECT` open of an object held plain locally is not passed through
/// (the kernel would hand the flag to the backing file: every read from the
/// disk) but answered by the daemon from the plain file, never through the
/// engine's block reads; a buffered open beside it reads right too.
#[test]
fn o_direct_opens_are_answered_from_the_plain_file() {
    use std::os::unix::fs::OpenOptionsExt;
    let rig = rig();
    rig.make_plain();

    let addr = format!("127.0.0.1:{}", free_port());
    let warm = rig.mount(&[&format!("--metrics-addr={addr}")]);
    let path = warm.path("in/big.bin");
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap();
    // Out of the page cache: the first reads take the blocking path.
    let plain = std::fs::File::open(&rig.plain_files()[0]).unwrap();
    // SAFETY: advice on an open descriptor; no memory is involved.
    let advised = unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&plain),
            0,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    assert_eq!(advised, 0, "posix_fadvise");
    let size = rig.data.len() as u64;
    // Aligned and not, across block boundaries, and the short read at the end.
    let offsets = [
        0,
        4096,
        BLOCK as u64 - 4096,
        3 * BLOCK as u64 + 512,
        size - 100,
        2 * BLOCK as u64,
    ];
    let mut served = check_direct_reads(&direct, &rig.data, 65536, &offsets);
    served += check_direct_reads(&direct, &rig.data, 4096, &offsets);
    let m = scrape(&addr);
    assert!(
        m.get("inputfs_read_bytes_total") >= served,
        "the daemon answered {} of the {served} bytes read O_DIRECT",
        m.get("inputfs_read_bytes_total")
    );
    let engine = m.get("inputfs_tier_read_bytes_total{tier=\"local\"}");
    assert_eq!(engine, 0, "the engine's block reads served {engine} bytes");
    // The inode is read through the daemon while this handle is open: a
    // buffered open meanwhile is, and reads right.
    check_reads(&warm, &rig.data);
    drop(direct);
    let log = warm.stop();
    assert!(log.contains(DIRECT_LINE), "no O_DIRECT handle:\n{log}");
    assert!(
        !log.contains(PASSTHROUGH_LINE),
        "passed through beside an O_DIRECT handle:\n{log}"
    );
}
