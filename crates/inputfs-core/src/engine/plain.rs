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
    /// all its blocks are there. If it was read whole in this mount, the
    /// blocks it lacks are taken from the tiers below as the plain file is
    /// written (blocks prefetched for a sequential reader are written to the
    /// shared tier only; a publish skipped while the disk was busy leaves one
    /// too), not copied in as block files first — never from the origin, and
    /// never for an object only partly read (that would copy what the job
    /// does not read).
    /// Never fails a read; errors are logged at debug.
    pub fn make_plain_locally(self: &Arc<Self>, obj: Arc<Object>) {
        // A one-block object is one read through the daemon anyway; holding
        // it plain would cost a copy and an fsync per small file.
        if obj.layout.block_count() <= 1 {
            return;
        }
        let Some(at) = self.tiers.iter().position(|t| t.store.name() == LOCAL) else {
            return;
        };
        let tier = self.tiers[at].clone();
        let read_whole = obj.served.load(std::sync::atomic::Ordering::Relaxed) >= obj.id.size;
        let lower: Vec<_> = if read_whole {
            self.tiers[at + 1..]
                .iter()
                .map(|t| t.store.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.background.spawn(async move {
            let Ok(_slot) = tier.plain_slot.clone().acquire_owned().await else {
                return;
            };
            let store = tier.store.clone();
            let done = tokio::task::spawn_blocking(move || {
                let result = match store.make_plain(&obj.key, &obj.layout, None) {
                    Ok(false) if all_below(&*store, &lower, &obj) => {
                        let fill = |id: &BlockId, len: u64| {
                            lower.iter().find_map(|tier| match tier.get(id, len) {
                                Ok(Lookup::Hit(data)) => Some(data),
                                _ => None,
                            })
                        };
                        store.make_plain(&obj.key, &obj.layout, Some(&fill))
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

/// Whether every block of `obj` that `local` lacks is in one of `lower`
/// (by `stat`, so a partly cached object is not copied piecemeal): then the
/// plain file is made from `local`'s blocks and theirs, each block read and
/// written once (`make_plain` with a fill). Blocking.
fn all_below(local: &dyn BlockStore, lower: &[Arc<dyn BlockStore>], obj: &Object) -> bool {
    !lower.is_empty()
        && (0..obj.layout.block_count())
            .map(|index| BlockId {
                key: obj.key,
                index,
            })
            .filter(|id| !local.contains(id))
            .all(|id| lower.iter().any(|tier| tier.contains(&id)))
}

impl Engine {
    /// Whether a block fetched from the origin ahead of a sequential reader
    /// skips the tier at `depth` for now: the local tier, when it builds plain
    /// files and a shared tier below it gets the block. The local copy is then
    /// made once, as the plain file, from the shared tier after the read
    /// (`make_plain_locally`), instead of as block files during the read and
    /// the plain file again after it: a cold read writes each block once
    /// instead of twice (docs/PERFORMANCE.md).
    pub(super) fn local_copy_deferred(&self, depth: usize) -> bool {
        self.tiers.get(depth).is_some_and(|t| {
            t.store.name() == LOCAL && t.store.plain_files() && depth + 1 < self.tiers.len()
        })
    }
}
