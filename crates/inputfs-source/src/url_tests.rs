//! Unit tests of `parse_url`: every scheme and shape, the Azure https form,
//! signed-query stripping and the inputs that must be refused.

use super::*;

fn ok(s: &str) -> ParsedUrl {
    parse_url(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> String {
    match parse_url(s) {
        Ok(p) => panic!("{s} parsed as {p:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            msg
        }
    }
}

fn object(key: &str) -> Target {
    Target::Object { key: key.into() }
}

#[test]
fn s3_object_prefix_and_glob() {
    let p = ok("s3://bucket/dir/file.bin");
    assert_eq!(p.kind, SourceKind::S3);
    assert_eq!(
        p.store,
        StoreLocation::S3 {
            bucket: "bucket".into()
        }
    );
    assert_eq!(p.target, object("dir/file.bin"));
    assert_eq!(p.canonical, "s3://bucket/dir/file.bin");

    let p = ok("s3://bucket/dir/sub/");
    assert_eq!(
        p.target,
        Target::Prefix {
            prefix: "dir/sub".into()
        }
    );
    assert_eq!(p.object_url("dir/sub/x y#1"), "s3://bucket/dir/sub/x y#1");

    let p = ok("s3://bucket/");
    assert_eq!(p.target, Target::Prefix { prefix: "".into() });

    let p = ok("s3://bucket/data/part-??.csv");
    assert_eq!(
        p.target,
        Target::Glob {
            prefix: "data".into(),
            pattern: "part-??.csv".into()
        }
    );
    let p = ok("s3://bucket/*.csv");
    assert_eq!(
        p.target,
        Target::Glob {
            prefix: "".into(),
            pattern: "*.csv".into()
        }
    );
    // Keys are verbatim: no percent-decoding, `#` is a character.
    assert_eq!(ok("s3://b/a%20b#c").target, object("a%20b#c"));
    assert_eq!(ok("s3a://b/k").kind, SourceKind::S3);
}

#[test]
fn gcs_and_az() {
    let p = ok("gs://bkt/a/b.txt");
    assert_eq!(p.kind, SourceKind::Gcs);
    assert_eq!(
        p.store,
        StoreLocation::Gcs {
            bucket: "bkt".into()
        }
    );
    assert_eq!(p.target, object("a/b.txt"));
    assert_eq!(p.canonical, "gs://bkt/a/b.txt");

    let p = ok("az://container/path/to/");
    assert_eq!(p.kind, SourceKind::Azure);
    assert_eq!(
        p.store,
        StoreLocation::Azure {
            account: None,
            container: "container".into(),
            sas: None
        }
    );
    assert_eq!(
        p.target,
        Target::Prefix {
            prefix: "path/to".into()
        }
    );
    assert_eq!(p.object_url("path/to/x"), "az://container/path/to/x");
}

#[test]
fn gcs_prefix_glob_and_whole_bucket() {
    let p = ok("gs://bkt/data/train/");
    assert_eq!(
        p.store,
        StoreLocation::Gcs {
            bucket: "bkt".into()
        }
    );
    assert_eq!(
        p.target,
        Target::Prefix {
            prefix: "data/train".into()
        }
    );
    assert_eq!(p.root, "gs://bkt/");
    assert_eq!(
        p.object_url("data/train/x.bin"),
        "gs://bkt/data/train/x.bin"
    );
    let p = ok("gs://bkt/shards/part-*.tfrecord");
    assert_eq!(
        p.target,
        Target::Glob {
            prefix: "shards".into(),
            pattern: "part-*.tfrecord".into()
        }
    );
    assert_eq!(p.canonical, "gs://bkt/shards/part-*.tfrecord");
    let p = ok("gs://bkt/");
    assert_eq!(p.target, Target::Prefix { prefix: "".into() });
    // Keys are verbatim: no percent-decoding, `?` is a glob character.
    assert_eq!(ok("gs://bkt/a%20b").target, object("a%20b"));
    assert!(matches!(ok("gs://bkt/a?.bin").target, Target::Glob { .. }));
    assert_eq!(ok("GS://bkt/k").kind, SourceKind::Gcs);
    assert!(err("gs://").contains("missing bucket name"));
    assert!(err("gs://b:1/k").contains("invalid bucket name"));
    assert!(err("gs://bkt/a/../b").contains("escape"));
    assert!(err("gs://bkt/a*/b").contains("wildcards"));
}

#[test]
fn azure_https_form_with_sas() {
    let url = "https://acct.blob.core.windows.net/cont/dir/my%20file.bin?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z&st=2024-01-01T00:00:00Z&spr=https&sig=abc%2Bdef%3D";
    let p = ok(url);
    assert_eq!(p.kind, SourceKind::Azure);
    assert_eq!(p.target, object("dir/my file.bin"));
    assert_eq!(
        p.canonical,
        "https://acct.blob.core.windows.net/cont/dir/my%20file.bin"
    );
    match &p.store {
        StoreLocation::Azure {
            account,
            container,
            sas,
        } => {
            assert_eq!(account.as_deref(), Some("acct"));
            assert_eq!(container, "cont");
            let sas = sas.as_ref().expect("sas kept for fetching");
            assert!(sas.expose().contains("sig=abc%2Bdef%3D"));
            // ... but never shown.
            assert_eq!(format!("{sas:?}"), "<redacted>");
            assert!(!format!("{p:?}").contains("abc"));
        }
        other => panic!("{other:?}"),
    }
    let p = ok("https://acct.blob.core.windows.net/cont/pre/");
    assert_eq!(
        p.target,
        Target::Prefix {
            prefix: "pre".into()
        }
    );
    assert_eq!(
        p.object_url("pre/a b"),
        "https://acct.blob.core.windows.net/cont/pre/a%20b"
    );
    assert!(err("https://acct.blob.core.windows.net/cont").contains("missing key"));
}

#[test]
fn http_urls_and_signed_query_stripping() {
    let p = ok("http://127.0.0.1:8080/data/file%201.bin");
    assert_eq!(p.kind, SourceKind::Http);
    assert_eq!(
        p.store,
        StoreLocation::Http {
            origin: "http://127.0.0.1:8080".into(),
            query: None
        }
    );
    assert_eq!(p.target, object("data/file 1.bin"));
    assert_eq!(p.canonical, "http://127.0.0.1:8080/data/file%201.bin");

    // S3 presigned: every X-Amz-* parameter goes, case-insensitively; others stay.
    let s = "https://b.s3.amazonaws.com/k.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&x-amz-credential=AKIA%2F&X-Amz-Signature=deadbeef&X-Amz-Expires=3600&partNumber=1";
    let p = ok(s);
    assert_eq!(p.canonical, "https://b.s3.amazonaws.com/k.bin?partNumber=1");
    match &p.store {
        StoreLocation::Http { query: Some(q), .. } => assert!(q.expose().contains("deadbeef")),
        other => panic!("{other:?}"),
    }
    // GCS signed URL: all X-Goog-*.
    let p = ok(
        "https://storage.googleapis.com/b/o?X-Goog-Algorithm=x&X-Goog-Signature=ff&X-Goog-Date=1",
    );
    assert_eq!(p.canonical, "https://storage.googleapis.com/b/o");
    // A SAS on a non-Azure host (e.g. a CDN) is stripped too.
    let p = ok(
        "https://cdn.example.com/f?SIG=1&Sv=2&se=3&sp=r&st=1&spr=https&srt=o&ss=b&sr=b&skoid=1&sktid=2&skt=3&ske=4&sks=b&skv=5&sdd=1&keep=yes",
    );
    assert_eq!(p.canonical, "https://cdn.example.com/f?keep=yes");
    // Fragments are dropped; the default port disappears.
    assert_eq!(ok("https://h:443/a#frag").canonical, "https://h/a");
}

#[test]
fn http_globs_and_prefixes_parse_but_are_marked() {
    assert_eq!(
        ok("https://h/dir/").target,
        Target::Prefix {
            prefix: "dir".into()
        }
    );
    assert_eq!(
        ok("https://h/dir/*.bin").target,
        Target::Glob {
            prefix: "dir".into(),
            pattern: "*.bin".into()
        }
    );
    // `?` starts a query and escaped wildcards are literal characters.
    assert_eq!(ok("https://h/a?b").target, object("a"));
    assert_eq!(ok("https://h/what%3F.txt").target, object("what?.txt"));
    assert_eq!(ok("https://h/star%2A").target, object("star*"));
}

#[test]
fn file_urls() {
    let p = ok("file:///data/sets/train.bin");
    assert_eq!(p.kind, SourceKind::File);
    assert_eq!(p.store, StoreLocation::File);
    assert_eq!(p.target, object("data/sets/train.bin"));
    assert_eq!(p.canonical, "file:///data/sets/train.bin");
    assert_eq!(ok("file://localhost/x/y").target, object("x/y"));
    assert_eq!(
        ok("file:///data/").target,
        Target::Prefix {
            prefix: "data".into()
        }
    );
    assert_eq!(
        ok("file:///data/*.bin").target,
        Target::Glob {
            prefix: "data".into(),
            pattern: "*.bin".into()
        }
    );
}

#[test]
fn bad_inputs_are_refused_naming_the_url() {
    let cases = [
        ("ftp://h/x", "unknown scheme"),
        ("just-a-path", "not a URL"),
        ("s3://", "missing bucket"),
        ("s3:///key", "missing bucket"),
        ("s3://bucket", "missing key"),
        ("gs://bucket", "missing key"),
        ("az://container", "missing key"),
        ("s3://b/a//b", "empty path segment"),
        ("s3://b//a", "empty path segment"),
        ("s3://b/a/../b", "escape"),
        ("s3://b/./a", "escape"),
        ("s3://b/a\0b", "control character"),
        ("s3://b/*/x", "last path segment"),
        ("file://relative/path", "absolute path"),
        ("file:///", "empty path"),
        ("https://h/", "empty path"),
        ("https://h", "empty path"),
        ("https://user:pw@h/x", "credentials in the URL"),
        ("https://h/a%2Fb", "%2F"),
        ("http://[::1/x", "invalid URL"),
    ];
    for (url, want) in cases {
        let msg = err(url);
        assert!(msg.contains(want), "{url}: {msg}");
        if !url.contains('\0') && !url.contains('@') {
            assert!(
                msg.starts_with(url.split('?').next().unwrap()),
                "{url}: {msg}"
            );
        }
    }
    // Credentials never reach the message.
    let msg = err("https://h/?X-Amz-Signature=secret");
    assert!(!msg.contains("secret"), "{msg}");
    let msg = err("https://user:pw@h/x");
    assert!(!msg.contains("pw"), "{msg}");
}

#[test]
fn http_dot_segments_are_normalized_like_any_http_client() {
    // The URL standard resolves `..` (also escaped) before a request is made: the
    // object named is /b, and it is mounted under its basename.
    let p = ok("https://h/a/../b");
    assert_eq!(p.target, object("b"));
    assert_eq!(p.canonical, "https://h/b");
    assert_eq!(ok("https://h/a/%2E%2E/b").target, object("b"));
}

#[test]
fn urls_longer_than_8_kib_are_refused_in_a_short_line() {
    for scheme in ["http://127.0.0.1:1/", "s3://b/", "file:///", "az://c/"] {
        // The longest accepted URL parses...
        let at_limit = format!("{scheme}{}", "k".repeat(MAX_URL_BYTES - scheme.len()));
        assert_eq!(ok(&at_limit).kind, ok(&format!("{scheme}k")).kind);
        // ...one byte more is refused, naming the limit, without echoing it all.
        let msg = err(&format!("{at_limit}k"));
        assert!(
            msg.contains("8193 bytes is too long (at most 8192 bytes, 8 KiB)"),
            "{msg}"
        );
        assert!(msg.len() < 400, "{} bytes: {msg}", msg.len());
    }
    let huge = format!("http://127.0.0.1:1/{}", "a".repeat(70_000));
    let msg = err(&huge);
    assert!(msg.contains("…(70019 bytes)") && msg.len() < 400, "{msg}");
}

#[test]
fn check_key_rules() {
    assert!(check_key("").is_ok());
    assert!(check_key("a/b.c/..d").is_ok());
    assert!(check_key("a//b").is_err());
    assert!(check_key("/a").is_err());
    assert!(check_key("a/").is_err());
    assert!(check_key("..").is_err());
    assert!(check_key("a/\u{7f}").is_err());
}

proptest::proptest! {
    /// No string, however odd, makes the URL parser panic.
    #[test]
    fn parse_url_never_panics(s in "\\PC*") {
        let _ = parse_url(&s);
    }

    /// Nor does anything after a known scheme (the paths most likely to reach deep
    /// into the parser).
    #[test]
    fn parse_url_never_panics_after_a_scheme(
        scheme in proptest::sample::select(vec!["s3://", "gs://", "az://", "http://", "https://", "file://"]),
        rest in "[a-zA-Z0-9/._%?&=*:@ \\-\\u{0}\\u{e9}]{0,60}",
    ) {
        let _ = parse_url(&format!("{scheme}{rest}"));
    }

    /// Whatever parses has a canonical URL without credentials of a signed URL.
    #[test]
    fn canonical_urls_carry_no_signature(key in "[a-z0-9/]{1,20}", sig in "[A-Za-z0-9]{8,20}") {
        let url = format!("https://host.example/{key}x?X-Amz-Signature={sig}&sig={sig}&keep=1");
        if let Ok(parsed) = parse_url(&url) {
            proptest::prop_assert!(!parsed.canonical.contains(&sig));
        }
    }
}
