//! Fault-injecting wrappers: make the next N calls fail in a chosen way.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::block::BlockId;
use crate::error::{Error, Result};
use crate::object::ObjectId;
use crate::source::Source;
use crate::store::{BlockStore, Claim, Lookup};

/// A way for the origin to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A retryable error (500, connection reset).
    Transient,
    /// The origin asks us to slow down (429, 503 SlowDown): retryable.
    Throttled,
    /// A non-retryable error (403).
    Permanent,
    /// The object changed since it was pinned.
    Changed,
    /// Fewer bytes than asked for.
    Short,
}

/// Wraps a source and injects faults into its next calls.
pub struct FaultySource<S> {
    inner: S,
    pending: Mutex<Vec<Fault>>,
    calls: AtomicU64,
    delay: Mutex<Duration>,
}

impl<S> FaultySource<S> {
    pub fn new(inner: S) -> Self {
        FaultySource {
            inner,
            pending: Mutex::default(),
            calls: AtomicU64::new(0),
            delay: Mutex::new(Duration::ZERO),
        }
    }

    /// Make the next `n` calls fail with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.pending
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// Delay every call by `d` (on tokio's clock, so paused-clock tests stay fast).
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }

    /// Calls received so far, failed or not.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: Source> Source for FaultySource<S> {
    async fn get_range(&self, object: &ObjectId, range: Range<u64>) -> Result<Bytes> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let fault = {
            let mut p = self.pending.lock().unwrap();
            if p.is_empty() {
                None
            } else {
                Some(p.remove(0))
            }
        };
        let url = object.url.clone();
        match fault {
            None => self.inner.get_range(object, range).await,
            Some(Fault::Transient) => Err(Error::Origin {
                url,
                message: "injected 500".into(),
                retryable: true,
                throttled: false,
            }),
            Some(Fault::Throttled) => Err(Error::Origin {
                url,
                message: "injected 503 SlowDown".into(),
                retryable: true,
                throttled: true,
            }),
            Some(Fault::Permanent) => Err(Error::Origin {
                url,
                message: "injected 403".into(),
                retryable: false,
                throttled: false,
            }),
            Some(Fault::Changed) => Err(Error::VersionChanged {
                url,
                version: object.version.token(),
            }),
            Some(Fault::Short) => {
                let b = self.inner.get_range(object, range).await?;
                Ok(b.slice(..b.len() / 2))
            }
        }
    }
}

/// A way for a cache tier to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// The call returns an I/O error with this errno (ESTALE, EIO, ENOSPC...).
    Errno(i32),
    /// The call blocks this long first (a hung network mount).
    Hang(Duration),
}

/// Wraps a block store and injects faults into gets and puts.
pub struct FaultyStore<S> {
    inner: S,
    gets: Mutex<Vec<StoreFault>>,
    puts: Mutex<Vec<StoreFault>>,
    claims: Mutex<Vec<StoreFault>>,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            gets: Mutex::default(),
            puts: Mutex::default(),
            claims: Mutex::default(),
        }
    }

    /// Make the next `n` gets fail with `fault`.
    pub fn fail_gets(&self, n: usize, fault: StoreFault) {
        self.gets
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// Make the next `n` puts fail with `fault`.
    pub fn fail_puts(&self, n: usize, fault: StoreFault) {
        self.puts
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// Make the next `n` claims fail with `fault`.
    pub fn fail_claims(&self, n: usize, fault: StoreFault) {
        self.claims
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn inject(&self, queue: &Mutex<Vec<StoreFault>>, what: &str) -> Result<()> {
        let fault = {
            let mut q = queue.lock().unwrap();
            if q.is_empty() {
                None
            } else {
                Some(q.remove(0))
            }
        };
        match fault {
            None => Ok(()),
            Some(StoreFault::Hang(d)) => {
                std::thread::sleep(d);
                Ok(())
            }
            Some(StoreFault::Errno(errno)) => Err(Error::Tier {
                tier: "faulty".into(),
                message: format!(
                    "injected {what} failure: {}",
                    std::io::Error::from_raw_os_error(errno)
                ),
            }),
        }
    }
}

impl<S: BlockStore> BlockStore for FaultyStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get(&self, block: &BlockId, expected_len: u64) -> Result<Lookup> {
        self.inject(&self.gets, "get")?;
        self.inner.get(block, expected_len)
    }

    fn put(&self, block: &BlockId, data: &[u8]) -> Result<crate::store::Placed> {
        self.inject(&self.puts, "put")?;
        self.inner.put(block, data)
    }

    fn claim(&self, block: &BlockId, ttl: Duration) -> Result<Claim> {
        self.inject(&self.claims, "claim")?;
        self.inner.claim(block, ttl)
    }

    fn release(&self, block: &BlockId) {
        self.inner.release(block)
    }
}
