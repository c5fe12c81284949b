//! Objects held whole in the local tier, for kernel passthrough.
//!
//! Once every block of an object is in the local tier, the tier can hold it as
//! one plain file (see `inputfs-store`'s `plain` module), and the FUSE layer can
//! open it with kernel passthrough so reads never reach the daemon. The engine
//! only brokers: it finds the local tier, opens the plain file for an `open`, and
//! makes objects plain in the background — one at a time, tracked like publishes
//! so a clean unmount waits for them — when the FUSE layer saw the last handle of
//! an object close.

use std::fs::File;
use std::sync::Arc;

use super::{Engine, Object};
use crate::block::BlockId;
use crate::store::{BlockStore, Lookup};

/// The tier name whose store may hold plain files.
const LOCAL: &str = "local";

impl Engine {
    /// The object's plain file in the local tier, if it is held that way.
    /// Blocking (one `open` and `fstat` on local disk): call off the runtime's
    /// worker threads. Failures count as "not plain" (and against the tier).
    pub fn local_plain_file(&self, obj: &Object) -> Option<File> {
        let tier = self.tiers.iter().find(|t| t.store.name() == LOCAL)?;
        match tier.store.open_plain(&obj.key, obj.id.size) {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!(url = %obj.id.url, error = %e, "opening the plain local file failed");
                None
            }
        }
    }

    /// In the background, hold the object as a plain file in the local tier if
    /// all its blocks are there — filling gaps from the tiers below it first
    /// (a publish skipped while the disk was busy leaves one), never from the
    /// origin. Never fails a read; errors are logged at debug.
    pub fn make_plain_locally(self: &Arc<Self>, obj: Arc<Object>) {
        let Some(at) = self.tiers.iter().position(|t| t.store.name() == LOCAL) else {
            return;
        };
        let tier = self.tiers[at].clone();
        let lower: Vec<_> = self.tiers[at + 1..]
            .iter()
            .map(|t| t.store.clone())
            .collect();
        self.background.spawn(async move {
            let Ok(_slot) = tier.plain_slot.clone().acquire_owned().await else {
                return;
            };
            let store = tier.store.clone();
            let done = tokio::task::spawn_blocking(move || {
                let result = match store.make_plain(&obj.key, &obj.layout) {
                    Ok(false) if fill_gaps(&*store, &lower, &obj) => {
                        store.make_plain(&obj.key, &obj.layout)
                    }
                    other => other,
                };
                (obj, result)
            })
            .await;
            match done {
                Ok((obj, Ok(true))) => tracing::debug!(url = %obj.id.url, "held whole in the local cache"),
                Ok((_, Ok(false))) => {}
                Ok((obj, Err(e))) => tracing::debug!(url = %obj.id.url, error = %e, "could not make the object plain"),
                Err(e) => tracing::debug!(error = %e, "making an object plain panicked"),
            }
        });
    }
}

/// Copy into `local` every block of `obj` it lacks, from the first of `lower`
/// that has it. True if `local` then holds every block. Blocking.
fn fill_gaps(local: &dyn BlockStore, lower: &[Arc<dyn BlockStore>], obj: &Object) -> bool {
    if lower.is_empty() {
        return false;
    }
    (0..obj.layout.block_count()).all(|index| {
        let id = BlockId {
            key: obj.key,
            index,
        };
        let len = obj.layout.block_len(index);
        if matches!(local.get(&id, len), Ok(Lookup::Hit(_))) {
            return true;
        }
        lower.iter().any(|tier| match tier.get(&id, len) {
            Ok(Lookup::Hit(data)) => local.put(&id, &data).is_ok(),
            _ => false,
        })
    })
}
