//! Lock file schema: round trip, one-line errors naming entry and field, the
//! bounds on every field a `--locked` mount relies on, and the check of empty
//! entries against a real (file://) origin.

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

#[test]
fn sizes_a_file_cannot_have_are_refused() {
    let named = "files[1] (input \"train\", path \"a.bin\")";
    for size in [1u64 << 63, u64::MAX] {
        let e = err(&with(1, "size", size.into()));
        assert_eq!(
            e,
            format!(
                "{named}: \"size\" {size} is more than a file can hold (at most 9223372036854775807 bytes, 2^63-1)"
            )
        );
    }
    // The largest size a file can have is accepted (reads check it against
    // the origin), and so is 0 (checked at mount: `verify`).
    let locked = parse(&with(1, "size", (i64::MAX as u64).into())).unwrap();
    assert_eq!(locked.inputs[0].files[0].object.size, i64::MAX as u64);
    assert!(locked.empty.is_empty());
    let locked = parse(&with(1, "size", 0.into())).unwrap();
    assert_eq!(locked.empty.len(), 1);
    assert_eq!(locked.empty[0].entry, named);
    assert_eq!(locked.empty[0].object.url, "s3://bkt/train/a.bin");
}

#[test]
fn version_tokens_must_fit_in_a_header_and_strings_are_bounded() {
    for (version, want) in [
        (
            serde_json::json!({"etag": "\"a\"\r\nX-Injected: 1"}),
            "\"version.etag\" holds a control character",
        ),
        (
            serde_json::json!({"version_id": "v\u{7f}"}),
            "\"version.version_id\" holds a control character",
        ),
        (
            serde_json::json!({"etag": "e".repeat(1025)}),
            "\"version.etag\" is 1025 bytes long (at most 1024)",
        ),
    ] {
        let e = err(&with(1, "version", version));
        assert!(e.contains(want), "{e}");
    }
    let e = err(&with(
        1,
        "path",
        "a/".repeat(2100).trim_end_matches('/').into(),
    ));
    assert!(
        e.contains("\"path\" is 4199 bytes long (at most 4096)"),
        "{e}"
    );
    // Whatever the file holds, an error line stays short.
    for (field, value) in [
        ("path", "p".repeat(100_000)),
        ("input", "i".repeat(100_000)),
        ("url", format!("s3://b/{}", "k".repeat(100_000))),
    ] {
        let e = err(&with(1, field, value.into()));
        assert!(e.len() < 1500, "{field}: {} bytes: {}", e.len(), &e[..300]);
    }
    let e = err(&with(
        1,
        "url",
        format!("s3://b/{}", "k".repeat(9000)).into(),
    ));
    assert!(e.contains("too long (at most 8192 bytes, 8 KiB)"), "{e}");
}

#[tokio::test]
async fn empty_entries_are_checked_at_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("full"), vec![7u8; 3 << 20]).unwrap();
    let entry_for = |name: &str| {
        let mut e = entry(
            "in",
            name,
            &format!("file://{}", root.join(name).display()),
            SourceKind::File,
        );
        e.size = 0;
        e.version = Version::default();
        e
    };
    let origin = Origin::new();
    let check = |names: &[&str]| {
        let entries: Vec<_> = names.iter().map(|n| entry_for(n)).collect();
        parse(&to_json(&entries)).unwrap()
    };
    let locked = check(&["empty"]);
    verify::empty_files(&locked.empty, &origin).await.unwrap();
    let locked = check(&["empty", "full"]);
    let e = verify::empty_files(&locked.empty, &origin)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        "files[1] (input \"in\", path \"full\"): \"size\" is 0, but the origin has 3145728 bytes for this version"
    );
    let locked = check(&["gone"]);
    let e = verify::empty_files(&locked.empty, &origin)
        .await
        .unwrap_err();
    assert!(
        e.starts_with("files[0] (input \"in\", path \"gone\"): \"size\" is 0, and the origin cannot confirm it: ")
            && e.contains("no such object"),
        "{e}"
    );
}
