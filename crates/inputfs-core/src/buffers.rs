//! Block-sized buffers, reused instead of allocated for every block.
//!
//! Every block the daemon holds arrives in a buffer: a GET's body (the
//! origin), or a block file read from a tier. A new buffer is memory the
//! kernel has never mapped for the daemon, so each of its pages is faulted
//! in and zeroed on first touch, and the allocator hands large freed buffers
//! back to the kernel (jemalloc's decay, as configured for the daemon's peak
//! memory), so the next block's buffer is fresh again. In a cold read's
//! profile that zeroing (`clear_page_erms`) was 21% of the daemon's CPU, more
//! than receiving the bytes; on these VMs a page never touched since boot
//! also costs a host fault (docs/PERFORMANCE.md).
//!
//! So block buffers come from one small pool ([`take`]) and go back to it
//! when the last `Bytes` of them is dropped ([`share`]): the block left the
//! memory cache and every tier write and reply that used it finished. The
//! pool keeps at most [`POOL_BYTES`] idle (a handful of blocks, little next
//! to the memory budget; a daemon that stopped reading keeps them), buffers
//! above [`MAX_POOLED`] are freed, and a buffer is reused only for a length
//! at most an eighth below its capacity: the memory cache counts a block by
//! its length, and a small file must not pin a block's buffer.

use std::sync::Mutex;

use bytes::Bytes;

/// Idle bytes the pool keeps at most.
pub const POOL_BYTES: usize = 32 << 20;
/// Buffers above this capacity are freed, not pooled.
pub const MAX_POOLED: usize = 16 << 20;

/// Idle buffers, up to [`POOL_BYTES`] of them.
#[derive(Debug)]
struct Pool(Mutex<Vec<Vec<u8>>>);

static POOL: Pool = Pool::new();

impl Pool {
    const fn new() -> Pool {
        Pool(Mutex::new(Vec::new()))
    }

    fn take(&self, len: usize) -> Vec<u8> {
        let fits = |b: &Vec<u8>| (len..=len + len / 8).contains(&b.capacity());
        let reused = {
            let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
            idle.iter().position(fits).map(|i| idle.swap_remove(i))
        };
        let mut buf = reused.unwrap_or_else(|| Vec::with_capacity(len));
        buf.clear();
        buf
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() > MAX_POOLED || buf.capacity() == 0 {
            return;
        }
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let held: usize = idle.iter().map(Vec::capacity).sum();
        if held + buf.capacity() <= POOL_BYTES {
            idle.push(buf);
        }
    }
}

/// A buffer of `pool` that goes back to it when dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// An empty buffer that holds `len` bytes without growing: a pooled one if
/// one fits, else a new one. Its spare capacity is not zeroed (read into it
/// with `read_to_end` or `extend_from_slice`).
pub fn take(len: usize) -> Vec<u8> {
    POOL.take(len)
}

/// `buf` as `Bytes`, without a copy; the buffer returns to the pool when the
/// last `Bytes` sharing it is dropped.
pub fn share(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled { buf, pool: &POOL })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    fn share_in(pool: &'static Pool, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool })
    }

    #[test]
    fn a_buffer_comes_back_once_its_last_slice_is_dropped() {
        let pool = pool();
        let len = 1 << 20;
        let mut buf = pool.take(len);
        buf.extend_from_slice(&[7u8; 1000]);
        let first = share_in(pool, buf);
        let ptr = first.as_ptr();
        let slice = first.slice(10..20);
        drop(first);
        let second = pool.take(len);
        assert_ne!(second.as_ptr(), ptr, "lent while a slice holds it");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        let mut third = pool.take(len);
        assert_eq!(third.as_ptr(), ptr, "the freed buffer is reused");
        assert!(third.is_empty(), "and handed out empty");
        third.extend_from_slice(b"yz");
        assert_eq!(&share_in(pool, third)[..], b"yz");
    }

    #[test]
    fn a_small_length_never_takes_a_big_buffer_and_the_pool_is_bounded() {
        let pool = pool();
        let len = 1 << 20;
        let big = share_in(pool, pool.take(len));
        let ptr = big.as_ptr();
        drop(big);
        let small = pool.take(1000);
        assert_ne!(small.as_ptr(), ptr);
        let near = pool.take(len - len / 9);
        assert_eq!(near.as_ptr(), ptr, "an eighth below fits");
        for _ in 0..(2 * POOL_BYTES / len) {
            pool.give_back(Vec::with_capacity(len));
        }
        pool.give_back(Vec::with_capacity(MAX_POOLED + 1));
        let idle = pool.0.lock().unwrap();
        let held: usize = idle.iter().map(Vec::capacity).sum();
        assert!(held <= POOL_BYTES, "{held} bytes idle");
        assert!(idle.iter().all(|b| b.capacity() <= MAX_POOLED));
    }
}
