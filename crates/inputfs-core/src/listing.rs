//! Where listing snapshots are kept: the narrow trait the resolver publishes
//! and reads them through, so that a fleet lists a prefix once (see
//! `inputfs_source::snapshot` for what a snapshot holds and how it is checked).
//!
//! A listing is not a block, but it is shared the same way: one worker claims
//! the work, does it, publishes the result atomically, and the others use the
//! result instead of repeating the work. The shared tier's directory already
//! does all three for blocks, so it does them for listings too, behind this
//! trait, and the source crate stays free of any file I/O.

use std::time::Duration;

use crate::error::Result;
use crate::object::CacheKey;
use crate::store::Claim;

/// The name a listing of `url` (a canonical prefix or glob URL) is kept
/// under: BLAKE3 of the URL in its own domain, so it can never be the key of
/// an object's blocks.
pub fn listing_key(url: &str) -> CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(b"inputfs-listing-v1\0");
    h.update(&(url.len() as u64).to_le_bytes());
    h.update(url.as_bytes());
    CacheKey(*h.finalize().as_bytes())
}

/// A directory of listing snapshots. All methods block: call them off the
/// async runtime's worker threads. What `read_listing` returns is untrusted
/// (anyone who can write the directory wrote it): the caller checks it.
pub trait ListingStore: Send + Sync + 'static {
    /// The snapshot published for `url`, if there is one that may be read
    /// (a regular file of bounded size).
    fn read_listing(&self, url: &str) -> Result<Option<Vec<u8>>>;

    /// Publish `bytes` as the snapshot for `url`, atomically replacing any.
    fn write_listing(&self, url: &str, bytes: &[u8]) -> Result<()>;

    /// Claim the listing of `url` for `ttl`, as blocks are claimed: the
    /// worker that gets [`Claim::Acquired`] lists and publishes, the others
    /// wait for its snapshot (never longer than `ttl`).
    fn claim_listing(&self, url: &str, ttl: Duration) -> Result<Claim>;

    /// Give up a listing claim this worker holds.
    fn release_listing(&self, url: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_keys_are_stable_and_distinct_from_object_keys() {
        // Golden: a worker of another release must find the same name.
        assert_eq!(
            listing_key("s3://bucket/train/").to_hex(),
            "f274ea0929763f7528de03d140daa44184f8f5d094f0062009e80bdcec9b81ba"
        );
        assert_ne!(listing_key("s3://b/a/"), listing_key("s3://b/a/x"));
        let object = CacheKey::new(crate::SourceKind::S3, "s3://b/a/", "", 0, 0);
        assert_ne!(listing_key("s3://b/a/"), object);
    }
}
