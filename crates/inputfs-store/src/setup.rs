//! Setting a [`DirStore`] up, and the glue between its calls and the `health`
//! state machine: every tier call is admitted by [`DirStore::admit`], and a
//! failed one reports back through [`DirStore::tier_error`] with the ticket it
//! was admitted with.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::dir::DirStore;
use crate::error::{StoreError, errno};
use crate::fsutil::ensure_dir;
use crate::health::Ticket;

/// `dev` before `DIR` was ever seen.
pub(crate) const UNSEEN: u64 = u64::MAX;

impl DirStore {
    /// Like [`open`](Self::open), but never fails: if the store cannot be set
    /// up now (`dir` missing, not writable, ...), it is returned anyway with the
    /// reason, refuses its calls, and sets itself up on the first call after
    /// the directory works (see the `health` module). For a shared cache, whose
    /// absence must not stop a mount.
    pub fn open_lenient(dir: &Path, name: &str) -> (DirStore, Option<StoreError>) {
        let store = DirStore::unready(dir, name);
        let error = store.admit().err();
        (store, error)
    }

    /// Whether the store is set up (its last set-up worked and no check since
    /// found the root gone).
    pub fn is_usable(&self) -> bool {
        self.health().is_ready()
    }

    /// Run one call of the store: admitted first, its failure reported.
    pub(crate) fn call<T>(
        &self,
        call: impl FnOnce() -> Result<T, StoreError>,
    ) -> inputfs_core::Result<T> {
        let ticket = self.admit().map_err(|e| e.into_tier(self.name_str()))?;
        call().map_err(|e| self.tier_error(ticket, e))
    }

    /// Calls this store refused as unusable since it was opened.
    pub fn refused_calls(&self) -> u64 {
        self.health().refused()
    }

    /// Check that `DIR` is a directory and create the root and its
    /// subdirectories if missing (the root only on `DIR`'s first device).
    /// Returns whether the root had to be created.
    pub(crate) fn set_up(&self) -> Result<bool, StoreError> {
        let dir = self.dir();
        let meta = match fs::metadata(dir) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => {
                return Err(StoreError::NotADirectory {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(StoreError::io("open cache directory", dir, e)),
        };
        let first =
            match self
                .dev
                .compare_exchange(UNSEEN, meta.dev(), Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => meta.dev(),
                Err(seen) => seen,
            };
        let had_root = fs::metadata(self.root()).is_ok_and(|m| m.is_dir());
        if meta.dev() != first && !had_root {
            return Err(StoreError::OtherDevice {
                path: dir.to_path_buf(),
            });
        }
        ensure_dir(self.root(), dir)?;
        for sub in self.subdirs() {
            ensure_dir(sub, dir)?;
        }
        Ok(!had_root)
    }

    /// The directories a set-up store has under its root.
    fn subdirs(&self) -> [&Path; 4] {
        [
            self.objects_dir(),
            self.tmp_dir(),
            self.corrupt_dir(),
            self.claims_dir(),
        ]
    }

    /// Admit a call (see `health`): set the store up first if it is down.
    /// Every refusal is logged at debug level under `inputfs_store::refused`
    /// with the call's span on the monotonic clock (nanoseconds), so a test
    /// can compare refusals with when the directory was really there.
    pub(crate) fn admit(&self) -> Result<Ticket, StoreError> {
        let since = monotonic_ns();
        let mut outcome = None;
        let admitted = self.health().enter(|| {
            let result = self.set_up();
            let reason = match &result {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            outcome = Some(result);
            reason
        });
        match (admitted, outcome) {
            (Ok(ticket), Some(Ok(created))) => {
                // A set-up after the first, or after refusals, ends an outage.
                if ticket.generation() > 1 || self.refused_calls() > 0 {
                    tracing::info!(tier = self.name_str(), root = %self.root().display(),
                        created, "cache directory usable again");
                } else {
                    tracing::debug!(tier = self.name_str(), root = %self.root().display(),
                        created, "cache directory set up");
                }
                Ok(ticket)
            }
            (Ok(ticket), _) => Ok(ticket),
            (Err(reason), own) => {
                tracing::debug!(target: "inputfs_store::refused", tier = self.name_str(),
                    since_ns = since, until_ns = monotonic_ns(), %reason, "refused a call");
                Err(match own {
                    Some(Err(e)) => e,
                    _ => StoreError::Unusable {
                        path: self.root().to_path_buf(),
                        reason,
                    },
                })
            }
        }
    }

    /// A failed call as the engine's tier error. An `ENOENT` or `ESTALE` may
    /// mean the root went away: the health state machine decides, with a
    /// check of the root, whether the store is down.
    pub(crate) fn tier_error(&self, ticket: Ticket, e: StoreError) -> inputfs_core::Error {
        if e.io_error()
            .is_some_and(|io| matches!(errno(io), libc::ENOENT | libc::ESTALE))
        {
            self.health().failed(ticket, || self.root_gone(&e));
        }
        e.into_tier(self.name_str())
    }

    /// Why the store cannot work as set up (`DIR`, the root or a subdirectory
    /// is not a directory any more), or `None` if all are there.
    fn root_gone(&self, after: &StoreError) -> Option<String> {
        self.missing_dir()
            .map(|p| format!("{} is gone ({after})", p.display()))
    }

    /// The first of `DIR`, the root and its subdirectories that is not
    /// there (as a directory), if any.
    pub(crate) fn missing_dir(&self) -> Option<&Path> {
        std::iter::once(self.dir())
            .chain(std::iter::once(self.root()))
            .chain(self.subdirs())
            .find(|p| !fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`: one clock for every process of the
/// machine, so a test's record and the daemons' logs can be compared.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(t.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}
