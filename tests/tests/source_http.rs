//! `inputfs-source` against a real HTTP origin (nginx on loopback): resolution of
//! a file by URL, ranged reads checked byte for byte and against nginx's access
//! log, `If-Match` pinning (nginx answers 412 once the file changed), signed-URL
//! query strings kept on the wire but out of the identity, and the one-line
//! errors for missing files, refused URLs, unlistable prefixes and dead hosts.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::time::{Duration, SystemTime};

use inputfs_core::{Error, ObjectId, Source, SourceKind, Version};
use inputfs_source::{InputSpec, Origin, SourceError};
use inputfs_tests::{NginxServer, dead_endpoint, pattern, sha256_hex};

const BIG: usize = 3 * 1024 * 1024 + 17;

fn spec(name: &str, url: &str) -> InputSpec {
    InputSpec {
        name: name.into(),
        url: url.into(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    nginx: NginxServer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("data/sub")).unwrap();
    std::fs::write(root.join("data/big.bin"), pattern(11, BIG)).unwrap();
    std::fs::write(root.join("data/sub/small file.txt"), pattern(12, 999)).unwrap();
    let nginx = NginxServer::start(&root);
    Fixture {
        _dir: dir,
        root,
        nginx,
    }
}

#[tokio::test]
async fn resolves_a_file_with_etag_and_mtime() {
    let fx = fixture();
    let origin = Origin::new();
    let url = fx.nginx.url("data/sub/small%20file.txt");
    let got = origin.resolve(&[spec("s", &url)]).await.unwrap();
    let f = &got[0].files[0];
    assert_eq!(f.path, "small file.txt");
    assert_eq!(f.object.kind, SourceKind::Http);
    assert_eq!(f.object.url, url);
    assert_eq!(f.object.size, 999);
    let etag = f
        .object
        .version
        .etag
        .as_deref()
        .expect("nginx sends an ETag");
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let mtime = std::fs::metadata(fx.root.join("data/sub/small file.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let secs = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(f.object.version.modified_unix, Some(secs));
    assert_eq!(fx.nginx.get_requests(), 0, "resolving is a HEAD, not a GET");
    let heads = fx.nginx.requests();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].method, "HEAD");
    assert_eq!(heads[0].uri, "/data/sub/small%20file.txt");
}

#[tokio::test]
async fn ranged_reads_are_exact_pinned_and_counted() {
    let fx = fixture();
    let data = pattern(11, BIG);
    let origin = Origin::new();
    let got = origin
        .resolve(&[spec("big", &fx.nginx.url("data/big.bin"))])
        .await
        .unwrap();
    let obj = &got[0].files[0].object;
    fx.nginx.reset_counts();
    let n = BIG as u64;
    let ranges = [0..1, 3..4099, 777_777..1_888_889, n - 17..n, n - 1..n, 0..n];
    let mut want_bytes = 0;
    for r in ranges.iter().cloned() {
        let bytes = origin.get_range(obj, r.clone()).await.unwrap();
        let want = &data[r.start as usize..r.end as usize];
        assert!(&bytes[..] == want, "range {r:?}: wrong bytes");
        want_bytes += r.end - r.start;
    }
    let log = fx.nginx.requests();
    assert_eq!(fx.nginx.get_requests(), ranges.len() as u64);
    assert_eq!(fx.nginx.get_bytes(), want_bytes);
    for (entry, r) in log.iter().zip(ranges.iter()) {
        assert_eq!(entry.status, 206, "{entry:?}");
        assert_eq!(entry.range, format!("bytes={}-{}", r.start, r.end - 1));
        // Every read carries the pinned ETag.
        assert_eq!(Some(entry.if_match.as_str()), obj.version.etag.as_deref());
    }
    let all = origin.get_range(obj, 0..n).await.unwrap();
    assert_eq!(sha256_hex(&all), sha256_hex(&data));
}

#[tokio::test]
async fn changed_file_is_version_changed_not_new_bytes() {
    let fx = fixture();
    let origin = Origin::new();
    let path = fx.root.join("data/sub/small file.txt");
    let got = origin
        .resolve(&[spec("s", &fx.nginx.url("data/sub/small%20file.txt"))])
        .await
        .unwrap();
    let obj = got[0].files[0].object.clone();
    assert_eq!(
        &origin.get_range(&obj, 0..999).await.unwrap()[..],
        &pattern(12, 999)[..]
    );

    // Same size, new content, new mtime (nginx's ETag is mtime-size).
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, pattern(13, 999)).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(before + Duration::from_secs(10)).unwrap();
    drop(f);

    fx.nginx.reset_counts();
    let err = origin.get_range(&obj, 0..999).await.unwrap_err();
    assert!(matches!(err, Error::VersionChanged { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let log = fx.nginx.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].status, 412,
        "nginx refused the stale If-Match: {:?}",
        log[0]
    );
    assert_eq!(
        fx.nginx.get_bytes(),
        0,
        "no bytes of the new version were served"
    );

    // Re-resolving sees the new version, and reads it.
    let again = origin
        .resolve(&[spec("s", &fx.nginx.url("data/sub/small%20file.txt"))])
        .await
        .unwrap();
    let new = &again[0].files[0].object;
    assert_ne!(new.version, obj.version);
    assert_eq!(
        &origin.get_range(new, 5..999).await.unwrap()[..],
        &pattern(13, 999)[5..]
    );
}

#[tokio::test]
async fn signed_query_is_sent_but_not_part_of_the_identity() {
    let fx = fixture();
    let origin = Origin::new();
    let signed = format!(
        "{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=topsecret&X-Amz-Expires=600&v=2",
        fx.nginx.url("data/big.bin")
    );
    let got = origin.resolve(&[spec("big", &signed)]).await.unwrap();
    let obj = &got[0].files[0].object;
    assert_eq!(obj.url, format!("{}?v=2", fx.nginx.url("data/big.bin")));
    let bytes = origin.get_range(obj, 100..200).await.unwrap();
    assert_eq!(&bytes[..], &pattern(11, BIG)[100..200]);
    // Both requests, the HEAD that resolved and the ranged GET, carried the
    // whole signed query, exactly as given.
    let sent = "/data/big.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=topsecret&X-Amz-Expires=600&v=2";
    let log: Vec<_> = fx
        .nginx
        .requests()
        .into_iter()
        .map(|e| (e.method, e.status, e.range, e.uri))
        .collect();
    assert_eq!(
        log,
        [
            ("HEAD".into(), 200, "-".into(), sent.into()),
            ("GET".into(), 206, "bytes=100-199".into(), sent.into()),
        ],
        "{log:?}"
    );
    // Errors never show the signature.
    let missing = format!("{}?X-Amz-Signature=topsecret", fx.nginx.url("nope"));
    let err = origin.resolve(&[spec("m", &missing)]).await.unwrap_err();
    assert!(!err.to_string().contains("topsecret"), "{err}");
}

#[tokio::test]
async fn errors_are_one_line_and_say_what_to_do() {
    let fx = fixture();
    let origin = Origin::new();
    let url = fx.nginx.url("data/missing.bin");
    let err = origin.resolve(&[spec("m", &url)]).await.unwrap_err();
    assert_eq!(err.to_string(), format!("input m: {url}: no such object"));

    let url = fx.nginx.url("__status/403");
    let err = origin.resolve(&[spec("d", &url)]).await.unwrap_err();
    assert!(matches!(err, SourceError::AccessDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("sign it again"), "{err}");

    let url = fx.nginx.url("__status/503");
    let err = origin.resolve(&[spec("u", &url)]).await.unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Origin {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!("input u: {url}: ")),
        "{err}"
    );

    for url in [fx.nginx.url("data/"), fx.nginx.url("data/*.bin")] {
        let err = origin.resolve(&[spec("p", &url)]).await.unwrap_err();
        assert!(matches!(err, SourceError::NotListable { .. }), "{err:?}");
        assert!(
            err.to_string().contains("name each file as its own input"),
            "{err}"
        );
    }

    let dead = dead_endpoint();
    let url = format!("{dead}/x.bin");
    let err = origin.resolve(&[spec("x", &url)]).await.unwrap_err();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("input x: {url}: cannot reach endpoint {dead}: ")),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'));
}

#[tokio::test]
async fn read_errors_map_to_engine_errors() {
    let fx = fixture();
    let origin = Origin::new();
    let object = |path: &str| ObjectId {
        kind: SourceKind::Http,
        url: fx.nginx.url(path),
        version: Version::default(),
        size: 10,
        mtime: SystemTime::UNIX_EPOCH,
    };
    for (path, retryable) in [
        ("__status/503", true),
        ("__status/500", true),
        ("__status/429", true),
    ] {
        let err = origin.get_range(&object(path), 0..10).await.unwrap_err();
        assert!(matches!(err, Error::Origin { .. }), "{path}: {err:?}");
        assert_eq!(err.is_retryable(), retryable, "{path}: {err}");
    }
    let err = origin
        .get_range(&object("__status/403"), 0..10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Origin {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    let err = origin
        .get_range(&object("__status/404"), 0..10)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    let mut dead = object("x");
    dead.url = format!("{}/x", dead_endpoint());
    let err = origin.get_range(&dead, 0..10).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Origin {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
}
