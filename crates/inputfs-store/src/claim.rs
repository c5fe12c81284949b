//! Claim files: how workers that share a directory agree that one of them fetches
//! a block from the origin while the others wait.
//!
//! A claim is an expiring exclusive file (see `exclusive`):
//! `claims/<key hex>-<index as 16 hex>.claim`, holding
//! `inputfs-claim 1 <host>@<boot id> <pid>:<start time> <nonce> <expiry>`, the expiry in Unix
//! milliseconds by the claimant's clock.
//!
//! Claims are an optimisation, never a lock: two workers can both believe they
//! hold a claim after racing on an expired one (or under clock skew), and the
//! cost is a duplicate fetch. Blocks are content-addressed and verified, so no
//! outcome of any race can serve a wrong byte.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use inputfs_core::BlockId;
use inputfs_core::store::Claim;

use crate::beneath::Beneath;
use crate::cache_dir::CacheDir;
use crate::error::StoreError;
use crate::exclusive::{self, State, Taken};
use crate::fsutil::{ensure_dir, is_link_on_the_way};

const MAGIC: &str = "inputfs-claim 1";

/// The claims side of one store: whether it claims at all, and the claims
/// this worker holds there, by block.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    enabled: bool,
    held: Mutex<HashMap<BlockId, exclusive::Holding>>,
}

impl Claims {
    /// Claims that coordinate origin fetches (the shared tier's).
    pub(crate) fn enabled() -> Claims {
        Claims {
            enabled: true,
            ..Claims::default()
        }
    }

    /// Claim block `id` in `cd` for `ttl`.
    pub(crate) fn take(
        &self,
        cd: &CacheDir,
        at: &Beneath,
        id: &BlockId,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        if !self.enabled {
            return Ok(Claim::Unsupported);
        }
        let rel = cd.layout.claim(id);
        let taken = match exclusive::take(at, &rel, MAGIC, ttl) {
            // claims/ was removed (or replaced): make it again, once.
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(&e) => {
                ensure_dir(at, &cd.layout.claims)?;
                exclusive::take(at, &rel, MAGIC, ttl)
            }
            other => other,
        }
        .map_err(|e| StoreError::io("claim", &at.display(&rel), e))?;
        match taken {
            Taken::Held => Ok(Claim::Held),
            Taken::Ours(holding) => {
                self.held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(*id, holding);
                Ok(Claim::Acquired)
            }
        }
    }

    /// Give up the claim of block `id` in `cd`, if this worker holds it.
    pub(crate) fn release(&self, cd: &CacheDir, id: &BlockId) {
        let holding = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let (Some(holding), Ok(at)) = (holding, cd.at()) {
            exclusive::release(&at, &cd.layout.claim(id), &holding);
        }
    }
}

/// Remove every expired claim in `cd` (as left by killed workers), or with
/// `dry_run` count them. Returns how many.
pub(crate) fn sweep(cd: &CacheDir, at: &Beneath, ttl: Duration, dry_run: bool) -> usize {
    let Ok(entries) = at.entries(Some(&cd.layout.claims)) else {
        return 0;
    };
    entries
        .into_iter()
        .filter_map(|(name, _)| cd.layout.claims.join(name).ok())
        .filter(|rel| {
            exclusive::state(at, rel, MAGIC, ttl) == State::Expired
                && (dry_run || at.remove_tree(rel).1.is_ok())
        })
        .count()
}
