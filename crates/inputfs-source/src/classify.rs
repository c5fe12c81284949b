//! Sorting `object_store` errors into what the engine and the user need to
//! know: gone, changed, denied, unreachable, timed out, worth retrying or not.
//! `object_store` keeps the HTTP status of a failed request in a private type,
//! so it is found in the variant where the crate maps one, else by the
//! transport error kind or the status text in the source chain.

use std::error::Error as StdError;

use inputfs_core::{Error, ObjectId};
use object_store::client::{HttpError, HttpErrorKind};

use crate::error::{SourceError, redact};
use crate::guard::Panicked;
use crate::stores::StoreEntry;
use crate::timeouts::TimedOut;

/// What an `object_store` error means for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    NotFound,
    /// Precondition failed: the object is no longer the pinned version.
    Changed,
    /// 401/403.
    Denied,
    /// Could not connect at all.
    Unreachable,
    /// Connected, but the server's TLS certificate is not trusted (unknown CA,
    /// wrong name, expired): a setting to fix, not worth retrying.
    Certificate,
    /// A request timed out: connecting, waiting for the first byte, a stalled
    /// body, or the whole request (ours or the HTTP client's). Tried once more,
    /// not four times: an origin that does not answer at all would otherwise
    /// hold every read for four times the timeout.
    TimedOut,
    /// Dropped connections, 5xx, 429: may work if tried again.
    Transient,
    Permanent,
}

/// Sort an `object_store` error.
pub(crate) fn classify(e: &object_store::Error) -> Class {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => Class::NotFound,
        E::Precondition { .. } => Class::Changed,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Class::Denied,
        E::JoinError { .. } => Class::Transient,
        _ => classify_chain(e),
    }
}

fn classify_chain(e: &(dyn StdError + 'static)) -> Class {
    if is_certificate_error(e) {
        return Class::Certificate;
    }
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<TimedOut>() {
            return Class::TimedOut;
        }
        if err.is::<Panicked>() {
            return Class::Permanent;
        }
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect => Class::Unreachable,
                // Ours (`TimedOut`) and the HTTP client's (connect, whole request).
                HttpErrorKind::Timeout => Class::TimedOut,
                HttpErrorKind::Request | HttpErrorKind::Interrupted | HttpErrorKind::Decode => {
                    Class::Transient
                }
                _ => Class::Permanent,
            };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::NotFound => return Class::NotFound,
                K::PermissionDenied => return Class::Denied,
                K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable => {
                    return Class::Unreachable;
                }
                K::TimedOut => return Class::TimedOut,
                K::ConnectionReset
                | K::ConnectionAborted
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::Interrupted => return Class::Transient,
                _ => {}
            }
        }
        let text = err.to_string();
        if let Some(status) = status_in(&text) {
            return match status {
                404 => Class::NotFound,
                412 => Class::Changed,
                401 | 403 => Class::Denied,
                408 | 429 | 500..=599 => Class::Transient,
                _ => Class::Permanent,
            };
        }
        if text.contains("SlowDown") || text.contains("InternalError") {
            return Class::Transient;
        }
        current = err.source();
    }
    Class::Permanent
}

/// Whether a TLS certificate check failed somewhere in the chain (rustls says
/// "invalid peer certificate: UnknownIssuer / NotValidForName / Expired ...").
fn is_certificate_error(e: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.to_string().contains("invalid peer certificate") {
            return true;
        }
        current = err.source();
    }
    false
}

/// Whether the origin asked us to slow down: HTTP 429, or 503 (S3 `SlowDown`,
/// Azure `ServerBusy`, GCS `rateLimitExceeded` come with one of those), found
/// like [`classify`] finds a status: in the error chain's text.
pub(crate) fn is_throttling(e: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if matches!(status_in(&text), Some(429 | 503))
            || [
                "SlowDown",
                "ServerBusy",
                "TooManyRequests",
                "rateLimitExceeded",
            ]
            .iter()
            .any(|code| text.contains(code))
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// The HTTP status in `object_store`'s "non-2xx status code: 503 Service ..." text.
fn status_in(text: &str) -> Option<u16> {
    let rest = text.split_once("status code: ")?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|s| (100..600).contains(s))
}

/// The innermost cause of an error, for short messages ("Connection refused").
pub(crate) fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    redact(&current.to_string())
}

/// A read-path error for the engine.
pub(crate) fn to_core(e: &object_store::Error, object: &ObjectId) -> Error {
    let url = object.url.clone();
    let message = redact(&e.to_string());
    match classify(e) {
        Class::NotFound => Error::NotFound { url },
        Class::Changed => Error::VersionChanged {
            url,
            version: object.version.token(),
        },
        Class::Denied => Error::Origin {
            url,
            message: format!("access denied: {message}"),
            retryable: false,
            throttled: false,
        },
        Class::Unreachable | Class::Transient | Class::TimedOut => Error::Origin {
            url,
            message,
            retryable: true,
            throttled: is_throttling(e),
        },
        Class::Permanent | Class::Certificate => Error::Origin {
            url,
            message,
            retryable: false,
            throttled: false,
        },
    }
}

/// A resolve-time error for the user. `listing` says the request was a LIST (a
/// 404 then means the bucket or container, not an object, is missing).
pub(crate) fn to_source(
    e: &object_store::Error,
    input: &str,
    url: &str,
    entry: &StoreEntry,
    listing: bool,
) -> SourceError {
    let (input, url) = (input.to_string(), url.to_string());
    match classify(e) {
        Class::NotFound if !listing => SourceError::NotFound { input, url },
        Class::NotFound => SourceError::Origin {
            input,
            url,
            message: "no such bucket or container".into(),
            retryable: false,
        },
        Class::Denied => SourceError::AccessDenied {
            input,
            url,
            hint: entry.credentials_hint.to_string(),
        },
        Class::Unreachable => SourceError::Unreachable {
            input,
            url,
            endpoint: entry.endpoint.clone(),
            detail: root_cause(e),
            hint: entry.endpoint_hint.to_string(),
        },
        Class::TimedOut => SourceError::TimedOut {
            input,
            url,
            endpoint: entry.endpoint.clone(),
            detail: root_cause(e),
        },
        Class::Certificate => SourceError::Origin {
            input,
            url,
            message: format!(
                "TLS certificate of {} not trusted: {} (to trust a private CA, set SSL_CERT_FILE to a PEM bundle that holds it)",
                entry.endpoint,
                root_cause(e)
            ),
            retryable: false,
        },
        Class::Changed => SourceError::Origin {
            input,
            url,
            message: "changed while it was being resolved: try again".into(),
            retryable: true,
        },
        class => SourceError::Origin {
            input,
            url,
            message: redact(&e.to_string()),
            retryable: class == Class::Transient,
        },
    }
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
