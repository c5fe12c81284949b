//! Listing snapshots: a fleet lists each prefix once (`--listing-max-age`).
//!
//! N workers that mount the same prefix each list it: N × (objects / 1,000)
//! LIST requests at once, which object stores throttle, and ~10 s per worker
//! per 100,000 objects. With snapshots on, the worker that lists a prefix
//! publishes what it listed in the shared cache (`listings/<key>.json`, see
//! `docs/FORMAT.md`), and workers that mount it later use that instead of
//! listing, while it is younger than the maximum age. Workers that start
//! together do not all list either: a listing is claimed as a block is; the
//! holder lists, the others wait for its snapshot, never longer than the
//! claim timeout, and then list themselves.
//!
//! What a snapshot holds is what the listing returned, one entry per object:
//! its key, size, ETag and modification time. Everything else is rebuilt
//! from the input's own URL by the same code as a live listing, so the
//! resolved files of a snapshot and of a live listing of the same state are
//! identical (same `ObjectId`s: same cache keys, same lock file).
//!
//! A snapshot is untrusted input, like every file of the shared cache. It is
//! used only if it is a regular file of bounded size that parses, names this
//! input's canonical URL, was made no later than [`CLOCK_SKEW`] from now and
//! no earlier than the maximum age ago, lists keys in strictly increasing
//! order, carries no version ids, and resolves like a listing would (every
//! key below the prefix and a valid path, no conflicts, not empty). Anything
//! else is logged and the prefix is listed. What it can then do is bounded:
//! it names only keys below the input's prefix that its pattern matches, and
//! each is read pinned by its ETag (`If-Match`) with its size checked, so a
//! forged entry makes reads of that file fail, never return other bytes; a
//! forged snapshot can hide objects or add ones the origin then refuses, as
//! much as anyone who can write the shared cache can deny service. Version
//! ids are never taken from a snapshot, because they would let a forged one
//! pin an older version of an object; where a listing needed them (servers
//! that list no ETags, so objects were HEADed), no snapshot is published.
//!
//! The lock file is unchanged: it records what this worker mounted, from a
//! snapshot or not, and `--locked` never lists nor reads snapshots.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inputfs_core::{Claim, ListingStore};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

/// The snapshot format this build writes and reads.
pub const FORMAT: u64 = 1;

/// How far in the future a snapshot's creation time may be (other workers'
/// clocks differ from ours): a snapshot is fresh for at most the maximum age
/// plus this, whatever it says.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// The longest pause between two looks for a snapshot another worker is
/// making.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Listing snapshots, as configured for a mount.
#[derive(Clone)]
pub struct Snapshots {
    /// Where they are kept (the shared cache).
    pub store: Arc<dyn ListingStore>,
    /// The oldest snapshot used.
    pub max_age: Duration,
    /// How long a worker waits for another worker's listing before listing
    /// itself (the claim timeout).
    pub claim_timeout: Duration,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("max_age", &self.max_age)
            .field("claim_timeout", &self.claim_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    inputfs_listing: u64,
    url: String,
    /// When the listing began, in milliseconds since the epoch.
    created_unix_ms: u64,
    objects: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    /// Modification time: seconds and nanoseconds since the epoch.
    modified: (i64, u32),
}

/// What a worker is to do for a listing.
pub(crate) enum Turn {
    /// Use this listing (from a fresh snapshot).
    Use(Vec<ObjectMeta>),
    /// List; if `claimed`, this worker holds the claim, to be released.
    List { claimed: bool },
}

/// Milliseconds since the epoch: a snapshot's creation time is when its
/// listing began.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

impl Snapshots {
    /// A fresh snapshot of `url` if there is one, else whether to list it now
    /// (claimed, or after waiting for another worker's claim in vain).
    pub(crate) async fn turn(&self, url: &str) -> Turn {
        if let Some(metas) = self.fresh(url).await {
            return Turn::Use(metas);
        }
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match self.claim(url).await {
                // The holder before us may have published and released
                // between our last look and this claim: look once more, or
                // a fleet would list twice.
                Claim::Acquired => {
                    if let Some(metas) = self.fresh(url).await {
                        self.release(url).await;
                        return Turn::Use(metas);
                    }
                    return Turn::List { claimed: true };
                }
                Claim::Unsupported => return Turn::List { claimed: false },
                Claim::Held => {}
            }
            let waited = started.elapsed();
            let Some(left) = self
                .claim_timeout
                .checked_sub(waited)
                .filter(|l| !l.is_zero())
            else {
                tracing::info!(
                    url,
                    "another worker's listing took longer than the claim timeout: listing"
                );
                return Turn::List { claimed: false };
            };
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(MAX_PAUSE);
            if let Some(metas) = self.fresh(url).await {
                return Turn::Use(metas);
            }
        }
    }

    /// Publish `snapshot` as the listing of `url` (best effort; `None`:
    /// nothing to publish), and give up the claim if this worker held it.
    pub(crate) async fn publish(&self, url: &str, snapshot: Option<Vec<u8>>, claimed: bool) {
        let store = self.store.clone();
        let url = url.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(bytes) = snapshot
                && let Err(e) = store.write_listing(&url, &bytes)
            {
                tracing::warn!(url, "cannot publish the listing snapshot: {e}");
            }
            if claimed {
                store.release_listing(&url);
            }
        })
        .await;
    }

    async fn release(&self, url: &str) {
        let (store, owned) = (self.store.clone(), url.to_string());
        let _ = tokio::task::spawn_blocking(move || store.release_listing(&owned)).await;
    }

    async fn claim(&self, url: &str) -> Claim {
        let (store, owned, ttl) = (self.store.clone(), url.to_string(), self.claim_timeout);
        match tokio::task::spawn_blocking(move || store.claim_listing(&owned, ttl)).await {
            Ok(Ok(claim)) => claim,
            Ok(Err(e)) => {
                tracing::warn!(
                    url,
                    "cannot claim the listing, listing without a claim: {e}"
                );
                Claim::Unsupported
            }
            Err(_) => Claim::Unsupported,
        }
    }

    /// The listing of a fresh, well-formed snapshot of `url`, if there is one.
    async fn fresh(&self, url: &str) -> Option<Vec<ObjectMeta>> {
        let (store, owned) = (self.store.clone(), url.to_string());
        let read = tokio::task::spawn_blocking(move || store.read_listing(&owned)).await;
        let bytes = match read {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) | Err(_) => return None,
            Ok(Err(e)) => {
                tracing::warn!(url, "listing snapshot unreadable, listing instead: {e}");
                return None;
            }
        };
        match decode(&bytes, url, now_ms(), self.max_age) {
            Ok(metas) => Some(metas),
            Err(Unusable::Stale) => None,
            Err(Unusable::Bad(why)) => {
                tracing::warn!(url, "listing snapshot unusable, listing instead: {why}");
                None
            }
        }
    }
}

/// Why a snapshot is not used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Older than the maximum age: the normal case, not worth a warning.
    Stale,
    /// Malformed or forged.
    Bad(String),
}

/// The snapshot of a listing of `url` that began at `began_ms`; `None` if
/// the listing carries version ids (see the module docs).
pub(crate) fn encode(url: &str, began_ms: u64, metas: &[ObjectMeta]) -> Option<Vec<u8>> {
    if metas.iter().any(|m| m.version.is_some()) {
        return None;
    }
    let mut objects: Vec<Entry> = metas
        .iter()
        .map(|m| Entry {
            key: m.location.as_ref().to_string(),
            size: m.size,
            etag: m.e_tag.clone(),
            modified: (
                m.last_modified.timestamp(),
                m.last_modified.timestamp_subsec_nanos(),
            ),
        })
        .collect();
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    objects.dedup_by(|a, b| a.key == b.key);
    let file = SnapshotFile {
        inputfs_listing: FORMAT,
        url: url.to_string(),
        created_unix_ms: began_ms,
        objects,
    };
    serde_json::to_vec(&file).ok()
}

/// The listing in `bytes`, if it is a snapshot of `url` fresh at `now_ms`
/// (see the module docs for what is checked here; the keys are checked
/// against the input by the resolver, as a live listing's are).
pub(crate) fn decode(
    bytes: &[u8],
    url: &str,
    now_ms: u64,
    max_age: Duration,
) -> Result<Vec<ObjectMeta>, Unusable> {
    let bad = |why: String| Unusable::Bad(why);
    let file: SnapshotFile =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a snapshot: {e}")))?;
    if file.inputfs_listing != FORMAT {
        return Err(bad(format!(
            "format {} (this build reads {FORMAT})",
            file.inputfs_listing
        )));
    }
    if file.url != url {
        return Err(bad(format!(
            "it is the snapshot of {:?}",
            crate::error::shorten(&file.url)
        )));
    }
    let skew = u64::try_from(CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    if file.created_unix_ms > now_ms.saturating_add(skew) {
        return Err(bad(format!(
            "made {} ms in the future",
            file.created_unix_ms - now_ms
        )));
    }
    let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    if now_ms.saturating_sub(file.created_unix_ms) > max_age_ms {
        return Err(Unusable::Stale);
    }
    let mut metas = Vec::with_capacity(file.objects.len());
    let mut last: Option<&str> = None;
    for (i, e) in file.objects.iter().enumerate() {
        if last.is_some_and(|l| l >= e.key.as_str()) {
            return Err(bad(format!(
                "objects[{i}]: keys not in strictly increasing order"
            )));
        }
        last = Some(&e.key);
        let location =
            Path::parse(&e.key).map_err(|err| bad(format!("objects[{i}]: key: {err}")))?;
        let last_modified = chrono::DateTime::from_timestamp(e.modified.0, e.modified.1)
            .ok_or_else(|| bad(format!("objects[{i}]: modification time out of range")))?;
        metas.push(ObjectMeta {
            location,
            last_modified,
            size: e.size,
            e_tag: e.etag.clone(),
            version: None,
        });
    }
    Ok(metas)
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
