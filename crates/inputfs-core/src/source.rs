//! The origin: where bytes come from when no cache tier has them.
//!
//! The trait is deliberately one method wide — a ranged read of a pinned object —
//! so that the in-memory fake, the fault injector, the retry wrapper and the real
//! object-store client all fit it, and one test suite can run against each.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::episode::Throttling;
use crate::error::{Error, Result};
use crate::object::ObjectId;

/// A ranged reader of pinned objects.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// Read exactly `range` of `object`, at the version it was pinned to.
    /// Implementations must fail with [`Error::VersionChanged`] rather than return
    /// bytes of another version, where the protocol lets them tell.
    async fn get_range(&self, object: &ObjectId, range: Range<u64>) -> Result<Bytes>;
}

/// How to retry an operation that failed in a way that may pass: the one backoff
/// loop of the project, used for block reads ([`Retrying`]) and for resolving
/// inputs at mount alike.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1 means "no retries").
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms doubling up to 2 s (about 1.4 s of waiting in all).
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Run `op` until it succeeds, fails in a way `retryable` rejects, or the
    /// attempts are used up. Sleeps on tokio's clock (paused-clock tests are fast).
    pub async fn run<T, E, F, Fut>(&self, mut op: F, retryable: impl Fn(&E) -> bool) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.attempts.max(1) && retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.max_delay);
            attempt += 1;
        }
    }
}

/// Requests to the origin made again for a range already asked for (after an
/// error or a timeout), shared by whoever repeats requests and whoever
/// reports them (`inputfs_origin_retries_total`, the unmount summary). Each
/// is one more request for bytes the origin was already asked for: a test
/// that counts the origin's requests per range needs them to tell a retry
/// from a duplicate fetch.
#[derive(Debug, Default)]
pub struct Retries(AtomicU64);

impl Retries {
    /// Requests repeated so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// `n` more requests were repeated.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Retries retryable origin errors (and short reads) with a [`RetryPolicy`]: a
/// wrapper rather than a flag, so the policy lives in one place. It sees every
/// attempt, so it is also where throttling is noticed ([`Throttling`]) and
/// repeated requests are counted ([`Retries`]).
pub struct Retrying<S> {
    inner: S,
    policy: RetryPolicy,
    throttling: Arc<Throttling>,
    retries: Arc<Retries>,
}

impl<S> Retrying<S> {
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Retrying {
            inner,
            policy,
            throttling: Arc::default(),
            retries: Arc::default(),
        }
    }

    /// The default policy.
    pub fn with_defaults(inner: S) -> Self {
        Self::new(inner, RetryPolicy::default())
    }

    /// Report throttled responses to `throttling` (shared with whoever exports
    /// its counter) instead of a private one.
    pub fn with_throttling(mut self, throttling: Arc<Throttling>) -> Self {
        self.throttling = throttling;
        self
    }

    /// Where throttled responses are counted.
    pub fn throttling(&self) -> &Arc<Throttling> {
        &self.throttling
    }

    /// Count repeated attempts in `retries` (shared with whoever reports
    /// them) instead of a private counter.
    pub fn with_retries(mut self, retries: Arc<Retries>) -> Self {
        self.retries = retries;
        self
    }
}

#[async_trait]
impl<S: Source> Source for Retrying<S> {
    async fn get_range(&self, object: &ObjectId, range: Range<u64>) -> Result<Bytes> {
        let want = range.end - range.start;
        let attempts = AtomicU64::new(0);
        let attempt = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let b = match self.inner.get_range(object, range.clone()).await {
                Ok(b) => {
                    self.throttling.succeeded();
                    b
                }
                Err(e) => {
                    if e.is_throttling() {
                        self.throttling.throttled(&e);
                    }
                    return Err(e);
                }
            };
            if b.len() as u64 != want {
                return Err(Error::ShortRead {
                    url: object.url.clone(),
                    want,
                    got: b.len() as u64,
                });
            }
            Ok(b)
        };
        let result = self.policy.run(attempt, Error::is_retryable).await;
        self.retries
            .add(attempts.load(Ordering::Relaxed).saturating_sub(1));
        result
    }
}

#[async_trait]
impl<T: Source + ?Sized> Source for std::sync::Arc<T> {
    async fn get_range(&self, object: &ObjectId, range: Range<u64>) -> Result<Bytes> {
        (**self).get_range(object, range).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Fault, FaultySource, MemorySource};

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_then_succeeds() {
        let mem = MemorySource::new();
        let obj = mem.insert("mem://a", vec![7u8; 100]);
        let faulty = Arc::new(FaultySource::new(mem));
        faulty.fail_next(2, Fault::Transient);
        let src = Retrying::with_defaults(faulty.clone());
        let start = tokio::time::Instant::now();
        let got = src.get_range(&obj, 10..20).await.unwrap();
        assert_eq!(&got[..], &[7u8; 10]);
        // 200 ms + 400 ms of backoff, on the paused clock.
        assert_eq!(start.elapsed(), Duration::from_millis(600));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_attempts() {
        let mem = MemorySource::new();
        let obj = mem.insert("mem://a", vec![1u8; 10]);
        let faulty = Arc::new(FaultySource::new(mem));
        faulty.fail_next(100, Fault::Transient);
        let src = Retrying::with_defaults(faulty.clone());
        let err = src.get_range(&obj, 0..10).await.unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(faulty.calls(), 4);
        assert_eq!(src.retries.count(), 3, "every attempt after the first");
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_version_change() {
        let mem = MemorySource::new();
        let obj = mem.insert("mem://a", vec![1u8; 10]);
        let faulty = Arc::new(FaultySource::new(mem));
        faulty.fail_next(1, Fault::Changed);
        let src = Retrying::with_defaults(faulty.clone());
        let err = src.get_range(&obj, 0..10).await.unwrap_err();
        assert!(matches!(err, Error::VersionChanged { .. }));
        assert_eq!(faulty.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_attempts_are_counted_and_retried() {
        let mem = MemorySource::new();
        let obj = mem.insert("mem://a", vec![5u8; 10]);
        let faulty = Arc::new(FaultySource::new(mem));
        faulty.fail_next(3, Fault::Throttled);
        let throttling = Arc::new(Throttling::new(Duration::ZERO));
        let src = Retrying::with_defaults(faulty.clone()).with_throttling(throttling.clone());
        assert_eq!(&src.get_range(&obj, 0..10).await.unwrap()[..], &[5u8; 10]);
        assert_eq!(throttling.count(), 3);
        // The success after them ended the episode.
        assert!(!throttling.is_active());
        // Other retryable errors are not throttling.
        faulty.fail_next(1, Fault::Transient);
        src.get_range(&obj, 0..10).await.unwrap();
        assert_eq!(throttling.count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn short_reads_are_retried() {
        let mem = MemorySource::new();
        let obj = mem.insert("mem://a", vec![3u8; 10]);
        let faulty = Arc::new(FaultySource::new(mem));
        faulty.fail_next(1, Fault::Short);
        let src = Retrying::with_defaults(faulty.clone());
        assert_eq!(&src.get_range(&obj, 0..10).await.unwrap()[..], &[3u8; 10]);
        assert_eq!(faulty.calls(), 2);
    }
}
