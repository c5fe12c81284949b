//! In-memory origin and block store.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::block::BlockId;
use crate::error::{Error, Result};
use crate::object::{ObjectId, SourceKind, Version};
use crate::source::Source;
use crate::store::Placed;
use crate::store::{BlockStore, Claim, Lookup};

/// An origin held in memory that counts what it serves, like a real server's
/// access log would.
#[derive(Default)]
pub struct MemorySource {
    objects: Mutex<HashMap<String, (Version, Bytes)>>,
    requests: AtomicU64,
    bytes: AtomicU64,
    generation: AtomicU64,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Store (or overwrite, as a new version) an object and return its pinned id.
    pub fn insert(&self, url: &str, data: impl Into<Bytes>) -> ObjectId {
        let data = data.into();
        let version = Version {
            etag: Some(format!(
                "\"{}\"",
                self.generation.fetch_add(1, Ordering::Relaxed)
            )),
            ..Version::default()
        };
        let id = ObjectId {
            kind: SourceKind::File,
            url: url.to_string(),
            version: version.clone(),
            size: data.len() as u64,
            mtime: SystemTime::UNIX_EPOCH,
        };
        self.objects
            .lock()
            .unwrap()
            .insert(url.to_string(), (version, data));
        id
    }

    /// Ranged GETs served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Bytes served so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn get_range(&self, object: &ObjectId, range: Range<u64>) -> Result<Bytes> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (version, data) = self
            .objects
            .lock()
            .unwrap()
            .get(&object.url)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                url: object.url.clone(),
            })?;
        if version != object.version {
            return Err(Error::VersionChanged {
                url: object.url.clone(),
                version: object.version.token(),
            });
        }
        if range.start > range.end || range.end > data.len() as u64 {
            return Err(Error::Range {
                offset: range.start,
                len: range.end.saturating_sub(range.start),
                size: data.len() as u64,
            });
        }
        let out = data.slice(range.start as usize..range.end as usize);
        self.bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }
}

/// A block store in memory. Holds what it is given, and can be told to corrupt a
/// block to check that corruption is caught.
#[derive(Default)]
pub struct MemoryStore {
    name: String,
    blocks: Mutex<HashMap<BlockId, Bytes>>,
    /// Claims with their expiry, when this store stands in for a shared tier.
    claims: Option<Mutex<HashMap<BlockId, std::time::Instant>>>,
    /// Gets answered: each is one look at the directory a real store stands for.
    gets: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    pub fn new(name: &str) -> Self {
        MemoryStore {
            name: name.to_string(),
            blocks: Mutex::default(),
            claims: None,
            gets: Default::default(),
        }
    }

    /// A store that coordinates fetches with claims, like a shared tier. Several
    /// engines given the same `Arc<MemoryStore>` behave like workers.
    pub fn with_claims(name: &str) -> Self {
        MemoryStore {
            claims: Some(Mutex::default()),
            ..Self::new(name)
        }
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.blocks.lock().unwrap().len()
    }

    /// Gets answered so far (hits and misses).
    pub fn gets(&self) -> u64 {
        self.gets.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the store holds no block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replace a block's content with something of the wrong length, as a torn or
    /// truncated write would leave it.
    pub fn truncate(&self, block: &BlockId) {
        if let Some(b) = self.blocks.lock().unwrap().get_mut(block) {
            *b = b.slice(..b.len() / 2);
        }
    }
}

impl BlockStore for MemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, block: &BlockId, expected_len: u64) -> Result<Lookup> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut blocks = self.blocks.lock().unwrap();
        match blocks.get(block) {
            None => Ok(Lookup::Miss),
            Some(b) if b.len() as u64 == expected_len => Ok(Lookup::Hit(b.clone())),
            Some(b) => {
                let reason = format!("length {} where {expected_len} expected", b.len());
                blocks.remove(block);
                Ok(Lookup::Corrupt(reason))
            }
        }
    }

    fn put(&self, block: &BlockId, data: &[u8]) -> Result<Placed> {
        let mut blocks = self.blocks.lock().unwrap();
        if blocks.contains_key(block) {
            return Ok(Placed::AlreadyThere);
        }
        blocks.insert(*block, Bytes::copy_from_slice(data));
        Ok(Placed::New)
    }

    fn claim(&self, block: &BlockId, ttl: std::time::Duration) -> Result<Claim> {
        let Some(claims) = &self.claims else {
            return Ok(Claim::Unsupported);
        };
        let now = std::time::Instant::now();
        let mut claims = claims.lock().unwrap();
        match claims.get(block) {
            Some(expiry) if *expiry > now => Ok(Claim::Held),
            _ => {
                claims.insert(*block, now + ttl);
                Ok(Claim::Acquired)
            }
        }
    }

    fn release(&self, block: &BlockId) {
        if let Some(claims) = &self.claims {
            claims.lock().unwrap().remove(block);
        }
    }
}
