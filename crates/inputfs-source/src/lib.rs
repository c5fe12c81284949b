//! The origin side of inputfs: turning input URLs into pinned objects, and reading
//! byte ranges of those objects from the object store they live in.
//!
//! - [`url`]: parse an input URL (pure): store, key, object/prefix/glob, and the
//!   canonical URL with signed-URL credentials stripped.
//! - [`glob`]: the small glob language of a URL's last segment.
//! - [`stores`] (private): one `object_store` client per bucket/container/host,
//!   from the cloud's environment, with our timeouts and no retries of its own.
//! - [`timeouts`]: connect, first-byte, stall and whole-request timeouts of
//!   every origin request.
//! - [`guard`]: the panic boundary around `object_store`.
//! - [`resolve`]: inputs -> files, each pinned to the version seen at mount.
//! - [`snapshot`]: listing snapshots in the shared cache, so a fleet lists
//!   each prefix once.
//! - [`origin`]: [`Origin`], the [`inputfs_core::Source`] over all of that.
//! - `classify` (private): the one mapping from `object_store` errors to what
//!   the engine and users see.
//! - [`error`]: [`SourceError`], the one-line reason an input cannot be mounted.

mod body;
mod classify;
pub mod error;
pub mod glob;
pub mod guard;
pub mod origin;
pub mod resolve;
pub mod snapshot;
mod stores;
pub mod timeouts;
pub mod url;

pub use error::SourceError;
pub use origin::{Origin, OriginBuilder};
pub use resolve::{InputSpec, RESOLVE_CONCURRENCY, ResolvedFile, ResolvedInput};
pub use snapshot::Snapshots;
pub use timeouts::{CONNECT_TIMEOUT, FIRST_BYTE_TIMEOUT, REQUEST_TIMEOUT, STALL_TIMEOUT, Timeouts};
pub use url::{ParsedUrl, StoreLocation, Target, parse_url};

/// Re-exported so callers can pass store options without depending on
/// `object_store` themselves.
pub use object_store::{
    ClientConfigKey, aws::AmazonS3ConfigKey, azure::AzureConfigKey, gcp::GoogleConfigKey,
};
