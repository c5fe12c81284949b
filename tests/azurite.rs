//! [`AzuriteServer`]: a real Azure Blob endpoint (npm `azurite`, installed by
//! `scripts/setup`) on `127.0.0.1:<free port>`, for `az://` and
//! `https://ACCOUNT.blob.core.windows.net/...` inputs.
//!
//! Azurite speaks the Blob REST API with Shared Key auth for the well-known
//! emulator account. It runs as one node process we spawn (telemetry off, so it
//! sends nothing off loopback); Drop stops exactly that PID and waits for it.
//! Its debug log (`-d`) records every request with its headers as it arrives,
//! which is how tests count the ranged GETs a mount made
//! ([`AzuriteServer::requests`]); the log is written asynchronously, so reading it
//! first waits for a barrier request of our own to be logged (lines are written
//! in arrival order).
//!
//! object_store has no "create container" call, so [`AzuriteServer::create_container`]
//! sends that one request itself, signed with Shared Key (HMAC-SHA256 by hand,
//! to need no extra crates); blobs are uploaded with object_store's own client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::bins::{barrier, free_port, require_binary, wait_for_port};

/// The emulator's well-known account (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known account key (public, documented by Microsoft).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// One request as azurite's debug log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzRequest {
    pub method: String,
    pub url: String,
    /// The `Range` or `x-ms-range` header, if any.
    pub range: Option<String>,
}

/// A running azurite-blob; stopped on drop.
pub struct AzuriteServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// Debug-log bytes before this offset were reset away.
    log_start: Mutex<usize>,
    /// Barrier requests sent so far (each has its own URL).
    barriers: AtomicU64,
}

impl AzuriteServer {
    pub fn start() -> AzuriteServer {
        let bin = require_binary("azurite-blob");
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(&bin) {
                Ok(s) => return s,
                Err(e) if e.contains("EADDRINUSE") => last = e,
                Err(e) => panic!("azurite failed to start: {e}"),
            }
        }
        panic!("azurite failed to start: {last}");
    }

    fn try_start(bin: &Path) -> Result<AzuriteServer, String> {
        let dir = tempfile::tempdir().expect("temp dir for azurite");
        let d = dir.path();
        let port = free_port();
        let out = std::fs::File::create(d.join("stdout.log")).expect("azurite log");
        let mut child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("-l")
            .arg(d.join("data"))
            .arg("-d")
            .arg(d.join("debug.log"))
            .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let log = std::fs::read_to_string(d.join("stdout.log")).unwrap_or_default();
                return Err(format!("azurite exited with {status}: {log}"));
            }
            if wait_for_port(addr, Duration::from_millis(100)) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("azurite did not listen on {addr}"));
            }
        }
        Ok(AzuriteServer {
            child,
            addr,
            dir,
            log_start: Mutex::new(0),
            barriers: AtomicU64::new(0),
        })
    }

    /// `http://127.0.0.1:PORT` (what `AZURITE_BLOB_STORAGE_URL` takes).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The account's blob endpoint, path style: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn account_url(&self) -> String {
        format!("{}/{ACCOUNT}", self.base_url())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What a child `inputfs` needs, in emulator mode: object_store's
    /// `AZURE_STORAGE_USE_EMULATOR` plus `AZURITE_BLOB_STORAGE_URL` (its emulator
    /// endpoint; the account and key default to the well-known ones, set anyway).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AZURE_STORAGE_USE_EMULATOR", "true".to_string()),
            ("AZURITE_BLOB_STORAGE_URL", self.base_url()),
            ("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT.to_string()),
            ("AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The same server as an ordinary custom endpoint (no emulator mode): what a
    /// user of Azure Stack or a private endpoint sets.
    pub fn endpoint_env(&self) -> Vec<(String, String)> {
        [
            ("AZURE_STORAGE_ENDPOINT", self.account_url()),
            ("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT.to_string()),
            ("AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// object_store's client for `container` (custom-endpoint mode: needs no
    /// process environment).
    pub fn store(&self, container: &str) -> MicrosoftAzure {
        MicrosoftAzureBuilder::new()
            .with_account(ACCOUNT)
            .with_access_key(ACCOUNT_KEY)
            .with_endpoint(self.account_url())
            .with_allow_http(true)
            .with_container_name(container)
            .build()
            .expect("azure client for azurite")
    }

    /// Create a container (`PUT ?restype=container`, Shared Key signed).
    pub fn create_container(&self, container: &str) {
        let date = http_date(SystemTime::now());
        let version = "2021-08-06";
        let path = format!("/{ACCOUNT}/{container}");
        // Shared Key string-to-sign: verb, 11 standard headers (all empty here;
        // Content-Length is empty for 0), canonical x-ms headers, resource.
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}{path}\nrestype:container"
        );
        let key = base64_decode(ACCOUNT_KEY);
        let sig = base64_encode(&hmac_sha256(&key, to_sign.as_bytes()));
        let req = format!(
            "PUT {path}?restype=container HTTP/1.1\r\nHost: {}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {ACCOUNT}:{sig}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut s = TcpStream::connect(self.addr).expect("connect azurite");
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let status = resp.split(' ').nth(1).unwrap_or("");
        assert_eq!(status, "201", "create container {container}: {resp}");
    }

    /// Upload a blob through object_store.
    pub fn put_blob(&self, container: &str, key: &str, data: &[u8]) {
        let store = self.store(container);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(store.put(
            &ObjPath::from(key),
            PutPayload::from(bytes::Bytes::copy_from_slice(data)),
        ))
        .unwrap_or_else(|e| panic!("upload {container}/{key}: {e}"));
    }

    /// Every request azurite received since start or the last reset, oldest
    /// first: every request answered before this call, none of the barriers.
    pub fn requests(&self) -> Vec<AzRequest> {
        let text = self.settle();
        let start = (*self.log_start.lock().unwrap()).min(text.len());
        String::from_utf8_lossy(&text[start..])
            .lines()
            .filter_map(parse_request)
            .filter(|r| !r.url.contains(BARRIER))
            .collect()
    }

    /// Send a barrier request and wait until azurite has logged it; returns the
    /// debug log. Azurite logs each request as it arrives and writes its log in
    /// order, so every request answered before the barrier was sent is in the
    /// log before the barrier's line.
    fn settle(&self) -> Vec<u8> {
        let target = format!(
            "/{ACCOUNT}/{BARRIER}{}",
            self.barriers.fetch_add(1, Ordering::SeqCst)
        );
        // `RequestURL=http://127.0.0.1/ACCOUNT/NAME RequestHeaders:{...}` (no port).
        let logged = format!("{target} RequestHeaders:");
        let log = self.dir.path().join("debug.log");
        barrier("azurite", self.addr, &target, "HTTP/1.1 ", &log, &logged)
    }

    /// GETs that carried a byte range (blob data reads) since start or reset.
    pub fn ranged_gets(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.range.is_some())
            .count()
    }

    /// Forget what was logged so far.
    pub fn reset_counts(&self) {
        let len = self.settle().len();
        *self.log_start.lock().unwrap() = len;
    }
}

/// The name (in the account, no container) of the barrier requests.
const BARRIER: &str = "inputfs-barrier-";

/// `... BlobStorageContextMiddleware: RequestMethod=GET RequestURL=U RequestHeaders:{json} ...`
fn parse_request(line: &str) -> Option<AzRequest> {
    let rest = line
        .split("BlobStorageContextMiddleware: RequestMethod=")
        .nth(1)?;
    let (method, rest) = rest.split_once(' ')?;
    let url = rest.strip_prefix("RequestURL=")?.split(' ').next()?;
    let headers = rest.split("RequestHeaders:").nth(1).unwrap_or("");
    let range = ["\"x-ms-range\":\"", "\"range\":\""].iter().find_map(|h| {
        let v = headers.split(h).nth(1)?;
        Some(v.split('"').next()?.to_string())
    });
    Some(AzRequest {
        method: method.to_string(),
        url: url.to_string(),
        range,
    })
}

impl Drop for AzuriteServer {
    fn drop(&mut self) {
        crate::bins::stop_child(&mut self.child);
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= n {
                out.push(B64[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).expect("base64") as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// RFC 1123 date (`Sun, 22 Nov 2026 06:00:00 GMT`).
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{wd}, {day:02} {mon} {year} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_match_known_values() {
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_decode("aGVsbG8="), b"hello");
        assert_eq!(
            base64_decode(&base64_encode(&[0, 255, 7, 8])),
            [0, 255, 7, 8]
        );
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1_795_327_200)),
            "Sun, 22 Nov 2026 06:00:00 GMT"
        );
    }

    #[test]
    fn parses_debug_log_lines() {
        let line = r#"2026-11-22T06:05:41.482Z id info: BlobStorageContextMiddleware: RequestMethod=GET RequestURL=http://127.0.0.1/devstoreaccount1/c/x RequestHeaders:{"host":"h","range":"bytes=0-3"} ClientIP=127.0.0.1"#;
        assert_eq!(
            parse_request(line),
            Some(AzRequest {
                method: "GET".into(),
                url: "http://127.0.0.1/devstoreaccount1/c/x".into(),
                range: Some("bytes=0-3".into()),
            })
        );
    }
}
