//! What an input object is once resolved, and the identity its cache blocks use.
//!
//! A cache shared by a whole fleet must never hand one worker the bytes of another
//! version, so blocks are keyed by *content identity* — source kind, canonical URL,
//! version token, size and block size — never by the path in the mount. A changed
//! object gets a new key and old and new versions coexist in the cache.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Which protocol an object comes from. Part of the cache identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    S3,
    Gcs,
    Azure,
    Http,
    File,
}

impl SourceKind {
    /// The stable name used in cache identities and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::S3 => "s3",
            SourceKind::Gcs => "gcs",
            SourceKind::Azure => "azure",
            SourceKind::Http => "http",
            SourceKind::File => "file",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The version an object was resolved at. Every ranged read is pinned to it where
/// the protocol allows (`If-Match` on the ETag, or the store's version id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Entity tag as the origin reported it (quotes included, as sent back in
    /// `If-Match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Store-level version (S3 VersionId, GCS generation, Azure version id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Last modification time, seconds since the epoch: the token of last resort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_unix: Option<i64>,
}

impl Version {
    /// One canonical string for this version: what goes into the cache identity and
    /// the lock file. The strongest token available wins.
    pub fn token(&self) -> String {
        match (&self.version_id, &self.etag, self.modified_unix) {
            (Some(v), _, _) => format!("vid:{v}"),
            (None, Some(e), _) => format!("etag:{e}"),
            (None, None, Some(m)) => format!("mtime:{m}"),
            (None, None, None) => "none".to_string(),
        }
    }
}

/// One input object, resolved and pinned at mount time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub kind: SourceKind,
    /// Canonical URL with no credentials in it (signed-URL query strings are
    /// stripped before an `ObjectId` is made).
    pub url: String,
    pub version: Version,
    pub size: u64,
    /// Modification time shown by `stat`.
    pub mtime: SystemTime,
}

impl ObjectId {
    /// The content identity of this object's blocks at the given block size.
    pub fn cache_key(&self, block_size: u64) -> CacheKey {
        CacheKey::new(
            self.kind,
            &self.url,
            &self.version.token(),
            self.size,
            block_size,
        )
    }
}

/// A 32-byte content identity: BLAKE3 of the identity fields, length-prefixed so
/// no two different tuples can hash the same input.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// Hash the identity tuple. Changing this function changes every key of every
    /// cache in the field: it is guarded by a golden test.
    pub fn new(kind: SourceKind, url: &str, version: &str, size: u64, block_size: u64) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"inputfs-key-v1\0");
        for part in [kind.as_str(), url, version] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&size.to_le_bytes());
        h.update(&block_size.to_le_bytes());
        CacheKey(*h.finalize().as_bytes())
    }

    /// Lower-case hex, as used in cache paths.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_token_prefers_strongest() {
        let mut v = Version {
            etag: Some("\"abc\"".into()),
            version_id: None,
            modified_unix: Some(7),
        };
        assert_eq!(v.token(), "etag:\"abc\"");
        v.version_id = Some("v1".into());
        assert_eq!(v.token(), "vid:v1");
        assert_eq!(Version::default().token(), "none");
    }

    #[test]
    fn key_is_stable_golden() {
        // If this fails, every cache in the field is invalidated: bump the format.
        let k = CacheKey::new(SourceKind::S3, "s3://bucket/key", "etag:\"x\"", 10, 4096);
        assert_eq!(
            k.to_hex(),
            CacheKey::new(SourceKind::S3, "s3://bucket/key", "etag:\"x\"", 10, 4096).to_hex()
        );
        assert_eq!(k.to_hex(), GOLDEN_KEY);
    }

    const GOLDEN_KEY: &str = "55cb475ed2d8cecbe065a305ffd46dcafd63eb7790a5488d76be832666f3bbb7";

    #[test]
    fn key_changes_with_each_field() {
        let base = CacheKey::new(SourceKind::S3, "s3://b/k", "etag:1", 10, 4096);
        assert_ne!(
            base,
            CacheKey::new(SourceKind::Gcs, "s3://b/k", "etag:1", 10, 4096)
        );
        assert_ne!(
            base,
            CacheKey::new(SourceKind::S3, "s3://b/k2", "etag:1", 10, 4096)
        );
        assert_ne!(
            base,
            CacheKey::new(SourceKind::S3, "s3://b/k", "etag:2", 10, 4096)
        );
        assert_ne!(
            base,
            CacheKey::new(SourceKind::S3, "s3://b/k", "etag:1", 11, 4096)
        );
        assert_ne!(
            base,
            CacheKey::new(SourceKind::S3, "s3://b/k", "etag:1", 10, 8192)
        );
        // Length prefixes: moving a byte between fields changes the key.
        assert_ne!(
            CacheKey::new(SourceKind::S3, "ab", "c", 1, 1),
            CacheKey::new(SourceKind::S3, "a", "bc", 1, 1)
        );
    }
}
