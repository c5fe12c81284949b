//! [`Origin`]: the real [`Source`] — ranged reads over `object_store`, pinned to the
//! version resolved at mount (errors are sorted in [`crate::classify`]).
//!
//! Pinning is belt and braces: the request carries `If-Match` (the ETag) and the
//! store's version id where there is one, *and* the response's ETag and size are
//! checked against the pinned ones before its body is read, so a server that
//! ignores `If-Match` still cannot hand out bytes of another version.
//!
//! A read whose request times out (see [`crate::timeouts`]) is tried once more
//! here, at once, and if that fails too the error is final: the engine's retry
//! policy (four attempts) is for errors that come quickly, and four times a
//! timeout is what made a read of an origin that never answers take minutes.
//! So such a read fails with `EIO` after two timeouts (about 20 s by default).
//!
//! One application `read` can still ask twice: the kernel reads ahead (one
//! FUSE read of up to 1 MiB), and when that fails it reads the page the
//! application wanted again, synchronously — a second fetch of the same block,
//! another 20 s (measured: `dd` got `EIO` after 40 s). So a range whose fetch
//! just timed out twice fails at once for [`REPEAT_WINDOW`] with the same
//! error, without asking the origin again; a later read asks afresh.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use inputfs_core::{Error, ObjectId, Retries, Source};
use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;
use object_store::path::Path;
use object_store::{ClientConfigKey, GetOptions, GetRange};

use crate::classify::{Class, classify, to_core};
use crate::error::{SourceError, redact};
use crate::guard::Guarded;
use crate::snapshot::Snapshots;
use crate::stores::{SharedHttp, StoreEntry, StoreOptions, build_store};
use crate::timeouts::Timeouts;
use crate::url::{ParsedUrl, StoreLocation, Target, parse_url};

/// Resolves input URLs and serves ranged reads of what it resolved. Cheap to
/// clone: clones share their store clients and their table of resolved objects.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    options: StoreOptions,
    stores: Mutex<HashMap<StoreLocation, StoreEntry>>,
    shared_http: Arc<SharedHttp>,
    /// Canonical URL -> where to fetch it (the fetch side may hold a signed query).
    objects: RwLock<HashMap<String, Pinned>>,
    /// Ranges whose fetch timed out twice moments ago (see the module docs).
    timed_out: Mutex<HashMap<RangeKey, (Instant, Error)>>,
    /// Where the request asked again after a timeout is counted.
    retries: Arc<Retries>,
    /// Listing snapshots, if the mount shares listings.
    snapshots: Option<Snapshots>,
}

/// A range of an object: (canonical URL, start, end).
type RangeKey = (String, u64, u64);

/// How long a range whose fetch timed out twice fails at once when asked for
/// again: long enough for the kernel's re-read of a failed readahead (which
/// comes right after it), short enough that a later read asks the origin.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub(crate) struct Pinned {
    pub entry: StoreEntry,
    pub path: Path,
}

/// Configures an [`Origin`]: the cloud environment by default, plus options that
/// win over it (so tests and tools need not change the process environment).
#[derive(Debug, Default)]
pub struct OriginBuilder {
    options: StoreOptions,
    snapshots: Option<Snapshots>,
}

impl OriginBuilder {
    /// Ignore `AWS_*`, `GOOGLE_*` and `AZURE_*` variables: only explicit options count.
    pub fn without_env(mut self) -> Self {
        self.options.use_env = false;
        self
    }
    /// An `s3://` client option (endpoint, keys, region, ...).
    pub fn s3_option(mut self, key: AmazonS3ConfigKey, value: impl Into<String>) -> Self {
        self.options.s3.push((key, value.into()));
        self
    }
    /// A `gs://` client option.
    pub fn gcs_option(mut self, key: GoogleConfigKey, value: impl Into<String>) -> Self {
        self.options.gcs.push((key, value.into()));
        self
    }
    /// An Azure client option.
    pub fn azure_option(mut self, key: AzureConfigKey, value: impl Into<String>) -> Self {
        self.options.azure.push((key, value.into()));
        self
    }
    /// An HTTP client option (timeouts, proxy, certificates) for every store.
    pub fn client_option(mut self, key: ClientConfigKey, value: impl Into<String>) -> Self {
        self.options.client.push((key, value.into()));
        self
    }
    /// The first-byte and stall timeouts of every HTTP request (the connect and
    /// whole-request timeouts are client options: `ConnectTimeout`, `Timeout`).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.options.timeouts = timeouts;
        self
    }
    /// Share listings through snapshots (see the `snapshot` module).
    pub fn listing_snapshots(mut self, snapshots: Snapshots) -> Self {
        self.snapshots = Some(snapshots);
        self
    }
    pub fn build(self) -> Origin {
        Origin {
            inner: Arc::new(Inner {
                options: self.options,
                snapshots: self.snapshots,
                ..Inner::default()
            }),
        }
    }
}

impl Origin {
    /// An origin configured from the environment only.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn builder() -> OriginBuilder {
        OriginBuilder::default()
    }

    /// Where this origin counts a request it asks again after a timeout:
    /// hand it to the retry wrapper too, so one counter has every repeat.
    pub fn retries(&self) -> Arc<Retries> {
        self.inner.retries.clone()
    }

    /// Listing snapshots, if configured.
    pub(crate) fn snapshots(&self) -> Option<&Snapshots> {
        self.inner.snapshots.as_ref()
    }

    /// The client for a URL's store, built on first use.
    pub(crate) fn store_for(&self, parsed: &ParsedUrl) -> Result<StoreEntry, SourceError> {
        let mut stores = self.inner.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = stores.get(&parsed.store) {
            return Ok(entry.clone());
        }
        let built = crate::guard::catch(|| {
            build_store(&parsed.store, &self.inner.options, &self.inner.shared_http)
        })
        .unwrap_or_else(|panicked| Err(panicked.to_string()));
        let mut entry = built.map_err(|message| SourceError::Config {
            input: String::new(),
            url: parsed.canonical.clone(),
            message: redact(&message),
        })?;
        // Every call into the client from here on is panic-guarded.
        entry.store = Arc::new(Guarded(entry.store));
        stores.insert(parsed.store.clone(), entry.clone());
        Ok(entry)
    }

    /// Remember where a resolved object is fetched from.
    pub(crate) fn register(&self, url: String, pinned: Pinned) {
        let mut objects = self
            .inner
            .objects
            .write()
            .unwrap_or_else(|e| e.into_inner());
        objects.insert(url, pinned);
    }

    /// Where to fetch `object`: what `resolve` registered, else its URL parsed
    /// afresh (an object pinned by an earlier run, e.g. from a lock file).
    fn pinned(&self, object: &ObjectId) -> Result<Pinned, Error> {
        let objects = self.inner.objects.read().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = objects.get(&object.url) {
            return Ok(p.clone());
        }
        drop(objects);
        self.prepare_pinned(object).map_err(|e| Error::Origin {
            url: object.url.clone(),
            message: e.to_string(),
            retryable: false,
            throttled: false,
        })
    }

    /// Make `object` — pinned by an earlier run and known only by its canonical
    /// URL, as in a lock file — readable, without contacting the origin: parse the
    /// URL as the name of one object, build its store's client and register it.
    /// A `*` or `?` in the URL's last segment is part of the object's name here,
    /// not a glob (a listed object may be called that).
    pub fn prepare(&self, object: &ObjectId) -> Result<(), SourceError> {
        self.prepare_pinned(object).map(|_| ())
    }

    fn prepare_pinned(&self, object: &ObjectId) -> Result<Pinned, SourceError> {
        let parsed = parse_url(&object.url)?;
        let key = match &parsed.target {
            Target::Object { key } => key.clone(),
            Target::Glob { prefix, pattern } if prefix.is_empty() => pattern.clone(),
            Target::Glob { prefix, pattern } => format!("{prefix}/{pattern}"),
            Target::Prefix { .. } => {
                return Err(SourceError::bad_url(
                    &object.url,
                    "names a prefix, not one object",
                ));
            }
        };
        let entry = self.store_for(&parsed)?;
        let path = Path::parse(&key).map_err(|e| SourceError::BadKey {
            input: String::new(),
            url: object.url.clone(),
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let pinned = Pinned { entry, path };
        self.register(object.url.clone(), pinned.clone());
        Ok(pinned)
    }
}

#[async_trait]
impl Source for Origin {
    async fn get_range(&self, object: &ObjectId, range: Range<u64>) -> inputfs_core::Result<Bytes> {
        if range.start > range.end || range.end > object.size {
            return Err(Error::Range {
                offset: range.start,
                len: range.end.saturating_sub(range.start),
                size: object.size,
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let pinned = self.pinned(object)?;
        let key = (object.url.clone(), range.start, range.end);
        if let Some(e) = self.timed_out_recently(&key) {
            return Err(e);
        }
        let first = match self.fetch(&pinned, object, range.clone()).await {
            Ok(bytes) => return Ok(bytes),
            Err(Fetch::TimedOut(e)) => e,
            Err(Fetch::Failed(e)) => return Err(e),
        };
        tracing::debug!(url = %object.url, error = %redact(&first.to_string()),
            "origin request timed out; trying once more");
        self.inner.retries.add(1);
        match self.fetch(&pinned, object, range).await {
            Ok(bytes) => Ok(bytes),
            // Final, whatever it is: one timeout is all the time a read gets
            // to spend on retries.
            Err(Fetch::TimedOut(e)) => {
                let e = final_error(to_core(&e, object), "timed out twice");
                self.remember_timeout(key, e.clone());
                Err(e)
            }
            Err(Fetch::Failed(e)) => Err(final_error(e, "after a timeout")),
        }
    }
}

/// How one attempt at a ranged read failed.
enum Fetch {
    /// A request timed out (not yet converted: the caller decides if it is final).
    TimedOut(object_store::Error),
    Failed(Error),
}

/// `e`, made not retryable, saying why.
fn final_error(e: Error, why: &str) -> Error {
    match e {
        Error::Origin { url, message, .. } => Error::Origin {
            url,
            message: format!("{message} ({why})"),
            retryable: false,
            throttled: false,
        },
        other => other,
    }
}

impl Origin {
    /// The error of `key`'s fetch if it timed out twice within [`REPEAT_WINDOW`].
    fn timed_out_recently(&self, key: &RangeKey) -> Option<Error> {
        let recent = self
            .inner
            .timed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (at, e) = recent.get(key)?;
        (at.elapsed() < REPEAT_WINDOW).then(|| e.clone())
    }

    fn remember_timeout(&self, key: RangeKey, e: Error) {
        let mut recent = self
            .inner
            .timed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, (at, _)| at.elapsed() < REPEAT_WINDOW);
        recent.insert(key, (Instant::now(), e));
    }

    /// One ranged GET of `object`, pinned and checked against its version.
    async fn fetch(
        &self,
        pinned: &Pinned,
        object: &ObjectId,
        range: Range<u64>,
    ) -> Result<Bytes, Fetch> {
        let failed = |e: object_store::Error| match classify(&e) {
            Class::TimedOut => Fetch::TimedOut(e),
            _ => Fetch::Failed(to_core(&e, object)),
        };
        let etag = object.version.etag.clone();
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            // A weak ETag never matches `If-Match` (strong comparison): rely on the
            // response check below for those.
            if_match: etag.clone().filter(|e| !e.starts_with("W/")),
            version: object.version.version_id.clone(),
            ..GetOptions::default()
        };
        let result = pinned
            .entry
            .store
            .get_opts(&pinned.path, options)
            .await
            .map_err(failed)?;
        if version_differs(object, &result.meta) || result.meta.size != object.size {
            return Err(Fetch::Failed(Error::VersionChanged {
                url: object.url.clone(),
                version: object.version.token(),
            }));
        }
        let len = usize::try_from(result.range.end - result.range.start).unwrap_or(0);
        crate::body::collect(result.into_stream(), len)
            .await
            .map_err(failed)
    }

    /// The size of `object` at the origin, asked with a HEAD pinned to its
    /// version (as its reads are): for a lock file entry that says it is empty,
    /// which no read would ever check.
    pub async fn pinned_size(&self, object: &ObjectId) -> Result<u64, SourceError> {
        let pinned = self.prepare_pinned(object)?;
        let options = GetOptions {
            head: true,
            if_match: object.version.etag.clone().filter(|e| !e.starts_with("W/")),
            version: object.version.version_id.clone(),
            ..GetOptions::default()
        };
        let head = || async {
            let got = pinned
                .entry
                .store
                .get_opts(&pinned.path, options.clone())
                .await
                .map_err(|e| {
                    crate::classify::to_source(&e, "", &object.url, &pinned.entry, false)
                })?;
            if version_differs(object, &got.meta) {
                return Err(SourceError::Origin {
                    input: String::new(),
                    url: object.url.clone(),
                    message: format!(
                        "the origin no longer has the pinned version ({})",
                        object.version.token()
                    ),
                    retryable: false,
                });
            }
            Ok(got.meta.size)
        };
        crate::resolve::with_retries(head).await
    }
}

/// Whether what the origin says about an object is not the pinned version
/// (ETag, or modification time where there is no ETag). The size is not
/// compared here: callers do, each in its own way.
fn version_differs(object: &ObjectId, meta: &object_store::ObjectMeta) -> bool {
    let etag = &object.version.etag;
    let etag_differs = matches!((etag, &meta.e_tag), (Some(want), Some(got)) if want != got);
    let mtime_differs = etag.is_none()
        && meta.last_modified.timestamp() != 0
        && object
            .version
            .modified_unix
            .is_some_and(|m| m != meta.last_modified.timestamp());
    etag_differs || mtime_differs
}

#[cfg(test)]
#[path = "origin_tests.rs"]
pub(crate) mod tests;
