//! `gs://` without a server: no emulator on the package registries speaks the
//! XML API object_store's GCS client uses, so what can be verified here is that
//! the standard `GOOGLE_*` / `GCE_METADATA_*` settings are honoured and that a
//! mount that cannot get credentials or reach the endpoint fails in one line
//! naming the URL, quickly, having sent nothing off loopback. Every endpoint the
//! client could use (the GCS base URL, the metadata server by host and by IP) is
//! pointed at a dead loopback port, and `strace` records every address the
//! process connects or sends to, which must all be loopback.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inputfs_tests::mounts::{inputfs_bin, is_mounted};
use inputfs_tests::{free_port, require_binary};

const URL: &str = "gs://inputfs-test-bucket/data/train.bin";

/// Run a failing `inputfs mount` of [`URL`] under strace with exactly `env`
/// (plus PATH and HOME); returns (stderr, strace log, elapsed).
fn mount_under_strace(tmp: &Path, env: &[(String, String)]) -> (String, String, Duration) {
    let strace = require_binary("strace");
    let mnt = tmp.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let trace = tmp.join("strace.log");
    let home = tmp.join("home"); // no ~/.config/gcloud credentials in it
    std::fs::create_dir_all(&home).unwrap();
    let started = Instant::now();
    let out = Command::new(strace)
        .args(["-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o"])
        .arg(&trace)
        .arg(inputfs_bin())
        .arg("mount")
        .arg(&mnt)
        .arg("--foreground")
        .arg(format!("--input=t={URL}"))
        .arg(format!("--cache-dir={}", tmp.join("cache").display()))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run inputfs under strace");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{URL} mounted: {stderr}");
    assert!(!is_mounted(&mnt.canonicalize().unwrap()), "left mounted");
    (stderr, std::fs::read_to_string(&trace).unwrap(), elapsed)
}

/// Every IP address in the strace log (connect/sendto/sendmsg targets).
fn addresses(trace: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in ["inet_addr(\"", "inet_pton(AF_INET6, \""] {
        for piece in trace.split(marker).skip(1) {
            out.push(piece.split('"').next().unwrap_or("").to_string());
        }
    }
    out
}

fn check(stderr: &str, trace: &str, elapsed: Duration, dead_port: u16) {
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].contains(URL), "URL not named: {stderr}");
    assert!(
        elapsed < Duration::from_secs(30),
        "took {elapsed:?}: {stderr}"
    );
    let addrs = addresses(trace);
    let off: Vec<_> = addrs
        .iter()
        .filter(|a| *a != "127.0.0.1" && *a != "::1")
        .collect();
    assert!(off.is_empty(), "traffic off loopback to {off:?}:\n{trace}");
    // The redirect took effect (and strace saw the process's connections).
    let tried = format!("sin_port=htons({dead_port})");
    assert!(
        trace.contains(&tried),
        "no connect to the dead port:\n{trace}"
    );
}

fn dead_env(port: u16) -> Vec<(String, String)> {
    let host = format!("127.0.0.1:{port}");
    [
        ("GOOGLE_BASE_URL", format!("http://{host}")),
        ("GCE_METADATA_HOST", host.clone()),
        ("GCE_METADATA_ROOT", host.clone()),
        ("GCE_METADATA_IP", host),
        ("INPUTFS_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn gs_without_credentials_fails_in_one_line_without_leaving_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    // No key file, no ADC file in HOME: object_store falls back to the VM's
    // metadata server, which GCE_METADATA_* point at a dead loopback port.
    let (stderr, trace, elapsed) = mount_under_strace(tmp.path(), &dead_env(port));
    check(&stderr, &trace, elapsed, port);
}

#[test]
fn gs_with_a_service_account_key_file_signs_locally_and_names_the_dead_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // A real RSA key: object_store signs its own JWT with it (no token endpoint),
    // so the first request is the object's HEAD, to GOOGLE_BASE_URL.
    let pem = tmp.path().join("key.pem");
    let ok = Command::new(require_binary("openssl"))
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .status()
        .unwrap();
    assert!(ok.success(), "openssl genpkey failed");
    let key = std::fs::read_to_string(&pem).unwrap();
    let sa = serde_json::json!({
        "type": "service_account",
        "private_key": key,
        "private_key_id": "0123",
        "client_email": "inputfs-test@example-project.iam.gserviceaccount.com",
    });
    let sa_path = tmp.path().join("sa.json");
    std::fs::write(&sa_path, sa.to_string()).unwrap();
    let port = free_port();
    let mut env = dead_env(port);
    env.push((
        "GOOGLE_SERVICE_ACCOUNT".into(),
        sa_path.display().to_string(),
    ));
    let (stderr, trace, elapsed) = mount_under_strace(tmp.path(), &env);
    check(&stderr, &trace, elapsed, port);
    assert!(
        stderr.contains(&format!("cannot reach endpoint http://127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn gs_with_a_missing_key_file_fails_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = dead_env(port);
    env.push((
        "GOOGLE_SERVICE_ACCOUNT".into(),
        "/nonexistent/inputfs-sa.json".into(),
    ));
    let (stderr, trace, elapsed) = mount_under_strace(tmp.path(), &env);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(URL) && lines[0].contains("/nonexistent/inputfs-sa.json"),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(30));
    assert!(addresses(&trace).is_empty(), "a request was made:\n{trace}");
}
