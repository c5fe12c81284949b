//! Parsing input URLs into "which store, which key(s)" — pure, no I/O.
//!
//! Users name inputs as URLs (`s3://`, `gs://`, `az://`, the Azure `https://` form,
//! `http(s)://`, `file://`). Everything the rest of the crate needs to know about a
//! URL is decided here, once, so it can be unit tested without a network: the kind
//! of store, the bucket/container/host, whether it names one object, a prefix or a
//! glob, and the *canonical* URL — the cache identity and what logs show — with any
//! signed-URL credentials stripped out of it (they are kept, redacted, for fetching).
//!
//! Keys of `s3://`, `gs://`, `az://` and `file://` URLs are taken verbatim (no
//! percent-decoding, and `?` is a glob character, not a query): that is how the
//! clouds' own CLIs treat them. `http(s)://` URLs are real URLs: the path is
//! percent-decoded and `?` starts the query.

use std::fmt;

use inputfs_core::SourceKind;

use crate::error::SourceError;

/// A string that must never be logged (signed-URL query strings, SAS tokens).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for building a request. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which store (client) a URL is served by: one `ObjectStore` per distinct value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoreLocation {
    S3 {
        bucket: String,
    },
    Gcs {
        bucket: String,
    },
    /// `account` is `None` for `az://` URLs (the account then comes from the
    /// environment); `sas` is a SAS token found in an `https://` URL's query.
    Azure {
        account: Option<String>,
        container: String,
        sas: Option<Secret>,
    },
    /// `origin` is `scheme://host[:port]`; `query` the URL's whole query string
    /// (signed parameters included), appended to every request.
    Http {
        origin: String,
        query: Option<Secret>,
    },
    File,
}

/// What a URL names inside its store. Keys never start or end with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One object; it appears in the mount under its basename.
    Object { key: String },
    /// Every object below `prefix` (`""` is the whole bucket), relative paths kept.
    Prefix { prefix: String },
    /// Objects below `prefix` whose path relative to it matches `pattern`.
    Glob { prefix: String, pattern: String },
}

/// A parsed input URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    pub kind: SourceKind,
    pub store: StoreLocation,
    pub target: Target,
    /// The URL as the cache identity and the logs see it: no signed parameters.
    pub canonical: String,
    /// Canonical URL of the store's root (`s3://bucket/`, `file:///`, ...): a
    /// listed object's canonical URL is this plus its key.
    pub root: String,
}

impl ParsedUrl {
    /// The canonical URL of the object at `key` in this URL's store.
    pub fn object_url(&self, key: &str) -> String {
        match self.kind {
            SourceKind::Http | SourceKind::Azure if self.root.starts_with("http") => {
                let path: Vec<String> = key.split('/').map(encode_segment).collect();
                format!("{}{}", self.root, path.join("/"))
            }
            _ => format!("{}{key}", self.root),
        }
    }
}

/// Query parameters that carry credentials in signed URLs (compared
/// case-insensitively): S3 and GCS V4 signing by prefix, Azure SAS by name, and
/// the legacy V2 / CloudFront forms.
const SIGNED_PREFIXES: &[&str] = &["x-amz-", "x-goog-"];
const SIGNED_NAMES: &[&str] = &[
    "sig",
    "se",
    "sp",
    "sv",
    "st",
    "spr",
    "srt",
    "ss",
    "sr",
    "skoid",
    "sktid",
    "skt",
    "ske",
    "sks",
    "skv",
    "sdd",
    "signature",
    "awsaccesskeyid",
    "googleaccessid",
    "expires",
    "key-pair-id",
    "policy",
];

/// Whether a query parameter name carries a credential.
pub fn is_signed_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SIGNED_PREFIXES.iter().any(|p| name.starts_with(p)) || SIGNED_NAMES.contains(&name.as_str())
}

/// `query` without its signed parameters (order and encoding of the rest kept).
pub fn strip_signed(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter(|kv| !is_signed_param(kv.split('=').next().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("&")
}

/// The longest URL accepted, in bytes. Object keys are at most 1 KiB on every
/// cloud and signed URLs a few KiB; the limit keeps every request's URI (keys
/// percent-encoded at most 3x) far below the 64 KiB at which `object_store`
/// panics instead of failing (docs/upstream/object_store-long-url-panic.md).
pub const MAX_URL_BYTES: usize = 8 << 10;

/// Parse an input URL. Pure: no network, no environment.
pub fn parse_url(s: &str) -> Result<ParsedUrl, SourceError> {
    let bad = |reason: &str| SourceError::bad_url(s, reason);
    if s.len() > MAX_URL_BYTES {
        return Err(bad(&format!(
            "URL of {} bytes is too long (at most {MAX_URL_BYTES} bytes, 8 KiB)",
            s.len()
        )));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(bad(
            "not a URL: expected s3://, gs://, az://, https://, http:// or file://",
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "s3" | "s3a" => {
            let (bucket, key) = bucket_and_key(s, rest, "bucket")?;
            let root = format!("s3://{bucket}/");
            finish(s, SourceKind::S3, StoreLocation::S3 { bucket }, root, key)
        }
        "gs" => {
            let (bucket, key) = bucket_and_key(s, rest, "bucket")?;
            let root = format!("gs://{bucket}/");
            finish(s, SourceKind::Gcs, StoreLocation::Gcs { bucket }, root, key)
        }
        "az" | "azure" => {
            let (container, key) = bucket_and_key(s, rest, "container")?;
            let root = format!("az://{container}/");
            let store = StoreLocation::Azure {
                account: None,
                container,
                sas: None,
            };
            finish(s, SourceKind::Azure, store, root, key)
        }
        "file" => {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            let Some(path) = path.strip_prefix('/') else {
                return Err(bad("a file URL needs an absolute path: file:///abs/path"));
            };
            if path.is_empty() {
                return Err(bad("empty path: refusing to mount the whole filesystem"));
            }
            finish(
                s,
                SourceKind::File,
                StoreLocation::File,
                "file:///".into(),
                path,
            )
        }
        "http" | "https" => parse_http(s),
        other => Err(bad(&format!(
            "unknown scheme {other:?}: expected s3, gs, az, https, http or file"
        ))),
    }
}

/// Split `bucket/key...` of a cloud URL.
fn bucket_and_key<'a>(
    url: &str,
    rest: &'a str,
    what: &str,
) -> Result<(String, &'a str), SourceError> {
    let (bucket, key) = match rest.split_once('/') {
        Some((b, k)) => (b, k),
        None => (rest, ""),
    };
    if bucket.is_empty() {
        return Err(SourceError::bad_url(url, &format!("missing {what} name")));
    }
    if bucket.contains(['?', '*', '#', '@', ':']) {
        return Err(SourceError::bad_url(
            url,
            &format!("invalid {what} name {bucket:?}"),
        ));
    }
    if key.is_empty() && !rest.ends_with('/') {
        return Err(SourceError::bad_url(
            url,
            &format!("missing key: name an object, or end with / to mount the whole {what}"),
        ));
    }
    Ok((bucket.to_string(), key))
}

/// Decide object / prefix / glob for a verbatim key and build the result.
fn finish(
    url: &str,
    kind: SourceKind,
    store: StoreLocation,
    root: String,
    key: &str,
) -> Result<ParsedUrl, SourceError> {
    let target = classify_key(url, key, true)?;
    let canonical = format!("{root}{key}");
    Ok(ParsedUrl {
        kind,
        store,
        target,
        canonical,
        root,
    })
}

/// Decide object / prefix / glob for a key (already decoded) and validate it.
/// With `globs` false, `*` and `?` are ordinary characters.
fn classify_key(url: &str, key: &str, globs: bool) -> Result<Target, SourceError> {
    let bad = |reason: String| SourceError::bad_url(url, &reason);
    if key.starts_with('/') {
        return Err(bad("empty path segment (//) in the key".into()));
    }
    let (dir, last) = match key.rsplit_once('/') {
        Some((d, l)) => (d, l),
        None => ("", key),
    };
    if let Some(reason) = check_key(dir).err() {
        return Err(bad(reason));
    }
    if globs && dir.contains(['*', '?']) {
        return Err(bad(
            "wildcards are only allowed in the last path segment".into()
        ));
    }
    if last.is_empty() {
        return Ok(Target::Prefix {
            prefix: dir.to_string(),
        });
    }
    if let Some(reason) = check_key(last).err() {
        return Err(bad(reason));
    }
    if globs && last.contains(['*', '?']) {
        return Ok(Target::Glob {
            prefix: dir.to_string(),
            pattern: last.to_string(),
        });
    }
    Ok(Target::Object {
        key: key.to_string(),
    })
}

/// Reject keys that cannot be a path in the mounted tree: empty segments,
/// `.`/`..`, control characters (NUL included). `""` is fine (no segments).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Ok(());
    }
    for seg in key.split('/') {
        match seg {
            "" => return Err("empty path segment (//)".into()),
            "." | ".." => return Err(format!("path segment {seg:?} would escape the tree")),
            _ if seg.chars().any(|c| c.is_control()) => {
                return Err("control character (such as NUL) in the path".into());
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_http(s: &str) -> Result<ParsedUrl, SourceError> {
    let bad = |reason: &str| SourceError::bad_url(s, reason);
    let url = url::Url::parse(s).map_err(|e| bad(&format!("invalid URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL are not supported: use a signed URL or the cloud's environment",
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(bad("missing host"));
    };
    let origin = url.origin().ascii_serialization();
    let raw_path = url.path().strip_prefix('/').unwrap_or(url.path());
    if raw_path.is_empty() {
        return Err(bad("empty path: name an object on this host"));
    }
    if raw_path.to_ascii_lowercase().contains("%2f") {
        return Err(bad("encoded / (%2F) in the path is not supported"));
    }
    let key: String = raw_path
        .split('/')
        .map(|seg| decode_segment(seg).ok_or_else(|| bad("path is not valid UTF-8 once decoded")))
        .collect::<Result<Vec<_>, _>>()?
        .join("/");
    // Only a literal `*` makes an http(s) glob: `?` starts the query, and escaped
    // characters (`%2A`, `%3F`) are part of a name.
    let globs = raw_path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('*'));
    let query = url.query().filter(|q| !q.is_empty());
    let kept = query.map(strip_signed).filter(|q| !q.is_empty());
    let kept_suffix = kept.map(|q| format!("?{q}")).unwrap_or_default();

    if let Some(account) = host.strip_suffix(".blob.core.windows.net") {
        // Azure Blob: /container/key...; a query is a SAS token.
        let Some((container, key)) = key.split_once('/') else {
            return Err(bad(
                "missing key: expected https://ACCOUNT.blob.core.windows.net/CONTAINER/KEY",
            ));
        };
        if container.is_empty() || account.is_empty() || account.contains('.') {
            return Err(bad(
                "expected https://ACCOUNT.blob.core.windows.net/CONTAINER/KEY",
            ));
        }
        let target = classify_key(s, key, globs)?;
        let root = format!("{origin}/{}/", encode_segment(container));
        let store = StoreLocation::Azure {
            account: Some(account.to_string()),
            container: container.to_string(),
            sas: query.map(Secret::new),
        };
        let mut parsed = ParsedUrl {
            kind: SourceKind::Azure,
            store,
            target,
            canonical: String::new(),
            root,
        };
        parsed.canonical = format!("{}{}", parsed.object_url(key), kept_suffix);
        return Ok(parsed);
    }

    let target = classify_key(s, &key, globs)?;
    let store = StoreLocation::Http {
        origin: origin.clone(),
        query: query.map(Secret::new),
    };
    let canonical = format!("{origin}{}{kept_suffix}", url.path());
    Ok(ParsedUrl {
        kind: SourceKind::Http,
        store,
        target,
        canonical,
        root: format!("{origin}/"),
    })
}

fn decode_segment(seg: &str) -> Option<String> {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Characters a path segment keeps as they are (RFC 3986 `pchar` minus `%`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Percent-encode one path segment for an `http(s)` canonical URL.
fn encode_segment(seg: &str) -> String {
    percent_encoding::utf8_percent_encode(seg, SEGMENT).to_string()
}

#[cfg(test)]
#[path = "url_tests.rs"]
mod tests;
