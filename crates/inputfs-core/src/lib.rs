//! The heart of inputfs, kept free of FUSE and of any object-store client so it can
//! be tested in-process with fakes.
//!
//! - [`object`]: what an input object *is* once resolved (URL, pinned version, size)
//!   and the content identity its cache blocks are keyed by.
//! - [`block`]: the block arithmetic every other crate shares.
//! - [`buffers`]: block-sized buffers reused instead of allocated per block.
//! - [`source`] and [`store`]: the two narrow traits behind which the outside world
//!   sits (the origin object store, and a directory of cached blocks).
//! - [`listing`]: where listing snapshots are kept, so a fleet lists a prefix once.
//! - [`engine`]: the read path — memory, local tier, shared tier, origin — with
//!   single-flight, readahead and a global memory budget.
//! - [`testing`]: in-memory fakes and fault-injecting wrappers for both traits.
//! - [`error`]: the crate's one error type and the one place errors become errnos.
//! - [`metric_names`]: the name of every exported metric, in one place.
//! - [`episode`]: lasting conditions (origin throttling, origin failing), logged once per episode.

pub mod block;
pub mod buffers;
pub mod engine;
pub mod episode;
pub mod error;
pub mod listing;
pub mod metric_names;
pub mod object;
pub mod source;
pub mod store;
mod sync;
pub mod testing;

pub use block::{BlockId, BlockLayout};
pub use engine::{Engine, EngineConfig, FileReader};
pub use episode::{Episode, Throttling};
pub use error::{Error, Result};
pub use listing::{ListingStore, listing_key};
pub use object::{CacheKey, ObjectId, SourceKind, Version};
pub use source::{Retries, RetryPolicy, Retrying, Source};
pub use store::{BlockStore, Claim, Lookup, Placed, TierStats};
