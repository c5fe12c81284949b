//! [`Origin`]: the real [`Source`] — ranged reads over `object_store`, pinned to the
//! version resolved at mount (errors are sorted in [`crate::classify`]).
//!
//! Pinning is belt and braces: the request carries `If-Match` (the ETag) and the
//! store's version id where there is one, *and* the response's ETag and size are
//! checked against the pinned ones before its body is read, so a server that
//! ignores `If-Match` still cannot hand out bytes of another version.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use inputfs_core::{Error, ObjectId, Source};
use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;
use object_store::path::Path;
use object_store::{ClientConfigKey, GetOptions, GetRange};

use crate::classify::to_core;
use crate::error::{SourceError, redact};
use crate::stores::{SharedHttp, StoreEntry, StoreOptions, build_store};
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
}

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
    pub fn build(self) -> Origin {
        Origin {
            inner: Arc::new(Inner {
                options: self.options,
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

    /// The client for a URL's store, built on first use.
    pub(crate) fn store_for(&self, parsed: &ParsedUrl) -> Result<StoreEntry, SourceError> {
        let mut stores = self.inner.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = stores.get(&parsed.store) {
            return Ok(entry.clone());
        }
        let entry = build_store(&parsed.store, &self.inner.options, &self.inner.shared_http)
            .map_err(|message| SourceError::Config {
                input: String::new(),
                url: parsed.canonical.clone(),
                message: redact(&message),
            })?;
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
        let etag = object.version.etag.clone();
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            // A weak ETag never matches `If-Match` (strong comparison): rely on the
            // response check below for those.
            if_match: etag.clone().filter(|e| !e.starts_with("W/")),
            version: object.version.version_id.clone(),
            ..GetOptions::default()
        };
        let changed = || Error::VersionChanged {
            url: object.url.clone(),
            version: object.version.token(),
        };
        let result = pinned
            .entry
            .store
            .get_opts(&pinned.path, options)
            .await
            .map_err(|e| to_core(&e, object))?;
        let meta = &result.meta;
        let etag_differs = matches!((&etag, &meta.e_tag), (Some(want), Some(got)) if want != got);
        let mtime_differs = etag.is_none()
            && meta.last_modified.timestamp() != 0
            && object
                .version
                .modified_unix
                .is_some_and(|m| m != meta.last_modified.timestamp());
        if etag_differs || mtime_differs || meta.size != object.size {
            return Err(changed());
        }
        let bytes = result.bytes().await.map_err(|e| to_core(&e, object))?;
        Ok(bytes)
    }
}

#[cfg(test)]
#[path = "origin_tests.rs"]
mod tests;
