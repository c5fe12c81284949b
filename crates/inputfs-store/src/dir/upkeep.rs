//! What the binary's upkeep asks of a [`DirStore`] besides blocks: usage and
//! eviction (`usage`), leftovers of dead workers (`sweep`), the notes
//! workers leave for `inputfs status` (`notes`), and the paths `status`
//! and the tests show. Each is one call into the part that does it, handed
//! the store's [`CacheDir`](crate::cache_dir::CacheDir).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::DirStore;
use crate::cache_dir::CacheDir;
use crate::error::StoreError;
use crate::notes;
use crate::sweep::{self, Strays, Swept};
use crate::usage::{Eviction, Index, Limits, Usage, UsageCounters};

impl DirStore {
    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.usage.limits()
    }

    /// Eviction counts and the usage estimate, for metrics. Cheap: atomics only.
    pub fn usage_counters(&self) -> UsageCounters {
        self.usage.counters()
    }

    /// Start the usage estimate from the directory's usage index (the last
    /// snapshot plus the journals, or a rescan where there is none), unless a
    /// sweep already did. File I/O: call it off the read path, once.
    pub fn estimate_usage(&self) -> Result<u64, StoreError> {
        self.usage.estimate(&self.cd)
    }

    /// Write this worker's pending usage records (call every few seconds).
    pub fn flush_usage(&self) -> Result<(), StoreError> {
        self.usage.flush(&self.cd)
    }

    /// Sweep now with the configured limits, unless another worker is sweeping
    /// (`Ok(None)`).
    pub fn sweep_usage(&self, dry_run: bool) -> Result<Option<Eviction>, StoreError> {
        self.usage.sweep(&self.cd, dry_run)
    }

    /// Who holds the sweep lease, as far as one look tells (see
    /// [`Holder`](crate::Holder)): an entry that stays unnamed is something
    /// planted, taken over only after the lease's lifetime.
    pub fn sweep_lease_holder(&self) -> crate::Holder {
        self.usage.lease_holder(&self.cd)
    }

    /// Sweep now with `limits`: fold the journals into the index and evict least
    /// recently read objects until within them. `Ok(None)`: another worker holds
    /// the sweep lease.
    pub fn evict(&self, limits: &Limits, dry_run: bool) -> Result<Option<Eviction>, StoreError> {
        self.usage.evict(&self.cd, limits, dry_run)
    }

    /// The index as of now, without changing anything: the last snapshot plus
    /// the journals since (or a rescan where there is no snapshot).
    pub fn usage_index(&self) -> Result<Index, StoreError> {
        self.usage.index(&self.cd)
    }

    /// The newest saved usage snapshot, as it is (no journals folded in).
    pub fn saved_usage_index(&self) -> Result<Option<Index>, StoreError> {
        Usage::saved_index(&self.cd)
    }

    /// Save `index` as the newest usage snapshot (for tools and tests that
    /// edit one).
    pub fn save_usage_index(&self, index: &Index) -> Result<(), StoreError> {
        Usage::save_index(&self.cd, index)
    }

    /// The usage index built from the block files alone (a full rescan).
    pub fn rescan_usage(&self) -> Result<Index, StoreError> {
        Usage::rescan(&self.cd)
    }

    /// Count temp files (and those older than `stale_after`) and claims.
    pub fn strays(&self, stale_after: Duration) -> Strays {
        sweep::strays(&self.cd, stale_after)
    }

    /// Remove leftovers of dead workers (see the `sweep` module), or with
    /// `dry_run` only count what would go, by the same rules. Fails only if
    /// the cache directory cannot be opened: anything it cannot remove is
    /// left for the next sweep.
    pub fn sweep(
        &self,
        stale_after: Duration,
        claim_ttl: Duration,
        dry_run: bool,
    ) -> Result<Swept, StoreError> {
        sweep::sweep(&self.cd, stale_after, claim_ttl, dry_run)
    }

    /// Write (or replace) this worker's note `name` (see the `notes` module).
    pub fn write_worker_note(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        notes::write(&self.cd, &self.cd.layout.workers, name, bytes)
    }

    /// Remove this worker's note `name` (best effort).
    pub fn remove_worker_note(&self, name: &str) {
        notes::remove(&self.cd, &self.cd.layout.workers, name)
    }

    /// Every note there is (regular files of at most
    /// [`NOTE_MAX`](crate::notes::NOTE_MAX) bytes).
    pub fn worker_notes(&self) -> Vec<Vec<u8>> {
        notes::all(&self.cd, &self.cd.layout.workers, notes::NOTE_MAX)
    }

    /// Whether `dir` holds a cache (its root is a directory, not a link);
    /// an error when it cannot be looked at (only a missing root is a no).
    pub fn holds_cache(dir: &Path) -> std::io::Result<bool> {
        CacheDir::holds_cache(dir)
    }

    /// Where claim files live (`root/claims`).
    pub fn claims_dir(&self) -> PathBuf {
        self.cd.shown(&self.cd.layout.claims)
    }

    /// The sweep lease (`root/index/lease`).
    pub fn lease_path(&self) -> PathBuf {
        self.cd.shown(&self.cd.layout.lease())
    }

    /// The directory blocks are published from (`root/tmp`).
    pub fn tmp_dir(&self) -> PathBuf {
        self.cd.shown(&self.cd.layout.tmp)
    }

    /// Where blocks that failed a check are moved (`root/corrupt`).
    pub fn corrupt_dir(&self) -> PathBuf {
        self.cd.shown(&self.cd.layout.corrupt)
    }

    /// The fan-out tree of object directories (`root/objects`).
    pub fn objects_dir(&self) -> PathBuf {
        self.cd.shown(&self.cd.layout.objects)
    }
}
