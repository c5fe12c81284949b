//! How fast is a (shared) cache directory? A shared tier only pays off when
//! reading a block from it beats fetching it from the object store, so the
//! thresholds compare with what one object-store request costs:
//!
//! - Small-file latency: [`SMALL_FILES`] cycles of create, write 4 KiB, fsync,
//!   close, open, read, unlink — roughly what a claim and a cache hit cost in
//!   metadata round trips. A median over [`WARN_MEDIAN_MS`] is slower than the
//!   first byte of a typical S3/GCS GET (20–50 ms), so every shared hit would
//!   be slower than the origin; a p99 over [`WARN_P99_MS`] means stalls that
//!   readers will feel (and the store's slow-call timeout may trip on).
//! - Throughput: write `--throughput-size` bytes (64 MiB) sequentially (then fsync), drop this machine's page cache of the file, read
//!   it back and compare the bytes. Under [`WARN_MB_S`] either way is below
//!   what a single object-store stream delivers (50–100 MB/s), so cold reads of
//!   large files would be faster from the origin. The server's own cache may
//!   still serve the read: this measures the network path, not its disks.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::Check;
use super::dir::Probe;

const SMALL_FILES: usize = 50;
const SMALL_FILE_BYTES: usize = 4096;
const WARN_MEDIAN_MS: f64 = 50.0;
const WARN_P99_MS: f64 = 500.0;
const WARN_MB_S: f64 = 50.0;
const CHUNK: usize = 1 << 20;

/// `cache.small_file_latency` in the probe directory.
pub fn small_files(probe: &Probe, target: &str, name: &str) -> Check {
    const ID: &str = "cache.small_file_latency";
    let data = vec![0x5a; SMALL_FILE_BYTES];
    let mut times = Vec::with_capacity(SMALL_FILES);
    let mut busy_retries = 0;
    for i in 0..SMALL_FILES {
        let file = format!("small-{i}");
        let started = Instant::now();
        match small_file_cycle(probe, &file, &data) {
            Ok(busy) => busy_retries += busy,
            Err(e) => {
                let _ = probe.remove_busy(&file);
                return Check::fail(
                    ID,
                    target,
                    format!("{name}: small file {i} of {SMALL_FILES}: {e}"),
                    "the directory fails simple file operations: check the filesystem and its mount (see the failing check above, if any)",
                );
            }
        }
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(times[times.len() / 2]);
    let p99 = ms(times[(times.len() * 99).div_ceil(100) - 1]);
    let mut detail = format!(
        "{name}: {SMALL_FILES} × create+write {SMALL_FILE_BYTES} B+fsync+close+open+read+unlink: median {median:.1} ms, p99 {p99:.1} ms"
    );
    if busy_retries > 0 {
        detail.push_str(&format!(
            "; {busy_retries} unlinks met EBUSY (the server still held the closed file) and were retried"
        ));
    }
    let check = if median > WARN_MEDIAN_MS || p99 > WARN_P99_MS {
        Check::warn(
            ID,
            target,
            format!(
                "{detail} (warn above median {WARN_MEDIAN_MS} ms or p99 {WARN_P99_MS} ms: slower than an object store's first byte)"
            ),
            "use a lower-latency filesystem or tier for the shared cache (same zone as the workers; NFS over SMB; EFS/Filestore performance tiers), or check the network to it",
        )
    } else {
        Check::ok(ID, target, detail)
    };
    check
        .measure("files", SMALL_FILES as u64)
        .measure("median_ms", median)
        .measure("p99_ms", p99)
        .measure("busy_retries", busy_retries)
}

/// One cycle; returns how often the unlink met `EBUSY` first. SMB answers
/// `EBUSY` to an unlink while the server still holds the just-closed file
/// open; inputfs expects that on network filesystems, so it is retried here
/// (and counted) rather than failed.
fn small_file_cycle(probe: &Probe, name: &str, data: &[u8]) -> io::Result<u32> {
    let step =
        |what: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let mut file = probe.create_new(name).map_err(step("create"))?;
    file.write_all(data).map_err(step("write"))?;
    file.sync_all().map_err(step("fsync"))?;
    drop(file);
    let mut back = Vec::with_capacity(data.len());
    probe
        .open(name)
        .and_then(|mut f| f.read_to_end(&mut back))
        .map_err(step("read"))?;
    if back != data {
        return Err(io::Error::other(format!(
            "read back {} bytes that differ from the {} written",
            back.len(),
            data.len()
        )));
    }
    probe.remove_busy(name).map_err(step("unlink"))
}

/// `cache.throughput`: write then read `bytes` in the probe directory.
pub fn throughput(probe: &Probe, bytes: u64, target: &str, name: &str) -> Check {
    const ID: &str = "cache.throughput";
    if bytes == 0 {
        return Check::ok(
            ID,
            target,
            format!("{name}: not measured (--throughput-size 0)"),
        );
    }
    let result = write_then_read(probe, "throughput", bytes);
    // Whatever is left is removed with the probe directory.
    let _ = probe.remove_busy("throughput");
    let (write_s, read_s) = match result {
        Ok(times) => times,
        Err(e) => {
            return Check::fail(
                ID,
                target,
                format!("{name}: writing and reading back {bytes} bytes: {e}"),
                "the directory fails large writes or reads: check free space and the filesystem's mount",
            );
        }
    };
    let rate = |s: f64| bytes as f64 / 1e6 / s.max(1e-6);
    let (write_mb_s, read_mb_s) = (rate(write_s), rate(read_s));
    let detail = format!(
        "{name}: {} written in {write_s:.2} s ({write_mb_s:.0} MB/s, with fsync), read back in {read_s:.2} s ({read_mb_s:.0} MB/s)",
        bytesize::ByteSize(bytes)
    );
    let check = if write_mb_s < WARN_MB_S || read_mb_s < WARN_MB_S {
        Check::warn(
            ID,
            target,
            format!("{detail} (warn under {WARN_MB_S} MB/s: slower than one object-store stream)"),
            "use a faster filesystem or tier for the shared cache (provisioned/elastic throughput, NFS over SMB), or leave --shared-cache off for jobs that read large files once",
        )
    } else {
        Check::ok(ID, target, detail)
    };
    check
        .measure("bytes", bytes)
        .measure("write_mb_s", write_mb_s)
        .measure("read_mb_s", read_mb_s)
}

/// Seconds to write (and fsync) `bytes` of a pattern, and to read them back
/// after dropping the page cache of the file; fails if the bytes differ.
fn write_then_read(probe: &Probe, name: &str, bytes: u64) -> io::Result<(f64, f64)> {
    let chunk_of = |i: u64| -> Vec<u8> {
        let seed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (0..CHUNK as u64)
            .map(|j| (seed.wrapping_add(j.wrapping_mul(31)) >> 3) as u8)
            .collect()
    };
    let chunks = bytes.div_ceil(CHUNK as u64);
    let len_of = |i: u64| (bytes - i * CHUNK as u64).min(CHUNK as u64) as usize;
    // The pattern is made before the clock starts: only I/O is timed.
    let pattern: Vec<Vec<u8>> = (0..chunks.min(4)).map(chunk_of).collect();
    let data = |i: u64| &pattern[(i % 4) as usize][..len_of(i)];
    let started = Instant::now();
    let mut file = probe.create_new(name)?;
    for i in 0..chunks {
        file.write_all(data(i))?;
    }
    file.sync_all()?;
    drop(file);
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut file = probe.open(name)?;
    // Read from the filesystem, not from this machine's memory. Advisory: a
    // filesystem that ignores it only makes the read look faster.
    // SAFETY: plain syscall on an open descriptor owned by `file`.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut buf = vec![0u8; CHUNK];
    for i in 0..chunks {
        let want = data(i);
        let got = &mut buf[..want.len()];
        file.read_exact(got)?;
        if got != want {
            return Err(io::Error::other(format!(
                "the bytes read back at offset {} differ from those written",
                i * CHUNK as u64
            )));
        }
    }
    Ok((write_s, started.elapsed().as_secs_f64()))
}
