//! The crate's error type, and the single place where an error becomes an errno.
//!
//! Everything the FUSE adapter replies with goes through [`Error::errno`], so the
//! mapping from "what went wrong" to "what the application sees" is decided once.

use std::sync::Arc;

/// Result alias for the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong on the read path.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The origin failed (network, 5xx, throttling, auth). `retryable` says whether
    /// trying again may help; `throttled` that the origin asked us to slow down
    /// (HTTP 429, 503 / SlowDown), which is counted and logged once per episode.
    #[error("origin error for {url}: {message}")]
    Origin {
        url: String,
        message: String,
        retryable: bool,
        throttled: bool,
    },
    /// The object no longer exists at the origin.
    #[error("{url} no longer exists at the origin")]
    NotFound { url: String },
    /// The object at the origin is no longer the version pinned at mount.
    #[error("{url} changed at the origin since it was pinned (version {version})")]
    VersionChanged { url: String, version: String },
    /// The origin returned a different number of bytes than asked for.
    #[error("origin returned {got} bytes for {url} where {want} were expected")]
    ShortRead { url: String, want: u64, got: u64 },
    /// A cache tier failed in a way the caller should know about (most tier errors
    /// are absorbed by the engine and never surface).
    #[error("cache tier {tier}: {message}")]
    Tier { tier: String, message: String },
    /// A read past the end of the object or with an invalid range.
    #[error("invalid range {offset}+{len} for an object of {size} bytes")]
    Range { offset: u64, len: u64, size: u64 },
}

impl Error {
    /// The errno the application sees for this error. The only mapping there is.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Range { .. } => libc::EINVAL,
            // Everything else is "the data could not be read": EIO, never a wrong
            // byte and never a hang.
            Error::Origin { .. }
            | Error::NotFound { .. }
            | Error::VersionChanged { .. }
            | Error::ShortRead { .. }
            | Error::Tier { .. } => libc::EIO,
        }
    }

    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Origin { retryable, .. } => *retryable,
            Error::ShortRead { .. } => true,
            _ => false,
        }
    }

    /// Whether the origin refused this request to make us slow down.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            Error::Origin {
                throttled: true,
                ..
            }
        )
    }
}

/// Single-flight hands every waiter the same `Arc<Error>`; each gets its own copy.
impl From<Arc<Error>> for Error {
    fn from(e: Arc<Error>) -> Self {
        Arc::try_unwrap(e).unwrap_or_else(|shared| (*shared).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let origin = Error::Origin {
            url: "s3://b/k".into(),
            message: "boom".into(),
            retryable: true,
            throttled: false,
        };
        assert_eq!(origin.errno(), libc::EIO);
        assert!(origin.is_retryable());
        let shared = Arc::new(origin);
        let copy = Error::from(shared.clone());
        assert_eq!(copy.errno(), libc::EIO);
        assert!(copy.is_retryable());
        let range = Error::Range {
            offset: 1,
            len: 2,
            size: 0,
        };
        assert_eq!(range.errno(), libc::EINVAL);
    }
}
