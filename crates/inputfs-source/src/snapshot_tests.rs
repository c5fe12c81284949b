//! Snapshot format, freshness and forgeries; the claim-and-wait turn against
//! an in-memory store on a paused clock.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;

fn meta(key: &str, size: u64, etag: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        location: Path::parse(key).unwrap(),
        last_modified: chrono::DateTime::from_timestamp(1_764_800_000, 123).unwrap(),
        size,
        e_tag: etag.map(str::to_string),
        version: None,
    }
}

const URL: &str = "s3://bucket/train/";
const NOW: u64 = 1_764_800_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn file(created: u64, objects: serde_json::Value) -> Vec<u8> {
    serde_json::json!({
        "inputfs_listing": 1, "url": URL, "created_unix_ms": created, "objects": objects
    })
    .to_string()
    .into_bytes()
}

fn bad(bytes: &[u8]) -> String {
    match decode(bytes, URL, NOW, HOUR) {
        Err(Unusable::Bad(why)) => why,
        other => panic!("expected a bad snapshot, got {other:?}"),
    }
}

#[test]
fn a_listing_round_trips_sorted_with_every_field() {
    let metas = vec![meta("train/b", 2, Some("\"e2\"")), meta("train/a", 1, None)];
    let bytes = encode(URL, NOW, &metas).unwrap();
    let back = decode(&bytes, URL, NOW + 1000, HOUR).unwrap();
    assert_eq!(back, vec![metas[1].clone(), metas[0].clone()]);
}

#[test]
fn listings_with_version_ids_are_not_published() {
    let mut m = meta("train/a", 1, Some("\"e\""));
    m.version = Some("v1".into());
    assert_eq!(encode(URL, NOW, &[m]), None);
}

#[test]
fn freshness_is_the_max_age_back_and_the_clock_skew_ahead() {
    let ok = |created| decode(&file(created, serde_json::json!([])), URL, NOW, HOUR);
    assert!(ok(NOW).is_ok());
    assert!(ok(NOW - 3_600_000).is_ok());
    assert_eq!(ok(NOW - 3_600_001), Err(Unusable::Stale));
    assert_eq!(ok(0), Err(Unusable::Stale));
    assert!(ok(NOW + 30_000).is_ok());
    // A snapshot "from the future" would stay fresh for as long as it says.
    assert!(matches!(ok(NOW + 30_001), Err(Unusable::Bad(_))));
    assert!(matches!(ok(u64::MAX), Err(Unusable::Bad(_))));
}

#[test]
fn forged_snapshots_are_refused_naming_the_fault() {
    let entry = |key: &str| serde_json::json!({"key": key, "size": 1, "modified": [0, 0]});
    assert!(bad(b"").starts_with("not a snapshot"));
    assert!(
        bad(&file(NOW, serde_json::json!([entry("train/a")]))[..20]).starts_with("not a snapshot")
    );
    let other = serde_json::json!({
        "inputfs_listing": 1, "url": "s3://bucket/secret/", "created_unix_ms": NOW, "objects": []
    });
    assert!(bad(other.to_string().as_bytes()).contains("s3://bucket/secret/"));
    let future_format = serde_json::json!({
        "inputfs_listing": 2, "url": URL, "created_unix_ms": NOW, "objects": []
    });
    assert!(bad(future_format.to_string().as_bytes()).starts_with("format 2"));
    let versioned =
        serde_json::json!([{"key": "train/a", "size": 1, "modified": [0, 0], "version": "old"}]);
    assert!(bad(&file(NOW, versioned)).contains("unknown field `version`"));
    let twice = serde_json::json!([entry("train/a"), entry("train/a")]);
    assert!(bad(&file(NOW, twice)).contains("strictly increasing"));
    let unsorted = serde_json::json!([entry("train/b"), entry("train/a")]);
    assert!(bad(&file(NOW, unsorted)).contains("strictly increasing"));
    for key in ["train//a", "train/../etc/passwd", "train/./a"] {
        assert!(
            bad(&file(NOW, serde_json::json!([entry(key)]))).contains("key"),
            "{key}"
        );
    }
    let when = serde_json::json!([{"key": "train/a", "size": 1, "modified": [i64::MAX, 0]}]);
    assert!(bad(&file(NOW, when)).contains("out of range"));
    let size = serde_json::json!([{"key": "train/a", "size": -1, "modified": [0, 0]}]);
    assert!(bad(&file(NOW, size)).starts_with("not a snapshot"));
    // Absurd but well-formed sizes parse: reads check each size at the origin.
    let huge = serde_json::json!([{"key": "train/a", "size": u64::MAX, "modified": [0, 0]}]);
    assert_eq!(
        decode(&file(NOW, huge), URL, NOW, HOUR).unwrap()[0].size,
        u64::MAX
    );
}

proptest::proptest! {
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode(&bytes, URL, NOW, HOUR);
    }

    #[test]
    fn decoding_near_snapshots_never_panics(text in "\\{\"inputfs_listing\":1,\"url\":\"s3://bucket/train/\",\"created_unix_ms\":[0-9]{1,20},\"objects\":\\[(\\{\"key\":\"[a-z./]{0,12}\",\"size\":[0-9]{1,21},\"modified\":\\[-?[0-9]{1,20},[0-9]{1,11}\\]\\},?){0,3}\\]\\}") {
        let _ = decode(text.as_bytes(), URL, NOW, HOUR);
    }
}

/// Listings in memory, with claims another worker may hold.
#[derive(Default)]
struct Memory {
    files: Mutex<HashMap<String, Vec<u8>>>,
    /// URLs claimed by someone else, forever (a forged or stuck claim).
    held: Mutex<Vec<String>>,
    /// When another worker publishes: after this many looks.
    publish_after: Mutex<Option<(usize, Vec<u8>)>>,
    looks: Mutex<usize>,
    released: Mutex<Vec<String>>,
}

impl ListingStore for Memory {
    fn read_listing(&self, url: &str) -> inputfs_core::Result<Option<Vec<u8>>> {
        let mut looks = self.looks.lock().unwrap();
        *looks += 1;
        let mut pending = self.publish_after.lock().unwrap();
        if let Some((after, bytes)) = pending.as_ref()
            && *looks > *after
        {
            self.files.lock().unwrap().insert(url.into(), bytes.clone());
            *pending = None;
        }
        Ok(self.files.lock().unwrap().get(url).cloned())
    }
    fn write_listing(&self, url: &str, bytes: &[u8]) -> inputfs_core::Result<()> {
        self.files
            .lock()
            .unwrap()
            .insert(url.into(), bytes.to_vec());
        Ok(())
    }
    fn claim_listing(&self, url: &str, _ttl: Duration) -> inputfs_core::Result<Claim> {
        let held = self.held.lock().unwrap();
        Ok(if held.iter().any(|u| u == url) {
            Claim::Held
        } else {
            Claim::Acquired
        })
    }
    fn release_listing(&self, url: &str) {
        self.released.lock().unwrap().push(url.into());
    }
}

fn snapshots(store: Arc<Memory>) -> Snapshots {
    Snapshots {
        store,
        max_age: HOUR,
        claim_timeout: Duration::from_secs(30),
    }
}

#[tokio::test(start_paused = true)]
async fn a_fresh_snapshot_is_used_and_otherwise_the_worker_claims_the_listing() {
    let store = Arc::new(Memory::default());
    let s = snapshots(store.clone());
    assert!(matches!(s.turn(URL).await, Turn::List { claimed: true }));
    let metas = vec![meta("train/a", 1, Some("\"e\""))];
    s.publish(URL, encode(URL, now_ms(), &metas), true).await;
    assert_eq!(*store.released.lock().unwrap(), [URL]);
    match s.turn(URL).await {
        Turn::Use(got) => assert_eq!(got, metas),
        Turn::List { .. } => panic!("the published snapshot was not used"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_uses_the_snapshot_the_claim_holder_publishes() {
    let store = Arc::new(Memory::default());
    store.held.lock().unwrap().push(URL.into());
    let metas = vec![meta("train/a", 1, Some("\"e\""))];
    *store.publish_after.lock().unwrap() = Some((3, encode(URL, now_ms(), &metas).unwrap()));
    let started = tokio::time::Instant::now();
    match snapshots(store.clone()).turn(URL).await {
        Turn::Use(got) => assert_eq!(got, metas),
        Turn::List { .. } => panic!("listed instead of waiting for the snapshot"),
    }
    // Looks at 50, 100 and 200 ms after the first: well within the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_held_forever_delays_a_worker_by_the_claim_timeout_at_most() {
    let store = Arc::new(Memory::default());
    store.held.lock().unwrap().push(URL.into());
    let started = tokio::time::Instant::now();
    assert!(matches!(
        snapshots(store.clone()).turn(URL).await,
        Turn::List { claimed: false }
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    // Pauses double to a second: about 35 looks in 30 s, not one per 50 ms.
    let looks = *store.looks.lock().unwrap();
    assert!((30..=40).contains(&looks), "{looks} looks");
}
