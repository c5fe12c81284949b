//! The reads the benchmark times, the same code for every system and baseline so
//! that a ratio compares the systems and not the readers: a sequential read in
//! 1 MiB `read`s hashed on the fly, random `pread`s compared with the expected
//! bytes, a tree of small files each hashed, plus evicting the page cache and
//! reading a daemon's peak memory.
//!
//! Every reader checks what it read and fails with the file's path on the first
//! wrong byte: the caller adds the system and scenario, and the run stops.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Read size of the sequential readers (what `cp` or a data loader would use).
pub const READ_SIZE: usize = 1 << 20;

/// Read `path` from start to end in [`READ_SIZE`] reads; fail unless its length
/// and SHA-256 are `len` and `sha`. Returns the elapsed time.
pub fn read_sequential(path: &Path, len: u64, sha: &str) -> Result<Duration> {
    let started = Instant::now();
    let got = hash_file(path)?;
    let elapsed = started.elapsed();
    if got.0 != len || got.1 != sha {
        bail!(
            "checksum mismatch reading {}: {} bytes, sha256 {}; expected {len} bytes, sha256 {sha}",
            path.display(),
            got.0,
            got.1
        );
    }
    Ok(elapsed)
}

/// (length, SHA-256 hex) of a file, read in [`READ_SIZE`] reads.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_SIZE];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// What a random-read run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RandomRun {
    pub ops: u64,
    pub secs: f64,
    pub iops: f64,
}

/// How a reader opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// A plain `open`: the page cache serves what it holds.
    Buffered,
    /// `O_DIRECT`, as databases and some loaders open: the reader asks for no
    /// page cache of its own file (buffers page-aligned, as it requires).
    Direct,
}

/// Alignment of [`OpenMode::Direct`] buffers (a page: what every filesystem
/// here accepts).
const DIRECT_ALIGN: usize = 4096;

/// `threads` readers each `pread` `io_size` bytes at random `io_size`-aligned
/// offsets of `path` for `duration`, comparing every read with `data`.
pub fn random_reads(
    path: &Path,
    data: &[u8],
    (io_size, mode): (usize, OpenMode),
    threads: usize,
    duration: Duration,
    seed: u64,
) -> Result<RandomRun> {
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    if mode == OpenMode::Direct {
        open.custom_flags(libc::O_DIRECT);
    }
    let file = open
        .open(path)
        .with_context(|| format!("open {} ({mode:?})", path.display()))?;
    let slots = (data.len() / io_size).max(1) as u64;
    let started = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let file = &file;
                s.spawn(move || -> Result<u64> {
                    let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(t as u64));
                    let mut raw = vec![0u8; io_size + DIRECT_ALIGN];
                    let skip = raw.as_ptr().align_offset(DIRECT_ALIGN);
                    let buf = &mut raw[skip..skip + io_size];
                    let mut ops = 0u64;
                    while started.elapsed() < duration {
                        let offset = rng.u64(0..slots) * io_size as u64;
                        let want =
                            &data[offset as usize..(offset as usize + io_size).min(data.len())];
                        file.read_exact_at(&mut buf[..want.len()], offset)
                            .with_context(|| format!("pread {} at {offset}", path.display()))?;
                        if &buf[..want.len()] != want {
                            bail!(
                                "wrong bytes in {} at offset {offset} ({} bytes)",
                                path.display(),
                                want.len()
                            );
                        }
                        ops += 1;
                    }
                    Ok(ops)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a reader panicked")))
            })
            .collect::<Result<Vec<u64>>>()
    })?;
    let secs = started.elapsed().as_secs_f64();
    let ops = counts.iter().sum();
    Ok(RandomRun {
        ops,
        secs,
        iops: ops as f64 / secs,
    })
}

/// List `dir` (recursively), check it holds exactly the files of `want`
/// (relative path -> (length, SHA-256)), then read and check every file with
/// `threads` readers. Returns the elapsed time, listing included.
pub fn read_tree(
    dir: &Path,
    want: &BTreeMap<String, (u64, String)>,
    threads: usize,
) -> Result<Duration> {
    let started = Instant::now();
    let mut found = Vec::new();
    list(dir, dir, &mut found)?;
    found.sort();
    if found.len() != want.len() || found.iter().zip(want.keys()).any(|(a, b)| a != b) {
        bail!(
            "{} lists {} files, expected {} (first listed: {:?})",
            dir.display(),
            found.len(),
            want.len(),
            found.first()
        );
    }
    let files: Vec<(&String, &(u64, String))> = want.iter().collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((rel, (len, sha))) = files.get(i) else {
                            return Ok(());
                        };
                        let path = dir.join(rel);
                        let got = hash_file(&path)?;
                        if got.0 != *len || &got.1 != sha {
                            bail!("checksum mismatch reading {}", path.display());
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a reader panicked")))
        })
    })?;
    Ok(started.elapsed())
}

fn list(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Evict the page cache of every file under `paths` (`sync`, then
/// `posix_fadvise(DONTNEED)`), before a "from this tier" measurement.
///
/// Targeted on purpose rather than `echo 1 > /proc/sys/vm/drop_caches` (which
/// works as root here): dropping everything would also evict the origin's own
/// files, making the origin a disk-bound server unlike a cloud store, and
/// would slow the next cold row for reasons that are not the system's. A fresh
/// FUSE mount starts with no page cache of its own, so evicting its cache
/// directories (where passthrough and the peers' caches keep their pages) and
/// the baseline files is enough.
pub fn evict(paths: &[&Path]) {
    nix::unistd::sync();
    let mut files = Vec::new();
    for p in paths {
        walk_files(p, &mut files);
    }
    for f in files {
        if let Ok(file) = std::fs::File::open(&f) {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; fadvise only gives the kernel a hint.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

fn walk_files(path: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if let Ok(rd) = std::fs::read_dir(path) {
                for e in rd.flatten() {
                    walk_files(&e.path(), out);
                }
            }
        }
        Ok(m) if m.is_file() => out.push(path.to_path_buf()),
        _ => {}
    }
}

/// Peak resident memory (VmHWM) of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The data of the blocks an inputfs cache directory holds for its only object,
/// in block order, headers stripped: reading them straight from the directory is
/// the "warm shared" baseline. Fails unless exactly one object is cached.
pub fn cached_block_files(cache_dir: &Path) -> Result<Vec<PathBuf>> {
    let objects = cache_dir.join("inputfs-v1/objects");
    let mut dirs = Vec::new();
    for fan in std::fs::read_dir(&objects).with_context(|| format!("list {}", objects.display()))? {
        for key in std::fs::read_dir(fan?.path())? {
            dirs.push(key?.path());
        }
    }
    let [dir] = dirs.as_slice() else {
        bail!(
            "{} caches {} objects, expected 1",
            objects.display(),
            dirs.len()
        );
    };
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "blk"))
        .collect();
    blocks.sort();
    Ok(blocks)
}

/// Size of an inputfs block file's header (docs/FORMAT.md).
pub const BLOCK_HEADER: usize = 72;

/// Read every block file (1 MiB reads, one after the other, as one sequential
/// reader would), hash the data after each header, and fail unless it is the
/// object (`len`, `sha`). Returns the elapsed time.
pub fn read_block_files(blocks: &[PathBuf], len: u64, sha: &str) -> Result<Duration> {
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; READ_SIZE];
    for path in blocks {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut skip = BLOCK_HEADER;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let from = skip.min(n);
            skip -= from;
            hasher.update(&buf[from..n]);
            total += (n - from) as u64;
        }
    }
    let elapsed = started.elapsed();
    let got = hex::encode(hasher.finalize());
    if total != len || got != sha {
        bail!(
            "checksum mismatch reading the block files of the cache: {total} bytes, sha256 {got}"
        );
    }
    Ok(elapsed)
}

/// CPU time (user + system) process `pid` has used so far, exited threads
/// included.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_of_stat(&stat)
}

/// CPU time used so far by this process's live threads whose name starts
/// with `prefix` (the direct client's runtime threads, say).
pub fn own_threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|stat| {
            let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')'));
            name.is_some_and(|(n, _)| n.starts_with(prefix))
        })
        .filter_map(|stat| cpu_of_stat(&stat))
        .sum()
}

/// utime + stime of a `/proc/.../stat` line (fields 14 and 15, counted after
/// the command name, which may hold spaces and parentheses).
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)? as u64;
    Some(Duration::from_secs_f64(ticks as f64 / per_sec as f64))
}

/// The CPU time of `pid` once it has finished the work a read left it (a
/// daemon publishes blocks and makes plain files after the reader is done):
/// polled until it grows by less than 10 ms in 300 ms, for at most 30 s.
pub fn settled_cpu(pid: u32) -> Option<Duration> {
    let mut last = process_cpu(pid)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = process_cpu(pid)?;
        if now.saturating_sub(last) < Duration::from_millis(10) {
            return Some(now);
        }
        last = now;
    }
    Some(last)
}

/// CPU seconds per GiB of `bytes` for `cpu`.
pub fn cpu_per_gib(cpu: Duration, bytes: u64) -> f64 {
    cpu.as_secs_f64() / (bytes as f64 / (1u64 << 30) as f64)
}
