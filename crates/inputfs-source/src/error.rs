//! The crate's one error type: why an input could not be resolved.
//!
//! These errors end up as the one-line reason `inputfs mount` fails with, so every
//! variant names its culprit — the input and the (canonical, credential-free) URL —
//! and, where there is one, the fix. Errors on the read path after mount are
//! `inputfs_core::Error`s instead (see `origin`).

/// Why resolving inputs failed. `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The URL is malformed or of an unsupported form.
    #[error("{}{url}: {reason}", who(input))]
    BadUrl {
        input: String,
        url: String,
        reason: String,
    },
    /// The input's name cannot be used (empty, has a `/`, duplicated, ...).
    #[error("input {input:?}: {reason}")]
    BadInput { input: String, reason: String },
    /// A single object that does not exist.
    #[error("{}{url}: no such object", who(input))]
    NotFound { input: String, url: String },
    /// 401/403 from the origin.
    #[error("{}{url}: access denied (check credentials: {hint})", who(input))]
    AccessDenied {
        input: String,
        url: String,
        hint: String,
    },
    /// The endpoint did not answer (connection refused, DNS, timeout).
    #[error(
        "{}{url}: cannot reach endpoint {endpoint}: {detail}{}",
        who(input),
        hint_suffix(hint)
    )]
    Unreachable {
        input: String,
        url: String,
        endpoint: String,
        detail: String,
        hint: String,
    },
    /// The endpoint accepted the request (or not even the connection) but did
    /// not answer in time, twice in a row.
    #[error(
        "{}{url}: no answer from {endpoint}: {detail} (check the endpoint and the network)",
        who(input)
    )]
    TimedOut {
        input: String,
        url: String,
        endpoint: String,
        detail: String,
    },
    /// A prefix or glob that matched nothing.
    #[error(
        "{}{url}: matches no objects (an empty prefix, or a glob nothing matches)",
        who(input)
    )]
    Empty { input: String, url: String },
    /// A prefix or glob over plain HTTP(S), which cannot be listed.
    #[error(
        "{}{url}: http(s) URLs cannot be listed, so prefixes and globs are not supported: name each file as its own input",
        who(input)
    )]
    NotListable { input: String, url: String },
    /// Two objects would appear at the same path (or one as a file and a directory).
    #[error(
        "{}{first} and {second} would both appear as {path:?} in the mount",
        who(input)
    )]
    Conflict {
        input: String,
        path: String,
        first: String,
        second: String,
    },
    /// An object key that cannot be a path in the mounted tree.
    #[error("{}{url}: object key {key:?} cannot be mounted: {reason}", who(input))]
    BadKey {
        input: String,
        url: String,
        key: String,
        reason: String,
    },
    /// The store client could not be configured (bad option or environment).
    #[error("{}{url}: cannot configure the client: {message}", who(input))]
    Config {
        input: String,
        url: String,
        message: String,
    },
    /// Any other failure from the origin.
    #[error("{}{url}: {message}", who(input))]
    Origin {
        input: String,
        url: String,
        message: String,
        retryable: bool,
    },
}

fn who(input: &str) -> String {
    if input.is_empty() {
        String::new()
    } else {
        format!("input {input}: ")
    }
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

impl SourceError {
    pub(crate) fn bad_url(url: &str, reason: &str) -> Self {
        SourceError::BadUrl {
            input: String::new(),
            url: shorten(&redact_url(url)),
            reason: reason.to_string(),
        }
    }

    /// Name the input this error is about (kept if one is already named).
    pub fn with_input(mut self, name: &str) -> Self {
        let slot = match &mut self {
            SourceError::BadUrl { input, .. }
            | SourceError::BadInput { input, .. }
            | SourceError::NotFound { input, .. }
            | SourceError::AccessDenied { input, .. }
            | SourceError::Unreachable { input, .. }
            | SourceError::TimedOut { input, .. }
            | SourceError::Empty { input, .. }
            | SourceError::NotListable { input, .. }
            | SourceError::Conflict { input, .. }
            | SourceError::BadKey { input, .. }
            | SourceError::Config { input, .. }
            | SourceError::Origin { input, .. } => input,
        };
        if slot.is_empty() {
            *slot = name.to_string();
        }
        self
    }

    /// Whether trying again later may succeed (network trouble, throttling, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Unreachable { .. } | SourceError::TimedOut { .. } => true,
            SourceError::Origin { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Whether a request timed out (tried once more at most: see `resolve`).
    pub fn is_timeout(&self) -> bool {
        matches!(self, SourceError::TimedOut { .. })
    }
}

/// How many characters of a user's string an error quotes at most.
pub const QUOTED_CHARS: usize = 200;

/// `s` as an error may quote it: whole when short, else its first
/// [`QUOTED_CHARS`] characters and its length ("s3://b/aaaa…(70017 bytes)"), so
/// that a 100 KB URL or name does not make a 100 KB error line.
pub fn shorten(s: &str) -> String {
    match s.char_indices().nth(QUOTED_CHARS) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…({} bytes)", &s[..end], s.len()),
    }
}

/// Make any message safe to log and one line: query strings of URLs in it are
/// replaced (they may hold signatures) and line breaks collapsed.
pub fn redact(message: &str) -> String {
    message
        .split_whitespace()
        .map(|word| {
            if word.contains("://") {
                redact_url(word)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A URL with its query replaced by `?<redacted>` when it holds signed
/// parameters, and any `user:password@` replaced by `<redacted>@`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some((scheme, rest)) = out.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out = format!("{scheme}://<redacted>@{}", &rest[at + 1..]);
        }
    }
    match out.split_once('?') {
        Some((base, query))
            if out.starts_with("http")
                && query
                    .split('&')
                    .any(|kv| crate::url::is_signed_param(kv.split('=').next().unwrap_or(""))) =>
        {
            format!("{base}?<redacted>")
        }
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_input_and_url_on_one_line() {
        let e = SourceError::NotFound {
            input: String::new(),
            url: "s3://b/k".into(),
        }
        .with_input("train");
        assert_eq!(e.to_string(), "input train: s3://b/k: no such object");
        // An input already named is kept.
        assert_eq!(
            e.with_input("other").to_string(),
            "input train: s3://b/k: no such object"
        );
        let e = SourceError::bad_url("ftp://x/y", "unknown scheme");
        assert_eq!(e.to_string(), "ftp://x/y: unknown scheme");
        let e = SourceError::Unreachable {
            input: "a".into(),
            url: "s3://b/k".into(),
            endpoint: "http://127.0.0.1:1".into(),
            detail: "connection refused".into(),
            hint: "check AWS_ENDPOINT_URL".into(),
        };
        assert_eq!(
            e.to_string(),
            "input a: s3://b/k: cannot reach endpoint http://127.0.0.1:1: connection refused (check AWS_ENDPOINT_URL)"
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn long_strings_are_quoted_shortened_with_their_length() {
        assert_eq!(shorten("s3://b/k"), "s3://b/k");
        let exact = "x".repeat(QUOTED_CHARS);
        assert_eq!(shorten(&exact), exact);
        let long = format!("http://h/{}", "é".repeat(50_000));
        let shown = shorten(&long);
        assert!(shown.starts_with("http://h/éé"), "{shown}");
        assert!(shown.ends_with("…(100009 bytes)"), "{shown}");
        assert_eq!(
            shown.chars().count(),
            QUOTED_CHARS + "…(100009 bytes)".chars().count()
        );
        let e = SourceError::bad_url(&long, "too long");
        assert!(e.to_string().len() < 600, "{e}");
    }

    #[test]
    fn redaction_removes_signatures_and_newlines() {
        let msg = "Error performing GET https://h/p?X-Amz-Signature=abc&x=1 in 3ms\n - 403";
        let got = redact(msg);
        assert!(!got.contains("abc"), "{got}");
        assert!(!got.contains('\n'));
        assert!(got.contains("https://h/p?<redacted>"));
        // Unsigned queries are kept: they help find the object.
        assert_eq!(redact("GET https://h/p?page=2"), "GET https://h/p?page=2");
        assert_eq!(
            redact_url("https://a.blob.core.windows.net/c/k?sv=1&SIG=zz"),
            "https://a.blob.core.windows.net/c/k?<redacted>"
        );
        assert_eq!(redact_url("https://u:pw@h/x"), "https://<redacted>@h/x");
        assert_eq!(redact_url("s3://b/k?x@y"), "s3://b/k?x@y");
    }
}
