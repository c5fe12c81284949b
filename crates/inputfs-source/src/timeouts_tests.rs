//! Real sockets on loopback: a server that never answers, one that stops in the
//! middle of a body, and one that answers, each behind an `HttpStore` built
//! with the timed connector, as `stores` builds every store.

use std::time::Instant;

use object_store::client::ReqwestConnector;
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, RetryConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::*;

const SHORT: Duration = Duration::from_millis(300);

/// A store for `http://addr/` whose requests time out after `SHORT`.
fn store(addr: std::net::SocketAddr) -> Box<dyn ObjectStore> {
    let store = HttpBuilder::new()
        .with_url(format!("http://{addr}/"))
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .with_retry(RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        })
        .with_http_connector(TimedConnector {
            inner: ReqwestConnector::default(),
            timeouts: Timeouts {
                first_byte: SHORT,
                stall: SHORT,
            },
        })
        .build()
        .unwrap();
    Box::new(store)
}

/// Accept one connection and read its request head.
async fn accept(listener: &TcpListener) -> TcpStream {
    let (mut conn, _) = listener.accept().await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed before sending a request");
        head.extend_from_slice(&buf[..n]);
    }
    conn
}

fn timed_out(e: &object_store::Error) -> Option<TimedOut> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(t) = err.downcast_ref::<TimedOut>() {
            return Some(*t);
        }
        current = err.source();
    }
    None
}

fn headers(len: usize) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"e\"\r\nLast-Modified: Mon, 01 Dec 2025 00:00:00 GMT\r\n\r\n"
    )
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_times_out_at_the_first_byte() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = store(listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let conn = accept(&listener).await;
        // Hold the connection open, answering nothing, until the client leaves.
        let mut conn = conn;
        let _ = conn.read(&mut [0u8; 1]).await;
    });
    let started = Instant::now();
    let e = store
        .get_opts(&Path::from("f"), GetOptions::default())
        .await;
    let elapsed = started.elapsed();
    let e = e.expect_err("no answer, yet the request succeeded");
    assert_eq!(timed_out(&e), Some(TimedOut::FirstByte(SHORT)), "{e}");
    assert!(elapsed >= SHORT && elapsed < SHORT * 4, "{elapsed:?}");
    // The client dropped the connection when it gave up.
    server.await.unwrap();
}

#[tokio::test]
async fn a_body_that_stops_in_the_middle_times_out_at_the_stall_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = store(listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut conn = accept(&listener).await;
        // Promise 1000 bytes, send 10, then nothing.
        conn.write_all(headers(1000).as_bytes()).await.unwrap();
        conn.write_all(&[7u8; 10]).await.unwrap();
        let _ = conn.read(&mut [0u8; 1]).await;
    });
    let got = store
        .get_opts(&Path::from("f"), GetOptions::default())
        .await
        .expect("the headers came in time");
    let started = Instant::now();
    let e = got.bytes().await.expect_err("a stalled body completed");
    let elapsed = started.elapsed();
    assert_eq!(timed_out(&e), Some(TimedOut::Stall(SHORT)), "{e}");
    assert!(elapsed < SHORT * 4, "{elapsed:?}");
}

#[tokio::test]
async fn a_reader_pausing_between_pieces_does_not_time_itself_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = store(listener.local_addr().unwrap());
    let (go, wait) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut conn = accept(&listener).await;
        conn.write_all(headers(8).as_bytes()).await.unwrap();
        conn.write_all(b"abcd").await.unwrap();
        // The rest only once the reader has come back from its pause.
        wait.await.unwrap();
        conn.write_all(b"efgh").await.unwrap();
        let _ = conn.read(&mut [0u8; 1]).await;
    });
    let got = store
        .get_opts(&Path::from("f"), GetOptions::default())
        .await
        .unwrap();
    let mut stream = got.into_stream();
    use futures::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"abcd");
    // The reader is busy for longer than the stall timeout (the server is
    // not the one being slow), then asks for more.
    tokio::time::sleep(SHORT * 2).await;
    go.send(()).unwrap();
    let rest = stream
        .next()
        .await
        .unwrap()
        .expect("timed out on the reader's pause");
    assert_eq!(&rest[..], b"efgh");
}

#[tokio::test]
async fn timely_answers_pass_through_unchanged() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = store(listener.local_addr().unwrap());
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let sent = body.clone();
    tokio::spawn(async move {
        let mut conn = accept(&listener).await;
        conn.write_all(headers(sent.len()).as_bytes())
            .await
            .unwrap();
        conn.write_all(&sent).await.unwrap();
        let _ = conn.read(&mut [0u8; 1]).await;
    });
    let got = store
        .get_opts(&Path::from("f"), GetOptions::default())
        .await
        .unwrap();
    assert_eq!(got.meta.e_tag.as_deref(), Some("\"e\""));
    let bytes = got.bytes().await.unwrap();
    assert!(bytes[..] == body[..], "bytes differ");
}
