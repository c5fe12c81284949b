//! The end-to-end test harness of inputfs: real servers on loopback, started on a
//! free port and stopped (only the process we started, and waited for) on drop,
//! plus deterministic data and checksums. The integration tests in `tests/` use
//! it, and so do the end-to-end mount tests.
//!
//! - [`data`]: `pattern(seed, len)` test data and SHA-256 helpers.
//! - [`s3`]: [`S3Server`], an in-process S3 endpoint (s3s + s3s-fs) that counts
//!   the object bytes it serves.
//! - [`moto`]: [`MotoServer`], an S3 endpoint (moto) that honours `If-Match`
//!   and bucket versioning, for the version-pinning tests.
//! - [`nginx`]: [`NginxServer`], an HTTP origin that honours Range and If-Match,
//!   counted from its access log.
//! - [`azurite`]: [`AzuriteServer`], an Azure Blob endpoint (azurite) that logs
//!   every request, for `az://` inputs.
//! - [`tls`]: [`TestCa`], a private CA and a leaf certificate for 127.0.0.1
//!   (openssl), for `https://` origins.
//! - [`cache_dir`]: counting the blocks a cache directory holds.
//! - [`hostile`]: planting what a hostile writer of a shared cache could leave,
//!   and a canary tree to prove nothing outside the cache was touched.
//! - [`scrape`]: reading a mount's metrics endpoint.
//! - [`bins`]: finding server binaries (failing with "run scripts/setup") and ports.
//! - [`mounts`]: running the real `inputfs` binary against a real FUSE mount.
//! - [`netfs`]: [`SharedDir`], one directory on a network filesystem (sshfs,
//!   SMB) mounted at several mount points, each standing in for one host.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

pub mod azurite;
pub mod bins;
pub mod cache_dir;
pub mod data;
pub mod hostile;
pub mod moto;
pub mod mounts;
pub mod netfs;
pub mod nginx;
pub mod s3;
pub mod scrape;
pub mod tls;
pub mod users;

pub use azurite::AzuriteServer;
pub use bins::{dead_endpoint, free_port, require_binary, wait_for_port};
pub use cache_dir::{cached_blocks, origin_summary, tier_copies};
pub use data::{pattern, sha256_file, sha256_hex};
pub use moto::MotoServer;
pub use netfs::SharedDir;
pub use nginx::{LogEntry, NginxServer};
pub use s3::S3Server;
pub use tls::TestCa;
