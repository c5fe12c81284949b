//! Notes each running worker leaves in a cache directory (`workers/`), so
//! `inputfs status` can tell who uses it and how well: one small file per
//! worker, replaced every few seconds (temp file, rename), removed at
//! unmount. The store only moves bytes: what a note says is the binary's.
//!
//! Notes are read from a directory anyone may write, so each is read only if
//! it is a regular file of at most [`NOTE_MAX`] bytes; anything else is
//! skipped, never opened.

use std::io::{self, Write};

use crate::beneath::{Beneath, Rel};
use crate::cache_dir::CacheDir;
use crate::error::StoreError;
use crate::fsutil::{self, DIR_MODE, FILE_MODE};

/// The largest note read.
pub const NOTE_MAX: u64 = 1 << 20;

/// The name of a note: one plain file name.
fn note(cd: &CacheDir, at: &Beneath, name: &str) -> Result<Rel, StoreError> {
    cd.layout
        .workers
        .join(name)
        .ok()
        .filter(|rel| rel.as_path().parent() == Some(cd.layout.workers.as_path()))
        .ok_or_else(|| {
            StoreError::io(
                "name worker note",
                &at.display(&cd.layout.workers),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name:?} is not a file name"),
                ),
            )
        })
}

/// Write (or replace) this worker's note `name`. `workers/` is made if
/// missing, but never the root: a root that is gone may be a vanished
/// network mount, whose bare mount point must stay untouched.
pub(crate) fn write(cd: &CacheDir, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let at = cd.at()?;
    let rel = note(cd, &at, name)?;
    let failed = |op, rel: &Rel, e| StoreError::io(op, &at.display(rel), e);
    match at.mkdir(&cd.layout.workers, DIR_MODE) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(failed("create directory", &cd.layout.workers, e));
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
        return Err(failed("write worker note", &rel, e));
    }
    Ok(())
}

/// Remove this worker's note `name` (best effort).
pub(crate) fn remove(cd: &CacheDir, name: &str) {
    if let Ok(at) = cd.at()
        && let Ok(rel) = note(cd, &at, name)
    {
        let _ = at.unlink(&rel);
    }
}

/// Every note there is (regular files of at most [`NOTE_MAX`] bytes).
pub(crate) fn all(cd: &CacheDir) -> Vec<Vec<u8>> {
    let Ok(at) = cd.at() else {
        return Vec::new();
    };
    at.entries(Some(&cd.layout.workers))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, _)| cd.layout.workers.join(name).ok())
        .filter_map(|rel| at.read_small(&rel, NOTE_MAX).ok().flatten())
        .collect()
}
