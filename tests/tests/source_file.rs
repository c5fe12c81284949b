//! `inputfs-source` over `file://` URLs (object_store's LocalFileSystem): the same
//! object / prefix / glob resolution, exact ranged reads, errors, and pinning (a
//! rewritten file is a new version, never served under the old one).
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::time::Duration;

use inputfs_core::{Error, Source, SourceKind};
use inputfs_source::{InputSpec, Origin, SourceError};
use inputfs_tests::{pattern, sha256_hex};

const BIG: usize = 3 * 1024 * 1024 + 17;

fn spec(name: &str, url: &str) -> InputSpec {
    InputSpec {
        name: name.into(),
        url: url.into(),
    }
}

fn tree() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("data/sub/deeper")).unwrap();
    std::fs::write(root.join("data/big.bin"), pattern(21, BIG)).unwrap();
    std::fs::write(root.join("data/a.csv"), pattern(22, 100)).unwrap();
    std::fs::write(root.join("data/sub/b.csv"), pattern(23, 200)).unwrap();
    std::fs::write(root.join("data/sub/deeper/c.bin"), pattern(24, 300)).unwrap();
    std::fs::write(root.join("database.bin"), pattern(25, 10)).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let base = format!("file://{}", root.display());
    (dir, base)
}

#[tokio::test]
async fn resolves_object_prefix_and_glob() {
    let (_dir, base) = tree();
    let origin = Origin::new();
    let got = origin
        .resolve(&[
            spec("one", &format!("{base}/data/big.bin")),
            spec("all", &format!("{base}/data/")),
            spec("csv", &format!("{base}/data/*.csv")),
            spec("deep", &format!("{base}/data/**.csv")),
        ])
        .await
        .unwrap();
    let one = &got[0].files[0];
    assert_eq!(one.path, "big.bin");
    assert_eq!(one.object.kind, SourceKind::File);
    assert_eq!(one.object.url, format!("{base}/data/big.bin"));
    assert_eq!(one.object.size, BIG as u64);
    assert!(one.object.version.etag.is_some());
    assert!(one.object.version.modified_unix.is_some());
    let paths = |i: usize| -> Vec<String> { got[i].files.iter().map(|f| f.path.clone()).collect() };
    assert_eq!(
        paths(1),
        ["a.csv", "big.bin", "sub/b.csv", "sub/deeper/c.bin"]
    );
    assert_eq!(
        got[1].files[3].object.url,
        format!("{base}/data/sub/deeper/c.bin")
    );
    assert_eq!(paths(2), ["a.csv"]);
    assert_eq!(paths(3), ["a.csv", "sub/b.csv"]);
    // A listed file is pinned by the same version as the file named on its own.
    assert_eq!(got[1].files[1].object, one.object);
}

#[tokio::test]
async fn ranged_reads_are_exact() {
    let (_dir, base) = tree();
    let data = pattern(21, BIG);
    let origin = Origin::new();
    let got = origin
        .resolve(&[spec("big", &format!("{base}/data/big.bin"))])
        .await
        .unwrap();
    let obj = &got[0].files[0].object;
    let n = BIG as u64;
    for r in [0..1, 17..65_553, 1_000_001..3_000_003, n - 17..n, 0..n] {
        let bytes = origin.get_range(obj, r.clone()).await.unwrap();
        assert!(
            bytes[..] == data[r.start as usize..r.end as usize],
            "range {r:?}"
        );
    }
    let all = origin.get_range(obj, 0..n).await.unwrap();
    assert_eq!(sha256_hex(&all), sha256_hex(&data));
}

#[tokio::test]
async fn rewritten_file_is_version_changed() {
    let (dir, base) = tree();
    let path = dir.path().canonicalize().unwrap().join("data/a.csv");
    let origin = Origin::new();
    let got = origin
        .resolve(&[spec("a", &format!("{base}/data/a.csv"))])
        .await
        .unwrap();
    let obj = got[0].files[0].object.clone();
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, pattern(26, 100)).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(before + Duration::from_secs(5)).unwrap();
    drop(f);
    let err = origin.get_range(&obj, 0..100).await.unwrap_err();
    assert!(matches!(err, Error::VersionChanged { .. }), "{err:?}");

    std::fs::remove_file(&path).unwrap();
    let err = origin.get_range(&obj, 0..100).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn errors_name_input_and_url() {
    let (_dir, base) = tree();
    let origin = Origin::new();
    let url = format!("{base}/data/nope.bin");
    let err = origin.resolve(&[spec("n", &url)]).await.unwrap_err();
    assert_eq!(err.to_string(), format!("input n: {url}: no such object"));

    let url = format!("{base}/empty/");
    let err = origin.resolve(&[spec("e", &url)]).await.unwrap_err();
    assert!(matches!(err, SourceError::Empty { .. }), "{err:?}");

    let url = format!("{base}/data/*.parquet");
    let err = origin.resolve(&[spec("g", &url)]).await.unwrap_err();
    assert!(matches!(err, SourceError::Empty { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("input g: {url}: ")),
        "{err}"
    );

    // The first failing input, in input order, is the error.
    let err = origin
        .resolve(&[
            spec("ok", &format!("{base}/data/a.csv")),
            spec("bad", "ftp://x/y"),
            spec("bad2", &format!("{base}/nope")),
        ])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("input bad: ftp://x/y: unknown scheme"),
        "{err}"
    );
}
