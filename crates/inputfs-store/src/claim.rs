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
use std::path::PathBuf;
use std::time::Duration;

use inputfs_core::BlockId;
use inputfs_core::store::Claim;

use crate::beneath::Beneath;
use crate::dir::DirStore;
use crate::error::StoreError;
use crate::exclusive::{self, State, Taken};
use crate::fsutil::ensure_dir;

const MAGIC: &str = "inputfs-claim 1";

/// Claims this worker holds, by block.
pub(crate) type Held = std::sync::Mutex<HashMap<BlockId, exclusive::Holding>>;

impl DirStore {
    /// Where the claim of block `id` lives (for messages and tests).
    pub fn claim_path(&self, id: &BlockId) -> PathBuf {
        self.shown(&self.layout.claim(id))
    }

    pub(crate) fn try_claim(
        &self,
        at: &Beneath,
        id: &BlockId,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        if !self.claims_enabled() {
            return Ok(Claim::Unsupported);
        }
        let rel = self.layout.claim(id);
        let taken = match exclusive::take(at, &rel, MAGIC, ttl) {
            // claims/ was removed (or replaced): make it again, once.
            Err(e) if e.kind() == io::ErrorKind::NotFound || crate::dir::is_link_on_the_way(&e) => {
                ensure_dir(at, &self.layout.claims)?;
                exclusive::take(at, &rel, MAGIC, ttl)
            }
            other => other,
        }
        .map_err(|e| StoreError::io("claim", &at.display(&rel), e))?;
        match taken {
            Taken::Held => Ok(Claim::Held),
            Taken::Ours(holding) => {
                self.held()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(*id, holding);
                Ok(Claim::Acquired)
            }
        }
    }

    pub(crate) fn release_claim(&self, id: &BlockId) {
        let holding = self
            .held()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let (Some(holding), Ok(at)) = (holding, self.at()) {
            exclusive::release(&at, &self.layout.claim(id), &holding);
        }
    }

    /// Remove every expired claim (as left by killed workers), or with
    /// `dry_run` count them. Returns how many.
    pub(crate) fn sweep_claims(&self, at: &Beneath, ttl: Duration, dry_run: bool) -> usize {
        let Ok(entries) = at.entries(Some(&self.layout.claims)) else {
            return 0;
        };
        entries
            .into_iter()
            .filter_map(|(name, _)| self.layout.claims.join(name).ok())
            .filter(|rel| {
                exclusive::state(at, rel, MAGIC, ttl) == State::Expired
                    && (dry_run || at.remove_tree(rel).1.is_ok())
            })
            .count()
    }
}
