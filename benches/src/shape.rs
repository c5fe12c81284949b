//! A shaping TCP proxy that makes a loopback origin look like a cloud object store
//! seen from a VM in the same region: every connection pays a fixed round-trip
//! time and its response direction is capped in bandwidth.
//!
//! Why a proxy of our own: this kernel has no netem qdisc, and nginx's
//! `limit_rate` only shapes nginx. Every system under test (direct, inputfs,
//! rclone, s3fs) talks to the origin through the same proxy, so they all see the
//! same "network".
//!
//! How: each accepted connection gets its own upstream connection and two pumps.
//! A pump reads chunks (at most 64 KiB), stamps each with `arrival + one-way
//! latency`, and a writer releases them in order no earlier than their stamp; so
//! a request/response exchange pays one full RTT, while a stream of chunks keeps
//! flowing (latency, not a stop-and-wait). The response direction (origin to
//! client) additionally passes a per-connection token bucket: each chunk takes
//! `len / rate` seconds of the connection's budget, like one TCP stream held to a
//! provider's per-connection throughput. The queue between reader and writer is
//! bounded (enough for the bandwidth-delay product), so a slow client pushes back
//! on the origin as TCP would.
//!
//! The defaults of `scripts/bench` (20 ms RTT, 64 MiB/s per connection) are
//! roughly what one GET stream gets from S3 or GCS inside a region: tens of
//! milliseconds to first byte and 50-100 MiB/s per connection, more only with
//! parallel connections. On a 2-core machine the sum over 16 connections is
//! bounded by CPU (server, proxy and client share the cores) long before the
//! caps add up, which holds equally for every system measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How a connection through the proxy is shaped.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Shaping {
    /// Round-trip time added to every exchange (half on each direction).
    pub rtt: Duration,
    /// Bytes per second of one connection's response direction; 0 = no cap.
    pub conn_bandwidth: u64,
}

/// The running proxy; stops (with its runtime) on drop.
pub struct ShapingProxy {
    addr: SocketAddr,
    response_bytes: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

const CHUNK: usize = 64 * 1024;
/// Chunks queued per direction: 256 x 64 KiB = 16 MiB, far above the
/// bandwidth-delay product of any sane setting (100 MiB/s x 50 ms = 5 MiB).
const QUEUE: usize = 256;
/// Credit an idle connection may bank: a short burst, as a real link allows.
const BURST: Duration = Duration::from_millis(5);

impl ShapingProxy {
    /// Listen on a free loopback port and forward every connection to `upstream`.
    pub fn start(upstream: SocketAddr, shaping: Shaping) -> Result<ShapingProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shaping-proxy")
            .enable_all()
            .build()
            .context("the shaping proxy's runtime")?;
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .context("bind the shaping proxy on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let response_bytes = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (bytes, conns) = (response_bytes.clone(), connections.clone());
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::Relaxed);
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, shaping, bytes).await;
                });
            }
        });
        Ok(ShapingProxy {
            addr,
            response_bytes,
            connections,
            runtime: Some(runtime),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes sent back to clients (HTTP headers included) since start.
    pub fn response_bytes(&self) -> u64 {
        self.response_bytes.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for ShapingProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    shaping: Shaping,
    response_bytes: Arc<AtomicU64>,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let one_way = shaping.rtt / 2;
    let up = pump(client_r, server_w, one_way, 0, None);
    let down = pump(
        server_r,
        client_w,
        one_way,
        shaping.conn_bandwidth,
        Some(response_bytes),
    );
    let _ = tokio::join!(up, down);
    Ok(())
}

/// Copy `from` to `to`, each chunk delayed by `delay` (order kept) and paced to
/// `rate` bytes/s (0 = unpaced). Shuts `to` down when `from` ends.
async fn pump(
    mut from: impl AsyncReadExt + Unpin + Send + 'static,
    mut to: impl AsyncWriteExt + Unpin + Send + 'static,
    delay: Duration,
    rate: u64,
    counter: Option<Arc<AtomicU64>>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send((Instant::now() + delay, buf)).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    // The token bucket: the time at which the connection's budget is next free.
    let mut free_at = Instant::now();
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due.max(free_at)).await;
        if to.write_all(&chunk).await.is_err() {
            break;
        }
        if let Some(c) = &counter {
            c.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        if rate > 0 {
            let cost = Duration::from_secs_f64(chunk.len() as f64 / rate as f64);
            let now = Instant::now();
            free_at = free_at.max(now.checked_sub(BURST).unwrap_or(now)) + cost;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server that answers each connection's first byte with `len` bytes of a
    /// known pattern; returns its address.
    fn origin(len: usize) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut one = [0u8; 1];
                if conn.read_exact(&mut one).is_ok() {
                    let _ = conn.write_all(&inputfs_tests::pattern(5, len));
                }
            }
        });
        addr
    }

    /// Send one byte through the proxy, read the whole answer: (time, bytes).
    fn exchange(proxy: &ShapingProxy) -> (Duration, Vec<u8>) {
        let mut conn = std::net::TcpStream::connect(proxy.addr()).unwrap();
        let started = std::time::Instant::now();
        conn.write_all(b"x").unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        (started.elapsed(), got)
    }

    #[test]
    fn a_request_pays_one_round_trip() {
        let shaping = Shaping {
            rtt: Duration::from_millis(60),
            conn_bandwidth: 0,
        };
        let proxy = ShapingProxy::start(origin(100), shaping).unwrap();
        let (took, got) = exchange(&proxy);
        assert_eq!(got, inputfs_tests::pattern(5, 100));
        assert!(took >= Duration::from_millis(60), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }

    #[test]
    fn responses_are_held_to_the_connection_bandwidth() {
        let len = 4 << 20;
        let shaping = Shaping {
            rtt: Duration::from_millis(20),
            conn_bandwidth: 16 << 20,
        };
        let proxy = ShapingProxy::start(origin(len), shaping).unwrap();
        let (took, got) = exchange(&proxy);
        assert_eq!(got, inputfs_tests::pattern(5, len));
        assert_eq!(proxy.response_bytes(), len as u64);
        // 4 MiB at 16 MiB/s is 250 ms, plus the round trip.
        assert!(took >= Duration::from_millis(240), "{took:?}");
        assert!(took < Duration::from_millis(700), "{took:?}");
    }
}
