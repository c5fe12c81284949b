//! End to end over TLS: nginx serving `https://127.0.0.1:PORT` with a leaf
//! certificate from a private CA made for the test. With the CA trusted the way a
//! user trusts one (`SSL_CERT_FILE`, read by the TLS stack of the HTTP client
//! inputfs uses) every byte read through the mount matches the file; without it
//! the mount fails in one line that names the certificate problem, exits non-zero
//! and leaves nothing mounted. nginx's access log shows the cold read fetched
//! each block once and a warm remount none.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use inputfs_tests::mounts::{Mount, is_mounted, run_inputfs};
use inputfs_tests::{NginxServer, TestCa, pattern, sha256_hex};

#[test]
fn https_with_a_private_ca_reads_exact_bytes_when_trusted_and_fails_cleanly_when_not() {
    let ca = TestCa::new();
    let root = tempfile::tempdir().unwrap();
    let data = pattern(41, 2 * (1 << 20) + 333);
    std::fs::write(root.path().join("weights.bin"), &data).unwrap();
    let nginx = NginxServer::start_tls(root.path(), &ca);
    let url = nginx.url("weights.bin");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let tmp = tempfile::tempdir().unwrap();
    let cache = format!("--cache-dir={}", tmp.path().join("cache").display());

    // Trusted: SSL_CERT_FILE names a PEM bundle (here just the private CA).
    let trust = [(
        "SSL_CERT_FILE".to_string(),
        ca.ca_pem().display().to_string(),
    )];
    let m = Mount::start(
        &tmp.path().join("mnt"),
        &[
            format!("--input=w={url}"),
            cache.clone(),
            "--block-size=256KiB".into(),
        ],
        &trust,
    )
    .expect("mount over https with the CA trusted");
    let got = std::fs::read(m.path("w/weights.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    m.stop();
    // Read once the mount is gone: the cold read fetched each of the 9 blocks
    // once, over TLS, and nothing else.
    let block = 256 * 1024;
    let mut ranges: Vec<_> = nginx
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| {
            assert_eq!(r.status, 206, "{r:?}");
            (r.range, r.bytes)
        })
        .collect();
    ranges.sort_by_key(|(range, _)| {
        let start = range.trim_start_matches("bytes=").split('-').next();
        start.and_then(|s| s.parse::<usize>().ok())
    });
    let want: Vec<_> = (0..data.len().div_ceil(block))
        .map(|b| {
            let (start, end) = (b * block, ((b + 1) * block).min(data.len()));
            (format!("bytes={start}-{}", end - 1), (end - start) as u64)
        })
        .collect();
    assert_eq!(want.len(), 9);
    assert_eq!(ranges, want, "ranged GETs of the cold read");

    // Warm: a remount over the same cache reads every byte without a GET.
    nginx.reset_counts();
    let m = Mount::start(
        &tmp.path().join("mnt-warm"),
        &[
            format!("--input=w={url}"),
            cache.clone(),
            "--block-size=256KiB".into(),
        ],
        &trust,
    )
    .expect("warm mount over https");
    let got = std::fs::read(m.path("w/weights.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    m.stop();
    let gets: Vec<_> = nginx
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(gets.is_empty(), "the warm remount fetched: {gets:?}");

    // Not trusted: a CA file that does not hold our CA (an empty bundle would
    // be the same), so the machine's own trust store cannot matter either.
    let other = TestCa::new();
    let untrusted = [(
        "SSL_CERT_FILE".to_string(),
        other.ca_pem().display().to_string(),
    )];
    let mnt = tmp.path().join("mnt2");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = run_inputfs(
        &[
            "mount".into(),
            mnt.display().to_string(),
            "--foreground".into(),
            format!("--input=w={url}"),
            cache,
        ],
        &untrusted,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "mounted with an untrusted certificate"
    );
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(&url), "URL not in {stderr}");
    assert!(
        lines[0].to_ascii_lowercase().contains("certificate"),
        "certificate not named in {stderr}"
    );
    assert!(!is_mounted(&mnt.canonicalize().unwrap()));
    println!("untrusted: {}", lines[0]);
}
