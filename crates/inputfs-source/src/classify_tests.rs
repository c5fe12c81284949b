//! Unit tests of the error mapping: every class of `object_store` error becomes the
//! right engine error (with the right retryability) and the right one-line
//! resolve error, and no message leaks a signature.

use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;

use super::*;

use crate::origin::tests::object;

fn entry() -> StoreEntry {
    StoreEntry {
        store: Arc::new(InMemory::new()),
        endpoint: "http://127.0.0.1:9".into(),
        credentials_hint: crate::stores::S3_CREDENTIALS,
        endpoint_hint: "check AWS_ENDPOINT_URL and the network",
    }
}

fn generic(source: impl Into<Box<dyn StdError + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: source.into(),
    }
}

fn http(kind: HttpErrorKind, io: std::io::ErrorKind, text: &str) -> object_store::Error {
    generic(HttpError::new(
        kind,
        std::io::Error::new(io, text.to_string()),
    ))
}

fn status(text: &str) -> object_store::Error {
    generic(format!(
        "Error performing GET http://h/k in 3ms - Server returned non-2xx status code: {text}: <Error/>"
    ))
}

#[test]
fn classes() {
    use object_store::Error as E;
    let nf = E::NotFound {
        path: "k".into(),
        source: "404".into(),
    };
    assert_eq!(classify(&nf), Class::NotFound);
    let pre = E::Precondition {
        path: "k".into(),
        source: "412".into(),
    };
    assert_eq!(classify(&pre), Class::Changed);
    let denied = E::PermissionDenied {
        path: "k".into(),
        source: "403".into(),
    };
    assert_eq!(classify(&denied), Class::Denied);
    let unauth = E::Unauthenticated {
        path: "k".into(),
        source: "401".into(),
    };
    assert_eq!(classify(&unauth), Class::Denied);
    let refused = http(
        HttpErrorKind::Connect,
        std::io::ErrorKind::ConnectionRefused,
        "Connection refused",
    );
    assert_eq!(classify(&refused), Class::Unreachable);
    let timeout = http(
        HttpErrorKind::Timeout,
        std::io::ErrorKind::TimedOut,
        "timed out",
    );
    assert_eq!(classify(&timeout), Class::TimedOut);
    // Our own first-byte and stall timeouts, and a file origin's ETIMEDOUT.
    for t in [
        TimedOut::FirstByte(Duration::from_secs(10)),
        TimedOut::Stall(Duration::from_secs(10)),
    ] {
        let ours = generic(HttpError::new(HttpErrorKind::Timeout, t));
        assert_eq!(classify(&ours), Class::TimedOut);
    }
    let io_timeout = generic(std::io::Error::new(std::io::ErrorKind::TimedOut, "nfs"));
    assert_eq!(classify(&io_timeout), Class::TimedOut);
    // A panic caught at the boundary is not worth retrying.
    let panicked = generic(Panicked("request must be valid".into()));
    assert_eq!(classify(&panicked), Class::Permanent);
    assert!(!to_core(&panicked, &object()).is_retryable());
    let reset = http(
        HttpErrorKind::Interrupted,
        std::io::ErrorKind::ConnectionReset,
        "reset",
    );
    assert_eq!(classify(&reset), Class::Transient);
    // A certificate rustls rejects is a setting to fix, not a network blip.
    let untrusted = http(
        HttpErrorKind::Connect,
        std::io::ErrorKind::InvalidData,
        "invalid peer certificate: UnknownIssuer",
    );
    assert_eq!(classify(&untrusted), Class::Certificate);
    assert_eq!(
        classify(&status("503 Service Unavailable")),
        Class::Transient
    );
    assert_eq!(
        classify(&status("500 Internal Server Error")),
        Class::Transient
    );
    assert_eq!(classify(&status("429 Too Many Requests")), Class::Transient);
    assert_eq!(classify(&status("400 Bad Request")), Class::Permanent);
    assert_eq!(classify(&status("412 Precondition Failed")), Class::Changed);
    assert_eq!(
        classify(&generic("<Code>SlowDown</Code>")),
        Class::Transient
    );
    assert_eq!(classify(&generic("something odd")), Class::Permanent);
    assert_eq!(status_in("non-2xx status code: 502 Bad Gateway"), Some(502));
    assert_eq!(status_in("status code: abc"), None);
}

#[test]
fn engine_errors() {
    let obj = object();
    use object_store::Error as E;
    let nf = E::NotFound {
        path: "k".into(),
        source: "404".into(),
    };
    assert!(matches!(to_core(&nf, &obj), Error::NotFound { url } if url == "s3://b/k"));
    let pre = E::Precondition {
        path: "k".into(),
        source: "412".into(),
    };
    match to_core(&pre, &obj) {
        Error::VersionChanged { url, version } => {
            assert_eq!(url, "s3://b/k");
            assert_eq!(version, "etag:\"e1\"");
        }
        other => panic!("{other:?}"),
    }
    let retryable = |e: &object_store::Error| to_core(e, &obj).is_retryable();
    assert!(retryable(&http(
        HttpErrorKind::Connect,
        std::io::ErrorKind::ConnectionRefused,
        "x"
    )));
    assert!(retryable(&http(
        HttpErrorKind::Timeout,
        std::io::ErrorKind::TimedOut,
        "x"
    )));
    assert!(retryable(&status("503 Service Unavailable")));
    assert!(retryable(&status("429 Too Many Requests")));
    assert!(!retryable(&status("400 Bad Request")));
    assert!(!retryable(&E::PermissionDenied {
        path: "k".into(),
        source: "403".into()
    }));
    assert!(!retryable(&pre));
    assert!(!retryable(&nf));
}

#[test]
fn throttling_responses_are_marked_throttled() {
    let obj = object();
    let throttled = |e: &object_store::Error| {
        let core = to_core(e, &obj);
        assert!(core.is_retryable() || !core.is_throttling(), "{core:?}");
        core.is_throttling()
    };
    assert!(throttled(&status("503 Service Unavailable")));
    assert!(throttled(&status("429 Too Many Requests")));
    assert!(throttled(&generic(
        "<Code>SlowDown</Code> Please reduce your request rate"
    )));
    assert!(!throttled(&status("500 Internal Server Error")));
    assert!(!throttled(&status("403 Forbidden")));
    assert!(!throttled(&http(
        HttpErrorKind::Timeout,
        std::io::ErrorKind::TimedOut,
        "x"
    )));
}

#[test]
fn resolve_errors_are_one_line_and_name_the_fix() {
    use object_store::Error as E;
    let e = entry();
    let nf = E::NotFound {
        path: "k".into(),
        source: "404".into(),
    };
    assert_eq!(
        to_source(&nf, "train", "s3://b/k", &e, false).to_string(),
        "input train: s3://b/k: no such object"
    );
    let msg = to_source(&nf, "train", "s3://b/", &e, true).to_string();
    assert_eq!(msg, "input train: s3://b/: no such bucket or container");

    let denied = E::PermissionDenied {
        path: "k".into(),
        source: "403".into(),
    };
    let msg = to_source(&denied, "train", "s3://b/k", &e, false).to_string();
    assert!(
        msg.starts_with("input train: s3://b/k: access denied (check credentials: "),
        "{msg}"
    );
    assert!(
        msg.contains("AWS_ACCESS_KEY_ID") && msg.contains("AWS_SECRET_ACCESS_KEY"),
        "{msg}"
    );

    let refused = http(
        HttpErrorKind::Connect,
        std::io::ErrorKind::ConnectionRefused,
        "Connection refused",
    );
    let err = to_source(&refused, "train", "s3://b/k", &e, false);
    assert_eq!(
        err.to_string(),
        "input train: s3://b/k: cannot reach endpoint http://127.0.0.1:9: Connection refused (check AWS_ENDPOINT_URL and the network)"
    );
    assert!(err.is_retryable());

    let timed_out = generic(HttpError::new(
        HttpErrorKind::Timeout,
        TimedOut::FirstByte(Duration::from_secs(10)),
    ));
    let err = to_source(&timed_out, "train", "s3://b/k", &e, false);
    assert_eq!(
        err.to_string(),
        "input train: s3://b/k: no answer from http://127.0.0.1:9: no response within 10s of sending the request (first-byte timeout) (check the endpoint and the network)"
    );
    assert!(err.is_retryable() && err.is_timeout());

    let signed = generic(
        "Error performing GET https://h/k?X-Amz-Signature=topsecret&a=1 in 1ms\n - Server returned non-2xx status code: 400 Bad Request: x",
    );
    let msg = to_source(&signed, "i", "https://h/k", &e, false).to_string();
    assert!(!msg.contains("topsecret") && !msg.contains('\n'), "{msg}");
    let core = to_core(&signed, &object()).to_string();
    assert!(
        !core.contains("topsecret") && !core.contains('\n'),
        "{core}"
    );
}
