//! Decoding a lock file by hand (not by serde), so that every error names the
//! entry and the field at fault, and validating every field a `--locked`
//! mount relies on: the tree (input, path), where to fetch (url, kind), how
//! much (size), what version (the tokens go into `If-Match` headers and query
//! strings as they are) and the cache keys (block size).
//!
//! A field is checked against what it will be used for, not only its type: a
//! size must be one a file can have (the kernel's `stat` refuses more than
//! `i64::MAX`), a version token must fit in an HTTP header (no control
//! characters), and strings are bounded. That an entry of size 0 is really
//! empty cannot be told from the file: `verify` asks the origin.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use inputfs_core::{ObjectId, SourceKind, Version};
use inputfs_source::error::shorten;
use inputfs_source::url::check_key;
use inputfs_source::{ResolvedFile, ResolvedInput, Target, parse_url};
use serde_json::{Map, Value};

use super::{FORMAT, LockEntry, Locked, is_signed_url};

/// Smallest and largest block size the engine accepts.
const MIN_BLOCK: u64 = 4096;
const MAX_BLOCK: u64 = 256 << 20;
/// The largest size a file can have: `stat`'s `st_size` is an `i64`, and the
/// kernel refuses (EIO) a FUSE attribute beyond it.
pub const MAX_SIZE: u64 = i64::MAX as u64;
/// Longest `path`: the kernel's PATH_MAX.
const MAX_PATH: usize = 4096;
/// Longest version token (`etag`, `version_id`): real ones are far shorter
/// (S3's VersionId is at most 1024 bytes).
const MAX_TOKEN: usize = 1024;

/// Decode and validate a lock file. The error is one line naming the entry
/// (`files[3] (input "train", path "a/b")`) and the field at fault.
pub fn parse(text: &str) -> Result<Locked, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON lock file: {e}"))?;
    let Value::Object(top) = value else {
        return Err("not an inputfs lock file: expected a JSON object".into());
    };
    match top.get("inputfs_lock") {
        None => {
            return Err(
                "not an inputfs lock file: no \"inputfs_lock\" field (write one with --lock-out)"
                    .into(),
            );
        }
        Some(v) if v.as_u64() == Some(FORMAT) => {}
        Some(v) => {
            return Err(format!(
                "unsupported lock format {v} (this inputfs reads {FORMAT})"
            ));
        }
    }
    if let Some(k) = top.keys().find(|k| *k != "inputfs_lock" && *k != "files") {
        return Err(format!("unknown field {k:?}"));
    }
    let files = match top.get("files") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(format!(
                "\"files\": expected an array, found {}",
                kind_of(other)
            ));
        }
        None => return Err("missing field \"files\"".into()),
    };
    if files.is_empty() {
        return Err("\"files\" is empty: nothing to mount".into());
    }
    let mut entries = Vec::with_capacity(files.len());
    let mut seen = HashSet::new();
    for (i, v) in files.iter().enumerate() {
        let entry = entry(v).map_err(|e| format!("{}: {e}", who(i, v)))?;
        let first = entries
            .first()
            .map_or(entry.block_size, |e: &LockEntry| e.block_size);
        if entry.block_size != first {
            return Err(format!(
                "{}: \"block_size\" {} differs from the first entry's {first}",
                who(i, v),
                entry.block_size
            ));
        }
        if !seen.insert((entry.input.clone(), entry.path.clone())) {
            return Err(format!("{}: a second entry for this path", who(i, v)));
        }
        entries.push(entry);
    }
    // A file cannot also be a directory of its input's tree.
    for (i, e) in entries.iter().enumerate() {
        let mut dir = e.path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if seen.contains(&(e.input.clone(), parent.to_string())) {
                return Err(format!(
                    "{}: {parent:?} is both a file and a directory",
                    who(i, &files[i])
                ));
            }
            dir = parent;
        }
    }
    let block_size = entries[0].block_size;
    let empty = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.size == 0)
        .map(|(i, e)| super::Empty {
            entry: who(i, &files[i]),
            object: object_id(e.clone()),
        })
        .collect();
    Ok(Locked {
        block_size,
        inputs: group(entries),
        empty,
    })
}

/// Entries by input (in order of first appearance), files sorted by path.
fn group(entries: Vec<LockEntry>) -> Vec<ResolvedInput> {
    let mut order: Vec<String> = Vec::new();
    let mut by_input: BTreeMap<String, Vec<ResolvedFile>> = BTreeMap::new();
    for e in entries {
        if !by_input.contains_key(&e.input) {
            order.push(e.input.clone());
        }
        let (input, path) = (e.input.clone(), e.path.clone());
        by_input.entry(input).or_default().push(ResolvedFile {
            path,
            object: object_id(e),
        });
    }
    order
        .into_iter()
        .map(|name| {
            let mut files = by_input.remove(&name).unwrap_or_default();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            ResolvedInput { name, files }
        })
        .collect()
}

/// The object an entry pins.
fn object_id(e: LockEntry) -> ObjectId {
    let mtime = e
        .version
        .modified_unix
        .and_then(|s| u64::try_from(s).ok())
        .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    ObjectId {
        kind: e.kind,
        url: e.url,
        version: e.version,
        size: e.size,
        mtime,
    }
}

/// `files[i]`, with the entry's input and path when they are readable
/// (shortened: the file may hold anything).
fn who(i: usize, v: &Value) -> String {
    let input = v.get("input").and_then(Value::as_str).map(shorten);
    let path = v.get("path").and_then(Value::as_str).map(shorten);
    match (input, path) {
        (Some(n), Some(p)) => format!("files[{i}] (input {n:?}, path {p:?})"),
        _ => format!("files[{i}]"),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const FIELDS: &[&str] = &[
    "input",
    "path",
    "url",
    "kind",
    "size",
    "version",
    "block_size",
];

fn entry(v: &Value) -> Result<LockEntry, String> {
    let Value::Object(obj) = v else {
        return Err(format!("expected an object, found {}", kind_of(v)));
    };
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    let input = string(obj, "input")?;
    inputfs_fuse::check_component(&input).map_err(|why| format!("\"input\": {why}"))?;
    let path = string(obj, "path")?;
    if path.is_empty() {
        return Err("\"path\" is empty".into());
    }
    if path.len() > MAX_PATH {
        return Err(format!(
            "\"path\" is {} bytes long (at most {MAX_PATH})",
            path.len()
        ));
    }
    check_key(&path).map_err(|why| format!("\"path\": {why}"))?;
    for seg in path.split('/') {
        inputfs_fuse::check_component(seg).map_err(|why| format!("\"path\": {why}"))?;
    }
    let url = string(obj, "url")?;
    let parsed = parse_url(&url).map_err(|e| format!("\"url\": {e}"))?;
    if matches!(parsed.target, Target::Prefix { .. }) {
        return Err("\"url\" names a prefix, not one object".into());
    }
    if is_signed_url(&url) {
        return Err("\"url\" carries a signature: signed URLs cannot be locked".into());
    }
    let kind = string(obj, "kind")?;
    let kind = match kind.as_str() {
        "s3" => SourceKind::S3,
        "gcs" => SourceKind::Gcs,
        "azure" => SourceKind::Azure,
        "http" => SourceKind::Http,
        "file" => SourceKind::File,
        other => {
            return Err(format!(
                "\"kind\": unknown kind {other:?} (s3, gcs, azure, http or file)"
            ));
        }
    };
    if kind != parsed.kind {
        return Err(format!(
            "\"kind\" is {kind} but the URL is a {} URL",
            parsed.kind
        ));
    }
    let size = unsigned(obj, "size")?;
    if size > MAX_SIZE {
        return Err(format!(
            "\"size\" {size} is more than a file can hold (at most {MAX_SIZE} bytes, 2^63-1)"
        ));
    }
    let block_size = unsigned(obj, "block_size")?;
    if !(MIN_BLOCK..=MAX_BLOCK).contains(&block_size) {
        return Err(format!(
            "\"block_size\" {block_size} is out of range (4 KiB to 256 MiB)"
        ));
    }
    let version = match obj.get("version") {
        Some(Value::Object(v)) => version(v)?,
        Some(other) => {
            return Err(format!(
                "\"version\": expected an object, found {}",
                kind_of(other)
            ));
        }
        None => return Err("missing field \"version\"".into()),
    };
    Ok(LockEntry {
        input,
        path,
        url,
        kind,
        size,
        version,
        block_size,
    })
}

fn version(obj: &Map<String, Value>) -> Result<Version, String> {
    if let Some(k) = obj
        .keys()
        .find(|k| !["etag", "version_id", "modified_unix"].contains(&k.as_str()))
    {
        return Err(format!("\"version\": unknown field {k:?}"));
    }
    let token = |name: &str| -> Result<Option<String>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(format!("\"version.{name}\" is empty")),
            // Sent as it is in an `If-Match` header or a query string.
            Some(Value::String(s)) if s.len() > MAX_TOKEN => Err(format!(
                "\"version.{name}\" is {} bytes long (at most {MAX_TOKEN})",
                s.len()
            )),
            Some(Value::String(s)) if s.chars().any(char::is_control) => Err(format!(
                "\"version.{name}\" holds a control character (it is sent in an HTTP header)"
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "\"version.{name}\": expected a string, found {}",
                kind_of(other)
            )),
        }
    };
    let modified_unix = match obj.get("modified_unix") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            format!(
                "\"version.modified_unix\": expected an integer, found {}",
                kind_of(v)
            )
        })?),
    };
    Ok(Version {
        etag: token("etag")?,
        version_id: token("version_id")?,
        modified_unix,
    })
}

fn string(obj: &Map<String, Value>, name: &str) -> Result<String, String> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "\"{name}\": expected a string, found {}",
            kind_of(other)
        )),
        None => Err(format!("missing field \"{name}\"")),
    }
}

fn unsigned(obj: &Map<String, Value>, name: &str) -> Result<u64, String> {
    match obj.get(name) {
        Some(v) => v.as_u64().ok_or_else(|| {
            format!(
                "\"{name}\": expected a non-negative integer, found {}",
                match v {
                    Value::Number(n) => format!("{n}"),
                    other => kind_of(other).to_string(),
                }
            )
        }),
        None => Err(format!("missing field \"{name}\"")),
    }
}
