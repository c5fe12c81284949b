//! Keeping a cache directory within its size, with no coordinator.
//!
//! - Every worker journals what it places and (coarsely) what it reads
//!   ([`journal`]); nothing is written per read.
//! - One worker at a time sweeps: it takes the lease `index/lease` (an expiring
//!   `O_EXCL` file, taken over when its holder died), folds the journals into the
//!   usage [`index`], and evicts whole objects, least recently read first, until
//!   the directory is within `max_bytes` and keeps `min_free_percent` of its
//!   filesystem free.
//! - Eviction is two-phase: an object's directory is first renamed into `trash/`
//!   (one atomic step: new lookups miss and go to the origin; a reader that already
//!   opened a block file keeps reading it), then deleted. A deletion that fails
//!   (SMB refuses to delete open files) is retried by the next sweep.
//! - A worker triggers a sweep itself when its estimate of the usage — the last
//!   snapshot's total plus what it placed since — passes the limit, so a tier with
//!   one writer (the local one) never exceeds its limit by more than the blocks in
//!   flight; workers also sweep periodically (the binary drives that).

pub mod index;
pub(crate) mod journal;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub use index::{Index, ObjectUsage};
pub use journal::ACCESS_INTERVAL;
pub(crate) use journal::unix_ms as now_ms;

use crate::beneath::Beneath;
use crate::cache_dir::CacheDir;
use crate::error::StoreError;
use crate::exclusive::{self, Taken};
use crate::fsutil::{self, ensure_dir};
use crate::layout::Layout;

const LEASE_MAGIC: &str = "inputfs-lease 1";
/// A sweep that takes longer than this loses its lease to the next worker.
const LEASE_TTL: Duration = Duration::from_secs(300);
/// A full rescan corrects the index's drift this often (milliseconds).
const RESCAN_EVERY: u64 = 24 * 3600 * 1000;
/// A journal file not written for this long, and fully folded in, is deleted.
const JOURNAL_STALE: Duration = Duration::from_secs(3600);

/// How big a cache directory may get.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Bytes of block files at most.
    pub max_bytes: Option<u64>,
    /// Percent of the filesystem to keep free.
    pub min_free_percent: Option<f64>,
}

impl Limits {
    pub fn is_set(&self) -> bool {
        self.max_bytes.is_some() || self.min_free_percent.is_some()
    }
}

/// What a sweep did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eviction {
    pub used_before: u64,
    pub used_after: u64,
    pub target: u64,
    pub objects: usize,
    pub blocks: usize,
    pub bytes: u64,
    /// Objects whose directory could not be moved (kept for the next sweep).
    pub failed: usize,
    pub records_ingested: usize,
    pub rescanned: bool,
    pub dry_run: bool,
}

/// The usage side of one store: this worker's journal, limits and estimate.
pub(crate) struct Usage {
    journal: journal::Journal,
    limits: Limits,
    /// Bytes in the directory as this worker last knew it plus what it placed.
    estimate: AtomicU64,
    /// Bytes this worker placed since it last offered to sweep.
    placed_since_sweep: AtomicU64,
    /// Whether `estimate` started from a known total (a sweep or
    /// [`Usage::estimate`]), rather than from zero.
    estimate_known: AtomicBool,
    /// Objects and bytes this worker's sweeps evicted, for metrics.
    evicted_objects: AtomicU64,
    evicted_bytes: AtomicU64,
}

/// What this worker knows of a directory's usage, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounters {
    /// Objects evicted by this worker's sweeps.
    pub evicted_objects: u64,
    /// Bytes evicted by this worker's sweeps.
    pub evicted_bytes: u64,
    /// Bytes of blocks in the directory: the last sweep's (or estimate's) total
    /// plus what this worker placed since; `None` before anything was counted.
    pub used_bytes: Option<u64>,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("limits", &self.limits)
            .field("estimate", &self.estimate)
            .finish_non_exhaustive()
    }
}

impl Usage {
    pub(crate) fn new(layout: &Layout) -> Self {
        Usage {
            journal: journal::Journal::new(&layout.journal),
            limits: Limits::default(),
            estimate: AtomicU64::new(0),
            placed_since_sweep: AtomicU64::new(0),
            estimate_known: AtomicBool::new(false),
            evicted_objects: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
        }
    }
}

impl Usage {
    /// Keep the directory within `limits` (enforced by sweeps).
    pub(crate) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    pub(crate) fn record_access(&self, id: &inputfs_core::BlockId) {
        self.journal.accessed(&id.key);
    }

    pub(crate) fn record_removed(&self, id: &inputfs_core::BlockId) {
        self.journal.removed(id);
    }

    /// Called after this worker placed a block file: journal it (at once, so
    /// whichever worker sweeps next counts it), and sweep now if that took this
    /// worker's estimate over the size limit — or, since other workers place
    /// blocks too, once every eighth of the limit (at most 1 GiB) placed.
    pub(crate) fn record_placed(
        &self,
        cd: &CacheDir,
        id: &inputfs_core::BlockId,
        bytes: u64,
        since: u64,
    ) {
        let usage = self;
        usage.journal.placed(id, bytes, since);
        let _ = self.flush(cd);
        let estimate = usage.estimate.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if !usage.limits.is_set() {
            return;
        }
        let placed = usage.placed_since_sweep.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let every = usage
            .limits
            .max_bytes
            .map_or(1 << 30, |m| (m / 8).clamp(1, 1 << 30));
        let over = usage.limits.max_bytes.is_some_and(|max| estimate > max);
        if over || placed >= every {
            usage.placed_since_sweep.store(0, Ordering::Relaxed);
            match self.sweep(cd, false) {
                Ok(Some(_)) => {}
                Ok(None) => tracing::debug!(tier = cd.name(), "another worker is sweeping"),
                Err(e) => tracing::debug!(tier = cd.name(), error = %e, "sweep failed"),
            }
        }
    }

    /// Eviction counts and the usage estimate, for metrics. Cheap: atomics only.
    pub(crate) fn counters(&self) -> UsageCounters {
        let usage = self;
        UsageCounters {
            evicted_objects: usage.evicted_objects.load(Ordering::Relaxed),
            evicted_bytes: usage.evicted_bytes.load(Ordering::Relaxed),
            used_bytes: usage
                .estimate_known
                .load(Ordering::Relaxed)
                .then(|| usage.estimate.load(Ordering::Relaxed)),
        }
    }

    /// Start the usage estimate from the directory's usage index (the last
    /// snapshot plus the journals, or a rescan where there is none), unless a
    /// sweep already did. File I/O: call it off the read path, once.
    pub(crate) fn estimate(&self, cd: &CacheDir) -> Result<u64, StoreError> {
        let usage = self;
        if usage.estimate_known.load(Ordering::Relaxed) {
            return Ok(usage.estimate.load(Ordering::Relaxed));
        }
        // Every block this worker placed so far is journaled (at once), so it
        // is in the index's total; one placed while the index is read may be
        // missed: the estimate errs low by at most those, until a sweep.
        let total = self.index(cd)?.bytes();
        usage.estimate.store(total, Ordering::Relaxed);
        usage.estimate_known.store(true, Ordering::Relaxed);
        Ok(total)
    }

    /// Write this worker's pending usage records (call every few seconds).
    pub(crate) fn flush(&self, cd: &CacheDir) -> Result<(), StoreError> {
        let at = cd.at()?;
        self.flush_at(cd, &at)
    }

    fn flush_at(&self, cd: &CacheDir, at: &Beneath) -> Result<(), StoreError> {
        let dir = &cd.layout.journal;
        let flushed = self.journal.flush(at);
        match flushed {
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || crate::fsutil::is_link_on_the_way(&e) =>
            {
                ensure_dir(at, dir)?;
                self.journal.flush(at)
            }
            other => other,
        }
        .map_err(|e| StoreError::io("write usage journal", &at.display(dir), e))
    }

    /// Sweep now with the configured limits, unless another worker is sweeping
    /// (`Ok(None)`).
    pub(crate) fn sweep(
        &self,
        cd: &CacheDir,
        dry_run: bool,
    ) -> Result<Option<Eviction>, StoreError> {
        self.sweep_with(cd, &self.limits, dry_run, true)
    }

    /// Who holds the sweep lease, as far as one look tells (see
    /// [`Holder`](crate::Holder)): an entry that stays unnamed is something
    /// planted, taken over only after the lease's lifetime.
    pub(crate) fn lease_holder(&self, cd: &CacheDir) -> crate::Holder {
        match cd.at() {
            Ok(at) => exclusive::holder_of(&at, &cd.layout.lease(), LEASE_MAGIC),
            Err(_) => crate::Holder::Free,
        }
    }

    /// Whether the block file of `(key, index)` is on disk now (see
    /// `Index::apply`).
    fn block_on_disk<'a>(
        cd: &'a CacheDir,
        at: &'a Beneath,
    ) -> impl Fn(&inputfs_core::CacheKey, u64) -> bool + 'a {
        move |key, index| {
            let rel = cd.layout.block(&inputfs_core::BlockId { key: *key, index });
            at.stat(&rel)
                .is_ok_and(|s| crate::beneath::Kind::of(&s) == crate::beneath::Kind::File)
        }
    }

    /// Sweep now with `limits`: fold the journals into the index and evict least
    /// recently read objects until within them. `Ok(None)`: another worker holds
    /// the sweep lease.
    pub(crate) fn evict(
        &self,
        cd: &CacheDir,
        limits: &Limits,
        dry_run: bool,
    ) -> Result<Option<Eviction>, StoreError> {
        self.sweep_with(cd, limits, dry_run, false)
    }

    /// `evict`, recording `limits` in the index as this directory's limits when
    /// they are a mount's configured ones (not a one-off `gc --max-size`).
    fn sweep_with(
        &self,
        cd: &CacheDir,
        limits: &Limits,
        dry_run: bool,
        configured: bool,
    ) -> Result<Option<Eviction>, StoreError> {
        let at = cd.at()?;
        let index_dir = &cd.layout.index;
        ensure_dir(&at, index_dir)?;
        let lease = cd.layout.lease();
        let holding = match exclusive::take(&at, &lease, LEASE_MAGIC, LEASE_TTL) {
            Ok(Taken::Ours(holding)) => holding,
            Ok(Taken::Held) => return Ok(None),
            Err(e) => return Err(StoreError::io("take sweep lease", &at.display(&lease), e)),
        };
        let result = self.evict_holding_lease(cd, &at, limits, dry_run, configured);
        exclusive::release(&at, &lease, &holding);
        result.map(Some)
    }

    fn evict_holding_lease(
        &self,
        cd: &CacheDir,
        at: &Beneath,
        limits: &Limits,
        dry_run: bool,
        configured: bool,
    ) -> Result<Eviction, StoreError> {
        let _ = self.flush_at(cd, at);
        let l = &cd.layout;
        let loaded = Index::load_latest(at, &l.index)
            .map_err(|e| StoreError::io("read", &at.display(&l.index), e))?;
        let stale = |i: &Index| journal::unix_ms().saturating_sub(i.rescanned_at) > RESCAN_EVERY;
        // A rescan reflects the block files as they are now; folding the journals
        // in afterwards adds when objects were read (and at worst re-adds a block
        // removed by hand, which a later sweep finds already gone).
        let (mut index, rescanned) = match loaded {
            Some(i) if !stale(&i) => (i, false),
            _ => (Index::rescan(at, &l.objects), true),
        };
        let records_ingested = index.ingest(at, &l.journal, &Self::block_on_disk(cd, at));
        let used_before = index.bytes();
        let target = Self::target(cd, at, limits, used_before);
        let mut report = Eviction {
            used_before,
            target,
            records_ingested,
            rescanned,
            dry_run,
            ..Eviction::default()
        };
        let mut order: Vec<_> = index
            .objects
            .iter()
            .map(|(k, o)| (o.last_access, o.touched, *k))
            .collect();
        order.sort();
        let mut used = used_before;
        if !dry_run {
            ensure_dir(at, &l.trash)?;
        }
        for (_, _, key) in order {
            if used <= target {
                break;
            }
            let obj = &index.objects[&key];
            let (bytes, blocks) = (obj.bytes(), obj.blocks.len());
            if !dry_run {
                let dest = l.made(
                    &l.trash,
                    &format!("{}.{}", key.to_hex(), fsutil::unique_stem()),
                );
                match at.rename(&l.object(&key), &dest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "could not evict an object; next sweep");
                        report.failed += 1;
                        continue;
                    }
                }
                index.evict(&key);
            }
            used -= bytes;
            report.objects += 1;
            report.blocks += blocks;
            report.bytes += bytes;
        }
        report.used_after = used;
        tracing::debug!(
            tier = cd.name(),
            ?report,
            objects = index.objects.len(),
            "swept"
        );
        if !dry_run {
            empty_trash(at, &l.trash);
            fsutil::remove_entries_where(at, &l.journal, |name, age| {
                let own = name.starts_with(self.journal.stem());
                let consumed = index.consumed.contains_key(name);
                !own && age >= JOURNAL_STALE && consumed
            });
            index
                .consumed
                .retain(|name, _| l.journal.join(name).is_ok_and(|rel| at.stat(&rel).is_ok()));
            if configured && limits.is_set() {
                index.limits = *limits;
            }
            index
                .save_new(at, &l.index, &l.tmp)
                .map_err(|e| StoreError::io("write usage index in", &at.display(&l.index), e))?;
            let usage = self;
            usage.estimate.store(used, Ordering::Relaxed);
            usage.estimate_known.store(true, Ordering::Relaxed);
            usage
                .evicted_objects
                .fetch_add(report.objects as u64, Ordering::Relaxed);
            usage
                .evicted_bytes
                .fetch_add(report.bytes, Ordering::Relaxed);
            if report.objects > 0 {
                tracing::info!(
                    tier = cd.name(),
                    objects = report.objects,
                    bytes = report.bytes,
                    used,
                    target,
                    "evicted least recently read objects"
                );
            }
        }
        Ok(report)
    }

    /// The usage to shrink to for these limits.
    fn target(cd: &CacheDir, at: &Beneath, limits: &Limits, used: u64) -> u64 {
        let mut target = limits.max_bytes.unwrap_or(u64::MAX).min(used);
        if let Some(pct) = limits.min_free_percent
            && let Ok((total, avail)) = at.space(&cd.layout.root)
        {
            let want = (total as f64 * pct / 100.0) as u64;
            if avail < want {
                target = target.min(used.saturating_sub(want - avail));
            }
        }
        target
    }

    /// The index as of now, without changing anything: the last snapshot plus
    /// the journals since (or a rescan where there is no snapshot).
    pub(crate) fn index(&self, cd: &CacheDir) -> Result<Index, StoreError> {
        let at = cd.at()?;
        let l = &cd.layout;
        let loaded = Index::load_latest(&at, &l.index)
            .map_err(|e| StoreError::io("read", &at.display(&l.index), e))?;
        let mut index = loaded.unwrap_or_else(|| Index::rescan(&at, &l.objects));
        index.ingest(&at, &l.journal, &Self::block_on_disk(cd, &at));
        Ok(index)
    }

    /// The newest saved usage snapshot, as it is (no journals folded in).
    pub(crate) fn saved_index(cd: &CacheDir) -> Result<Option<Index>, StoreError> {
        let at = cd.at()?;
        Index::load_latest(&at, &cd.layout.index)
            .map_err(|e| StoreError::io("read", &at.display(&cd.layout.index), e))
    }

    /// Save `index` as the newest usage snapshot (for tools and tests that
    /// edit one).
    pub(crate) fn save_index(cd: &CacheDir, index: &Index) -> Result<(), StoreError> {
        let at = cd.at()?;
        ensure_dir(&at, &cd.layout.index)?;
        index
            .save_new(&at, &cd.layout.index, &cd.layout.tmp)
            .map_err(|e| StoreError::io("write usage index in", &at.display(&cd.layout.index), e))
    }

    /// The usage index built from the block files alone (a full rescan).
    pub(crate) fn rescan(cd: &CacheDir) -> Result<Index, StoreError> {
        Ok(Index::rescan(&cd.at()?, &cd.layout.objects))
    }
}

/// Delete what evictions moved into `trash/` (never following a link).
fn empty_trash(at: &Beneath, trash: &crate::beneath::Rel) {
    for (name, _) in at.entries(Some(trash)).unwrap_or_default() {
        if let Ok(rel) = trash.join(&name) {
            let _ = at.remove_tree(&rel);
        }
    }
}
