//! `url.resolve`: does each URL resolve, with this environment's credentials,
//! exactly as `inputfs mount` would resolve it (HEAD for an object, LIST for a
//! prefix or glob, through `inputfs_source::Origin` with the same retries)? A
//! failure is the one-line reason mount would give, plus what to do about it.

use bytesize::ByteSize;
use inputfs_source::error::{redact_url, shorten};
use inputfs_source::{InputSpec, Origin, SourceError};

use super::Check;
use crate::cli::OriginArgs;

const ID: &str = "url.resolve";
/// The input name each URL is resolved under (and stripped from messages).
const NAME: &str = "url";

/// One check per URL, in the order given.
pub fn checks(urls: &[String], origin_args: &OriginArgs) -> Vec<Check> {
    if urls.is_empty() {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("inputfs-io")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return urls
                .iter()
                .map(|url| {
                    Check::fail(
                        ID,
                        &shorten(&redact_url(url)),
                        format!("cannot start the async runtime: {e}"),
                        "check the process limits (threads, memory) of this user",
                    )
                })
                .collect();
        }
    };
    let origin = crate::stack::origin(origin_args);
    // One after another: resolve's futures are not `Send` (so not spawnable),
    // and a doctor run names a handful of URLs.
    runtime.block_on(async {
        let mut checks = Vec::with_capacity(urls.len());
        for url in urls {
            checks.push(resolve(&origin, url).await);
        }
        checks
    })
}

async fn resolve(origin: &Origin, url: &str) -> Check {
    let shown = shorten(&redact_url(url));
    let spec = InputSpec {
        name: NAME.to_string(),
        url: url.to_string(),
    };
    let started = std::time::Instant::now();
    match origin.resolve(std::slice::from_ref(&spec)).await {
        Ok(inputs) => {
            let files: Vec<_> = inputs.into_iter().flat_map(|i| i.files).collect();
            let bytes = files
                .iter()
                .map(|f| f.object.size)
                .fold(0, u64::saturating_add);
            let secs = started.elapsed().as_secs_f64();
            let what = match files.as_slice() {
                [one] => format!(
                    "1 object, {} (version {})",
                    ByteSize(bytes),
                    one.object.version.token()
                ),
                _ => format!("{} objects, {}", files.len(), ByteSize(bytes)),
            };
            Check::ok(
                ID,
                &shown,
                format!("{shown}: {what}, resolved in {secs:.2} s"),
            )
            .measure("objects", files.len() as u64)
            .measure("bytes", bytes)
            .measure("seconds", secs)
        }
        Err(e) => {
            let line = e.to_string();
            let line = line
                .strip_prefix(&format!("input {NAME}: "))
                .unwrap_or(&line)
                .to_string();
            Check::fail(ID, &shown, line, fix(&e))
        }
    }
}

/// What to do about a resolve error.
fn fix(e: &SourceError) -> &'static str {
    match e {
        SourceError::BadUrl { .. } | SourceError::BadInput { .. } => {
            "write the URL in one of the forms in the README (s3://bucket/key, gs://, az://, https://, file:///; a trailing '/' for a prefix)"
        }
        SourceError::NotFound { .. } => {
            "check the bucket and key (and the endpoint and region); for every object below a prefix, end the URL with '/'"
        }
        SourceError::AccessDenied { .. } => {
            "give this environment credentials that may read it (the cloud's usual variables or credential chain: AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*), as the mount will see them"
        }
        SourceError::Unreachable { .. } => {
            "check the endpoint (e.g. AWS_ENDPOINT_URL), DNS, proxies and firewalls between this machine and it"
        }
        SourceError::TimedOut { .. } => {
            "the endpoint took the connection or the request and did not answer in time: check that it is the right endpoint and that it is up; a slow but working origin may need longer --connect-timeout, --first-byte-timeout or --stall-timeout"
        }
        SourceError::Empty { .. } => {
            "check the prefix or glob: nothing is below it (and the credentials may list it)"
        }
        SourceError::NotListable { .. } => "name each file as its own URL",
        SourceError::Conflict { .. } | SourceError::BadKey { .. } => {
            "mount the conflicting objects as separate inputs, or narrow the prefix or glob"
        }
        SourceError::Config { .. } => {
            "fix the store settings in the environment (the variable the message names)"
        }
        SourceError::Origin { .. } => {
            "the object store answered with an error: check the bucket exists in this endpoint and region, and the store's status"
        }
    }
}
