//! Unit tests of building store clients: defaults, options over the
//! environment, secrets kept out of `Debug`, and every kind built offline.

use super::*;

#[test]
fn timeouts_default_and_options_win() {
    let mut opts = StoreOptions {
        use_env: false,
        ..StoreOptions::default()
    };
    let cfg = default_client_config(&opts, Some("AWS"));
    assert_eq!(
        cfg,
        vec![
            (ClientConfigKey::ConnectTimeout, "5s".to_string()),
            (ClientConfigKey::Timeout, "60s".to_string()),
        ]
    );
    opts.client.push((ClientConfigKey::Timeout, "7s".into()));
    let cfg = default_client_config(&opts, None);
    // Applied in order: the explicit option comes last, so it wins.
    assert_eq!(
        cfg.last(),
        Some(&(ClientConfigKey::Timeout, "7s".to_string()))
    );
}

#[test]
fn debug_shows_keys_not_values() {
    let opts = StoreOptions {
        s3: vec![(AmazonS3ConfigKey::SecretAccessKey, "hunter2".into())],
        ..StoreOptions::default()
    };
    let shown = format!("{opts:?}");
    assert!(
        shown.contains("SecretAccessKey") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn gcs_configuration_from_options_and_a_service_account_file() {
    let shared = Arc::new(SharedHttp::default());
    let gs = StoreLocation::Gcs { bucket: "b".into() };
    // A service-account key file is read when the store is built (no
    // network: this key disables OAuth, so no token is ever fetched).
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sa.json");
    std::fs::write(
        &key,
        r#"{"private_key": "unused", "private_key_id": "id", "client_email": "sa@p.iam.gserviceaccount.com", "disable_oauth": true}"#,
    )
    .unwrap();
    let opts = StoreOptions {
        use_env: false,
        gcs: vec![
            (GoogleConfigKey::ServiceAccount, key.display().to_string()),
            (GoogleConfigKey::BaseUrl, "http://127.0.0.1:9/".into()),
        ],
        ..StoreOptions::default()
    };
    let entry = build_store(&gs, &opts, &shared).unwrap();
    // The base URL is where requests go and what errors name; http:// was
    // set explicitly, so it is allowed.
    assert_eq!(entry.endpoint, "http://127.0.0.1:9");
    assert!(format!("{}", entry.store).contains("GoogleCloudStorage"));
    // A key file that is not there is a configuration error naming it.
    let missing = StoreOptions {
        use_env: false,
        gcs: vec![(
            GoogleConfigKey::ServiceAccount,
            "/nonexistent/sa.json".into(),
        )],
        ..StoreOptions::default()
    };
    let e = build_store(&gs, &missing, &shared).unwrap_err();
    assert!(e.contains("/nonexistent/sa.json"), "{e}");
    // The usual spellings of the settings (as in GOOGLE_* variables) parse.
    for (name, key) in [
        ("google_service_account", GoogleConfigKey::ServiceAccount),
        (
            "google_service_account_path",
            GoogleConfigKey::ServiceAccount,
        ),
        (
            "google_application_credentials",
            GoogleConfigKey::ApplicationCredentials,
        ),
        (
            "google_service_account_key",
            GoogleConfigKey::ServiceAccountKey,
        ),
        ("google_base_url", GoogleConfigKey::BaseUrl),
    ] {
        assert_eq!(name.parse::<GoogleConfigKey>().unwrap(), key, "{name}");
    }
    // Default endpoint when nothing moves it.
    let opts = StoreOptions {
        use_env: false,
        gcs: vec![(GoogleConfigKey::ServiceAccount, key.display().to_string())],
        ..StoreOptions::default()
    };
    let entry = build_store(&gs, &opts, &shared).unwrap();
    assert_eq!(entry.endpoint, "https://storage.googleapis.com");
}

#[test]
fn azure_explicit_http_endpoint_is_allowed_and_shown() {
    let opts = StoreOptions {
        use_env: false,
        azure: vec![
            (AzureConfigKey::AccountName, "acct".into()),
            (AzureConfigKey::AccessKey, "AAAA".into()),
            (AzureConfigKey::Endpoint, "http://127.0.0.1:9/acct".into()),
        ],
        ..StoreOptions::default()
    };
    let shared = Arc::new(SharedHttp::default());
    let az = StoreLocation::Azure {
        account: None,
        container: "c".into(),
        sas: None,
    };
    let entry = build_store(&az, &opts, &shared).unwrap();
    assert_eq!(entry.endpoint, "http://127.0.0.1:9/acct");
}

#[test]
fn every_store_builds_without_network() {
    let opts = StoreOptions {
        use_env: false,
        s3: vec![(AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9".into())],
        azure: vec![(AzureConfigKey::AccountName, "acct".into())],
        ..StoreOptions::default()
    };
    let shared = Arc::new(SharedHttp::default());
    let s3 = build_store(&StoreLocation::S3 { bucket: "b".into() }, &opts, &shared).unwrap();
    assert_eq!(s3.endpoint, "http://127.0.0.1:9");
    let az = StoreLocation::Azure {
        account: None,
        container: "c".into(),
        sas: None,
    };
    let az = build_store(&az, &opts, &shared).unwrap();
    assert_eq!(az.endpoint, "https://acct.blob.core.windows.net");
    let http = StoreLocation::Http {
        origin: "https://h".into(),
        query: None,
    };
    assert_eq!(
        build_store(&http, &opts, &shared).unwrap().endpoint,
        "https://h"
    );
    assert!(build_store(&StoreLocation::File, &opts, &shared).is_ok());
}
