//! [`S3Server`]: a real S3 endpoint (s3s + s3s-fs, SigV4 with a fixed key pair)
//! served in-process on `127.0.0.1:<free port>`, that counts what it serves.
//!
//! It runs on its own tokio runtime thread, so it serves the same whether the test
//! is synchronous, a current-thread `#[tokio::test]`, or a child `inputfs`
//! process pointed at it through [`S3Server::env`]. It is stopped, and its data
//! directory removed, when dropped.
//!
//! Counting happens in the S3 layer (a wrapper around the s3s-fs `FileSystem`),
//! not in a proxy: every `GetObject` is one request and its `Content-Length` the
//! bytes served. s3s-fs ignores `If-Match`: a GET whose `If-Match` no longer
//! matches is answered with the current object, where S3 answers 412
//! Precondition Failed. The pinning tests rely on that to show inputfs's own
//! check of every response (ETag and size) before it uses the body; moto
//! ([`crate::moto`]) is the server that honours `If-Match`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use inputfs_source::{AmazonS3ConfigKey, Origin, OriginBuilder};
use object_store::ObjectStoreExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

/// The fixed credentials the server accepts.
pub const ACCESS_KEY: &str = "inputfs-test-access";
pub const SECRET_KEY: &str = "inputfs-test-secret-key-0123456789";
pub const REGION: &str = "us-east-1";

#[derive(Default, Debug)]
struct Counts {
    gets: AtomicU64,
    get_bytes: AtomicU64,
    heads: AtomicU64,
    lists: AtomicU64,
    /// Time spent answering lists, in microseconds (to tell the server's cost
    /// from the client's in benchmarks).
    list_micros: AtomicU64,
    /// GetObject requests still to refuse with 503 SlowDown (throttling tests).
    throttle_gets: AtomicU64,
    /// GetObject requests refused so.
    throttled: AtomicU64,
    /// GetObject requests answered, by (key, range as requested).
    by_range: std::sync::Mutex<std::collections::HashMap<(String, String), u64>>,
}

/// The s3s-fs backend with counters in front.
struct Counting {
    inner: s3s_fs::FileSystem,
    counts: Arc<Counts>,
}

#[async_trait::async_trait]
impl S3 for Counting {
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let refuse = self
            .counts
            .throttle_gets
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            self.counts.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(s3s::s3_error!(SlowDown, "Please reduce your request rate."));
        }
        self.counts.gets.fetch_add(1, Ordering::SeqCst);
        let asked = (req.input.key.clone(), format!("{:?}", req.input.range));
        let resp = self.inner.get_object(req).await?;
        *self
            .counts
            .by_range
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(asked)
            .or_default() += 1;
        let len = resp.output.content_length.unwrap_or(0).max(0) as u64;
        self.counts.get_bytes.fetch_add(len, Ordering::SeqCst);
        Ok(resp)
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.counts.heads.fetch_add(1, Ordering::SeqCst);
        self.inner.head_object(req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let bucket = req.input.bucket.clone();
        let mut resp = self.inner.list_objects_v2(req).await?;
        // Real S3 listings carry each object's ETag; s3s-fs's do not. Fill them in
        // from s3s-fs's own stored metadata (in-process, not counted as HEADs), so
        // this server lists like S3 does.
        for obj in resp.output.contents.iter_mut().flatten() {
            if obj.e_tag.is_some() {
                continue;
            }
            let Some(key) = obj.key.clone() else { continue };
            let head = S3Request {
                input: HeadObjectInput {
                    bucket: bucket.clone(),
                    key,
                    ..Default::default()
                },
                method: http::Method::HEAD,
                uri: http::Uri::from_static("/"),
                headers: Default::default(),
                extensions: Default::default(),
                credentials: None,
                region: None,
                service: None,
                trailing_headers: None,
            };
            if let Ok(h) = self.inner.head_object(head).await {
                obj.e_tag = h.output.e_tag;
            }
        }
        let micros = started.elapsed().as_micros() as u64;
        self.counts.list_micros.fetch_add(micros, Ordering::SeqCst);
        Ok(resp)
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_objects(req).await
    }
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.inner.put_object(req).await
    }
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.inner.delete_object(req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.inner.delete_objects(req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.inner.copy_object(req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.inner.create_multipart_upload(req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.inner.upload_part(req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.inner.complete_multipart_upload(req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.inner.abort_multipart_upload(req).await
    }
}

/// A running S3 server; stopped on drop.
pub struct S3Server {
    addr: SocketAddr,
    counts: Arc<Counts>,
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    // Last: removed after the server thread has stopped.
    _data: tempfile::TempDir,
}

impl S3Server {
    /// Start a server on a free loopback port with an empty data directory.
    pub fn start() -> S3Server {
        let data = tempfile::tempdir().expect("temp dir for the S3 server");
        let fs = s3s_fs::FileSystem::new(data.path()).expect("s3s-fs on the temp dir");
        let counts = Arc::new(Counts::default());
        let service = {
            let mut b = s3s::service::S3ServiceBuilder::new(Counting {
                inner: fs,
                counts: counts.clone(),
            });
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-server")
            .enable_all()
            .build()
            .expect("server runtime");
        let handle = runtime.handle().clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("s3-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let http = ConnBuilder::new(TokioExecutor::new());
                    loop {
                        let socket = tokio::select! {
                            res = listener.accept() => match res {
                                Ok((socket, _)) => socket,
                                Err(_) => continue,
                            },
                            _ = &mut stopped => break,
                        };
                        let conn = http
                            .serve_connection(TokioIo::new(socket), service.clone())
                            .into_owned();
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                });
                // Open connections are cut here: the runtime and its tasks go.
                runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            })
            .expect("spawn the S3 server thread");
        S3Server {
            addr,
            counts,
            runtime: handle,
            stop: Some(stop),
            thread: Some(thread),
            _data: data,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What a child process (an `inputfs` binary) needs in its environment.
    pub fn env(&self) -> Vec<(String, String)> {
        aws_env(&self.endpoint(), ACCESS_KEY, SECRET_KEY, REGION)
    }

    /// The same settings as [`Self::env`], as `Origin` options.
    pub fn s3_options(&self) -> Vec<(AmazonS3ConfigKey, String)> {
        self.s3_options_with_secret(SECRET_KEY)
    }

    /// Settings with another secret key (for "wrong credentials" tests).
    pub fn s3_options_with_secret(&self, secret: &str) -> Vec<(AmazonS3ConfigKey, String)> {
        vec![
            (AmazonS3ConfigKey::Endpoint, self.endpoint()),
            (AmazonS3ConfigKey::AccessKeyId, ACCESS_KEY.to_string()),
            (AmazonS3ConfigKey::SecretAccessKey, secret.to_string()),
            (AmazonS3ConfigKey::Region, REGION.to_string()),
        ]
    }

    /// An `OriginBuilder` that ignores the test process's environment and talks to
    /// this server.
    pub fn origin_builder(&self) -> OriginBuilder {
        self.s3_options()
            .into_iter()
            .fold(Origin::builder().without_env(), |b, (k, v)| {
                b.s3_option(k, v)
            })
    }

    /// An in-process `Origin` for this server.
    pub fn origin(&self) -> Origin {
        self.origin_builder().build()
    }

    /// GetObject requests served since start or the last reset.
    pub fn get_requests(&self) -> u64 {
        self.counts.gets.load(Ordering::SeqCst)
    }
    /// GetObject requests answered since start or the last reset, counted by
    /// (key, range as requested): a range fetched more than once is a
    /// duplicate fetch.
    pub fn gets_by_range(&self) -> std::collections::HashMap<(String, String), u64> {
        self.counts
            .by_range
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Bytes of object data GetObject served since start or the last reset.
    pub fn get_bytes(&self) -> u64 {
        self.counts.get_bytes.load(Ordering::SeqCst)
    }
    /// HeadObject requests since start or the last reset.
    pub fn head_requests(&self) -> u64 {
        self.counts.heads.load(Ordering::SeqCst)
    }
    /// ListObjects(V2) requests since start or the last reset.
    pub fn list_requests(&self) -> u64 {
        self.counts.lists.load(Ordering::SeqCst)
    }
    /// Time this server spent answering ListObjectsV2 requests.
    pub fn list_time(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.counts.list_micros.load(Ordering::SeqCst))
    }
    /// Refuse the next `n` GetObject requests with `503 SlowDown`, as S3 does
    /// when it throttles (they are not counted as GETs).
    pub fn throttle_next_gets(&self, n: u64) {
        self.counts.throttle_gets.store(n, Ordering::SeqCst);
    }
    /// GetObject requests refused by [`throttle_next_gets`](Self::throttle_next_gets).
    pub fn throttled_gets(&self) -> u64 {
        self.counts.throttled.load(Ordering::SeqCst)
    }
    pub fn reset_counts(&self) {
        for c in [
            &self.counts.gets,
            &self.counts.get_bytes,
            &self.counts.heads,
            &self.counts.lists,
            &self.counts.list_micros,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        self.counts
            .by_range
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A client for uploads through the S3 API (so s3s-fs records its metadata).
    pub fn client(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region(REGION)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .build()
            .expect("S3 client for the test server")
    }

    /// Run `fut` on the server's runtime and wait for it: usable from synchronous
    /// code and from inside another runtime alike.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("the S3 server runtime stopped")
    }

    /// A server with `bucket` holding `objects` (key, bytes), uploaded through
    /// the API.
    pub fn with_objects(bucket: &str, objects: &[(String, Vec<u8>)]) -> S3Server {
        let server = S3Server::start();
        server.create_bucket(bucket);
        for (key, data) in objects {
            server.put_object(bucket, key, data);
        }
        server
    }

    /// Create a bucket through the API: object_store has no CreateBucket, so a
    /// presigned `PUT /bucket/` is sent by hand.
    pub fn create_bucket(&self, name: &str) {
        let client = self.client(name);
        let status = self.run(async move {
            use object_store::signer::Signer;
            let url = client
                .signed_url(
                    http::Method::PUT,
                    &Path::ROOT,
                    std::time::Duration::from_secs(60),
                )
                .await
                .expect("presign CreateBucket");
            put_empty(&url).await
        });
        assert!(
            (200..300).contains(&status),
            "CreateBucket {name}: HTTP {status}"
        );
    }

    /// Upload one object (a single PUT through the API).
    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) {
        let client = self.client(bucket);
        let path = Path::parse(key).expect("a valid key");
        let payload = bytes::Bytes::copy_from_slice(data);
        let key = key.to_string();
        self.run(async move { client.put(&path, payload.into()).await })
            .unwrap_or_else(|e| panic!("PutObject {key}: {e}"));
    }

    /// Delete one object.
    pub fn delete_object(&self, bucket: &str, key: &str) {
        let client = self.client(bucket);
        let path = Path::parse(key).expect("a valid key");
        self.run(async move { client.delete(&path).await })
            .unwrap_or_else(|e| panic!("DeleteObject: {e}"));
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `PUT` an empty body to `url` over plain HTTP/1.1; the response status.
async fn put_empty(url: &url::Url) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.host_str().expect("host");
    let port = url.port_or_known_default().expect("port");
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut conn = tokio::net::TcpStream::connect((host, port))
        .await
        .expect("connect");
    let request = format!(
        "PUT {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.expect("receive");
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {text}"))
}

/// The standard environment that points an S3 client (a child `inputfs`) at a
/// test server on plain http.
pub fn aws_env(endpoint: &str, access: &str, secret: &str, region: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", access),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", region),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
