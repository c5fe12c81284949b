//! Deciding what to fetch before it is asked for.
//!
//! Pure logic, no I/O, so it is tested exhaustively on its own. A reader that keeps
//! reading where it left off gets a window that starts at a quarter of the
//! maximum and doubles up to it; a jump
//! elsewhere resets it to nothing, so random readers fetch only what they read.
//! Prefetching starts only once a reader has read half a block in sequence: a
//! random 1 MiB read arrives from the kernel as several sequential requests, and
//! must not pull a neighbouring block it will never use.

use std::ops::Range;

use crate::block::BlockLayout;

/// Per-open-file readahead state.
#[derive(Debug, Clone)]
pub struct Readahead {
    /// Where the next sequential read would start.
    next: u64,
    /// Current window in bytes beyond the end of the last read.
    window: u64,
    /// Blocks below this index have already been asked for.
    issued_until: u64,
    /// Bytes read in sequence since the last jump.
    streak: u64,
    max_window: u64,
}

impl Readahead {
    pub fn new(max_window: u64) -> Self {
        Readahead {
            next: 0,
            window: 0,
            issued_until: 0,
            streak: 0,
            max_window,
        }
    }

    /// Record a read and return the blocks to prefetch now (beyond the blocks of
    /// the read itself, which the caller fetches anyway).
    pub fn on_read(&mut self, offset: u64, len: u64, layout: &BlockLayout) -> Range<u64> {
        let bs = layout.block_size;
        // The kernel may deliver a sequential stream slightly out of order when
        // several reads are in flight: within a block of the expected offset counts.
        let sequential = offset.abs_diff(self.next) <= bs;
        if sequential {
            self.streak = self.streak.saturating_add(len);
        } else {
            // The read that jumps is not part of a run yet.
            self.window = 0;
            self.issued_until = 0;
            self.streak = 0;
        }
        if self.streak >= bs / 2 && self.max_window > 0 {
            // A confirmed sequential reader starts at a quarter of the largest
            // window, not one block: while it waits for its first block, reads
            // that could double the window do not happen, and starting at one
            // block cost two block fetch times of idle origin connections
            // (docs/PERFORMANCE.md, "Readahead").
            let start = (self.max_window / 4).max(bs);
            self.window = (self.window * 2).clamp(start, self.max_window.max(bs));
        }
        let end = offset.saturating_add(len).min(layout.object_size);
        self.next = end;
        let read_blocks_end = end.div_ceil(bs);
        let want_until = end
            .saturating_add(self.window)
            .min(layout.object_size)
            .div_ceil(bs);
        let from = read_blocks_end.max(self.issued_until);
        self.issued_until = self.issued_until.max(want_until);
        if from >= want_until {
            0..0
        } else {
            from..want_until
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn sequential_window_grows_and_caps() {
        let layout = BlockLayout::new(MIB, 100 * MIB);
        let mut ra = Readahead::new(8 * MIB);
        let mut off = 0;
        let mut windows = vec![];
        for _ in 0..12 {
            let r = ra.on_read(off, MIB, &layout);
            windows.push(ra.window / MIB);
            assert!(
                r.start >= (off + MIB).div_ceil(MIB),
                "never re-issues the read itself"
            );
            off += MIB;
        }
        // Starts at a quarter of the largest window, doubles, caps.
        assert_eq!(&windows[..5], &[2, 4, 8, 8, 8]);
    }

    #[test]
    fn each_block_is_issued_once_in_a_sequential_scan() {
        let layout = BlockLayout::new(MIB, 50 * MIB);
        let mut ra = Readahead::new(16 * MIB);
        let mut issued = vec![0u32; 50];
        let mut off = 0;
        while off < layout.object_size {
            for b in ra.on_read(off, 128 * 1024, &layout) {
                issued[b as usize] += 1;
            }
            off += 128 * 1024;
        }
        assert!(issued.iter().all(|&n| n <= 1), "{issued:?}");
        assert!(issued[1..].iter().all(|&n| n == 1), "{issued:?}");
    }

    #[test]
    fn random_reads_prefetch_nothing() {
        let layout = BlockLayout::new(MIB, 1024 * MIB);
        let mut ra = Readahead::new(8 * MIB);
        // A first read at offset 0 looks sequential; jumps afterwards do not.
        for off in [500 * MIB, 3 * MIB, 900 * MIB + 17, 10 * MIB] {
            assert_eq!(ra.on_read(off, MIB, &layout), 0..0);
        }
    }

    #[test]
    fn a_short_sequential_run_prefetches_nothing() {
        // A 1 MiB read at a random offset, as the kernel splits it: 8 x 128 KiB.
        let layout = BlockLayout::new(4 * MIB, 1024 * MIB);
        let mut ra = Readahead::new(64 * MIB);
        let _ = ra.on_read(500 * MIB, 4096, &layout);
        let start = 700 * MIB + 12345;
        for i in 0..8 {
            assert_eq!(
                ra.on_read(start + i * 128 * 1024, 128 * 1024, &layout),
                0..0
            );
        }
        // Keep going and the window opens.
        let r = ra.on_read(start + MIB, 2 * MIB, &layout);
        assert!(!r.is_empty());
    }

    #[test]
    fn window_stops_at_end_of_object() {
        let layout = BlockLayout::new(MIB, 3 * MIB + 5);
        let mut ra = Readahead::new(64 * MIB);
        // The first window (16 MiB) already reaches past the end: blocks 1..4.
        let r = ra.on_read(0, MIB, &layout);
        assert_eq!(r, 1..4);
        assert_eq!(ra.on_read(MIB, MIB, &layout), 0..0);
        assert_eq!(ra.on_read(2 * MIB, MIB, &layout), 0..0);
    }

    #[test]
    fn zero_window_disables_readahead() {
        let layout = BlockLayout::new(MIB, 10 * MIB);
        let mut ra = Readahead::new(0);
        for i in 0..10 {
            assert_eq!(ra.on_read(i * MIB, MIB, &layout), 0..0);
        }
    }
}
