//! Resolving inputs at mount: every URL becomes a list of files, each pinned to the
//! version the origin reports now (HEAD for one object, LIST page by page for a
//! prefix, LIST and a filter for a glob).
//!
//! What is resolved here is what the job sees for its whole life, so anything that
//! would make the tree ambiguous or unsafe — two objects at one path, a file that
//! is also a directory, a key with `..` or an empty segment — is refused now, with
//! an error naming the input and the objects, rather than discovered later.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use inputfs_core::{ObjectId, RetryPolicy, SourceKind, Version};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::classify::to_source;
use crate::error::SourceError;
use crate::glob::{glob_match, is_recursive};
use crate::origin::{Origin, Pinned};
use crate::snapshot::{self, Turn};
use crate::stores::StoreEntry;
use crate::url::{ParsedUrl, Target, check_key, parse_url};

/// How many inputs are resolved at once (each is a HEAD or a listing).
pub const RESOLVE_CONCURRENCY: usize = 16;

/// One input as the user named it: `--input NAME=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub name: String,
    pub url: String,
}

/// One file of a resolved input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// Path below the input's directory: relative, `/`-separated, never empty,
    /// no `.`/`..`/empty segments.
    pub path: String,
    pub object: ObjectId,
}

/// A resolved input: its files, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedInput {
    pub name: String,
    pub files: Vec<ResolvedFile>,
}

/// Run `op` with the engine's retry policy, except that after a second timeout
/// it gives up (as reads do, see [`crate::origin`]): an endpoint that does not
/// answer fails the mount after two timeouts, not four.
pub(crate) async fn with_retries<T, F, Fut>(op: F) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let timeouts = AtomicU32::new(0);
    RetryPolicy::default()
        .run(op, |e: &SourceError| {
            e.is_retryable() && !(e.is_timeout() && timeouts.fetch_add(1, Ordering::Relaxed) >= 1)
        })
        .await
}

impl Origin {
    /// Resolve every input, at most [`RESOLVE_CONCURRENCY`] at a time, and register
    /// the stores and objects that later reads need. Results are in input order;
    /// the first failing input (in that order) is the error.
    pub async fn resolve(&self, inputs: &[InputSpec]) -> Result<Vec<ResolvedInput>, SourceError> {
        check_names(inputs)?;
        futures::stream::iter(inputs)
            .map(|spec| async move {
                // A dropped keep-alive connection or a 503 must not fail the mount:
                // retry the input's whole resolution with the engine's policy.
                with_retries(|| self.resolve_one(spec))
                    .await
                    .map_err(|e| e.with_input(&spec.name))
            })
            .buffered(RESOLVE_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn resolve_one(&self, spec: &InputSpec) -> Result<ResolvedInput, SourceError> {
        let parsed = parse_url(&spec.url)?;
        let entry = self.store_for(&parsed)?;
        let url = parsed.canonical.as_str();
        let files = match &parsed.target {
            Target::Object { key } => {
                let path = Path::parse(key).map_err(|e| bad_key(url, key, &e.to_string()))?;
                let meta = entry
                    .store
                    .head(&path)
                    .await
                    .map_err(|e| to_source(&e, "", url, &entry, false))?;
                let basename = key.rsplit('/').next().unwrap_or(key).to_string();
                tree(url, vec![self.pin(&parsed, &entry, basename, key, meta)])?
            }
            Target::Prefix { .. } | Target::Glob { .. } if parsed.kind == SourceKind::Http => {
                return Err(SourceError::NotListable {
                    input: String::new(),
                    url: url.to_string(),
                });
            }
            Target::Prefix { prefix } => self.listed(&parsed, &entry, prefix, None).await?,
            Target::Glob { prefix, pattern } => {
                self.listed(&parsed, &entry, prefix, Some(pattern)).await?
            }
        };
        tracing::debug!(input = %spec.name, url = %url, files = files.len(), "resolved input");
        Ok(ResolvedInput {
            name: spec.name.clone(),
            files,
        })
    }

    /// The files below `prefix` that `pattern` matches: from a fresh listing
    /// snapshot if the mount shares listings and one resolves, else listed
    /// (and then published as a snapshot).
    async fn listed(
        &self,
        parsed: &ParsedUrl,
        entry: &StoreEntry,
        prefix: &str,
        pattern: Option<&String>,
    ) -> Result<Vec<ResolvedFile>, SourceError> {
        let url = parsed.canonical.as_str();
        let files = |metas| self.files(parsed, entry, prefix, pattern, metas);
        let Some(snapshots) = self.snapshots() else {
            return files(self.list(parsed, entry, prefix, pattern).await?);
        };
        let claimed = match snapshots.turn(url).await {
            Turn::Use(metas) => match files(metas) {
                Ok(files) => {
                    tracing::info!(
                        url,
                        files = files.len(),
                        "used the fleet's listing snapshot"
                    );
                    return Ok(files);
                }
                Err(e) => {
                    tracing::warn!(
                        url,
                        "listing snapshot does not resolve, listing instead: {e}"
                    );
                    false
                }
            },
            Turn::List { claimed } => claimed,
        };
        let began = snapshot::now_ms();
        let metas = match self.list(parsed, entry, prefix, pattern).await {
            Ok(metas) => metas,
            Err(e) => {
                snapshots.publish(url, None, claimed).await;
                return Err(e);
            }
        };
        // Encoded before the listing is consumed; published only if it
        // resolves (one that does not fails the mount).
        let bytes = snapshot::encode(url, began, &metas);
        if bytes.is_none() {
            tracing::debug!(url, "the listing needed version ids: no snapshot published");
        }
        let resolved = files(metas);
        let bytes = bytes.filter(|_| resolved.is_ok());
        snapshots.publish(url, bytes, claimed).await;
        resolved
    }

    /// `metas` as the input's files: each key below the prefix and matched by
    /// the pattern, pinned, and the whole a valid tree.
    fn files(
        &self,
        parsed: &ParsedUrl,
        entry: &StoreEntry,
        prefix: &str,
        pattern: Option<&String>,
        metas: Vec<ObjectMeta>,
    ) -> Result<Vec<ResolvedFile>, SourceError> {
        let url = parsed.canonical.as_str();
        let files = select(url, prefix, pattern, metas)?
            .into_iter()
            .map(|(rel, key, meta)| self.pin(parsed, entry, rel, &key, meta))
            .collect();
        tree(url, files)
    }

    /// List below `prefix` (page by page), keeping what `pattern` matches,
    /// each with its ETag (HEADed where the listing has none).
    async fn list(
        &self,
        parsed: &ParsedUrl,
        entry: &StoreEntry,
        prefix: &str,
        pattern: Option<&String>,
    ) -> Result<Vec<ObjectMeta>, SourceError> {
        let url = parsed.canonical.as_str();
        let list_err = |e: object_store::Error| to_source(&e, "", url, entry, true);
        let prefix_path = Path::parse(prefix).map_err(|e| bad_key(url, prefix, &e.to_string()))?;
        let prefix_opt = (!prefix.is_empty()).then_some(&prefix_path);
        // A `*` glob only looks at the prefix's direct children: ask for just those.
        let metas: Vec<ObjectMeta> = match pattern {
            Some(p) if !is_recursive(p) => {
                entry
                    .store
                    .list_with_delimiter(prefix_opt)
                    .await
                    .map_err(list_err)?
                    .objects
            }
            _ => entry
                .store
                .list(prefix_opt)
                .try_collect()
                .await
                .map_err(list_err)?,
        };
        let found = select(url, prefix, pattern, metas)?;
        // Listings of real clouds carry each object's ETag. Where one does not (some
        // S3-compatible servers), HEAD the object, so that it is pinned by the same
        // version token as when it is named on its own.
        futures::stream::iter(found)
            .map(|(_, key, meta)| async move {
                if meta.e_tag.is_some() {
                    return Ok(meta);
                }
                let object_url = parsed.object_url(&key);
                entry
                    .store
                    .head(&meta.location)
                    .await
                    .map_err(|e| to_source(&e, "", &object_url, entry, false))
            })
            .buffered(RESOLVE_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Make the `ObjectId` of a resolved object and register where to fetch it.
    fn pin(
        &self,
        parsed: &ParsedUrl,
        entry: &StoreEntry,
        path: String,
        key: &str,
        meta: ObjectMeta,
    ) -> ResolvedFile {
        let url = match parsed.target {
            Target::Object { .. } => parsed.canonical.clone(),
            _ => parsed.object_url(key),
        };
        let object = object_id(parsed.kind, url.clone(), &meta);
        self.register(
            url,
            Pinned {
                entry: entry.clone(),
                path: meta.location,
            },
        );
        ResolvedFile { path, object }
    }
}

/// The `ObjectId` for what the origin reported. A missing `Last-Modified` comes
/// back from `object_store` as the epoch: that is "unknown", not a version.
pub(crate) fn object_id(kind: SourceKind, url: String, meta: &ObjectMeta) -> ObjectId {
    let secs = meta.last_modified.timestamp();
    let nanos = meta.last_modified.timestamp_subsec_nanos();
    let known = secs != 0 || nanos != 0;
    let mtime = match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::new(s, nanos),
        Err(_) => SystemTime::UNIX_EPOCH,
    };
    ObjectId {
        kind,
        url,
        version: Version {
            etag: meta.e_tag.as_deref().map(|e| normalize_etag(kind, e)),
            version_id: meta.version.clone(),
            modified_unix: known.then_some(secs),
        },
        size: meta.size,
        mtime,
    }
}

/// Azure lists ETags bare (`<Etag>0x8D...</Etag>`) but sends them quoted in
/// headers (`ETag: "0x8D..."`): quote a bare one, so that a listed object has the
/// same version token (and cache identity) as one HEADed, `If-Match` carries a
/// valid entity tag, and the ETag check of every response compares like with
/// like. Other stores are left as they report (`file://` ETags are bare by design).
pub(crate) fn normalize_etag(kind: SourceKind, etag: &str) -> String {
    if kind == SourceKind::Azure && !etag.starts_with('"') && !etag.starts_with("W/") {
        format!("\"{etag}\"")
    } else {
        etag.to_string()
    }
}

/// The objects of `metas` that are the input's files: below `prefix` (not
/// the prefix's own "directory marker") and matched by `pattern`, as
/// (path below the prefix, key, meta). A key that is not a valid path is an
/// error naming it.
fn select(
    url: &str,
    prefix: &str,
    pattern: Option<&String>,
    metas: Vec<ObjectMeta>,
) -> Result<Vec<(String, String, ObjectMeta)>, SourceError> {
    let mut found = Vec::with_capacity(metas.len());
    for meta in metas {
        let key = meta.location.as_ref().to_string();
        let rel = if prefix.is_empty() {
            key.clone()
        } else {
            match key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                Some(rel) => rel.to_string(),
                None => continue,
            }
        };
        if rel.is_empty() || pattern.is_some_and(|p| !glob_match(p, &rel)) {
            continue;
        }
        check_key(&rel).map_err(|reason| bad_key(url, &key, &reason))?;
        found.push((rel, key, meta));
    }
    Ok(found)
}

/// The files of an input, sorted by path and checked as a tree; an input
/// with none is an error.
fn tree(url: &str, mut files: Vec<ResolvedFile>) -> Result<Vec<ResolvedFile>, SourceError> {
    if files.is_empty() {
        return Err(SourceError::Empty {
            input: String::new(),
            url: url.to_string(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    check_tree(&mut files)?;
    Ok(files)
}

fn bad_key(url: &str, key: &str, reason: &str) -> SourceError {
    SourceError::BadKey {
        input: String::new(),
        url: url.to_string(),
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// Input names become directory names: one path segment, unique.
fn check_names(inputs: &[InputSpec]) -> Result<(), SourceError> {
    let mut seen = std::collections::HashSet::new();
    for spec in inputs {
        let bad = |reason: &str| SourceError::BadInput {
            input: spec.name.clone(),
            reason: reason.to_string(),
        };
        if spec.name.is_empty()
            || spec.name == "."
            || spec.name == ".."
            || spec.name.contains('/')
            || spec.name.chars().any(char::is_control)
        {
            return Err(bad(
                "an input name must be one non-empty path segment (no '/', not '.' or '..')",
            ));
        }
        if !seen.insert(spec.name.as_str()) {
            return Err(bad("the name is used by more than one input"));
        }
    }
    Ok(())
}

/// Refuse two files at one path, and a file that is also a directory — except
/// an empty object where a directory is ("folder marker"), which is dropped.
/// `files` must be sorted by path.
fn check_tree(files: &mut Vec<ResolvedFile>) -> Result<(), SourceError> {
    let conflict = |path: &str, first: &ObjectId, second: &ObjectId| SourceError::Conflict {
        input: String::new(),
        path: path.to_string(),
        first: first.url.clone(),
        second: second.url.clone(),
    };
    let mut by_path: BTreeMap<&str, &ResolvedFile> = BTreeMap::new();
    for f in files.iter() {
        if let Some(prev) = by_path.insert(f.path.as_str(), f) {
            return Err(conflict(&f.path, &prev.object, &f.object));
        }
    }
    let mut markers = Vec::new();
    for f in files.iter() {
        let mut dir = f.path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if let Some(other) = by_path.get(parent) {
                if other.object.size == 0 {
                    markers.push(parent.to_string());
                } else {
                    return Err(conflict(parent, &other.object, &f.object));
                }
            }
            dir = parent;
        }
    }
    if !markers.is_empty() {
        files.retain(|f| !markers.contains(&f.path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> ResolvedFile {
        ResolvedFile {
            path: path.into(),
            object: ObjectId {
                kind: SourceKind::S3,
                url: format!("s3://b/{path}"),
                version: Version::default(),
                size,
                mtime: SystemTime::UNIX_EPOCH,
            },
        }
    }

    #[test]
    fn tree_conflicts_are_refused_and_markers_dropped() {
        let mut ok = vec![file("a/b", 1), file("a/c", 2), file("d", 3)];
        check_tree(&mut ok).unwrap();
        assert_eq!(ok.len(), 3);

        let mut markers = vec![file("a", 0), file("a/b", 1), file("a/b/c", 1)];
        let err = check_tree(&mut markers).unwrap_err().to_string();
        assert!(
            err.contains("s3://b/a/b") && err.contains("s3://b/a/b/c"),
            "{err}"
        );

        let mut marker = vec![file("a", 0), file("a/b", 1)];
        check_tree(&mut marker).unwrap();
        assert_eq!(marker.len(), 1);
        assert_eq!(marker[0].path, "a/b");

        let mut dup = vec![file("x", 1), file("x", 2)];
        let err = check_tree(&mut dup).unwrap_err();
        assert!(matches!(err, SourceError::Conflict { .. }), "{err}");
    }

    #[test]
    fn input_names_must_be_single_unique_segments() {
        let spec = |n: &str| InputSpec {
            name: n.into(),
            url: "s3://b/k".into(),
        };
        assert!(check_names(&[spec("a"), spec("b")]).is_ok());
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(check_names(&[spec(bad)]).is_err(), "{bad:?}");
        }
        let err = check_names(&[spec("a"), spec("a")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input \"a\": the name is used by more than one input"
        );
    }

    #[test]
    fn azure_listing_etags_are_quoted_like_header_etags() {
        let az = SourceKind::Azure;
        assert_eq!(
            normalize_etag(az, "0x8DCAA16F30726CE0"),
            "\"0x8DCAA16F30726CE0\""
        );
        assert_eq!(normalize_etag(az, "\"0x8D\""), "\"0x8D\"");
        assert_eq!(normalize_etag(az, "W/\"x\""), "W/\"x\"");
        // Other stores keep what they report (file:// ETags are bare).
        assert_eq!(normalize_etag(SourceKind::File, "1a-2b-3c"), "1a-2b-3c");
        assert_eq!(normalize_etag(SourceKind::S3, "abc"), "abc");
    }
}
