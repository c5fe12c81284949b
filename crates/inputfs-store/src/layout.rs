//! The names of everything in a cache directory, relative to it: the layout
//! of `docs/FORMAT.md` as [`Rel`]s, with no I/O. Every module that touches
//! the directory asks here for a name and hands it to `beneath`, so a name
//! is made in one place and can never be a path outside the directory.

use std::path::PathBuf;

use inputfs_core::{BlockId, CacheKey};

use crate::beneath::Rel;

/// The directory under the configured cache directory that holds everything.
/// A format change that old readers must not see gets a new name.
pub const ROOT_NAME: &str = "inputfs-v1";

/// The name of an object's plain file inside its object directory.
pub const PLAIN_NAME: &str = "object.data";
/// The name of its sidecar of checksums (see `sums`).
pub const SUMS_NAME: &str = "object.sums";

/// The fixed names under the root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: Rel,
    pub objects: Rel,
    pub tmp: Rel,
    pub corrupt: Rel,
    pub claims: Rel,
    pub trash: Rel,
    pub index: Rel,
    pub journal: Rel,
    pub workers: Rel,
    pub listings: Rel,
}

/// A name made here from constants and hex: plain by construction.
fn name(parts: &[&str]) -> Rel {
    Rel::trusted(parts.iter().collect::<PathBuf>())
}

impl Default for Layout {
    fn default() -> Self {
        let under = |sub: &str| name(&[ROOT_NAME, sub]);
        Layout {
            root: name(&[ROOT_NAME]),
            objects: under("objects"),
            tmp: under("tmp"),
            corrupt: under("corrupt"),
            claims: under("claims"),
            trash: under("trash"),
            index: under("index"),
            journal: under("journal"),
            workers: under("workers"),
            listings: under("listings"),
        }
    }
}

impl Layout {
    /// The subdirectories a set-up store has under its root.
    pub fn subdirs(&self) -> [&Rel; 4] {
        [&self.objects, &self.tmp, &self.corrupt, &self.claims]
    }

    /// `objects/<2 hex>/<64 hex key>`: every block of one object version
    /// (the unit of eviction).
    pub fn object(&self, key: &CacheKey) -> Rel {
        let hex = key.to_hex();
        self.objects.trusted_join(&hex[..2]).trusted_join(&hex)
    }

    /// `objects/<2 hex>/<64 hex key>/<index as 16 hex>.blk`.
    pub fn block(&self, id: &BlockId) -> Rel {
        self.object(&id.key)
            .trusted_join(&format!("{:016x}.blk", id.index))
    }

    /// The object's plain file (see `plain`).
    pub fn plain(&self, key: &CacheKey) -> Rel {
        self.object(key).trusted_join(PLAIN_NAME)
    }

    /// The plain file's sidecar of checksums.
    pub fn sums(&self, key: &CacheKey) -> Rel {
        self.object(key).trusted_join(SUMS_NAME)
    }

    /// `claims/<key hex>-<index as 16 hex>.claim`.
    pub fn claim(&self, id: &BlockId) -> Rel {
        self.claims
            .trusted_join(&format!("{}-{:016x}.claim", id.key.to_hex(), id.index))
    }

    /// `listings/<64 hex key>.json`: the listing snapshot kept under `key`
    /// (see `inputfs_core::listing_key`).
    pub fn listing_name(key: &CacheKey) -> String {
        format!("{}.json", key.to_hex())
    }

    /// The sweep lease.
    pub fn lease(&self) -> Rel {
        self.index.trusted_join("lease")
    }

    /// A name in `dir` made by this worker (`<prefix>.<unique stem><suffix>`
    /// or similar): plain by construction, as long as `file` has no `/`.
    pub fn made(&self, dir: &Rel, file: &str) -> Rel {
        dir.trusted_join(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_plain_and_below_the_root() {
        let l = Layout::default();
        let key = CacheKey([0xab; 32]);
        let id = BlockId { key, index: 7 };
        for rel in [l.block(&id), l.plain(&key), l.claim(&id), l.lease()] {
            assert!(Rel::new(rel.as_path()).is_ok(), "{rel:?}");
            assert!(rel.as_path().starts_with(ROOT_NAME), "{rel:?}");
        }
        assert_eq!(
            l.block(&id).as_path().to_str().unwrap(),
            format!(
                "inputfs-v1/objects/ab/{}/0000000000000007.blk",
                "ab".repeat(32)
            )
        );
    }
}
