//! A cache tier: a place that may hold verified blocks.
//!
//! The local disk and the shared network directory are the same kind of thing to
//! the engine, so they implement one trait (and, in `inputfs-store`, one type).
//! The trait is blocking on purpose: implementations do plain file I/O, and the
//! engine is the one place that moves those calls off the async runtime.

use bytes::Bytes;

use crate::block::{BlockId, BlockLayout};
use crate::error::Result;
use crate::object::CacheKey;

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

/// What trying to claim a block's origin fetch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This worker holds the claim: fetch the block, publish it, then `release`.
    Acquired,
    /// Another worker holds a live claim: wait for its block to appear.
    Held,
    /// The tier does not coordinate fetches across workers.
    Unsupported,
}

/// A directory (or fake) of cached blocks. All methods block; call them off the
/// async runtime's worker threads.
/// Where [`BlockStore::make_plain`] takes the blocks a store lacks:
/// block and length in, its verified bytes out (`None`: nowhere).
pub type FillBlock<'a> = dyn Fn(&BlockId, u64) -> Option<Bytes> + 'a;

pub trait BlockStore: Send + Sync + 'static {
    /// Short name for logs and metrics ("local", "shared").
    fn name(&self) -> &str;

    /// Look a block up. `expected_len` is the length the block must have; anything
    /// else is corrupt. Errors are for faults of the tier itself (EIO, ESTALE...),
    /// which the engine absorbs by falling through to the next tier.
    fn get(&self, block: &BlockId, expected_len: u64) -> Result<Lookup>;

    /// Publish a block atomically. Losing a race to another writer of the same
    /// block is success: the content is the same by construction; the answer
    /// says which it was, so a worker can count the fetches that another
    /// worker made too.
    fn put(&self, block: &BlockId, data: &[u8]) -> Result<Placed>;

    /// Claim the right to fetch `block` from the origin for `ttl`, so other
    /// workers sharing this tier wait for it instead of fetching it too. A claim
    /// past its expiry is taken over. Claims only save origin traffic: losing a
    /// race costs a duplicate fetch, never a wrong byte.
    fn claim(&self, _block: &BlockId, _ttl: std::time::Duration) -> Result<Claim> {
        Ok(Claim::Unsupported)
    }

    /// Give up a claim this worker holds (after publishing, or after failing).
    fn release(&self, _block: &BlockId) {}

    /// The object as one plain file of exactly `size` bytes, if this store
    /// holds it that way: what kernel passthrough reads from.
    fn open_plain(&self, _key: &CacheKey, _size: u64) -> Result<Option<std::fs::File>> {
        Ok(None)
    }

    /// Hold the object as one plain file if every block of it is here (or,
    /// with `fill`, given by it) and the store allows plain files; whether it
    /// is held that way now. `fill` is where blocks not here come from: the
    /// tiers below, whose `get` verified what they give, so the local copy of
    /// an object read whole is written once, as the plain file, not first as
    /// block files and then again as the plain file.
    fn make_plain(
        &self,
        _key: &CacheKey,
        _layout: &BlockLayout,
        _fill: Option<&FillBlock<'_>>,
    ) -> Result<bool> {
        Ok(false)
    }

    /// Whether this store holds complete objects as plain files (see
    /// [`make_plain`](Self::make_plain)).
    fn plain_files(&self) -> bool {
        false
    }

    /// Whether the block is here, without reading it (a `stat`). A cheap
    /// hint: `get` is the only check that the block is good.
    fn contains(&self, _block: &BlockId) -> bool {
        false
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The block is there because of this publish.
    New,
    /// The block was already there (another worker published it first).
    AlreadyThere,
    /// Its object was evicted (by another worker's sweep) while the block was
    /// placed, twice in a row: the same as placing it just before the
    /// eviction, so a copy made, but there is nothing to account for.
    Evicted,
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
    /// Publishes that found the block already there: on a shared tier, a block
    /// another worker fetched from the origin too (a duplicate fetch).
    pub publish_found: std::sync::atomic::AtomicU64,
    /// Failed or put-off publishes made later (kept in memory meanwhile).
    pub publish_retried: std::sync::atomic::AtomicU64,
    /// Failed or put-off publishes never made: the copies kept for later
    /// were at their bound.
    pub publish_dropped: std::sync::atomic::AtomicU64,
    /// Origin fetches this worker claimed on this tier.
    pub claims: std::sync::atomic::AtomicU64,
    /// Times this worker waited for another worker's claimed fetch.
    pub claim_waits: std::sync::atomic::AtomicU64,
    /// Waits that ended with the block published by the other worker.
    pub claim_wait_hits: std::sync::atomic::AtomicU64,
    /// Waits that gave up after the claim timeout and fetched anyway.
    pub claim_wait_timeouts: std::sync::atomic::AtomicU64,
    /// Times the tier went from healthy to failing (degraded episodes).
    pub degradations: std::sync::atomic::AtomicU64,
}

impl<T: BlockStore + ?Sized> BlockStore for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn get(&self, block: &BlockId, expected_len: u64) -> Result<Lookup> {
        (**self).get(block, expected_len)
    }
    fn put(&self, block: &BlockId, data: &[u8]) -> Result<Placed> {
        (**self).put(block, data)
    }
    fn claim(&self, block: &BlockId, ttl: std::time::Duration) -> Result<Claim> {
        (**self).claim(block, ttl)
    }
    fn release(&self, block: &BlockId) {
        (**self).release(block)
    }
    fn open_plain(&self, key: &CacheKey, size: u64) -> Result<Option<std::fs::File>> {
        (**self).open_plain(key, size)
    }
    fn make_plain(
        &self,
        key: &CacheKey,
        layout: &BlockLayout,
        fill: Option<&FillBlock<'_>>,
    ) -> Result<bool> {
        (**self).make_plain(key, layout, fill)
    }
    fn plain_files(&self) -> bool {
        (**self).plain_files()
    }
    fn contains(&self, block: &BlockId) -> bool {
        (**self).contains(block)
    }
}
