//! Setting a [`DirStore`] up, and the glue between its calls and the `health`
//! state machine: every tier call is admitted by [`DirStore::admit`], and a
//! failed one reports back through [`DirStore::tier_error`] with the ticket it
//! was admitted with.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::beneath::{Beneath, Kind};
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
    /// The call gets the handle through which it reaches the directory.
    pub(crate) fn call<T>(
        &self,
        call: impl FnOnce(&Beneath) -> Result<T, StoreError>,
    ) -> inputfs_core::Result<T> {
        let ticket = self.admit().map_err(|e| e.into_tier(self.name_str()))?;
        self.at()
            .and_then(|at| call(&at))
            .map_err(|e| self.tier_error(ticket, e))
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
        #[allow(
            clippy::disallowed_methods,
            reason = "DIR itself is configuration (the path the user gave), not cache content"
        )]
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
        // By the handle: a link planted at the root's name is no root.
        let had_root = self
            .at()
            .and_then(|at| {
                at.stat(&self.layout.root)
                    .map_err(|e| StoreError::io("stat", dir, e))
            })
            .is_ok_and(|s| Kind::of(&s) == Kind::Dir);
        if meta.dev() != first && !had_root {
            return Err(StoreError::OtherDevice {
                path: dir.to_path_buf(),
            });
        }
        let at = self.at()?;
        ensure_dir(&at, &self.layout.root)?;
        for sub in self.layout.subdirs() {
            ensure_dir(&at, sub)?;
        }
        Ok(!had_root)
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
    /// there (as a directory: a link is not one), if any.
    pub(crate) fn missing_dir(&self) -> Option<PathBuf> {
        let Ok(at) = self.at() else {
            return Some(self.dir().to_path_buf());
        };
        std::iter::once(&self.layout.root)
            .chain(self.layout.subdirs())
            .find(|rel| !at.stat(rel).is_ok_and(|s| Kind::of(&s) == Kind::Dir))
            .map(|rel| at.display(rel))
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
