//! The `direct` system: what an application gets from the origin with no FUSE and
//! no cache, using the same object_store S3 client inputfs uses, block-size ranged
//! GETs and the same number in flight as inputfs's largest readahead window
//! (max readahead / block size). Bytes are hashed in order as they complete, as
//! a streaming reader would; nothing is written anywhere. The GETs run on the
//! client's own runtime threads ([`CLIENT_THREADS`]) and the hashing on the
//! caller's, so the client's CPU time is measured apart from the reader's, as
//! a daemon's is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{Certificate, ClientOptions, ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

/// Name of the direct client's runtime threads.
const CLIENT_THREADS: &str = "direct-client";

/// A client to the origin (through the shaping proxy).
pub struct Direct {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

impl Direct {
    /// An S3 client for `bucket` at `endpoint`.
    pub fn new(endpoint: &str, bucket: &str) -> Result<Direct> {
        use inputfs_tests::s3::{ACCESS_KEY, REGION, SECRET_KEY};
        let store = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region(REGION)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .build()
            .context("the direct S3 client")?;
        Self::with_store(Arc::new(store))
    }

    /// A plain HTTP(S) client for objects below `base_url`, trusting the CA in
    /// the PEM file `ca` (for the https rows).
    pub fn https(base_url: &str, ca: &std::path::Path) -> Result<Direct> {
        let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
        let options = ClientOptions::new()
            .with_root_certificate(Certificate::from_pem(&pem).context("the test CA")?);
        let store = HttpBuilder::new()
            .with_url(base_url)
            .with_client_options(options)
            .build()
            .context("the direct https client")?;
        Self::with_store(Arc::new(store))
    }

    fn with_store(store: Arc<dyn ObjectStore>) -> Result<Direct> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(CLIENT_THREADS)
            .enable_all()
            .build()?;
        Ok(Direct { store, runtime })
    }

    /// CPU time the client's runtime threads have used so far: the GETs run
    /// there, the caller's thread only hashes (as a reader of a mount does).
    pub fn client_cpu(&self) -> Duration {
        crate::measure::own_threads_cpu(CLIENT_THREADS)
    }

    /// Read `key` (`len` bytes) in `block`-size ranged GETs, `in_flight` at a
    /// time, hashing in order; fail unless it hashes to `sha`.
    pub fn read(
        &self,
        key: &str,
        len: u64,
        sha: &str,
        block: u64,
        in_flight: usize,
    ) -> Result<Duration> {
        let path = Path::parse(key)?;
        let handle = self.runtime.handle().clone();
        self.runtime.block_on(async {
            let started = Instant::now();
            let ranges = (0..len.div_ceil(block)).map(|i| i * block..((i + 1) * block).min(len));
            let mut parts = futures::stream::iter(ranges)
                .map(|r| {
                    let (path, store) = (path.clone(), self.store.clone());
                    let get = handle.spawn(async move { store.get_range(&path, r).await });
                    async move {
                        get.await
                            .map_err(|e| anyhow::anyhow!("a GET task: {e}"))?
                            .map_err(anyhow::Error::from)
                    }
                })
                .buffered(in_flight.max(1));
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            while let Some(part) = parts
                .try_next()
                .await
                .with_context(|| format!("GET {key}"))?
            {
                total += part.len() as u64;
                hasher.update(&part);
            }
            let elapsed = started.elapsed();
            let got = hex::encode(hasher.finalize());
            if total != len || got != sha {
                bail!("checksum mismatch reading {key} directly: {total} bytes, sha256 {got}");
            }
            Ok(elapsed)
        })
    }

    /// GET `range` of `key` once: how long it took, and the bytes.
    pub fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<(Duration, Vec<u8>)> {
        let path = Path::parse(key)?;
        self.runtime.block_on(async {
            let started = Instant::now();
            let data = self
                .store
                .get_range(&path, range)
                .await
                .with_context(|| format!("GET {key}"))?;
            Ok((started.elapsed(), data.to_vec()))
        })
    }

    /// GET every object of `want` (key -> (length, SHA-256)), `in_flight` at a
    /// time, checking each.
    pub fn read_all(
        &self,
        want: &BTreeMap<String, (u64, String)>,
        in_flight: usize,
    ) -> Result<Duration> {
        let store = &self.store;
        self.runtime.block_on(async {
            let started = Instant::now();
            futures::stream::iter(want.iter())
                .map(|(key, (len, sha))| async move {
                    let path = Path::parse(key)?;
                    let data = store
                        .get(&path)
                        .await
                        .with_context(|| format!("GET {key}"))?
                        .bytes()
                        .await
                        .with_context(|| format!("GET {key}"))?;
                    if data.len() as u64 != *len || hex::encode(Sha256::digest(&data)) != *sha {
                        bail!("checksum mismatch reading {key} directly");
                    }
                    Ok(())
                })
                .buffer_unordered(in_flight.max(1))
                .try_collect::<Vec<()>>()
                .await?;
            Ok(started.elapsed())
        })
    }
}
