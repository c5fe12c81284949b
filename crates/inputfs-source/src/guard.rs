//! The panic boundary around `object_store`: no panic inside it reaches the
//! engine, the FUSE loop or the user as a crash.
//!
//! `object_store` 0.14 has `expect`s on its request path — a request it cannot
//! build (a URI longer than 64 KiB, a header value with a line break) panics
//! with "request must be valid" instead of returning an error
//! (docs/upstream/object_store-long-url-panic.md). Inputs are checked before
//! they get there (URL length in `url`, lock file fields in the binary), but a
//! checked input is only as good as the list of what is checked: so every store
//! is wrapped in [`Guarded`], which polls each of its futures and streams under
//! `catch_unwind` and turns a panic into an ordinary, non-retryable error
//! ([`Panicked`]). Building a store is guarded the same way ([`catch`]).
//!
//! While a guarded call runs, [`is_catching`] is true on its thread, so the
//! binary's panic hook can keep quiet about a panic that is about to become an
//! error (the one-line error then says what happened).

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

thread_local! {
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// Whether the current thread is inside a guarded call: a panic now will be
/// caught and reported as an error.
pub fn is_catching() -> bool {
    CATCHING.with(Cell::get) > 0
}

/// A panic inside `object_store`, caught at our boundary.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the object store client failed internally ({0}): a bug in object_store, caught by inputfs"
)]
pub struct Panicked(pub String);

fn message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    crate::error::shorten(&crate::error::redact(&text))
}

/// Run `f`, turning a panic into `Err(Panicked)`.
pub fn catch<T>(f: impl FnOnce() -> T) -> std::result::Result<T, Panicked> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    result.map_err(|payload| Panicked(message(payload.as_ref())))
}

fn to_error(p: Panicked) -> object_store::Error {
    object_store::Error::Generic {
        store: "inputfs",
        source: Box::new(p),
    }
}

/// A future polled under [`catch`]; after a panic it is never polled again.
struct GuardedFuture<F>(Option<Pin<Box<F>>>);

impl<T, F: Future<Output = Result<T>>> Future for GuardedFuture<F> {
    type Output = Result<T>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let Some(inner) = self.0.as_mut() else {
            return Poll::Ready(Err(to_error(Panicked("polled after a panic".into()))));
        };
        match catch(|| inner.as_mut().poll(cx)) {
            Ok(poll) => poll,
            Err(p) => {
                self.0 = None;
                Poll::Ready(Err(to_error(p)))
            }
        }
    }
}

fn guard<T, F: Future<Output = Result<T>>>(f: F) -> GuardedFuture<F> {
    GuardedFuture(Some(Box::pin(f)))
}

/// A stream polled under [`catch`]; a panic ends it with one error.
struct GuardedStream<T>(Option<BoxStream<'static, Result<T>>>);

impl<T> Stream for GuardedStream<T> {
    type Item = Result<T>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let Some(inner) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        match catch(|| inner.poll_next_unpin(cx)) {
            Ok(poll) => poll,
            Err(p) => {
                self.0 = None;
                Poll::Ready(Some(Err(to_error(p))))
            }
        }
    }
}

fn guard_stream<T: Send + 'static>(
    make: impl FnOnce() -> BoxStream<'static, Result<T>>,
) -> BoxStream<'static, Result<T>> {
    match catch(make) {
        Ok(stream) => GuardedStream(Some(stream)).boxed(),
        Err(p) => futures::stream::once(async move { Err(to_error(p)) }).boxed(),
    }
}

/// An `ObjectStore` whose every call is guarded against panics.
#[derive(Debug)]
pub(crate) struct Guarded(pub Arc<dyn ObjectStore>);

impl fmt::Display for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[async_trait]
impl ObjectStore for Guarded {
    async fn put_opts(&self, to: &Path, data: PutPayload, opts: PutOptions) -> Result<PutResult> {
        guard(self.0.put_opts(to, data, opts)).await
    }

    async fn put_multipart_opts(
        &self,
        to: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        guard(self.0.put_multipart_opts(to, opts)).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut result = guard(self.0.get_opts(location, options)).await?;
        result.payload = match result.payload {
            GetResultPayload::Stream(s) => GetResultPayload::Stream(guard_stream(|| s)),
            file => file,
        };
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        guard(self.0.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        guard_stream(|| self.0.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        guard_stream(|| self.0.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        guard_stream(|| self.0.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        guard(self.0.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        guard(self.0.copy_opts(from, to, options)).await
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
