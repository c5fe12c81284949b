//! [`MotoServer`]: an S3 endpoint that honours `If-Match` and bucket versioning
//! (PyPI `moto[server]`, installed by `scripts/setup`), on `127.0.0.1:<free port>`.
//!
//! s3s-fs (see [`crate::s3`]) ignores `If-Match` and keeps no versions, so the
//! version-pinning tests — "the pinned version is fetched by its VersionId after
//! it was overwritten" — need this server. It runs as one process we spawn and
//! stop (by its PID, waited for) on drop; its state is in memory and dies with it.
//! Ranged GETs are slow on large objects (~200 ms each): use small objects.
//!
//! Setup calls are plain HTTP/1.1 from std (moto does not check signatures), so
//! the helpers work from any test, synchronous or not.
//!
//! Every request is recorded by moto's own recorder (`MOTO_ENABLE_RECORDING`,
//! one JSON line per request with its method, URL and headers), written before
//! the request is handled: once a client has its response, the line is there.
//! [`MotoServer::requests`] reads it back, for tests that must show *which*
//! version and range each GET asked for.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bins::{free_port, require_binary, wait_for_port};

/// Credentials moto accepts (any would do).
pub const ACCESS_KEY: &str = "inputfs-moto-access";
pub const SECRET_KEY: &str = "inputfs-moto-secret";
pub const REGION: &str = "us-east-1";

/// The recorder's file, in the server's temp dir.
const RECORDING: &str = "requests.jsonl";

/// A running moto S3 server; stopped on drop.
pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
    /// Holds moto's files until the server is dropped.
    dir: tempfile::TempDir,
}

/// One request as moto recorded it, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MotoRequest {
    pub method: String,
    /// The path, without the query (`/bucket/key`).
    pub path: String,
    /// The `versionId` query parameter, if any.
    pub version_id: Option<String>,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

/// What an S3 call answered.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl MotoServer {
    /// Start moto on a free loopback port and wait until it answers.
    pub fn start() -> MotoServer {
        let bin = require_binary("moto_server");
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(&bin) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("moto_server failed to start: {last}");
    }

    fn try_start(bin: &std::path::Path) -> Result<MotoServer, String> {
        let dir = tempfile::tempdir().expect("temp dir for moto");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("AWS_ENDPOINT_URL")
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join(RECORDING))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if wait_for_port(addr, Duration::from_millis(100)) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not listen on {addr} within 30 s"));
            }
        }
        Ok(MotoServer { child, addr, dir })
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's PID (the only process it runs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What a child `inputfs` needs in its environment to use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        crate::s3::aws_env(&self.endpoint(), ACCESS_KEY, SECRET_KEY, REGION)
    }

    /// One S3 request (path style). Panics if the server cannot be reached.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> Response {
        let mut conn = TcpStream::connect(self.addr).expect("connect to moto");
        conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
            addr = self.addr,
            len = body.len()
        );
        conn.write_all(head.as_bytes()).expect("send to moto");
        conn.write_all(body).expect("send to moto");
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).expect("read from moto");
        parse_response(&raw)
    }

    /// Every request the server received so far (setup calls included), oldest
    /// first.
    pub fn requests(&self) -> Vec<MotoRequest> {
        let path = self.dir.path().join(RECORDING);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .map(|line| {
                parse_recorded(line).unwrap_or_else(|| {
                    panic!("{}: not a recorded request: {line:.300}", path.display())
                })
            })
            .collect()
    }

    /// Create a bucket with versioning enabled (CreateBucket + PutBucketVersioning).
    pub fn create_versioned_bucket(&self, bucket: &str) {
        self.create_bucket(bucket);
        let config = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
        let r = self.request("PUT", &format!("/{bucket}?versioning"), config.as_bytes());
        assert_eq!(r.status, 200, "PutBucketVersioning {bucket}: {r:?}");
    }

    /// Create a bucket (unversioned).
    pub fn create_bucket(&self, bucket: &str) {
        let r = self.request("PUT", &format!("/{bucket}"), b"");
        assert_eq!(r.status, 200, "CreateBucket {bucket}: {r:?}");
    }

    /// Upload an object; its version id (`None` in an unversioned bucket).
    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) -> Option<String> {
        let r = self.request("PUT", &format!("/{bucket}/{key}"), data);
        assert_eq!(r.status, 200, "PutObject {bucket}/{key}: {r:?}");
        r.header("x-amz-version-id")
            .filter(|v| *v != "null")
            .map(str::to_string)
    }
}

/// `{"headers": {...}, "method": "GET", "url": "http://HOST/b/k?versionId=V", ...}`
fn parse_recorded(line: &str) -> Option<MotoRequest> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let url = url::Url::parse(v["url"].as_str()?).ok()?;
    let range = v["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("range"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string);
    Some(MotoRequest {
        method: v["method"].as_str()?.to_string(),
        path: url.path().to_string(),
        version_id: url
            .query_pairs()
            .find(|(k, _)| k == "versionId")
            .map(|(_, v)| v.into_owned()),
        range,
    })
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body,
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        crate::bins::stop_child(&mut self.child);
    }
}
