//! Listing snapshots in a [`DirStore`]: `listings/<key>.json`, written and
//! read as the worker notes are (see the `notes` module), claimed as blocks
//! are (see the `claim` module). The store moves bytes and claims; what a
//! snapshot says, and whether it may be used, is the resolver's to decide.
//!
//! A snapshot that cannot be read or written (a link or a directory in its
//! place, a file past [`LISTING_MAX`]) is an error for that listing alone:
//! it does not count against the tier's health, since one hostile file must
//! not take the shared tier out of the read path.

use std::time::Duration;

use inputfs_core::store::Claim;
use inputfs_core::{BlockId, ListingStore, listing_key};

use super::DirStore;
use crate::layout::Layout;
use crate::notes::{self, LISTING_MAX};

/// The claim of a listing is the claim of a block no object has: the
/// listing's key is in a domain of its own, and its index is past any
/// block's (a block index is below `size / block_size`).
fn claim_id(url: &str) -> BlockId {
    BlockId {
        key: listing_key(url),
        index: u64::MAX,
    }
}

impl ListingStore for DirStore {
    fn read_listing(&self, url: &str) -> inputfs_core::Result<Option<Vec<u8>>> {
        let name = Layout::listing_name(&listing_key(url));
        notes::read(&self.cd, &self.cd.layout.listings, &name, LISTING_MAX)
            .map_err(|e| e.into_tier(self.cd.name()))
    }

    fn write_listing(&self, url: &str, bytes: &[u8]) -> inputfs_core::Result<()> {
        let name = Layout::listing_name(&listing_key(url));
        notes::write(&self.cd, &self.cd.layout.listings, &name, bytes)
            .map_err(|e| e.into_tier(self.cd.name()))
    }

    fn claim_listing(&self, url: &str, ttl: Duration) -> inputfs_core::Result<Claim> {
        inputfs_core::BlockStore::claim(self, &claim_id(url), ttl)
    }

    fn release_listing(&self, url: &str) {
        inputfs_core::BlockStore::release(self, &claim_id(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path(), "shared").unwrap().with_claims();
        let url = "s3://b/train/";
        assert_eq!(store.read_listing(url).unwrap(), None);
        store.write_listing(url, b"one").unwrap();
        store.write_listing(url, b"two").unwrap();
        assert_eq!(
            store.read_listing(url).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(store.read_listing("s3://b/other/").unwrap(), None);

        // A link in its place (to a file outside) is never followed.
        let path = dir
            .path()
            .join(crate::ROOT_NAME)
            .join("listings")
            .join(Layout::listing_name(&listing_key(url)));
        let outside = dir.path().join("outside");
        #[allow(clippy::disallowed_methods, reason = "test set-up")]
        {
            std::fs::write(&outside, b"secret").unwrap();
            std::fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink(&outside, &path).unwrap();
        }
        assert_eq!(store.read_listing(url).unwrap(), None);
    }

    #[test]
    fn one_worker_claims_a_listing_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirStore::open(dir.path(), "shared").unwrap().with_claims();
        let b = DirStore::open(dir.path(), "shared").unwrap().with_claims();
        let ttl = Duration::from_secs(60);
        assert_eq!(a.claim_listing("s3://b/p/", ttl).unwrap(), Claim::Acquired);
        assert_eq!(b.claim_listing("s3://b/p/", ttl).unwrap(), Claim::Held);
        assert_eq!(b.claim_listing("s3://b/q/", ttl).unwrap(), Claim::Acquired);
        a.release_listing("s3://b/p/");
        assert_eq!(b.claim_listing("s3://b/p/", ttl).unwrap(), Claim::Acquired);
    }
}
