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
    /// all its blocks are there. Never fails a read; errors are logged at debug.
    pub fn make_plain_locally(self: &Arc<Self>, obj: Arc<Object>) {
        let Some(tier) = self.tiers.iter().find(|t| t.store.name() == LOCAL).cloned() else {
            return;
        };
        self.background.spawn(async move {
            let Ok(_slot) = tier.plain_slot.clone().acquire_owned().await else {
                return;
            };
            let store = tier.store.clone();
            let done = tokio::task::spawn_blocking(move || {
                let result = store.make_plain(&obj.key, &obj.layout);
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
