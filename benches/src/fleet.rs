//! The pieces of the fleet simulator (`bench-fleet`, issue 15): a worker's
//! network link, and one worker.
//!
//! A worker is the engine without FUSE (what a mount runs, minus the kernel):
//! its own `Origin` (its own connections, its own listing of the inputs), its
//! own in-memory cache, and the fleet's shared directory as its one cache
//! tier, with claims. Hundreds of them fit in one process on 2 cores, which
//! FUSE mounts would not; what they do to the origin and to the shared
//! directory is what a fleet of mounts does, since the engine and the store
//! are the same code. Workers have no local tier: a local tier only adds each
//! worker's own disk copy, which costs the fleet nothing shared.
//!
//! Each worker's origin traffic passes a [`Nic`]: a VM's network link, one
//! token bucket over all its connections, so that pooling the fleet's links
//! (cooperative cold start) is measured, rather than more connections from one
//! worker. Behind it the shaping proxy still caps each connection and adds the
//! round trip, as in `scripts/bench`.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use inputfs_core::engine::{Engine, EngineConfig};
use inputfs_core::{ObjectId, Source};
use inputfs_source::{InputSpec, Origin, ResolvedInput};
use inputfs_store::DirStore;
use inputfs_store::ops::DirOp;
use sha2::{Digest, Sha256};

/// A worker's network link: every byte it receives passes one token bucket.
pub struct Nic {
    bytes_per_sec: f64,
    /// When the link is next free (the end of the last reservation).
    free_at: Mutex<tokio::time::Instant>,
}

impl Nic {
    pub fn new(bytes_per_sec: u64) -> Nic {
        Nic {
            bytes_per_sec: bytes_per_sec as f64,
            free_at: Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Reserve the link for `len` bytes: when they will have arrived.
    fn reserve(&self, len: u64) -> tokio::time::Instant {
        let took = Duration::from_secs_f64(len as f64 / self.bytes_per_sec);
        let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*free_at).max(tokio::time::Instant::now());
        *free_at = start + took;
        *free_at
    }
}

/// A source whose responses arrive no faster than its worker's [`Nic`] allows.
struct Throttled {
    inner: Arc<Origin>,
    nic: Arc<Nic>,
}

#[async_trait::async_trait]
impl Source for Throttled {
    async fn get_range(
        &self,
        object: &ObjectId,
        range: Range<u64>,
    ) -> inputfs_core::error::Result<Bytes> {
        let arrived = self.nic.reserve(range.end - range.start);
        let (data, ()) = tokio::join!(
            self.inner.get_range(object, range),
            tokio::time::sleep_until(arrived)
        );
        data
    }
}

/// What the fleet reads: one large object and a prefix of small ones, with
/// the digests every read is checked against.
pub struct Dataset {
    pub big_url: String,
    pub big_sha: [u8; 32],
    /// None when the dataset has no small objects.
    pub small_url: Option<String>,
    /// Digest of each small object, by its path below the prefix.
    pub small_sha: std::collections::HashMap<String, [u8; 32]>,
    pub bytes: u64,
}

/// How a worker is set up.
pub struct WorkerSetup {
    pub index: usize,
    /// The worker's handle on the shared directory (also its listing
    /// snapshots', so the directory operations counted are all of them).
    pub shared: Arc<DirStore>,
    pub origin: Origin,
    pub nic_bytes_per_sec: u64,
    pub memory_budget: u64,
    pub block_size: u64,
    /// Small objects read at once.
    pub small_readers: usize,
}

/// What one worker did.
pub struct WorkerRun {
    pub secs: f64,
    pub ops: Vec<(DirOp, u64)>,
    /// Bytes read and found equal to the dataset's.
    pub checked: u64,
}

/// A worker's listing of the dataset, as its mount makes it, and how long it took.
pub struct Listed {
    inputs: Vec<ResolvedInput>,
    secs: f64,
}

/// List the dataset's inputs with `origin`, as a mount does. (Not a task of
/// its own: `Origin::resolve`'s future is not provably `Send` to the
/// compiler, so the simulator runs all workers' listings at once on the
/// runtime's own thread, then their reads as tasks.)
pub async fn list(origin: &Origin, data: &Dataset) -> Result<Listed> {
    let started = Instant::now();
    let mut specs = vec![InputSpec {
        name: "big".into(),
        url: data.big_url.clone(),
    }];
    specs.extend(data.small_url.iter().map(|url| InputSpec {
        name: "small".into(),
        url: url.clone(),
    }));
    let inputs = origin.resolve(&specs).await?;
    Ok(Listed {
        inputs,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// Run one worker to the end, from its listing: read the large object
/// sequentially, then every small object in an order of its own, checking
/// every byte.
pub async fn worker(setup: WorkerSetup, listed: Listed, data: Arc<Dataset>) -> Result<WorkerRun> {
    let started = Instant::now();
    let origin = Arc::new(setup.origin);
    let inputs = listed.inputs;
    let shared = setup.shared;
    let config = EngineConfig {
        block_size: setup.block_size,
        memory_budget: setup.memory_budget,
        ..EngineConfig::default()
    };
    let source = Arc::new(Throttled {
        inner: origin.clone(),
        nic: Arc::new(Nic::new(setup.nic_bytes_per_sec)),
    });
    let engine = Engine::new(source, vec![shared.clone()], config)
        .map_err(|e| anyhow::anyhow!("worker {}: {e}", setup.index))?;
    let big = inputs[0].files[0].object.clone();
    let mut checked = big.size;
    read_big(&engine, big, &data.big_sha).await?;
    let mut small: Vec<_> = inputs.get(1).map(|i| i.files.clone()).unwrap_or_default();
    fastrand::Rng::with_seed(setup.index as u64).shuffle(&mut small);
    let small_bytes = futures::stream::iter(small)
        .map(|file| {
            let engine = engine.clone();
            let data = data.clone();
            async move {
                let object = engine.object(file.object.clone());
                let got = engine.read(&object, 0, file.object.size).await?;
                match data.small_sha.get(&file.path) {
                    Some(want) if Sha256::digest(&got)[..] == want[..] => Ok(got.len() as u64),
                    Some(_) => bail!("{}: wrong bytes", file.path),
                    None => bail!("{}: not in the dataset", file.path),
                }
            }
        })
        .buffer_unordered(setup.small_readers)
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await?;
    checked += small_bytes;
    let secs = listed.secs + started.elapsed().as_secs_f64();
    engine.shutdown(Duration::from_secs(60)).await;
    Ok(WorkerRun {
        secs,
        ops: shared.dir_ops().snapshot().to_vec(),
        checked,
    })
}

/// The fleet's shared directory, as a worker opens it.
pub fn open_shared(dir: &Path) -> Result<DirStore> {
    Ok(DirStore::open(dir, "shared")
        .with_context(|| format!("{}", dir.display()))?
        .with_claims())
}

/// Read `object` front to back in 1 MiB reads through one reader (readahead
/// on), as a job streaming it does, and check its digest.
async fn read_big(engine: &Arc<Engine>, object: ObjectId, want: &[u8; 32]) -> Result<()> {
    let size = object.size;
    let url = object.url.clone();
    let reader = engine.reader(engine.object(object));
    let mut sha = Sha256::new();
    let mut offset = 0;
    while offset < size {
        let got = reader.read(offset, 1 << 20).await?;
        if got.is_empty() {
            bail!("{url}: ended at {offset} of {size}");
        }
        sha.update(&got);
        offset += got.len() as u64;
    }
    if sha.finalize()[..] != want[..] {
        bail!("{url}: wrong bytes");
    }
    Ok(())
}
