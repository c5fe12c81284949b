//! The crate's one error type.
//!
//! Cache faults end up in logs and in `inputfs doctor` output, where the only
//! useful thing is one line saying which path and which operation failed and what
//! the OS said. So every variant carries the path, and `Display` is that line.

use std::io;
use std::path::{Path, PathBuf};

/// A file operation on the cache directory that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `op` ("open", "read", "create directory", "link"...) failed on `path`.
    /// The OS error is part of the message (and so not also a `source`, which
    /// would print it twice in error chains).
    #[error("{op} {}: {err}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    /// Something that must be a directory is not one.
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    /// The cache directory is now on another filesystem than when first seen and
    /// holds no cache: its mount is probably gone, so nothing is written there.
    #[error("{} is on another filesystem than before and holds no cache (its mount is gone?); not writing there", path.display())]
    OtherDevice { path: PathBuf },
    /// The store could not be set up lately; calls fail fast until the next try.
    #[error("{} unusable: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, err: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            err,
        }
    }

    /// The OS error behind this failure, when there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            StoreError::Io { err, .. } => Some(err),
            StoreError::NotADirectory { .. }
            | StoreError::OtherDevice { .. }
            | StoreError::Unusable { .. } => None,
        }
    }

    /// This error as the engine's tier error for the tier called `tier`.
    pub fn into_tier(self, tier: &str) -> inputfs_core::Error {
        inputfs_core::Error::Tier {
            tier: tier.to_string(),
            message: self.to_string(),
        }
    }
}

/// The errno of an I/O error, or 0 when it has none.
pub(crate) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}
