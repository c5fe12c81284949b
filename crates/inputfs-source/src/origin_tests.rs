//! Unit tests of `Origin`'s reads: ranges checked before any request, pinned
//! URLs prepared without the network, and a timed-out request tried once more
//! then given up (against a real socket that answers as each test needs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use inputfs_core::{SourceKind, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// An S3 object of 10 bytes with a version (also used by `classify`'s tests).
pub(crate) fn object() -> ObjectId {
    ObjectId {
        kind: SourceKind::S3,
        url: "s3://b/k".into(),
        version: Version {
            etag: Some("\"e1\"".into()),
            version_id: None,
            modified_unix: Some(1),
        },
        size: 10,
        mtime: SystemTime::UNIX_EPOCH,
    }
}

#[tokio::test]
async fn out_of_range_and_empty_reads() {
    let origin = Origin::new();
    let obj = object();
    assert!(matches!(
        origin.get_range(&obj, 5..11).await,
        Err(Error::Range { .. })
    ));
    assert!(origin.get_range(&obj, 3..3).await.unwrap().is_empty());
    // An object no resolve registered, whose URL names no single object.
    let mut prefix = object();
    prefix.url = "s3://b/dir/".into();
    let err = origin.get_range(&prefix, 0..1).await.unwrap_err();
    assert!(
        err.to_string().contains("names a prefix, not one object"),
        "{err}"
    );
}

#[tokio::test]
async fn prepare_takes_wildcards_in_a_pinned_url_as_part_of_the_name() {
    // A listed object may be called `we*ird?.bin`: its pinned URL names it, not a
    // glob. Preparing it needs no network (the store client is built lazily).
    let origin = Origin::builder()
        .without_env()
        .s3_option(AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9")
        .s3_option(AmazonS3ConfigKey::Region, "us-east-1")
        .build();
    let mut obj = object();
    for url in [
        "s3://b/dir/we*ird?.bin",
        "s3://b/top*",
        "file:///tmp/x?.bin",
    ] {
        obj.url = url.into();
        origin.prepare(&obj).unwrap();
    }
    obj.url = "s3://b/dir/".into();
    let err = origin.prepare(&obj).unwrap_err().to_string();
    assert!(err.contains("names a prefix, not one object"), "{err}");
}

const SHORT: Duration = Duration::from_millis(300);
const BODY: &[u8] = b"0123456789";

/// What the test server does with the n-th connection (from 0).
#[derive(Clone, Copy)]
enum Reply {
    /// Accept, read the request, answer nothing.
    Hold,
    /// Answer with BODY (206 for a GET of it all, headers only for a HEAD).
    Answer,
    /// Send the headers and half of BODY, then nothing more (connection held).
    Stall,
    /// Send the headers and half of BODY, then close the connection.
    Cut,
}

/// A server on loopback that reads one request per connection and replies as
/// `script` says for that connection (the last entry for all later ones).
/// Returns its address and how many connections it accepted.
async fn server(script: &'static [Reply]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst);
            let reply = script[n.min(script.len() - 1)];
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if !matches!(reply, Reply::Hold) {
                    let is_head = head.starts_with(b"HEAD");
                    let len = BODY.len();
                    let status = if is_head {
                        "200 OK".to_string()
                    } else {
                        format!(
                            "206 Partial Content\r\nContent-Range: bytes 0-{}/{len}",
                            len - 1
                        )
                    };
                    let mut out = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nETag: \"e\"\r\nLast-Modified: Mon, 01 Dec 2025 00:00:00 GMT\r\nConnection: close\r\n\r\n"
                    )
                    .into_bytes();
                    let body = match reply {
                        _ if is_head => &BODY[..0],
                        Reply::Stall | Reply::Cut => &BODY[..BODY.len() / 2],
                        _ => BODY,
                    };
                    out.extend_from_slice(body);
                    let _ = conn.write_all(&out).await;
                    if let Reply::Cut = reply {
                        return;
                    }
                }
                // Hold the connection until the client drops it.
                let _ = conn.read(&mut buf).await;
            });
        }
    });
    (addr, accepted)
}

fn http_origin() -> Origin {
    Origin::builder()
        .without_env()
        .timeouts(Timeouts {
            first_byte: SHORT,
            stall: SHORT,
        })
        .build()
}

fn http_object(addr: std::net::SocketAddr, etag: &str) -> ObjectId {
    ObjectId {
        kind: SourceKind::Http,
        url: format!("http://{addr}/f.bin"),
        version: Version {
            etag: Some(etag.into()),
            version_id: None,
            modified_unix: None,
        },
        size: BODY.len() as u64,
        mtime: SystemTime::UNIX_EPOCH,
    }
}

/// A read of all of BODY from a server that answers every request with
/// `reply`, which must time out: the origin asks twice, waiting SHORT each
/// time, then gives up. Returns the server's address and count, the origin
/// and the error's text.
async fn times_out_twice(
    reply: &'static [Reply],
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Origin, String) {
    let (addr, accepted) = server(reply).await;
    let origin = http_origin();
    let started = Instant::now();
    let err = origin
        .get_range(&http_object(addr, "\"e\""), 0..10)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(!err.is_retryable(), "the engine would retry it: {err}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one request, one more");
    assert!(elapsed >= SHORT * 2 && elapsed < SHORT * 6, "{elapsed:?}");
    (addr, accepted, origin, err.to_string())
}

#[tokio::test]
async fn an_origin_that_never_answers_fails_a_read_after_two_timeouts_not_retryable() {
    let (addr, accepted, origin, text) = times_out_twice(&[Reply::Hold]).await;
    assert!(
        text.contains("first-byte timeout") && text.contains("timed out twice"),
        "{text}"
    );
    // The kernel's re-read of the same range right after: the same error at
    // once, the origin not asked again.
    let started = Instant::now();
    let again = origin
        .get_range(&http_object(addr, "\"e\""), 0..10)
        .await
        .unwrap_err();
    assert!(started.elapsed() < SHORT, "{:?}", started.elapsed());
    assert_eq!(again.to_string(), text);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Another range is asked for.
    origin
        .get_range(&http_object(addr, "\"e\""), 0..5)
        .await
        .unwrap_err();
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_read_whose_first_request_times_out_gets_its_bytes_from_the_second() {
    let (addr, accepted) = server(&[Reply::Hold, Reply::Answer]).await;
    let origin = http_origin();
    let got = origin
        .get_range(&http_object(addr, "\"e\""), 0..10)
        .await
        .unwrap();
    assert_eq!(&got[..], BODY);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        origin.retries().count(),
        1,
        "the request asked again is counted"
    );
}

#[tokio::test]
async fn pinned_size_is_what_a_pinned_head_says() {
    let (addr, _) = server(&[Reply::Answer]).await;
    let origin = http_origin();
    let mut obj = http_object(addr, "\"e\"");
    obj.size = 0;
    assert_eq!(origin.pinned_size(&obj).await.unwrap(), BODY.len() as u64);
    // Another version at the origin: the size of the pinned one is unknown.
    let other = http_object(addr, "\"other\"");
    let err = origin.pinned_size(&other).await.unwrap_err().to_string();
    assert!(err.contains("no longer has the pinned version"), "{err}");
}

#[tokio::test]
async fn pinned_size_of_an_origin_that_never_answers_gives_up_after_two_timeouts() {
    let (addr, accepted) = server(&[Reply::Hold]).await;
    let origin = http_origin();
    let err = origin
        .pinned_size(&http_object(addr, "\"e\""))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_that_stalls_midway_is_asked_again_and_the_second_answer_is_whole() {
    let (addr, accepted) = server(&[Reply::Stall, Reply::Answer]).await;
    let origin = http_origin();
    let got = origin
        .get_range(&http_object(addr, "\"e\""), 0..10)
        .await
        .unwrap();
    assert_eq!(&got[..], BODY, "never the stalled half");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(origin.retries().count(), 1);
}

#[tokio::test]
async fn a_body_that_always_stalls_fails_the_read_naming_the_stall_timeout() {
    // Asked twice, as for a first-byte timeout: each stalls for SHORT.
    let (_, _, _, text) = times_out_twice(&[Reply::Stall]).await;
    assert!(
        text.contains("stall timeout") && text.contains("timed out twice"),
        "{text}"
    );
}

#[tokio::test]
async fn a_connection_cut_midway_is_a_retryable_error_never_the_short_body() {
    let (addr, accepted) = server(&[Reply::Cut, Reply::Answer]).await;
    let origin = http_origin();
    let got = origin.get_range(&http_object(addr, "\"e\""), 0..10).await;
    // object_store does not ask again for a body cut short; the error says
    // the engine may (it retries retryable errors with backoff), and the
    // next request gets the whole body.
    let err = got.expect_err("a short body is never bytes");
    assert!(err.is_retryable(), "a cut connection is final: {err}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let again = origin
        .get_range(&http_object(addr, "\"e\""), 0..10)
        .await
        .unwrap();
    assert_eq!(&again[..], BODY);
}
