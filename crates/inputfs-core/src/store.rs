//! A cache tier: a place that may hold verified blocks.
//!
//! The local disk and the shared network directory are the same kind of thing to
//! the engine, so they implement one trait (and, in `inputfs-store`, one type).
//! The trait is blocking on purpose: implementations do plain file I/O, and the
//! engine is the one place that moves those calls off the async runtime.

use bytes::Bytes;

use crate::block::BlockId;
use crate::error::Result;

/// What a tier lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The block, verified: header, identity and checksum all matched.
    Hit(Bytes),
    /// Not there.
    Miss,
    /// There but unusable (wrong checksum, truncated, another block's header...).
    /// The tier has already removed or moved it aside; the reason is for logs.
    Corrupt(String),
}

/// A directory (or fake) of cached blocks. All methods block; call them off the
/// async runtime's worker threads.
pub trait BlockStore: Send + Sync + 'static {
    /// Short name for logs and metrics ("local", "shared").
    fn name(&self) -> &str;

    /// Look a block up. `expected_len` is the length the block must have; anything
    /// else is corrupt. Errors are for faults of the tier itself (EIO, ESTALE...),
    /// which the engine absorbs by falling through to the next tier.
    fn get(&self, block: &BlockId, expected_len: u64) -> Result<Lookup>;

    /// Publish a block atomically. Losing a race to another writer of the same
    /// block is success: the content is the same by construction.
    fn put(&self, block: &BlockId, data: &[u8]) -> Result<()>;
}

/// Counters the engine keeps for each tier.
#[derive(Debug, Default)]
pub struct TierStats {
    pub hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
    pub corrupt: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
    pub bytes_read: std::sync::atomic::AtomicU64,
    pub publishes: std::sync::atomic::AtomicU64,
    pub publish_errors: std::sync::atomic::AtomicU64,
    pub publish_skipped: std::sync::atomic::AtomicU64,
}

impl<T: BlockStore + ?Sized> BlockStore for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn get(&self, block: &BlockId, expected_len: u64) -> Result<Lookup> {
        (**self).get(block, expected_len)
    }
    fn put(&self, block: &BlockId, data: &[u8]) -> Result<()> {
        (**self).put(block, data)
    }
}
