//! Building one `object_store` client per store (bucket, container, HTTP origin,
//! local filesystem) from the cloud's usual environment plus explicit options.
//!
//! Credentials and endpoints come from each builder's `from_env()` (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`) — never from a file of ours, never logged. Explicit
//! options (what tests and `inputfs doctor` use) are applied on top, so a process
//! can talk to a local test server without touching its own environment.
//!
//! Every client gets the same transport policy: a 5 s connect timeout, a 60 s
//! request timeout (unless the environment or the options set their own), the
//! first-byte and stall timeouts of [`crate::timeouts`] on every HTTP request,
//! and **no retries** of its own — retrying is done once, by
//! `inputfs_core::Retrying` in the engine, and doubling it here would multiply
//! the wait before a read gives up.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::{HttpClient, HttpConnector, ReqwestConnector};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::{ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};

use crate::timeouts::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, TimedConnector, Timeouts};
use crate::url::StoreLocation;

/// How the store clients are configured: the environment (by default) plus
/// explicit options, which win over it. Values may be secrets: `Debug` shows keys only.
#[derive(Clone)]
pub struct StoreOptions {
    pub(crate) use_env: bool,
    pub(crate) s3: Vec<(AmazonS3ConfigKey, String)>,
    pub(crate) gcs: Vec<(GoogleConfigKey, String)>,
    pub(crate) azure: Vec<(AzureConfigKey, String)>,
    pub(crate) client: Vec<(ClientConfigKey, String)>,
    pub(crate) timeouts: Timeouts,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            use_env: true,
            s3: Vec::new(),
            gcs: Vec::new(),
            azure: Vec::new(),
            client: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("use_env", &self.use_env)
            .field("s3", &self.s3.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("gcs", &self.gcs.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field(
                "azure",
                &self.azure.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field(
                "client",
                &self.client.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// A built client and what to tell the user when it cannot be reached or refuses.
#[derive(Clone)]
pub(crate) struct StoreEntry {
    pub store: Arc<dyn ObjectStore>,
    /// Where requests go, for "cannot reach endpoint ..." (never holds secrets).
    pub endpoint: String,
    /// Which settings to check on "access denied".
    pub credentials_hint: &'static str,
    /// Which settings to check on "cannot reach endpoint".
    pub endpoint_hint: &'static str,
}

impl fmt::Debug for StoreEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreEntry")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

pub(crate) const S3_CREDENTIALS: &str = "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, or the instance/task role; AWS_REGION must be the bucket's region";
pub(crate) const GCS_CREDENTIALS: &str = "GOOGLE_SERVICE_ACCOUNT or GOOGLE_APPLICATION_CREDENTIALS (a key file), GOOGLE_SERVICE_ACCOUNT_KEY, or the VM's service account";
pub(crate) const AZURE_CREDENTIALS: &str = "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY or AZURE_STORAGE_TOKEN, a managed identity, or a SAS token in the URL";
pub(crate) const HTTP_CREDENTIALS: &str =
    "the server refused the URL; if it is a signed URL it may have expired: sign it again";
pub(crate) const FILE_CREDENTIALS: &str = "the file's permissions for this user";

/// Every HTTP client of a store, with the first-byte and stall timeouts.
fn timed(opts: &StoreOptions) -> TimedConnector<ReqwestConnector> {
    TimedConnector {
        inner: ReqwestConnector::default(),
        timeouts: opts.timeouts,
    }
}

fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    }
}

/// Whether the environment sets this client option itself for a cloud (`AWS_TIMEOUT`).
fn env_sets(opts: &StoreOptions, prefix: Option<&str>, key: &ClientConfigKey) -> bool {
    let Some(prefix) = prefix.filter(|_| opts.use_env) else {
        return false;
    };
    std::env::var_os(format!("{prefix}_{}", key.as_ref().to_ascii_uppercase())).is_some()
}

/// The timeouts every client gets unless the environment (variables starting with
/// `env_prefix`) or the options say otherwise, followed by the options' own.
fn default_client_config(
    opts: &StoreOptions,
    env_prefix: Option<&str>,
) -> Vec<(ClientConfigKey, String)> {
    let mut out = Vec::new();
    for (key, value) in [
        (ClientConfigKey::ConnectTimeout, CONNECT_TIMEOUT),
        (ClientConfigKey::Timeout, REQUEST_TIMEOUT),
    ] {
        if !env_sets(opts, env_prefix, &key) {
            out.push((key, format!("{}s", value.as_secs())));
        }
    }
    out.extend(opts.client.iter().cloned());
    out
}

/// The HTTP clients of all `http(s)://` stores of one origin. Each signed URL is
/// a store of its own (its query goes on every request), and a thousand inputs
/// must not mean a thousand connection pools and TLS setups: they share one
/// client (one for `http://`, one for `https://`).
#[derive(Debug, Default)]
pub(crate) struct SharedHttp {
    clients: Mutex<HashMap<bool, HttpClient>>,
}

#[derive(Debug)]
struct SharedConnector {
    shared: Arc<SharedHttp>,
    allow_http: bool,
}

impl HttpConnector for SharedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let mut clients = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&self.allow_http) {
            return Ok(client.clone());
        }
        let client = ReqwestConnector::default().connect(options)?;
        clients.insert(self.allow_http, client.clone());
        Ok(client)
    }
}

/// Build the client for one store. Fails only on configuration errors.
pub(crate) fn build_store(
    loc: &StoreLocation,
    opts: &StoreOptions,
    shared_http: &Arc<SharedHttp>,
) -> Result<StoreEntry, String> {
    match loc {
        StoreLocation::S3 { bucket } => build_s3(bucket, opts),
        StoreLocation::Gcs { bucket } => {
            let mut b = if opts.use_env {
                GoogleCloudStorageBuilder::from_env()
            } else {
                GoogleCloudStorageBuilder::new()
            };
            for (k, v) in default_client_config(opts, Some("GOOGLE")) {
                b = b.with_config(GoogleConfigKey::Client(k), v);
            }
            for (k, v) in &opts.gcs {
                b = b.with_config(*k, v);
            }
            // GOOGLE_BASE_URL (or a key file's gcs_base_url, which we cannot see
            // here) moves the endpoint; an explicit http:// one is allowed, as for S3.
            let base = b.get_config_value(&GoogleConfigKey::BaseUrl);
            if base.as_deref().is_some_and(|u| u.starts_with("http://")) {
                b = b.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
            }
            let endpoint = crate::error::redact(
                base.as_deref()
                    .unwrap_or("https://storage.googleapis.com")
                    .trim_end_matches('/'),
            );
            let store = b
                .with_bucket_name(bucket)
                .with_retry(retry())
                .with_http_connector(timed(opts))
                .build();
            Ok(StoreEntry {
                store: Arc::new(store.map_err(|e| e.to_string())?),
                endpoint,
                credentials_hint: GCS_CREDENTIALS,
                // Without credentials, the token comes from the VM's metadata server:
                // a connection error can be that one, not the endpoint.
                endpoint_hint: "check GOOGLE_BASE_URL and the network; without GOOGLE_SERVICE_ACCOUNT or GOOGLE_APPLICATION_CREDENTIALS the token comes from the VM metadata server (GCE_METADATA_HOST)",
            })
        }
        StoreLocation::Azure {
            account,
            container,
            sas,
        } => {
            let mut b = if opts.use_env {
                MicrosoftAzureBuilder::from_env()
            } else {
                MicrosoftAzureBuilder::new()
            };
            for (k, v) in default_client_config(opts, Some("AZURE")) {
                b = b.with_config(AzureConfigKey::Client(k), v);
            }
            for (k, v) in &opts.azure {
                b = b.with_config(*k, v);
            }
            if let Some(account) = account {
                b = b.with_account(account);
            }
            if let Some(sas) = sas {
                let pairs = object_store::azure::split_sas(sas.expose()).map_err(|e| {
                    format!(
                        "the SAS token in the URL cannot be read: {}",
                        crate::error::redact(&e.to_string())
                    )
                })?;
                let cred = object_store::azure::AzureCredential::SASToken(pairs);
                b = b.with_credentials(Arc::new(object_store::StaticCredentialProvider::new(cred)));
            }
            let emulator =
                b.get_config_value(&AzureConfigKey::UseEmulator).as_deref() == Some("true");
            let explicit = b.get_config_value(&AzureConfigKey::Endpoint);
            // An explicit http:// endpoint (Azure Stack, a local server) is a
            // choice: allow it rather than fail with "builder error".
            if !emulator
                && explicit
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"))
            {
                b = b.with_allow_http(true);
            }
            let endpoint = explicit
                .filter(|_| !emulator)
                .or_else(|| {
                    // object_store's emulator mode reads AZURITE_BLOB_STORAGE_URL itself.
                    emulator.then(|| {
                        std::env::var("AZURITE_BLOB_STORAGE_URL")
                            .ok()
                            .filter(|_| opts.use_env)
                            .unwrap_or_else(|| "http://127.0.0.1:10000".into())
                    })
                })
                .or_else(|| {
                    b.get_config_value(&AzureConfigKey::AccountName)
                        .map(|a| format!("https://{a}.blob.core.windows.net"))
                })
                .unwrap_or_else(|| "https://ACCOUNT.blob.core.windows.net".into());
            let store = b
                .with_container_name(container)
                .with_retry(retry())
                .with_http_connector(timed(opts))
                .build();
            Ok(StoreEntry {
                store: Arc::new(store.map_err(|e| e.to_string())?),
                endpoint,
                credentials_hint: AZURE_CREDENTIALS,
                endpoint_hint: "check AZURE_STORAGE_ENDPOINT / AZURE_STORAGE_USE_EMULATOR and the network",
            })
        }
        StoreLocation::Http { origin, query } => {
            let allow_http = origin.starts_with("http://");
            let mut options = ClientOptions::new().with_allow_http(allow_http);
            for (k, v) in default_client_config(opts, None) {
                options = options.with_config(k, v);
            }
            let base = match query {
                Some(q) => format!("{origin}/?{}", q.expose()),
                None => format!("{origin}/"),
            };
            let store = HttpBuilder::new()
                .with_url(base)
                .with_client_options(options)
                .with_retry(retry())
                .with_http_connector(TimedConnector {
                    inner: SharedConnector {
                        shared: shared_http.clone(),
                        allow_http,
                    },
                    timeouts: opts.timeouts,
                })
                .build()
                .map_err(|e| crate::error::redact(&e.to_string()))?;
            Ok(StoreEntry {
                store: Arc::new(store),
                endpoint: origin.clone(),
                credentials_hint: HTTP_CREDENTIALS,
                endpoint_hint: "check the host name and the network",
            })
        }
        StoreLocation::File => Ok(StoreEntry {
            store: Arc::new(LocalFileSystem::new()),
            endpoint: "the local filesystem".into(),
            credentials_hint: FILE_CREDENTIALS,
            endpoint_hint: "",
        }),
    }
}

fn build_s3(bucket: &str, opts: &StoreOptions) -> Result<StoreEntry, String> {
    let mut b = if opts.use_env {
        AmazonS3Builder::from_env()
    } else {
        AmazonS3Builder::new()
    };
    for (k, v) in default_client_config(opts, Some("AWS")) {
        b = b.with_config(AmazonS3ConfigKey::Client(k), v);
    }
    for (k, v) in &opts.s3 {
        b = b.with_config(*k, v);
    }
    let endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint);
    // An explicit http:// endpoint (a local or on-premises server) is a choice,
    // not an accident: allow it rather than fail with "scheme not allowed".
    if endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
    {
        b = b.with_allow_http(true);
    }
    let shown = endpoint.unwrap_or_else(|| {
        let region = b
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".into());
        format!("https://s3.{region}.amazonaws.com")
    });
    let store = b
        .with_bucket_name(bucket)
        .with_retry(retry())
        .with_http_connector(timed(opts))
        .build();
    Ok(StoreEntry {
        store: Arc::new(store.map_err(|e| e.to_string())?),
        endpoint: crate::error::redact(&shown),
        credentials_hint: S3_CREDENTIALS,
        endpoint_hint: "check AWS_ENDPOINT_URL and the network",
    })
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests make files by path on purpose"
)]
#[path = "stores_tests.rs"]
mod tests;
