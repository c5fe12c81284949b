//! `O_DIRECT` opens of objects held whole in the local cache, answered by the
//! daemon from the plain file's page cache.
//!
//! An application that opens a file `O_DIRECT` (databases, some data loaders,
//! fio) asks that its reads skip the page cache *of that file*. Under kernel
//! passthrough the kernel hands the flag on to the backing file, so every such
//! read went to the local disk: on the 2-core CI machine 31k IOPS of 4 KiB and
//! 15.5k of 64 KiB, the disk's own figures, where s3fs (which serves them from
//! its cache file's page cache) reached 23.5k at 64 KiB (`scripts/bench
//! --scenarios random-direct`). The mount's file and the plain file are not
//! the same file: serving the application's `O_DIRECT` reads from the plain
//! file's page cache keeps the promise the flag makes (FUSE sends every one of
//! them to the daemon; the mount keeps no page of them), and a hit costs one
//! copy instead of a disk read.
//!
//! How, and why so:
//! - An `O_DIRECT` open never starts passthrough for its inode; if the object
//!   is plain in the local tier, its handle keeps the plain file (checked whole
//!   against its sidecar when opened, as for passthrough: the same guarantee,
//!   from the same descriptor) and reads are ranges of it. Passthrough is per
//!   inode and decided at its first open (see `passthrough`): while an
//!   `O_DIRECT` handle that came first is open, buffered opens of the inode go
//!   through the daemon too (correct, slower); an `O_DIRECT` open of an inode
//!   already passing through follows it to the disk, as the kernel requires.
//! - The read is first tried on the FUSE thread with `preadv2(RWF_NOWAIT)`,
//!   which returns only what the page cache holds and never waits for the
//!   disk, so `fs`'s rule (a FUSE thread never waits on I/O) holds and a hit
//!   takes no thread hop. Anything short of the whole range is read on a
//!   blocking thread; a failure there goes to the engine's normal path (tiers,
//!   then the origin), which owns every error the application may see.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Whether `flags` (of an `open`) ask for `O_DIRECT`.
pub(crate) fn wanted(flags: i32) -> bool {
    flags & libc::O_DIRECT != 0
}

thread_local! {
    /// The FUSE thread's buffer for [`answer_cached`]: a few per mount, kept
    /// for its life. A fresh 64 KiB buffer per read cost more than the read:
    /// the allocator hands large ones back to the kernel, and every read then
    /// paid page faults and a TLB shootdown (`perf`: 40% of the daemon's CPU).
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// If the page cache holds all `len` bytes at `offset` of `file`, give them
/// to `answer` (with `ctx`); else hand `ctx` back. Never waits for the disk.
pub(crate) fn answer_cached<T>(
    file: &File,
    offset: u64,
    len: usize,
    ctx: T,
    answer: impl FnOnce(T, &[u8]),
) -> Result<(), T> {
    let Ok(offset) = libc::off_t::try_from(offset) else {
        return Err(ctx);
    };
    BUFFER.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: len,
        };
        // SAFETY: `iov` describes the first `len` bytes of `buf`, which is at
        // least that long and outlives the call; the descriptor is open for
        // the borrow of `file`.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
        if usize::try_from(n).ok() == Some(len) {
            answer(ctx, &buf[..len]);
            Ok(())
        } else {
            Err(ctx)
        }
    })
}

/// `len` bytes at `offset` of `file`, waiting for the disk (blocking).
pub(crate) fn read_blocking(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
        f
    }

    fn cached(f: &File, offset: u64, len: usize) -> Option<Vec<u8>> {
        let mut got = None;
        answer_cached(f, offset, len, (), |(), data| got = Some(data.to_vec())).ok()?;
        got
    }

    #[test]
    fn a_cached_range_is_read_exactly() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let f = file_of(&data);
        // Just written: in the page cache. A shorter read after a longer one
        // gets only its own bytes from the reused buffer.
        assert_eq!(
            cached(&f, 4096, 8192).expect("cached"),
            data[4096..4096 + 8192]
        );
        assert_eq!(cached(&f, 10, 3).expect("cached"), data[10..13]);
        assert_eq!(read_blocking(&f, 99_000, 1000).unwrap(), data[99_000..]);
    }

    #[test]
    fn a_range_past_the_end_is_never_a_hit() {
        let f = file_of(b"short");
        assert_eq!(cached(&f, 0, 10), None);
        assert_eq!(cached(&f, 100, 1), None);
        assert!(read_blocking(&f, 0, 10).is_err());
    }

    #[test]
    fn open_flags_say_whether_direct_was_asked() {
        assert!(wanted(libc::O_RDONLY | libc::O_DIRECT));
        assert!(!wanted(libc::O_RDONLY | libc::O_CLOEXEC));
    }
}
