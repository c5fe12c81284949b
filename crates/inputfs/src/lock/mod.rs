//! Lock files: `--lock-out FILE` records exactly what a mount resolved, and
//! `--locked FILE` mounts exactly that again, so a job can be re-run on the
//! inputs (and versions) it first saw.
//!
//! Schema (also in the README):
//! ```json
//! { "inputfs_lock": 1,
//!   "files": [ { "input": "train", "path": "a/b.bin", "url": "s3://bucket/train/a/b.bin",
//!                "kind": "s3", "size": 1234, "block_size": 4194304,
//!                "version": { "etag": "\"9b2c...\"", "version_id": "3HL4...", "modified_unix": 1763798400 } } ] }
//! ```
//! A `--locked` mount never lists again: the tree comes from the file, and
//! every ranged GET is pinned to the recorded version (version id and/or
//! `If-Match`), so reading a pinned version never depends on the object being
//! unchanged at the origin. Each GET also checks the size the origin reports
//! against the recorded one, so a wrong size fails reads instead of serving
//! wrong bytes — except a size of 0, for which no read is ever made: entries of
//! size 0 are checked with one pinned HEAD each at mount ([`verify`]). The file
//! is decoded by hand ([`decode`]) so that every error names the file, the
//! entry and the field at fault.
//!
//! Signed URLs cannot be locked: their signature is stripped from the recorded
//! URL (it is a credential), so `--locked` could not fetch them again;
//! `--lock-out` refuses them up front instead of writing a lock that cannot work.
#![allow(
    clippy::disallowed_methods,
    reason = "the lock file the user gives, not a cache directory"
)]

mod decode;
mod verify;

use std::io::Write;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use bytesize::ByteSize;
use inputfs_core::{SourceKind, Version};
use inputfs_source::url::is_signed_param;
use inputfs_source::{InputSpec, Origin, ResolvedInput};
use serde::Serialize;

use crate::cli::{CacheArgs, MountArgs};

pub use decode::parse;

/// The lock format this build writes and reads.
pub const FORMAT: u64 = 1;

/// One pinned file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockEntry {
    pub input: String,
    pub path: String,
    pub url: String,
    pub kind: SourceKind,
    pub size: u64,
    pub version: Version,
    pub block_size: u64,
}

#[derive(Serialize)]
struct LockFile<'a> {
    inputfs_lock: u64,
    files: &'a [LockEntry],
}

/// What a lock file mounts: the inputs, and the block size they were cached at.
#[derive(Debug)]
pub struct Locked {
    pub block_size: u64,
    pub inputs: Vec<ResolvedInput>,
    /// The entries of size 0, to be checked at the origin ([`verify`]).
    pub empty: Vec<Empty>,
}

/// An entry of size 0: the object it pins, and how errors name the entry.
#[derive(Debug)]
pub struct Empty {
    pub entry: String,
    pub object: inputfs_core::ObjectId,
}

/// The mount's inputs: from `--locked`, or resolved from the input flags (and
/// recorded with `--lock-out`). Returns the cache flags to use: under
/// `--locked` the block size is the lock's, so the cache keys are the same.
pub fn inputs(
    args: &MountArgs,
    origin: &Origin,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Vec<ResolvedInput>, CacheArgs)> {
    let mut cache = args.cache.clone();
    let resolved = match &args.locked {
        Some(path) => {
            let shown = path.display();
            let text = crate::userfile::read(path, "--locked")?;
            let locked = parse(&text).map_err(|e| anyhow!("--locked {shown}: {e}"))?;
            if locked.block_size != cache.block_size.as_u64() {
                tracing::info!(
                    "--locked {shown}: using the lock's block size {} (not {})",
                    locked.block_size,
                    cache.block_size.as_u64()
                );
                cache.block_size = ByteSize::b(locked.block_size);
            }
            for input in &locked.inputs {
                for f in &input.files {
                    origin.prepare(&f.object).map_err(|e| {
                        anyhow!(
                            "--locked {shown}: input {} path {}: {e}",
                            input.name,
                            f.path
                        )
                    })?;
                }
            }
            runtime
                .block_on(verify::empty_files(&locked.empty, origin))
                .map_err(|e| anyhow!("--locked {shown}: {e}"))?;
            locked.inputs
        }
        None => {
            let specs = crate::inputs::collect(&args.inputs)?;
            if let Some(out) = &args.lock_out {
                refuse_signed(&specs).map_err(|e| anyhow!("--lock-out {}: {e}", out.display()))?;
            }
            runtime.block_on(origin.resolve(&specs))?
        }
    };
    if let Some(out) = &args.lock_out {
        write(out, &entries(&resolved, cache.block_size.as_u64()))?;
    }
    Ok((resolved, cache))
}

/// Signed URLs cannot be locked (see the module docs).
pub fn refuse_signed(specs: &[InputSpec]) -> Result<()> {
    for spec in specs {
        if is_signed_url(&spec.url) {
            bail!(
                "input {}: a signed URL cannot be locked: its signature is not recorded, so --locked could not fetch it again (use the store's own URL with credentials from the environment)",
                spec.name
            );
        }
    }
    Ok(())
}

/// Whether an `http(s)` URL's query carries a credential.
fn is_signed_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return false;
    }
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .any(|kv| is_signed_param(kv.split('=').next().unwrap_or("")))
}

/// The lock entries of resolved inputs.
pub fn entries(resolved: &[ResolvedInput], block_size: u64) -> Vec<LockEntry> {
    resolved
        .iter()
        .flat_map(|input| {
            input.files.iter().map(move |f| LockEntry {
                input: input.name.clone(),
                path: f.path.clone(),
                url: f.object.url.clone(),
                kind: f.object.kind,
                size: f.object.size,
                version: f.object.version.clone(),
                block_size,
            })
        })
        .collect()
}

/// Write a lock file atomically: a temp file beside it, synced, renamed over it.
pub fn write(path: &Path, entries: &[LockEntry]) -> Result<()> {
    let shown = path.display();
    let text = to_json(entries);
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("--lock-out {shown}: not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        bail!("--lock-out {shown}: cannot write: {e}");
    }
    tracing::info!("wrote {} pinned files to {shown}", entries.len());
    Ok(())
}

/// The JSON text of a lock file.
pub fn to_json(entries: &[LockEntry]) -> String {
    let file = LockFile {
        inputfs_lock: FORMAT,
        files: entries,
    };
    // Plain data with string keys: serializing cannot fail.
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;
