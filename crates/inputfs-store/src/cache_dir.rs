//! [`CacheDir`]: one cache directory as a store reaches it — the one owner of
//! its path, its names and its set-up state.
//!
//! Every component of a store (claims, plain files, usage, publishing, the
//! read side of block files) works on the `CacheDir` it is handed, never on
//! the store that composes them, so no component reaches another through a
//! hub type: `DirStore` (in `dir`) composes, and neither this module nor any
//! component imports it. A call reaches the directory only through
//! [`CacheDir::at`] (a `beneath` handle, opened afresh per call so that a
//! directory replaced under a running daemon is seen at once) and only once
//! [`CacheDir::call`] admitted it: the glue between calls and the `health`
//! state machine. A failed call reports back with the ticket it was admitted
//! with ([`CacheDir::tier_error`]).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use inputfs_core::store::Lookup;

use crate::beneath::{Beneath, Kind, Rel};
use crate::error::{StoreError, errno};
use crate::fsutil::ensure_dir;
use crate::health::{Health, Ticket};
use crate::layout::Layout;
use crate::ops::DirOps;

/// `dev` before `DIR` was ever seen.
const UNSEEN: u64 = u64::MAX;

/// One cache directory: where it is, what logs call it, the names in it, and
/// whether it is set up.
#[derive(Debug)]
pub(crate) struct CacheDir {
    /// The configured directory; never created by the store.
    dir: PathBuf,
    /// What logs and tier errors call the store ("local", "shared").
    name: String,
    /// The names of everything under `dir`.
    pub(crate) layout: Layout,
    /// Whether the root is set up, and in which generation.
    health: Health,
    /// `st_dev` of `dir` when first seen as a directory ([`UNSEEN`] before).
    dev: AtomicU64,
    /// Every operation made on it, by kind.
    pub(crate) ops: Arc<DirOps>,
}

impl CacheDir {
    /// The directory `dir`, not set up yet: no I/O.
    pub(crate) fn new(dir: &Path, name: &str) -> CacheDir {
        CacheDir {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            layout: Layout::default(),
            health: Health::default(),
            dev: AtomicU64::new(UNSEEN),
            ops: Arc::default(),
        }
    }

    /// A handle on the configured directory, through which every name in it
    /// is reached.
    pub(crate) fn at(&self) -> Result<Beneath, StoreError> {
        Beneath::open_counting(&self.dir, self.ops.clone())
            .map_err(|e| StoreError::io("open cache directory", &self.dir, e))
    }

    /// `rel` as a full path, for messages and tests only.
    pub(crate) fn shown(&self, rel: &Rel) -> PathBuf {
        self.dir.join(rel.as_path())
    }

    /// The configured directory (`dir`, holding the root).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// What logs and tier errors call the store.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `dir/inputfs-v1`.
    pub(crate) fn root(&self) -> PathBuf {
        self.shown(&self.layout.root)
    }

    /// Whether the directory is set up (its last set-up worked and no check
    /// since found the root gone).
    pub(crate) fn is_usable(&self) -> bool {
        self.health.is_ready()
    }

    /// Calls refused as unusable since the store was opened.
    pub(crate) fn refused_calls(&self) -> u64 {
        self.health.refused()
    }

    /// Something other than a regular file sits where a block or plain file
    /// belongs (a link, a directory, a FIFO, a device): remove it, never
    /// following it, best effort, and report it as corrupt (counted).
    pub(crate) fn remove_intruder(&self, at: &Beneath, rel: &Rel, kind: Kind) -> Lookup {
        let (_, removed) = at.remove_tree(rel);
        let reason = format!(
            "{}: a {kind:?} where a regular file should be{}",
            at.display(rel).display(),
            if removed.is_ok() { " (removed)" } else { "" }
        );
        tracing::warn!(tier = %self.name, %reason, "removed an entry that is not a regular file");
        Lookup::Corrupt(reason)
    }

    /// Whether `dir` holds a cache (its root is a directory, not a link).
    /// Only a missing root means no: any other failure to look (a network
    /// filesystem's EIO, a permission) is an error of its own, never "no cache".
    pub(crate) fn holds_cache(dir: &Path) -> std::io::Result<bool> {
        let at = Beneath::open(dir)?;
        match at.stat(&Layout::default().root) {
            Ok(s) => Ok(Kind::of(&s) == Kind::Dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Run one call of the store: admitted first, its failure reported.
    /// The call gets the handle through which it reaches the directory.
    pub(crate) fn call<T>(
        &self,
        call: impl FnOnce(&Beneath) -> Result<T, StoreError>,
    ) -> inputfs_core::Result<T> {
        let ticket = self.admit().map_err(|e| e.into_tier(self.name()))?;
        self.at()
            .and_then(|at| call(&at))
            .map_err(|e| self.tier_error(ticket, e))
    }

    /// Check that `DIR` is a directory and create the root and its
    /// subdirectories if missing (the root only on `DIR`'s first device).
    /// Returns whether the root had to be created.
    pub(crate) fn set_up(&self) -> Result<bool, StoreError> {
        let dir = &self.dir;
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
        let admitted = self.health.enter(|| {
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
                    tracing::info!(tier = self.name(), root = %self.root().display(),
                        created, "cache directory usable again");
                } else {
                    tracing::debug!(tier = self.name(), root = %self.root().display(),
                        created, "cache directory set up");
                }
                Ok(ticket)
            }
            (Ok(ticket), _) => Ok(ticket),
            (Err(reason), own) => {
                tracing::debug!(target: "inputfs_store::refused", tier = self.name(),
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
            self.health.failed(ticket, || self.root_gone(&e));
        }
        e.into_tier(self.name())
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
