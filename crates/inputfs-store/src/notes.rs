//! Small files published whole in a cache directory, for other workers to
//! read: the notes each running worker leaves in `workers/` (for
//! `inputfs status`; replaced every few seconds, removed at unmount), and
//! the listing snapshots in `listings/` (one per listed prefix, so a fleet
//! lists it once). Both are written the same way (a temp file, renamed over
//! the name) and read the same way. The store only moves bytes: what a file
//! says is its reader's to check.
//!
//! They are read from a directory anyone may write, so each is read only if
//! it is a regular file of at most the bound its kind gives
//! ([`NOTE_MAX`], [`LISTING_MAX`]); anything else is skipped, never opened.

use std::io::{self, Write};

use crate::beneath::{Beneath, Rel};
use crate::cache_dir::CacheDir;
use crate::error::StoreError;
use crate::fsutil::{self, DIR_MODE, FILE_MODE};

/// The largest worker note read.
pub const NOTE_MAX: u64 = 1 << 20;

/// The largest listing snapshot read: about a million objects.
pub const LISTING_MAX: u64 = 256 << 20;

/// The name `name` in `dir`: one plain file name.
fn named(dir: &Rel, at: &Beneath, name: &str) -> Result<Rel, StoreError> {
    dir.join(name)
        .ok()
        .filter(|rel| rel.as_path().parent() == Some(dir.as_path()))
        .ok_or_else(|| {
            StoreError::io(
                "name a note",
                &at.display(dir),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name:?} is not a file name"),
                ),
            )
        })
}

/// Write (or replace) the file `name` in `dir`. `dir` is made if missing,
/// but never the root: a root that is gone may be a vanished network mount,
/// whose bare mount point must stay untouched.
pub(crate) fn write(cd: &CacheDir, dir: &Rel, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let at = cd.at()?;
    let rel = named(dir, &at, name)?;
    let failed = |op, rel: &Rel, e| StoreError::io(op, &at.display(rel), e);
    match at.mkdir(dir, DIR_MODE) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(failed("create directory", dir, e));
        }
        _ => {}
    }
    let tmp = cd
        .layout
        .made(&cd.layout.tmp, &format!("{}.note", fsutil::unique_stem()));
    let written = at
        .create_new(&tmp, FILE_MODE)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| at.rename(&tmp, &rel));
    if let Err(e) = written {
        let _ = at.unlink(&tmp);
        return Err(failed("write", &rel, e));
    }
    Ok(())
}

/// Remove the file `name` in `dir` (best effort).
pub(crate) fn remove(cd: &CacheDir, dir: &Rel, name: &str) {
    if let Ok(at) = cd.at()
        && let Ok(rel) = named(dir, &at, name)
    {
        let _ = at.unlink(&rel);
    }
}

/// The file `name` in `dir`, if it is a regular file of at most `max` bytes.
pub(crate) fn read(
    cd: &CacheDir,
    dir: &Rel,
    name: &str,
    max: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let at = cd.at()?;
    let rel = named(dir, &at, name)?;
    match at.read_small(&rel, max) {
        Ok(found) => Ok(found),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", &at.display(&rel), e)),
    }
}

/// Every file in `dir` that is a regular file of at most `max` bytes.
pub(crate) fn all(cd: &CacheDir, dir: &Rel, max: u64) -> Vec<Vec<u8>> {
    let Ok(at) = cd.at() else {
        return Vec::new();
    };
    at.entries(Some(dir))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, _)| dir.join(name).ok())
        .filter_map(|rel| at.read_small(&rel, max).ok().flatten())
        .collect()
}
