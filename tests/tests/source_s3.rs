//! `inputfs-source` against a real S3 endpoint (s3s + s3s-fs on loopback):
//! resolution of objects, prefixes and globs; ranged reads checked byte for byte
//! and against the server's own count of what it served; the one-line errors for
//! a missing object, wrong credentials and an unreachable endpoint; and version
//! pinning even though this server ignores `If-Match`.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use inputfs_core::{Error, SourceKind};
use inputfs_source::{InputSpec, Origin, SourceError};
use inputfs_tests::{S3Server, dead_endpoint, pattern, sha256_hex};

const BIG: usize = 3 * 1024 * 1024 + 17;

fn spec(name: &str, url: &str) -> InputSpec {
    InputSpec {
        name: name.into(),
        url: url.into(),
    }
}

fn server_with_data() -> S3Server {
    let s3 = S3Server::start();
    s3.create_bucket("bkt");
    s3.put_object("bkt", "data/big.bin", &pattern(1, BIG));
    s3.put_object("bkt", "data/a.csv", &pattern(2, 1000));
    s3.put_object("bkt", "data/sub/b.csv", &pattern(3, 2000));
    s3.put_object("bkt", "data/sub/deeper/c.bin", &pattern(4, 3000));
    s3.put_object("bkt", "database.bin", &pattern(5, 10));
    s3.put_object("bkt", "data2/x.csv", &pattern(6, 10));
    s3
}

#[tokio::test]
async fn resolves_single_object_with_version() {
    let s3 = server_with_data();
    let origin = s3.origin();
    let got = origin
        .resolve(&[spec("big", "s3://bkt/data/big.bin")])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "big");
    let files = &got[0].files;
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(f.path, "big.bin");
    assert_eq!(f.object.kind, SourceKind::S3);
    assert_eq!(f.object.url, "s3://bkt/data/big.bin");
    assert_eq!(f.object.size, BIG as u64);
    // s3s-fs reports the MD5 as a strong ETag.
    let etag = f.object.version.etag.as_deref().expect("an ETag");
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    assert!(f.object.version.modified_unix.is_some());
    assert_eq!(s3.head_requests(), 1);
    assert_eq!(s3.get_requests(), 0, "resolving must not download");
}

#[tokio::test]
async fn resolves_prefix_keeping_relative_paths() {
    let s3 = server_with_data();
    let origin = s3.origin();
    let got = origin
        .resolve(&[spec("d", "s3://bkt/data/")])
        .await
        .unwrap();
    let paths: Vec<_> = got[0].files.iter().map(|f| f.path.as_str()).collect();
    // Sorted, nested paths kept, and neither `database.bin` nor `data2/` included.
    assert_eq!(paths, ["a.csv", "big.bin", "sub/b.csv", "sub/deeper/c.bin"]);
    let c = &got[0].files[3];
    assert_eq!(c.object.url, "s3://bkt/data/sub/deeper/c.bin");
    assert_eq!(c.object.size, 3000);
    assert!(c.object.version.etag.is_some());

    // The whole bucket.
    let all = origin.resolve(&[spec("all", "s3://bkt/")]).await.unwrap();
    assert_eq!(all[0].files.len(), 6);
}

#[tokio::test]
async fn resolves_globs() {
    let s3 = server_with_data();
    let origin = s3.origin();
    let got = origin
        .resolve(&[
            spec("top", "s3://bkt/data/*.csv"),
            spec("deep", "s3://bkt/data/**.csv"),
            spec("one", "s3://bkt/data/?.csv"),
        ])
        .await
        .unwrap();
    let paths = |i: usize| -> Vec<String> { got[i].files.iter().map(|f| f.path.clone()).collect() };
    assert_eq!(paths(0), ["a.csv"]);
    assert_eq!(paths(1), ["a.csv", "sub/b.csv"]);
    assert_eq!(paths(2), ["a.csv"]);
}

#[tokio::test]
async fn ranged_reads_are_exact_and_counted() {
    let s3 = server_with_data();
    let data = pattern(1, BIG);
    let origin = s3.origin();
    let got = origin
        .resolve(&[spec("big", "s3://bkt/data/big.bin")])
        .await
        .unwrap();
    let obj = &got[0].files[0].object;
    s3.reset_counts();
    let n = BIG as u64;
    let ranges = [
        0..1,
        1..4097,
        12_345..12_345 + 1_048_577,
        n - 17..n,
        n - 1..n,
        1_048_575..2_097_153,
        0..n,
    ];
    let mut want_bytes = 0;
    for r in ranges.iter().cloned() {
        let bytes = inputfs_core::Source::get_range(&origin, obj, r.clone())
            .await
            .unwrap_or_else(|e| panic!("{r:?}: {e}"));
        let want = &data[r.start as usize..r.end as usize];
        assert!(
            bytes.len() == want.len() && &bytes[..] == want,
            "range {r:?}: wrong bytes"
        );
        want_bytes += r.end - r.start;
    }
    assert_eq!(s3.get_requests(), ranges.len() as u64);
    assert_eq!(s3.get_bytes(), want_bytes);
    // The full read also checks out as a whole.
    let all = inputfs_core::Source::get_range(&origin, obj, 0..n)
        .await
        .unwrap();
    assert_eq!(sha256_hex(&all), sha256_hex(&data));
}

#[tokio::test]
async fn many_single_objects_resolve_concurrently_in_order() {
    let s3 = S3Server::start();
    s3.create_bucket("many");
    let specs: Vec<_> = (0..40)
        .map(|i| {
            s3.put_object("many", &format!("f{i:02}"), &pattern(i, 100 + i as usize));
            spec(&format!("in{i:02}"), &format!("s3://many/f{i:02}"))
        })
        .collect();
    let got = s3.origin().resolve(&specs).await.unwrap();
    assert_eq!(got.len(), 40);
    for (i, input) in got.iter().enumerate() {
        assert_eq!(input.name, format!("in{i:02}"));
        assert_eq!(input.files[0].object.size, 100 + i as u64);
    }
}

#[tokio::test]
async fn missing_object_is_a_one_line_error() {
    let s3 = server_with_data();
    let err = s3
        .origin()
        .resolve(&[spec("train", "s3://bkt/data/nope.bin")])
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "input train: s3://bkt/data/nope.bin: no such object"
    );

    let err = s3
        .origin()
        .resolve(&[spec("e", "s3://bkt/nothing-here/")])
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Empty { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("input e: s3://bkt/nothing-here/: matches no objects")
    );

    let err = s3
        .origin()
        .resolve(&[spec("g", "s3://bkt/data/*.parquet")])
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Empty { .. }), "{err:?}");

    let err = s3
        .origin()
        .resolve(&[spec("nb", "s3://no-such-bucket/")])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("input nb: s3://no-such-bucket/: "),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_credentials_say_access_denied_and_which_settings() {
    let s3 = server_with_data();
    let origin = s3
        .s3_options_with_secret("not-the-secret")
        .into_iter()
        .fold(Origin::builder().without_env(), |b, (k, v)| {
            b.s3_option(k, v)
        })
        .build();
    let err = origin
        .resolve(&[spec("train", "s3://bkt/data/a.csv")])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SourceError::AccessDenied { .. }), "{err:?}");
    assert!(
        msg.starts_with("input train: s3://bkt/data/a.csv: access denied (check credentials: "),
        "{msg}"
    );
    assert!(
        msg.contains("AWS_ACCESS_KEY_ID") && msg.contains("AWS_SECRET_ACCESS_KEY"),
        "{msg}"
    );
    assert!(
        !msg.contains("not-the-secret") && !msg.contains('\n'),
        "{msg}"
    );

    // Listing fails the same way.
    let err = origin
        .resolve(&[spec("p", "s3://bkt/data/")])
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::AccessDenied { .. }), "{err:?}");
}

#[tokio::test]
async fn unreachable_endpoint_names_it() {
    let dead = dead_endpoint();
    let origin = Origin::builder()
        .without_env()
        .s3_option(inputfs_source::AmazonS3ConfigKey::Endpoint, dead.clone())
        .s3_option(inputfs_source::AmazonS3ConfigKey::AccessKeyId, "a")
        .s3_option(inputfs_source::AmazonS3ConfigKey::SecretAccessKey, "b")
        .s3_option(inputfs_source::AmazonS3ConfigKey::Region, "us-east-1")
        .build();
    let start = std::time::Instant::now();
    let err = origin
        .resolve(&[spec("train", "s3://bkt/k")])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(
        msg.starts_with(&format!(
            "input train: s3://bkt/k: cannot reach endpoint {dead}: "
        )),
        "{msg}"
    );
    assert!(msg.contains("AWS_ENDPOINT_URL"), "{msg}");
    assert!(err.is_retryable());
    // No retries of object_store's own: a refused connection fails at once.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn reads_stay_pinned_when_the_object_changes() {
    let s3 = server_with_data();
    let origin = s3.origin();
    let got = origin
        .resolve(&[spec("a", "s3://bkt/data/a.csv")])
        .await
        .unwrap();
    let obj = got[0].files[0].object.clone();
    // Same size, different content: only the version tells them apart.
    s3.put_object("bkt", "data/a.csv", &pattern(99, 1000));
    let err = inputfs_core::Source::get_range(&origin, &obj, 0..100)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionChanged { .. }), "{err:?}");
    assert!(!err.is_retryable());

    // Deleted: NotFound, not retryable.
    s3.delete_object("bkt", "data/a.csv");
    let err = inputfs_core::Source::get_range(&origin, &obj, 0..100)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn objects_pinned_elsewhere_are_readable_by_url() {
    // An ObjectId from an earlier run (a lock file) needs no resolve in this one.
    let s3 = server_with_data();
    let first = s3.origin();
    let got = first
        .resolve(&[spec("a", "s3://bkt/data/sub/b.csv")])
        .await
        .unwrap();
    let obj = got[0].files[0].object.clone();
    let fresh = s3.origin();
    let bytes = inputfs_core::Source::get_range(&fresh, &obj, 7..1999)
        .await
        .unwrap();
    assert_eq!(&bytes[..], &pattern(3, 2000)[7..1999]);
}

#[test]
fn env_is_what_a_child_process_needs() {
    let s3 = S3Server::start();
    let env = s3.env();
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("AWS_ENDPOINT_URL"), Some(s3.endpoint()));
    assert!(get("AWS_ACCESS_KEY_ID").is_some() && get("AWS_SECRET_ACCESS_KEY").is_some());
    assert_eq!(get("AWS_REGION").as_deref(), Some("us-east-1"));
    assert_eq!(get("AWS_ALLOW_HTTP").as_deref(), Some("true"));
    // Synchronous use of the helpers works too.
    s3.create_bucket("sync");
    s3.put_object("sync", "k", b"hello");
}

#[tokio::test]
async fn keys_with_special_characters_round_trip() {
    let s3 = S3Server::start();
    s3.create_bucket("odd");
    let keys = [
        "dir/sp ace.bin",
        "dir/hash#1.bin",
        "dir/pct%41.bin",
        "dir/ünï.bin",
    ];
    for (i, k) in keys.iter().enumerate() {
        s3.put_object("odd", k, &pattern(40 + i as u64, 500 + i));
    }
    let origin = s3.origin();
    let single = origin
        .resolve(&[spec("one", "s3://odd/dir/pct%41.bin")])
        .await
        .unwrap();
    assert_eq!(single[0].files[0].path, "pct%41.bin");
    let got = origin
        .resolve(&[spec("all", "s3://odd/dir/")])
        .await
        .unwrap();
    assert_eq!(got[0].files.len(), keys.len());
    for f in &got[0].files {
        let i = keys
            .iter()
            .position(|k| *k == format!("dir/{}", f.path))
            .unwrap();
        assert_eq!(f.object.url, format!("s3://odd/{}", keys[i]));
        let want = pattern(40 + i as u64, 500 + i);
        let bytes = inputfs_core::Source::get_range(&origin, &f.object, 1..f.object.size)
            .await
            .unwrap();
        assert_eq!(&bytes[..], &want[1..], "{}", f.path);
    }
}

/// The default `Origin::new()` reads `AWS_*` from the environment. The test
/// process's own environment is never changed: this test re-runs itself as a
/// child process with [`S3Server::env`], the way the `inputfs` binary is run.
#[test]
fn origin_new_reads_the_aws_environment() {
    const CHILD: &str = "INPUTFS_TEST_FROM_ENV_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let origin = Origin::new();
            let got = origin
                .resolve(&[spec("a", "s3://envb/k.bin")])
                .await
                .unwrap();
            let bytes = inputfs_core::Source::get_range(&origin, &got[0].files[0].object, 3..900)
                .await
                .unwrap();
            assert_eq!(&bytes[..], &pattern(77, 1000)[3..900]);
        });
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket("envb");
    s3.put_object("envb", "k.bin", &pattern(77, 1000));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "origin_new_reads_the_aws_environment",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .envs(s3.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s3.get_requests(), 1);
    assert_eq!(s3.get_bytes(), 897);
}
