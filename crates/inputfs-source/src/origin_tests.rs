//! Unit tests of `Origin`'s reads: ranges checked before any request, and
//! pinned URLs prepared without the network.

use std::time::SystemTime;

use inputfs_core::{SourceKind, Version};

use super::*;

fn object() -> ObjectId {
    ObjectId {
        kind: SourceKind::S3,
        url: "s3://b/k".into(),
        version: Version {
            etag: Some("\"e1\"".into()),
            version_id: None,
            modified_unix: Some(1),
        },
        size: 10,
        mtime: SystemTime::UNIX_EPOCH,
    }
}

#[tokio::test]
async fn out_of_range_and_empty_reads() {
    let origin = Origin::new();
    let obj = object();
    assert!(matches!(
        origin.get_range(&obj, 5..11).await,
        Err(Error::Range { .. })
    ));
    assert!(origin.get_range(&obj, 3..3).await.unwrap().is_empty());
    // An object no resolve registered, whose URL names no single object.
    let mut prefix = object();
    prefix.url = "s3://b/dir/".into();
    let err = origin.get_range(&prefix, 0..1).await.unwrap_err();
    assert!(
        err.to_string().contains("names a prefix, not one object"),
        "{err}"
    );
}

#[tokio::test]
async fn prepare_takes_wildcards_in_a_pinned_url_as_part_of_the_name() {
    // A listed object may be called `we*ird?.bin`: its pinned URL names it, not a
    // glob. Preparing it needs no network (the store client is built lazily).
    let origin = Origin::builder()
        .without_env()
        .s3_option(AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9")
        .s3_option(AmazonS3ConfigKey::Region, "us-east-1")
        .build();
    let mut obj = object();
    for url in [
        "s3://b/dir/we*ird?.bin",
        "s3://b/top*",
        "file:///tmp/x?.bin",
    ] {
        obj.url = url.into();
        origin.prepare(&obj).unwrap();
    }
    obj.url = "s3://b/dir/".into();
    let err = origin.prepare(&obj).unwrap_err().to_string();
    assert!(err.contains("names a prefix, not one object"), "{err}");
}
