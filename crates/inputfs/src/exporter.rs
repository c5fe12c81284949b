//! `--metrics-addr`: Prometheus metrics of a mount, served over HTTP on the mount
//! daemon's async runtime (never on a FUSE thread).
//!
//! Most numbers live as atomics in the engine, the cache directories and the
//! retry wrapper, which know nothing about Prometheus. Rather than mirror every
//! increment into the `metrics` recorder, a scrape copies them — exact, at that
//! instant — into the recorder (`absolute` for counters, `set` for gauges) and
//! then renders. Only what has no atomic of its own is recorded as it happens:
//! the FUSE read latency histogram and bytes returned (in `inputfs-fuse`).
//! Every name comes from `inputfs_core::metric_names`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use inputfs_core::metric_names::{self as names, Kind};
use inputfs_core::{BlockStore, Engine, Retries, Throttling};
use inputfs_store::DirStore;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often histogram samples are folded in between scrapes (bounds memory).
const UPKEEP: Duration = Duration::from_secs(5);

/// Where the numbers of a scrape come from.
pub struct Sources {
    pub engine: Arc<Engine>,
    pub stores: Vec<Arc<DirStore>>,
    pub throttling: Arc<Throttling>,
    pub retries: Arc<Retries>,
}

/// The listening socket, bound before anything is mounted so a bad address
/// fails the mount with nothing left behind.
pub struct Listener {
    listener: std::net::TcpListener,
    addr: String,
}

/// Bind `addr` (`HOST:PORT`). The error is one line naming the address.
pub fn bind(addr: &str) -> Result<Listener> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("--metrics-addr {addr}"))?;
    Ok(Listener {
        listener,
        addr: addr.to_string(),
    })
}

/// Install the global recorder (so FUSE reads are recorded from the start) and
/// serve `/metrics` on `listener` from `runtime` until the process ends.
pub fn serve(
    listener: Listener,
    sources: Sources,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    let handle = install()?;
    let local = listener.listener.local_addr().ok();
    let _guard = runtime.enter();
    let tcp = tokio::net::TcpListener::from_std(listener.listener)
        .with_context(|| format!("--metrics-addr {}", listener.addr))?;
    // The usage estimate of each cache directory, once, off the read path
    // (sweeps keep it current afterwards).
    let stores = sources.stores.clone();
    runtime.spawn_blocking(move || {
        for store in stores.iter().filter(|s| s.is_usable()) {
            if let Err(e) = store.estimate_usage() {
                tracing::debug!(tier = store.name(), error = %e, "cache usage not estimated");
            }
        }
    });
    let upkeep = handle.clone();
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let scrape = Arc::new(Scrape { handle, sources });
    runtime.spawn(async move {
        loop {
            let stream = match tcp.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let scrape = scrape.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let scrape = scrape.clone();
                    async move { Ok::<_, Infallible>(scrape.respond(&req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics: connection ended with an error");
                }
            });
        }
    });
    if let Some(local) = local {
        tracing::info!("serving Prometheus metrics at http://{local}/metrics");
    }
    Ok(())
}

/// The Prometheus recorder, with every metric described and the read latency
/// as a histogram (not a summary).
fn install() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::READ_SECONDS.to_string()),
            names::READ_SECONDS_BUCKETS,
        )
        .context("metrics: histogram buckets")?
        .install_recorder()
        .context("metrics: cannot install the recorder")?;
    for metric in names::ALL {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
    Ok(handle)
}

struct Scrape {
    handle: PrometheusHandle,
    sources: Sources,
}

impl Scrape {
    async fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let (status, content_type, body) = if req.uri().path() == "/metrics" {
            self.refresh(self.sources.engine.stats_now().await);
            (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.handle.render(),
            )
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain",
                "inputfs serves its metrics at /metrics\n".to_string(),
            )
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    }

    /// Copy every atomic counter into the recorder. Atomics only: no I/O.
    fn refresh(&self, s: inputfs_core::engine::StatsSnapshot) {
        counter!(names::ORIGIN_REQUESTS).absolute(s.origin_requests);
        counter!(names::ORIGIN_BYTES).absolute(s.origin_bytes);
        counter!(names::ORIGIN_ERRORS).absolute(s.origin_errors);
        counter!(names::ORIGIN_THROTTLED).absolute(self.sources.throttling.count());
        counter!(names::ORIGIN_RETRIES).absolute(self.sources.retries.count());
        counter!(names::READAHEAD_BLOCKS).absolute(s.readahead_blocks);
        counter!(names::READAHEAD_CANCELLED).absolute(s.readahead_cancelled);
        counter!(names::READAHEAD_LENT).absolute(s.readahead_lent);

        let memory = names::TIER_MEMORY;
        counter!(names::TIER_HITS, names::TIER => memory).absolute(s.memory.hits);
        counter!(names::TIER_MISSES, names::TIER => memory).absolute(s.memory.misses);
        counter!(names::TIER_READ_BYTES, names::TIER => memory).absolute(s.memory.bytes_read);
        gauge!(names::MEMORY_INFLIGHT_BYTES).set(s.memory.inflight_bytes as f64);
        gauge!(names::MEMORY_CACHED_BYTES).set(s.memory.cached_bytes as f64);

        let (mut waits, mut wait_hits, mut wait_timeouts) = (0, 0, 0);
        for (name, t) in &s.tiers {
            let tier = || (names::TIER, name.clone());
            let per_tier = [
                (names::TIER_HITS, t.hits),
                (names::TIER_MISSES, t.misses),
                (names::TIER_READ_BYTES, t.bytes_read),
                (names::TIER_ERRORS, t.errors),
                (names::TIER_CORRUPT_BLOCKS, t.corrupt),
                (names::TIER_PUBLISHES, t.publishes),
                (names::TIER_PUBLISH_ERRORS, t.publish_errors),
                (names::TIER_PUBLISH_SKIPPED, t.publish_skipped),
                (names::TIER_PUBLISH_FOUND, t.publish_found),
                (names::TIER_PUBLISH_RETRIED, t.publish_retried),
                (names::TIER_PUBLISH_DROPPED, t.publish_dropped),
                (names::TIER_DEGRADATIONS, t.degradations),
            ];
            for (metric, value) in per_tier {
                counter!(metric, &[tier()]).absolute(value);
            }
            gauge!(names::TIER_DEGRADED, &[tier()]).set(if t.degraded { 1.0 } else { 0.0 });
            gauge!(names::TIER_PUBLISH_PENDING, &[tier()]).set(t.publish_pending as f64);
            gauge!(names::TIER_CALLS_HUNG, &[tier()]).set(t.calls_hung as f64);
            waits += t.claim_waits;
            wait_hits += t.claim_wait_hits;
            wait_timeouts += t.claim_wait_timeouts;
        }
        counter!(names::CLAIM_WAITS).absolute(waits);
        counter!(names::CLAIM_WAIT_HITS).absolute(wait_hits);
        counter!(names::CLAIM_WAIT_TIMEOUTS).absolute(wait_timeouts);

        for store in &self.sources.stores {
            let usage = store.usage_counters();
            let tier = [(names::TIER, store.name().to_string())];
            counter!(names::EVICTIONS, &tier).absolute(usage.evicted_objects);
            counter!(names::EVICTED_BYTES, &tier).absolute(usage.evicted_bytes);
            for (op, count) in store.dir_ops().snapshot() {
                let labels = [
                    (names::TIER, store.name().to_string()),
                    (names::OP, op.name().to_string()),
                ];
                counter!(names::STORE_OPS, &labels).absolute(count);
            }
            if let Some(used) = usage.used_bytes {
                gauge!(names::CACHE_USED_BYTES, &tier).set(used as f64);
            }
        }
    }
}
