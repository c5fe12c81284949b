//! Writing a new cache file without passing its bytes through the page cache.
//!
//! A cold read writes every block it fetches to a tier (and later the local
//! tier's plain file once more). Through the page cache that costs more CPU
//! than anything else the daemon does: on these VMs `dd` of 1 GiB with 4 MiB
//! buffered writes took 3.0 CPU-s (the kernel copying into freshly allocated
//! page-cache folios, `copy_folio_from_iter_atomic` at the top of the cold
//! profile in docs/PERFORMANCE.md), with `O_DIRECT` 0.2 CPU-s. On 2 cores the
//! origin and the reader get the difference.
//!
//! So the store writes the files it has just created (temp files, never a file
//! someone else may have open) with `O_DIRECT` where the filesystem says how:
//! `statx(STATX_DIOALIGN)` reports the alignment direct I/O needs on ext4, xfs,
//! btrfs and block-backed filesystems, and nothing on NFS, SMB, tmpfs or FUSE
//! ones, which keep buffered writes as before (their clients manage their own
//! caching, and direct writes there would make each write a synchronous round
//! trip). Bytes are staged in a page-aligned buffer (kept for reuse in a
//! small pool: [`POOLED`] buffers of 1 MiB at most, whatever the number of
//! threads that write); whole aligned pieces go out with `O_DIRECT` set on
//! the descriptor, the unaligned tail
//! buffered after clearing it. A direct write the filesystem refuses
//! (`EINVAL`: an alignment it did not report) switches the rest of the file to
//! buffered writes at the same offset: nothing is lost or written twice.
//!
//! The trade-off: what was written is not left in the page cache, so a read of
//! it soon after goes to the disk. The engine serves the blocks it just
//! fetched from memory, and the page cache of a block is one the kernel would
//! have had to evict anyway to take the next one on a large cold read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use rustix::fs::{AtFlags, OFlags, StatxFlags};

/// Bytes staged before a direct write: big enough that a 4 MiB block is four
/// writes, small enough that a thread's buffer costs little memory.
const STAGE: usize = 1 << 20;
/// Alignments above this are not worth staging for (none is seen in practice).
const MAX_ALIGN: usize = 64 << 10;
/// The page size: direct pieces are aligned to it at least, so the buffered
/// tail never shares a page with bytes written directly.
const PAGE: usize = 4096;

/// Staging buffers kept between files: as many as the tiers' concurrent
/// publishes (8 each), so a busy daemon allocates none, and never more.
const POOLED: usize = 16;
static STAGING: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The alignment direct writes to `file` need, if its filesystem does them.
/// Asked of the client's cached attributes (`AT_STATX_DONT_SYNC`): on a
/// network filesystem a plain `statx` would be one more round trip to the
/// server per file written, for an answer the server does not give anyway.
fn direct_alignment(file: &File) -> Option<usize> {
    let st = rustix::fs::statx(
        file,
        "",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::DIOALIGN,
    )
    .ok()?;
    if st.stx_mask & StatxFlags::DIOALIGN.bits() == 0 {
        return None;
    }
    let mem = st.stx_dio_mem_align as usize;
    let offset = st.stx_dio_offset_align as usize;
    if mem == 0 || offset == 0 || !mem.is_power_of_two() || !offset.is_power_of_two() {
        return None;
    }
    Some(mem.max(offset).max(PAGE)).filter(|&a| a <= MAX_ALIGN)
}

/// Writes a freshly created, empty file from its start, directly where the
/// filesystem allows. Call [`finish`](Self::finish) to write what is staged;
/// dropping it without leaves the file short (the caller removes it anyway).
pub(crate) struct SequentialWriter<'f> {
    file: &'f File,
    /// The alignment while writing directly; `None` once buffered.
    align: Option<usize>,
    stage: Vec<u8>,
    /// Where in `stage` the aligned window starts.
    start: usize,
    staged: usize,
    pos: u64,
}

impl<'f> SequentialWriter<'f> {
    /// A writer for `file`, which must be new, empty, and written only
    /// through this writer.
    pub(crate) fn new(file: &'f File) -> Self {
        let align = direct_alignment(file).filter(|_| set_direct(file, true).is_ok());
        let mut stage = Vec::new();
        let mut start = 0;
        if let Some(a) = align {
            stage = STAGING
                .lock()
                .ok()
                .and_then(|mut pool| pool.pop())
                .unwrap_or_default();
            stage.resize(STAGE + a, 0);
            start = stage.as_ptr().align_offset(a);
        }
        SequentialWriter {
            file,
            align,
            stage,
            start,
            staged: 0,
            pos: 0,
        }
    }

    /// Whether the bytes are going out with `O_DIRECT` (for tests).
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.align.is_some()
    }

    /// Append `data`.
    pub(crate) fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.align.is_none() {
                return self.write_buffered(data);
            }
            let n = (STAGE - self.staged).min(data.len());
            let at = self.start + self.staged;
            self.stage[at..at + n].copy_from_slice(&data[..n]);
            self.staged += n;
            data = &data[n..];
            if self.staged == STAGE {
                self.flush_direct()?;
            }
        }
        Ok(())
    }

    /// Write everything staged and leave the descriptor without `O_DIRECT`.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if self.align.is_some() {
            self.flush_direct()?;
            self.go_buffered()?;
        }
        Ok(())
    }

    /// Write the aligned part of what is staged directly; keep the rest staged.
    fn flush_direct(&mut self) -> io::Result<()> {
        let Some(align) = self.align else {
            return Ok(());
        };
        let whole = self.staged / align * align;
        let mut done = 0;
        while done < whole {
            let piece = &self.stage[self.start + done..self.start + whole];
            match self.file.write_at(piece, self.pos) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let from = self.start + done;
        self.stage
            .copy_within(from..self.start + self.staged, self.start);
        self.staged -= done;
        if done < whole || done % align != 0 {
            // Refused, or a short write left the offset unaligned: the rest
            // goes out buffered.
            self.go_buffered()?;
        }
        Ok(())
    }

    /// Clear `O_DIRECT` and write what is still staged, buffered.
    fn go_buffered(&mut self) -> io::Result<()> {
        self.align = None;
        set_direct(self.file, false)?;
        let staged = std::mem::take(&mut self.stage);
        let result = self.write_buffered(&staged[self.start..self.start + self.staged]);
        self.staged = 0;
        self.stage = staged;
        result
    }

    fn write_buffered(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.pos)?;
        self.pos += data.len() as u64;
        Ok(())
    }
}

impl Drop for SequentialWriter<'_> {
    fn drop(&mut self) {
        let stage = std::mem::take(&mut self.stage);
        if stage.capacity() > 0
            && let Ok(mut pool) = STAGING.lock()
            && pool.len() < POOLED
        {
            pool.push(stage);
        }
    }
}

fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let mut flags = rustix::fs::fcntl_getfl(file)?;
    flags.set(OFlags::DIRECT, on);
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "the tests make and read plain files in a temporary directory of their own"
)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Write `pieces` through a writer into a new file in `dir` and read it back.
    fn round_trip(dir: &std::path::Path, pieces: &[Vec<u8>]) -> (Vec<u8>, bool) {
        let path = dir.join(format!("f{}", unique()));
        let file = File::create_new(&path).unwrap();
        let mut w = SequentialWriter::new(&file);
        let direct = w.is_direct();
        for p in pieces {
            w.write_all(p).unwrap();
        }
        w.finish().unwrap();
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(OFlags::DIRECT), "O_DIRECT left set");
        drop(file);
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        (back, direct)
    }

    fn unique() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn every_size_round_trips_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            0,
            1,
            72,
            4095,
            4096,
            4097,
            STAGE - 1,
            STAGE,
            STAGE + 72,
            3 * STAGE + 5,
        ] {
            let header = pattern(72, 1);
            let data = pattern(len, 7);
            let (back, _) = round_trip(dir.path(), &[header.clone(), data.clone()]);
            assert_eq!(back.len(), 72 + len, "length for {len}");
            assert!(
                back[..72] == header[..] && back[72..] == data[..],
                "bytes for {len}"
            );
        }
    }

    #[test]
    fn a_disk_filesystem_is_written_directly() {
        // The checkout is on the machine's disk (ext4 on these machines and
        // in CI), which reports its direct-I/O alignment.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let (back, direct) = round_trip(dir.path(), &[pattern(5 << 20, 3), pattern(9, 4)]);
        assert!(back[..5 << 20] == pattern(5 << 20, 3)[..] && back[5 << 20..] == pattern(9, 4)[..]);
        let fs = rustix::fs::statfs(dir.path()).unwrap().f_type;
        assert!(
            direct,
            "{} (filesystem type {fs:#x}) reports no direct-I/O alignment: \
             this test needs the checkout on a disk filesystem",
            dir.path().display()
        );
    }

    #[test]
    fn a_filesystem_without_direct_io_is_written_buffered() {
        // /dev/shm is tmpfs, which reports no alignment.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let (back, direct) = round_trip(dir.path(), &[pattern(72, 1), pattern(STAGE + 3, 2)]);
        assert!(!direct, "tmpfs was written directly");
        assert!(back[..72] == pattern(72, 1)[..] && back[72..] == pattern(STAGE + 3, 2)[..]);
    }
}
