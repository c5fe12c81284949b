//! Block arithmetic shared by the engine, the store and the tools.
//!
//! An object of `size` bytes is cut into fixed blocks of `block_size`; the last one
//! may be short. Keeping this in one place means the store, the engine and `warm`
//! can never disagree about where block N starts.

use std::ops::Range;

use crate::object::CacheKey;

/// One block of one object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockId {
    pub key: CacheKey,
    pub index: u64,
}

/// How an object of a given size is cut into blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    pub block_size: u64,
    pub object_size: u64,
}

impl BlockLayout {
    /// A layout; `block_size` must be non-zero (checked by configuration parsing).
    pub fn new(block_size: u64, object_size: u64) -> Self {
        assert!(block_size > 0, "block size must be positive");
        BlockLayout {
            block_size,
            object_size,
        }
    }

    /// Number of blocks (0 for an empty object).
    pub fn block_count(&self) -> u64 {
        self.object_size.div_ceil(self.block_size)
    }

    /// Byte range of block `index` within the object (empty past the end).
    pub fn block_range(&self, index: u64) -> Range<u64> {
        let start = index.saturating_mul(self.block_size).min(self.object_size);
        let end = start.saturating_add(self.block_size).min(self.object_size);
        start..end
    }

    /// Length of block `index`.
    pub fn block_len(&self, index: u64) -> u64 {
        let r = self.block_range(index);
        r.end - r.start
    }

    /// The blocks a read of `len` bytes at `offset` touches, after clamping the
    /// read to the object's end. Empty when nothing is to be read.
    pub fn blocks_for(&self, offset: u64, len: u64) -> Range<u64> {
        let end = offset.saturating_add(len).min(self.object_size);
        if offset >= end {
            return 0..0;
        }
        (offset / self.block_size)..end.div_ceil(self.block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn basic_layout() {
        let l = BlockLayout::new(10, 25);
        assert_eq!(l.block_count(), 3);
        assert_eq!(l.block_range(0), 0..10);
        assert_eq!(l.block_range(2), 20..25);
        assert_eq!(l.block_range(3), 25..25);
        assert_eq!(l.blocks_for(9, 2), 0..2);
        assert_eq!(l.blocks_for(25, 5), 0..0);
        assert_eq!(l.blocks_for(24, 100), 2..3);
        assert_eq!(BlockLayout::new(10, 0).block_count(), 0);
    }

    proptest! {
        #[test]
        fn blocks_cover_exactly_the_read(bs in 1u64..5000, size in 0u64..100_000,
                                         off in 0u64..120_000, len in 0u64..50_000) {
            let l = BlockLayout::new(bs, size);
            let blocks = l.blocks_for(off, len);
            let end = off.saturating_add(len).min(size);
            if off >= end {
                prop_assert!(blocks.is_empty());
            } else {
                prop_assert!(l.block_range(blocks.start).start <= off);
                prop_assert!(l.block_range(blocks.end - 1).end >= end);
                prop_assert!(l.block_range(blocks.start).end > off);
                prop_assert!(l.block_range(blocks.end - 1).start < end);
                prop_assert!(blocks.end <= l.block_count());
            }
        }
    }
}
