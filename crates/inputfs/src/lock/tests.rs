//! Lock file schema: round trip, and one-line errors naming entry and field.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::*;

fn entry(input: &str, path: &str, url: &str, kind: SourceKind) -> LockEntry {
    LockEntry {
        input: input.into(),
        path: path.into(),
        url: url.into(),
        kind,
        size: 1234,
        version: Version {
            etag: Some("\"abc\"".into()),
            version_id: Some("v1".into()),
            modified_unix: Some(1_763_798_400),
        },
        block_size: 4 << 20,
    }
}

fn sample() -> Vec<LockEntry> {
    vec![
        entry("train", "b/x.bin", "s3://bkt/train/b/x.bin", SourceKind::S3),
        entry("train", "a.bin", "s3://bkt/train/a.bin", SourceKind::S3),
        entry(
            "labels",
            "l.csv",
            "http://127.0.0.1:8080/l.csv",
            SourceKind::Http,
        ),
        entry(
            "star",
            "we*ird?.bin",
            "s3://bkt/we*ird?.bin",
            SourceKind::S3,
        ),
    ]
}

fn err(text: &str) -> String {
    let e = parse(text).unwrap_err();
    assert!(!e.contains('\n'), "{e}");
    e
}

/// The sample as JSON, with one entry's field changed.
fn with(i: usize, field: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(&to_json(&sample())).unwrap();
    let obj = v["files"][i].as_object_mut().unwrap();
    if value.is_null() {
        obj.remove(field);
    } else {
        obj.insert(field.into(), value);
    }
    v.to_string()
}

#[test]
fn round_trip() {
    let text = to_json(&sample());
    let locked = parse(&text).unwrap();
    assert_eq!(locked.block_size, 4 << 20);
    let names: Vec<_> = locked.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["train", "labels", "star"]);
    // Files sorted by path within an input; everything else as written.
    let train: Vec<_> = locked.inputs[0]
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(train, ["a.bin", "b/x.bin"]);
    let back = entries(&locked.inputs, locked.block_size);
    let mut want = sample();
    want.swap(0, 1);
    assert_eq!(back, want);
    assert_eq!(to_json(&back), to_json(&want));
    let a = &locked.inputs[0].files[0].object;
    assert_eq!(a.version.token(), "vid:v1");
    assert_eq!(
        a.mtime,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_798_400)
    );
    // Absent version tokens are left out, and read back as absent.
    let mut bare = sample();
    bare[0].version = Version::default();
    let text = to_json(&bare);
    assert!(text.contains("\"version\": {}"), "{text}");
    assert_eq!(
        parse(&text).unwrap().inputs[0].files[1].object.version,
        Version::default()
    );
}

#[test]
fn write_is_atomic_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inputs.lock.json");
    std::fs::write(&path, "old").unwrap();
    write(&path, &sample()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(parse(&text).unwrap().inputs.len(), 3);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(names.len(), 1, "temp file left behind");
    let e = write(&dir.path().join("missing/x.json"), &sample()).unwrap_err();
    assert!(format!("{e:#}").contains("cannot write"), "{e:#}");
}

#[test]
fn foreign_and_corrupt_files_are_refused() {
    assert!(err("").contains("not a JSON lock file"));
    assert!(err("{\"inputs\": [] ").contains("not a JSON lock file"));
    assert!(err("[1, 2]").contains("expected a JSON object"));
    assert!(err(r#"{"inputs": []}"#).contains("no \"inputfs_lock\" field"));
    assert!(err(r#"{"inputfs_lock": 2, "files": []}"#).contains("unsupported lock format 2"));
    assert!(err(r#"{"inputfs_lock": 1}"#).contains("missing field \"files\""));
    assert!(err(r#"{"inputfs_lock": 1, "files": {}}"#).contains("expected an array"));
    assert!(err(r#"{"inputfs_lock": 1, "files": []}"#).contains("empty"));
    assert!(err(r#"{"inputfs_lock": 1, "files": [], "x": 1}"#).contains("unknown field \"x\""));
    assert_eq!(
        err(r#"{"inputfs_lock": 1, "files": [3]}"#),
        "files[0]: expected an object, found a number"
    );
}

#[test]
fn entry_errors_name_entry_and_field() {
    let named = "files[1] (input \"train\", path \"a.bin\")";
    let cases: Vec<(&str, Value, &str)> = vec![
        ("size", Value::Null, "missing field \"size\""),
        (
            "size",
            "12".into(),
            "\"size\": expected a non-negative integer, found a string",
        ),
        (
            "size",
            (-1).into(),
            "\"size\": expected a non-negative integer, found -1",
        ),
        (
            "url",
            7.into(),
            "\"url\": expected a string, found a number",
        ),
        (
            "url",
            "ftp://x/y".into(),
            "\"url\": ftp://x/y: unknown scheme",
        ),
        ("url", "s3://bkt/train/".into(), "\"url\" names a prefix"),
        (
            "kind",
            "gcs".into(),
            "\"kind\" is gcs but the URL is a s3 URL",
        ),
        ("kind", "ftp".into(), "\"kind\": unknown kind \"ftp\""),
        (
            "block_size",
            100.into(),
            "\"block_size\" 100 is out of range",
        ),
        ("block_size", 8192.into(), "differs from the first entry's"),
        (
            "version",
            "x".into(),
            "\"version\": expected an object, found a string",
        ),
        ("version", Value::Null, "missing field \"version\""),
        (
            "version",
            serde_json::json!({"etag": 5}),
            "\"version.etag\": expected a string",
        ),
        (
            "version",
            serde_json::json!({"etag": ""}),
            "\"version.etag\" is empty",
        ),
        (
            "version",
            serde_json::json!({"generation": "1"}),
            "\"version\": unknown field \"generation\"",
        ),
        (
            "version",
            serde_json::json!({"modified_unix": "1"}),
            "\"version.modified_unix\": expected an integer",
        ),
        ("extra", 1.into(), "unknown field \"extra\""),
    ];
    for (field, value, want) in cases {
        let e = err(&with(1, field, value.clone()));
        assert!(e.starts_with(named), "{field}={value}: {e}");
        assert!(e.contains(want), "{field}={value}: {e}");
    }
    // A bad input or path is named by index only when it cannot be shown.
    let e = err(&with(1, "input", 3.into()));
    assert_eq!(e, "files[1]: \"input\": expected a string, found a number");
    for (path, want) in [
        ("", "\"path\" is empty"),
        ("../x", "would escape the tree"),
        ("a//b", "empty path segment"),
        ("/abs", "empty path segment"),
        ("a\u{0}b", "control character"),
    ] {
        let e = err(&with(1, "path", path.into()));
        assert!(
            e.starts_with("files[1]") && e.contains(want),
            "{path:?}: {e}"
        );
    }
    let e = err(&with(1, "input", "a/b".into()));
    assert!(e.contains("\"input\": contains '/'"), "{e}");
    let e = err(&with(1, "path", "b/x.bin".into()));
    assert!(e.contains("a second entry for this path"), "{e}");
    let e = err(&with(1, "path", "b/x.bin/y".into()));
    assert!(
        e.contains("\"b/x.bin\" is both a file and a directory"),
        "{e}"
    );
    let long = "x".repeat(256);
    let e = err(&with(1, "path", long.into()));
    assert!(e.contains("\"path\""), "{e}");
    let signed = "https://h/x?X-Amz-Signature=abc";
    let mut e = with(2, "url", signed.into());
    e = err(&e);
    assert!(e.contains("signed URLs cannot be locked"), "{e}");
}

#[test]
fn signed_urls_are_refused_at_lock_out() {
    let spec = |url: &str| InputSpec {
        name: "n".into(),
        url: url.into(),
    };
    assert!(refuse_signed(&[spec("s3://b/k?x"), spec("https://h/p?page=2")]).is_ok());
    for url in [
        "https://h/p?X-Amz-Signature=1&X-Amz-Credential=2",
        "HTTPS://a.blob.core.windows.net/c/k?sv=1&sig=zz",
        "http://h/p?a=1&Expires=5&Signature=x",
    ] {
        let e = refuse_signed(&[spec(url)]).unwrap_err().to_string();
        assert!(e.contains("input n: a signed URL cannot be locked"), "{e}");
        assert!(!e.contains("zz") && !e.contains("X-Amz"), "{e}");
    }
}

#[test]
fn arbitrary_json_never_panics() {
    for text in [
        "null",
        "{\"inputfs_lock\": 1, \"files\": [null, {}]}",
        "{\"inputfs_lock\": 1.5}",
        "{\"inputfs_lock\": 1, \"files\": [{\"input\": \"a\", \"path\": \"b\", \"url\": \"s3://b/\u{1}\", \"kind\": \"s3\", \"size\": 1, \"version\": {}, \"block_size\": 4096}]}",
    ] {
        let _ = parse(text);
    }
}
