//! Claim files: how workers that share a directory agree that one of them fetches
//! a block from the origin while the others wait.
//!
//! A claim is an expiring exclusive file (see `exclusive`):
//! `claims/<key hex>-<index as 16 hex>.claim`, holding
//! `inputfs-claim 1 <host> <pid> <nonce> <expiry>`, the expiry in Unix
//! milliseconds by the claimant's clock.
//!
//! Claims are an optimisation, never a lock: two workers can both believe they
//! hold a claim after racing on an expired one (or under clock skew), and the
//! cost is a duplicate fetch. Blocks are content-addressed and verified, so no
//! outcome of any race can serve a wrong byte.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use inputfs_core::BlockId;
use inputfs_core::store::Claim;

use crate::dir::DirStore;
use crate::error::StoreError;
use crate::exclusive::{self, State, Taken};
use crate::fsutil::ensure_dir;

const MAGIC: &str = "inputfs-claim 1";

/// Claims this worker holds, by block.
pub(crate) type Held = std::sync::Mutex<HashMap<BlockId, exclusive::Holding>>;

impl DirStore {
    /// Where the claim of block `id` lives.
    pub fn claim_path(&self, id: &BlockId) -> PathBuf {
        self.claims_dir()
            .join(format!("{}-{:016x}.claim", id.key.to_hex(), id.index))
    }

    pub(crate) fn try_claim(&self, id: &BlockId, ttl: Duration) -> Result<Claim, StoreError> {
        if !self.claims_enabled() {
            return Ok(Claim::Unsupported);
        }
        let path = self.claim_path(id);
        let taken = match exclusive::take(&path, MAGIC, ttl) {
            // claims/ was removed: make it again, once.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ensure_dir(self.claims_dir(), self.root())?;
                exclusive::take(&path, MAGIC, ttl)
            }
            other => other,
        }
        .map_err(|e| StoreError::io("claim", &path, e))?;
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
        if let Some(holding) = holding {
            exclusive::release(&self.claim_path(id), &holding);
        }
    }

    /// Remove every expired claim (as left by killed workers). Returns how many.
    pub(crate) fn sweep_claims(&self, ttl: Duration) -> usize {
        let Ok(entries) = fs::read_dir(self.claims_dir()) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                exclusive::state(p, MAGIC, ttl) == State::Expired && fs::remove_file(p).is_ok()
            })
            .count()
    }
}
