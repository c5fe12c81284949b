//! A [`BlockStore`](inputfs_core::BlockStore) over a plain directory: the on-disk
//! block cache of inputfs.
//!
//! The local tier (the worker's disk) and the shared tier (an NFS/SMB directory
//! every worker mounts at once) are the same code, because the shared case is
//! the hard one and the local case is the shared case with one writer. Everything
//! that keeps concurrent workers correct is done with file operations network
//! filesystems honour: uniquely named temp files, publish by hard link (or rename
//! where links are unsupported), and a self-checking header on every block so a
//! torn, truncated or foreign file is detected, moved aside and fetched again.
//!
//! The cache directory is untrusted input (other workers, other versions and
//! people write it; the daemon runs as root), so exactly one module touches
//! it: [`beneath`] opens everything relative to a handle on the configured
//! directory, never following a link, never opening anything but a regular
//! file. Every other module asks `layout` for a name and `beneath` for the
//! operation; clippy's `disallowed-methods` (see `clippy.toml`) keeps
//! path-based `std::fs` calls out of the rest of the workspace's product code.
//!
//! - [`beneath`]: the confined file operations.
//! - `layout`: every name in the directory, relative to it (no I/O).
//! - [`format`](mod@format): the block file format as pure functions (no I/O).
//! - `cache_dir`: the one owner of a cache directory's path, names and set-up
//!   state; every part below is handed it per call.
//! - [`DirStore`] (in `dir`): composes the parts below and implements
//!   `BlockStore`; none of the parts imports it.
//! - `block_file`: reading and checking a block file, the read side.
//! - `publish`: temp file + link/rename, the write side.
//! - `claim`: expiring claims that de-duplicate origin fetches across workers.
//! - `plain`: objects held whole as plain files, for kernel passthrough.
//! - [`usage`]: journals, the usage index and eviction.
//! - `sweep`: removing what killed workers left behind (temp files, stale claims).
//! - `notes`: small files published whole for other workers: the notes
//!   running workers leave for `inputfs status`, and listing snapshots.
//! - `health`: the state machine that refuses calls while the directory is
//!   unusable and sets the store up again the moment it works; `cache_dir`
//!   is its glue to the directory ([`DirStore::open_lenient`]).
//! - [`StoreError`]: the crate's one error type.
//!
//! The layout is a format other workers and future versions read; it is
//! documented in `docs/FORMAT.md` at the workspace root.

pub mod beneath;
mod block_file;
mod cache_dir;
mod claim;
mod dir;
mod direct;
mod error;
mod exclusive;
pub mod format;
mod fsutil;
mod health;
#[cfg(all(test, feature = "shuttle"))]
mod health_model;
mod holder;
mod layout;
mod notes;
pub mod ops;
mod plain;
mod publish;
mod sums;
mod sweep;
mod sync;
pub mod usage;

pub use cache_dir::monotonic_ns;
pub use dir::{DirStore, ROOT_NAME};
pub use error::StoreError;
pub use exclusive::Holder;
pub use health::SETUP_PATIENCE;
pub use notes::{LISTING_MAX, NOTE_MAX};
pub use plain::PLAIN_NAME;
pub use sweep::{Strays, Swept};
pub use usage::{Eviction, Limits, UsageCounters};
