//! [`NginxServer`]: a real HTTP origin (Debian nginx) serving a directory on
//! `127.0.0.1:<free port>`, for `http(s)://` inputs; [`NginxServer::start_tls`]
//! serves `https://` with a [`crate::TestCa`] leaf certificate.
//!
//! nginx honours `Range`, sends a strong `ETag` (mtime and size) and answers a
//! stale `If-Match` with 412, which is what version pinning needs. It runs in the
//! foreground as a single process (`daemon off; master_process off;`), so the PID
//! we spawned is the whole server: Drop stops exactly it and waits for it.
//!
//! Every request is logged in a fixed format we parse to count what the origin
//! served (`get_requests`, `get_bytes`). nginx writes a request's line just after
//! its response, so reading the log first waits for a barrier: a request of our
//! own on a second, plain-HTTP port of the same process, whose line comes after
//! every request answered before it (see [`NginxServer::requests`]). A few fixed
//! locations answer with an error status, for error-mapping tests:
//! `/__status/{403,404,429,500,503}`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bins::{barrier, free_port, require_binary, wait_for_port};

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub method: String,
    pub status: u16,
    /// Body bytes sent (headers not included).
    pub bytes: u64,
    /// The `Range` header, `-` when there was none.
    pub range: String,
    /// The `If-Match` header, `-` when there was none.
    pub if_match: String,
    /// The request target as sent, query included.
    pub uri: String,
}

/// A running nginx; stopped on drop.
pub struct NginxServer {
    child: Child,
    addr: SocketAddr,
    /// The barrier port: plain HTTP, logged to the same access log.
    barrier_addr: SocketAddr,
    /// Barrier requests sent so far (each has its own URI).
    barriers: AtomicU64,
    dir: tempfile::TempDir,
    root: PathBuf,
    /// `http` or `https`.
    scheme: &'static str,
    /// Log bytes before this offset were reset away.
    log_start: Mutex<u64>,
}

impl NginxServer {
    /// Serve `root` (read-only, as a static file server).
    pub fn start(root: &Path) -> NginxServer {
        Self::start_with(root, "")
    }

    /// Serve `root` over TLS (`https://127.0.0.1:PORT`) with `ca`'s leaf certificate.
    pub fn start_tls(root: &Path, ca: &crate::tls::TestCa) -> NginxServer {
        let listen = format!(
            "ssl;\n        ssl_certificate {};\n        ssl_certificate_key {};",
            ca.leaf_pem().display(),
            ca.leaf_key().display()
        );
        Self::start_inner(root, "", &listen)
    }

    /// Serve `root` with extra directives in the `server` block (`limit_rate 1m;`).
    pub fn start_with(root: &Path, extra: &str) -> NginxServer {
        Self::start_inner(root, extra, ";")
    }

    /// `listen_tail` ends the `listen` directive: `;`, or `ssl;` plus certificates.
    fn start_inner(root: &Path, extra: &str, listen_tail: &str) -> NginxServer {
        let nginx = require_binary("nginx");
        let root = root.canonicalize().expect("nginx root exists");
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start(&nginx, &root, extra, listen_tail) {
                Ok(server) => return server,
                Err(e) if e.contains("Address already in use") => last_error = e,
                Err(e) => panic!("nginx failed to start: {e}"),
            }
        }
        panic!("nginx failed to start: {last_error}");
    }

    fn try_start(
        nginx: &Path,
        root: &Path,
        extra: &str,
        listen_tail: &str,
    ) -> Result<NginxServer, String> {
        let dir = tempfile::tempdir().expect("temp dir for nginx");
        let d = dir.path();
        let port = free_port();
        let barrier_port = free_port();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    log_format counted '$request_method|$status|$body_bytes_sent|$http_range|$http_if_match|$request_uri';
    access_log {d}/access.log counted;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{port} {listen_tail}
        root {root};
        location = /__status/403 {{ return 403; }}
        location = /__status/404 {{ return 404; }}
        location = /__status/429 {{ return 429; }}
        location = /__status/500 {{ return 500; }}
        location = /__status/503 {{ return 503; }}
        {extra}
    }}
    server {{
        listen 127.0.0.1:{barrier_port};
        location = {BARRIER} {{ return 204; }}
    }}
}}
"#,
            d = d.display(),
            root = root.display(),
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let stderr = std::fs::File::create(d.join("stderr.log")).expect("stderr log");
        let mut child = Command::new(nginx)
            .arg("-e")
            .arg(d.join("error.log"))
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", nginx.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("nginx exited with {status}: {}", logs(d)));
            }
            if wait_for_port(addr, Duration::from_millis(100)) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("nginx did not listen on {addr}: {}", logs(d)));
            }
        }
        Ok(NginxServer {
            child,
            addr,
            barrier_addr: ([127, 0, 0, 1], barrier_port).into(),
            barriers: AtomicU64::new(0),
            dir,
            root: root.to_path_buf(),
            scheme: if listen_tail.starts_with("ssl") {
                "https"
            } else {
                "http"
            },
            log_start: Mutex::new(0),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` when started with TLS)
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The URL of `path` (relative to the served root, `/`-separated).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url(), path.trim_start_matches('/'))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory being served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's PID (the only process it runs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every request logged since start or the last reset, oldest first: every
    /// request answered before this call, none of the barriers.
    pub fn requests(&self) -> Vec<LogEntry> {
        let text = self.settle();
        let start = *self.log_start.lock().unwrap() as usize;
        String::from_utf8_lossy(&text[start.min(text.len())..])
            .lines()
            .filter_map(parse_line)
            .filter(|e| !e.uri.starts_with(BARRIER))
            .collect()
    }

    /// Send a barrier request and wait until its line is in the access log;
    /// returns the log. nginx (one process, one worker) logs a request as it
    /// finishes sending the response, before it takes the next event, so the
    /// line of every request a client was answered before the barrier was sent
    /// is in the log before the barrier's.
    fn settle(&self) -> Vec<u8> {
        let target = format!(
            "{BARRIER}?n={}",
            self.barriers.fetch_add(1, Ordering::SeqCst)
        );
        let log = self.dir.path().join("access.log");
        barrier(
            "nginx",
            self.barrier_addr,
            &target,
            "HTTP/1.1 204",
            &log,
            &format!("|{target}\n"),
        )
    }

    /// GET requests since start or the last reset (any status).
    pub fn get_requests(&self) -> u64 {
        self.requests().iter().filter(|r| r.method == "GET").count() as u64
    }

    /// Body bytes of successful (2xx) GETs since start or the last reset: the
    /// object data the origin served (error pages are not counted).
    pub fn get_bytes(&self) -> u64 {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && (200..300).contains(&r.status))
            .map(|r| r.bytes)
            .sum()
    }

    /// Forget what was logged so far.
    pub fn reset_counts(&self) {
        let len = self.settle().len() as u64;
        *self.log_start.lock().unwrap() = len;
    }
}

/// The location of the barrier requests (on the barrier port only).
const BARRIER: &str = "/__barrier";

fn parse_line(line: &str) -> Option<LogEntry> {
    let mut f = line.splitn(6, '|');
    Some(LogEntry {
        method: f.next()?.to_string(),
        status: f.next()?.parse().ok()?,
        bytes: f.next()?.parse().ok()?,
        range: unescape(f.next()?),
        if_match: unescape(f.next()?),
        uri: unescape(f.next()?),
    })
}

/// Undo nginx's log escaping (`"` is logged as `\x22`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (
            bytes[i],
            bytes.get(i + 1),
            hex.and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'\\', Some(b'x'), Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["stderr.log", "error.log"] {
        if let Ok(mut f) = std::fs::File::open(dir.join(name)) {
            let _ = f.read_to_string(&mut out);
        }
    }
    out.replace('\n', " | ")
}

impl Drop for NginxServer {
    fn drop(&mut self) {
        // SIGQUIT would wait for open connections; SIGTERM is nginx's fast stop.
        crate::bins::stop_child(&mut self.child);
    }
}
