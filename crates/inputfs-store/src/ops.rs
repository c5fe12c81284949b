//! The store's own count of its operations on its directory.
//!
//! On a shared cache it is metadata, not bandwidth, that a network
//! filesystem's server runs out of first when hundreds of workers use it
//! (EFS and Filestore publish limits on metadata operations per second), so
//! each operation [`Beneath`](crate::beneath::Beneath) makes is counted by
//! kind and exported (`inputfs_store_ops_total{tier, op}`): what a read, a
//! publish or a sweep costs the server can then be measured instead of
//! guessed. One count per call the store makes, by its kind: each also
//! resolves the parent directory of its name beneath the cache directory
//! (one `openat2`, which a warm client answers from its own cache), which is
//! not counted apart; listing a directory counts one `readdir` and one
//! `stat` per entry, since each entry is looked at.

use std::sync::atomic::{AtomicU64, Ordering};

/// A kind of operation on the cache directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirOp {
    /// Opening an existing file (to read, or to rewrite a claim).
    Open,
    /// Creating a new file.
    Create,
    Link,
    Rename,
    Unlink,
    /// `stat` of a name, of a listed entry, or of the filesystem's space.
    Stat,
    Readdir,
    Mkdir,
    Rmdir,
}

impl DirOp {
    pub const ALL: [DirOp; 9] = [
        DirOp::Open,
        DirOp::Create,
        DirOp::Link,
        DirOp::Rename,
        DirOp::Unlink,
        DirOp::Stat,
        DirOp::Readdir,
        DirOp::Mkdir,
        DirOp::Rmdir,
    ];

    /// The `op` label of the metric.
    pub fn name(self) -> &'static str {
        match self {
            DirOp::Open => "open",
            DirOp::Create => "create",
            DirOp::Link => "link",
            DirOp::Rename => "rename",
            DirOp::Unlink => "unlink",
            DirOp::Stat => "stat",
            DirOp::Readdir => "readdir",
            DirOp::Mkdir => "mkdir",
            DirOp::Rmdir => "rmdir",
        }
    }
}

/// Counts of one cache directory's operations, by kind.
#[derive(Debug, Default)]
pub struct DirOps {
    counts: [AtomicU64; DirOp::ALL.len()],
}

impl DirOps {
    pub(crate) fn add(&self, op: DirOp, n: u64) {
        self.counts[op as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// How many of `op` so far.
    pub fn get(&self, op: DirOp) -> u64 {
        self.counts[op as usize].load(Ordering::Relaxed)
    }

    /// Every kind with its count so far.
    pub fn snapshot(&self) -> [(DirOp, u64); DirOp::ALL.len()] {
        DirOp::ALL.map(|op| (op, self.get(op)))
    }

    /// All operations so far.
    pub fn total(&self) -> u64 {
        DirOp::ALL.iter().map(|&op| self.get(op)).sum()
    }
}
