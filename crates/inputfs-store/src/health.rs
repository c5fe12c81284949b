//! Keeping a store usable when its directory is not: a shared cache that is
//! missing at mount, loses its root while mounted, or sits on a network mount
//! that went away and came back.
//!
//! The origin is the source of truth, so an unusable cache directory must slow
//! a mount down, never stop it, and must come back by itself once it is fixed.
//! A store is *set up* when `DIR` is a directory and `DIR/inputfs-v1` and its
//! subdirectories exist. While it is not, every call fails fast with a tier
//! error, and setting up is tried again at most once per [`RETRY_EVERY`] — a
//! timestamp check in between, no I/O. A call that fails with `ENOENT` or
//! `ESTALE` (the root may have been removed, or its network mount vanished)
//! makes the next call set up again.
//!
//! Setting up never creates `DIR`, and creates the root only while `DIR` is on
//! the device it was on when first seen: a network mount that vanished leaves
//! its empty mount point on the local disk, and a "shared" cache written there
//! would fill the wrong disk and share nothing. A root that already exists is
//! used wherever it is, since a remounted network filesystem may come back with
//! a new device number.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::dir::DirStore;
use crate::error::{StoreError, errno};
use crate::fsutil::ensure_dir;

/// How often an unusable store tries to set itself up again.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// `dev` before `DIR` was ever seen.
const UNSEEN: u64 = u64::MAX;

/// Whether a store is set up, and when it may next try to be.
#[derive(Debug)]
pub(crate) struct Health {
    ready: AtomicBool,
    /// `st_dev` of `DIR` when first seen as a directory, or [`UNSEEN`].
    dev: AtomicU64,
    /// Milliseconds since `epoch` before which no setup is tried.
    next_try_ms: AtomicU64,
    retry_ms: AtomicU64,
    epoch: Instant,
    /// Why the last setup failed, for the fail-fast errors.
    last_error: Mutex<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            ready: AtomicBool::new(false),
            dev: AtomicU64::new(UNSEEN),
            next_try_ms: AtomicU64::new(0),
            retry_ms: AtomicU64::new(millis(RETRY_EVERY)),
            epoch: Instant::now(),
            last_error: Mutex::new(String::new()),
        }
    }
}

impl Health {
    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl DirStore {
    /// Like [`open`](Self::open), but never fails: if the store cannot be set
    /// up now (`dir` missing, not writable, ...), it is returned anyway with the
    /// reason, fails its calls fast, and sets itself up as soon as it can (see
    /// the `health` module). For a shared cache, whose absence must not stop a
    /// mount.
    pub fn open_lenient(dir: &Path, name: &str) -> (DirStore, Option<StoreError>) {
        let store = DirStore::unready(dir, name);
        match store.set_up() {
            Ok(_) => (store, None),
            Err(e) => {
                let health = store.health();
                let next = health
                    .now_ms()
                    .saturating_add(health.retry_ms.load(Ordering::Relaxed));
                health.next_try_ms.store(next, Ordering::Relaxed);
                *health.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                (store, Some(e))
            }
        }
    }

    /// Try to set an unusable store up again at most this often (default
    /// [`RETRY_EVERY`]).
    pub fn with_retry_interval(self, every: Duration) -> Self {
        let health = self.health();
        health.retry_ms.store(millis(every), Ordering::Relaxed);
        let next = health.now_ms().saturating_add(millis(every));
        health.next_try_ms.fetch_min(next, Ordering::Relaxed);
        self
    }

    /// Whether the store is set up (its last setup worked and no call since
    /// suggested the root is gone).
    pub fn is_usable(&self) -> bool {
        self.health().ready.load(Ordering::Acquire)
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
        let health = self.health();
        let first = match health.dev.compare_exchange(
            UNSEEN,
            meta.dev(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
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
        for sub in [
            self.objects_dir(),
            self.tmp_dir(),
            self.corrupt_dir(),
            self.claims_dir(),
        ] {
            ensure_dir(sub, dir)?;
        }
        health.ready.store(true, Ordering::Release);
        Ok(!had_root)
    }

    /// Called before every tier call: Ok when set up; otherwise set up now if
    /// the retry interval has passed (one caller at a time), else fail fast.
    pub(crate) fn usable(&self) -> Result<(), StoreError> {
        let health = self.health();
        if health.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = health.now_ms();
        let due = health.next_try_ms.load(Ordering::Relaxed);
        let next = now.saturating_add(health.retry_ms.load(Ordering::Relaxed));
        let mine = now >= due
            && health
                .next_try_ms
                .compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        let last_error = || health.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if !mine {
            return Err(StoreError::Unusable {
                path: self.root().to_path_buf(),
                reason: last_error().clone(),
            });
        }
        // Not under the lock: on a hung network mount this may take long, and
        // every other call must keep failing fast meanwhile.
        let result = self.set_up();
        let mut last = last_error();
        match result {
            Ok(created) => {
                if created || !last.is_empty() {
                    tracing::info!(tier = self.name_str(), root = %self.root().display(),
                        created, "cache directory usable again");
                }
                last.clear();
                Ok(())
            }
            Err(e) => {
                *last = e.to_string();
                Err(e)
            }
        }
    }

    /// A call failed with `e`: if that may mean the root or `DIR` went away,
    /// make the next call set the store up again.
    pub(crate) fn note_failure(&self, e: &StoreError) {
        if e.io_error()
            .is_some_and(|io| matches!(errno(io), libc::ENOENT | libc::ESTALE))
        {
            let health = self.health();
            *health.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
            health.ready.store(false, Ordering::Release);
        }
    }
}
