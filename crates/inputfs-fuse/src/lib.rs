//! The FUSE side of inputfs, kept thin on purpose.
//!
//! Everything interesting — tiers, single-flight, readahead — lives in
//! `inputfs-core`'s engine and is tested without a kernel. This crate only turns the
//! resolved inputs into an inode tree ([`tree`]), answers metadata from it, and
//! hands reads to the engine on a tokio runtime, replying asynchronously so the
//! FUSE loop never waits on I/O ([`fs`]).

mod direct_io;
mod error;
mod fs;
mod passthrough;
mod tree;

pub use error::TreeError;
pub use fs::{InputFs, MountOptions, mount};
pub use tree::{Node, NodeKind, Tree, TreeFile, check_component};
