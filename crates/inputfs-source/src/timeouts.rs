//! How long any one origin request may take, phase by phase: connecting, waiting
//! for the first byte of the response, and waiting for more in the middle of it.
//!
//! Why our own layer: `object_store` offers a connect timeout and a whole-request
//! timeout, and reqwest's `read_timeout` (one value for the wait before the
//! headers *and* each pause in the body), but no first-byte timeout of its own.
//! A whole-request timeout alone cannot tell a dead origin from a slow transfer:
//! it has to be long enough for a block over a slow link (60 s), and an origin
//! that accepts connections and never answers then held each attempt that long
//! — four attempts of the read's retry policy, about 4 minutes per read. So every
//! HTTP request of every store goes through [`TimedConnector`]: the response's
//! headers must come within the first-byte timeout of sending the request
//! (connecting included), and the body may pause at most the stall timeout
//! between two pieces of data. Both fail as an [`HttpError`] of kind `Timeout`
//! with a [`TimedOut`] source, which `origin` recognises: a timed-out request is
//! tried once more, then the read fails (see [`crate::origin`]).
//!
//! `file://` inputs make no HTTP requests; none of this applies to them.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use tokio::time::{Instant, Sleep};

/// Default longest wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest wait for a response to start, from sending the request.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest pause in the middle of a response body.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest whole request (connect to last byte).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The first-byte and stall timeouts (the connect and whole-request ones are
/// `object_store` client options, set in `stores`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub first_byte: Duration,
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            first_byte: FIRST_BYTE_TIMEOUT,
            stall: STALL_TIMEOUT,
        }
    }
}

/// Why a request was cut short by this layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimedOut {
    #[error("no response within {0:?} of sending the request (first-byte timeout)")]
    FirstByte(Duration),
    #[error("the response stopped for {0:?} in the middle (stall timeout)")]
    Stall(Duration),
}

/// Wraps the clients another connector makes with [`Timeouts`].
#[derive(Debug)]
pub(crate) struct TimedConnector<C> {
    pub inner: C,
    pub timeouts: Timeouts,
}

impl<C: HttpConnector> HttpConnector for TimedConnector<C> {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = self.inner.connect(options)?;
        Ok(HttpClient::new(TimedService {
            client,
            timeouts: self.timeouts,
        }))
    }
}

#[derive(Debug)]
struct TimedService {
    client: HttpClient,
    timeouts: Timeouts,
}

#[async_trait]
impl HttpService for TimedService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let first_byte = self.timeouts.first_byte;
        // Dropping the request on timeout drops its connection too: a retry
        // gets a fresh one.
        let response = tokio::time::timeout(first_byte, self.client.execute(req))
            .await
            .map_err(|_| {
                HttpError::new(HttpErrorKind::Timeout, TimedOut::FirstByte(first_byte))
            })??;
        let stall = self.timeouts.stall;
        Ok(response.map(|body| HttpResponseBody::new(StallBody::new(body, stall))))
    }
}

/// A response body that fails when the server sends nothing for `stall` while
/// it is being read. Only time spent waiting on the server counts: a reader
/// that pauses between pieces does not time itself out.
struct StallBody {
    body: HttpResponseBody,
    stall: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether the last poll left us waiting for data (the timer is running).
    waiting: bool,
}

impl StallBody {
    fn new(body: HttpResponseBody, stall: Duration) -> Self {
        StallBody {
            body,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
            waiting: false,
        }
    }
}

impl Body for StallBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if !this.waiting {
            this.timer.as_mut().reset(Instant::now() + this.stall);
            this.waiting = true;
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    TimedOut::Stall(this.stall),
                )))),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                this.waiting = false;
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[path = "timeouts_tests.rs"]
mod tests;
