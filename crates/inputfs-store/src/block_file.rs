//! Reading one block file, and putting a bad one aside.
//!
//! A read must be few system calls on the happy path — on NFS every extra
//! `stat` is a round trip — and must never hand out bytes that are not
//! exactly the block asked for, whatever another worker, a crash or a torn
//! write left in the file. So [`read`] opens the block through `beneath`
//! (which never follows a link and never opens anything but a regular file),
//! reads it into one buffer (one byte more than a valid block could be, to
//! see over-long files), checks it with [`format::check_block`], and slices
//! the data out of that buffer without a copy. A bad file is moved aside and
//! reported as corrupt; anything but a regular file at a block's name (a
//! link, a directory, a FIFO or device) is removed, never followed, and
//! reported as corrupt too. Cleanup failures are ignored, since the origin
//! can always serve the block.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use inputfs_core::store::Lookup;
use inputfs_core::{BlockId, buffers};

use crate::beneath::{Beneath, Found, Rel};
use crate::cache_dir::CacheDir;
use crate::error::StoreError;
use crate::format::{self, HEADER_LEN};
use crate::fsutil::{self, is_link_on_the_way};
use crate::usage::Usage;

/// More than any block file can hold (the engine refuses blocks above
/// 256 MiB): a larger expected length is a caller's bug, refused before any
/// allocation.
const MAX_READ: usize = 512 << 20;

/// Read and check the block file of `id` in `cd` (a read or a removal is
/// journaled in `usage`).
pub(crate) fn read(
    cd: &CacheDir,
    usage: &Usage,
    at: &Beneath,
    id: &BlockId,
    expected_len: u64,
) -> Result<Lookup, StoreError> {
    let rel = cd.layout.block(id);
    let (file, stat) = match at.open_file(&rel) {
        Ok(Found::File(file, stat)) => (file, stat),
        Ok(Found::NotRegular(kind)) => return Ok(cd.remove_intruder(at, &rel, kind)),
        // Missing, or a link or file where a directory of the name belongs
        // (the next publish replaces it): a miss.
        Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_on_the_way(&e) => {
            return Ok(Lookup::Miss);
        }
        Err(e) => return Err(StoreError::io("open", &at.display(&rel), e)),
    };
    let cap = usize::try_from(expected_len)
        .ok()
        .and_then(|n| n.checked_add(HEADER_LEN + 1))
        .filter(|&cap| cap <= MAX_READ)
        .ok_or_else(|| {
            StoreError::io(
                "read",
                &at.display(&rel),
                io::Error::other("expected length too large"),
            )
        })?;
    // A pooled block buffer (`inputfs_core::buffers`: a fresh one is faulted
    // in and zeroed page by page). `read_to_end` of a `Take` reads straight
    // into its unzeroed capacity (a zeroing pass was 8% of a warm read's
    // CPU), and the `Bytes` below shares it without a copy.
    let mut buf = buffers::take(cap);
    Read::by_ref(&mut &file)
        .take(cap as u64)
        .read_to_end(&mut buf)
        .map_err(|e| StoreError::io("read", &at.display(&rel), e))?;
    match format::check_block(&buf, id, expected_len) {
        Ok(range) => {
            usage.record_access(id);
            Ok(Lookup::Hit(buffers::share(buf).slice(range)))
        }
        Err(defect) => {
            let reason = format!("{}: {defect}", at.display(&rel).display());
            move_aside(cd, at, &rel, &file, &stat);
            usage.record_removed(id);
            tracing::debug!(tier = %cd.name(), %reason, "corrupt block moved aside");
            Ok(Lookup::Corrupt(reason))
        }
    }
}

/// Move a bad block file into `corrupt/` (for a post-mortem), or delete it if
/// that fails. Both may fail (read-only mount, another worker got there
/// first); either way the caller's read goes on to the next tier.
fn move_aside(
    cd: &CacheDir,
    at: &Beneath,
    rel: &Rel,
    opened: &File,
    stat: &nix::sys::stat::FileStat,
) {
    if !fsutil::still_names(at, rel, stat) {
        return; // Already moved or replaced by another worker.
    }
    let _ = opened;
    let file_name = rel
        .as_path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let key = rel
        .as_path()
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let aside = cd.layout.made(
        &cd.layout.corrupt,
        &format!(
            "{}.{}.{}",
            key.unwrap_or_default(),
            file_name.unwrap_or_default(),
            fsutil::unique_stem()
        ),
    );
    if at.rename(rel, &aside).is_err() {
        let _ = at.unlink(rel);
    }
}
