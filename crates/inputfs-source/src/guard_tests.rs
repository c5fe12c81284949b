use futures::TryStreamExt;
use object_store::http::HttpBuilder;
use object_store::{ClientOptions, ObjectStoreExt};

use super::*;

/// The panic object_store 0.14 really has: a request URI over 64 KiB. Nothing
/// listens at port 1, and no request is ever sent: the panic comes first.
fn long_path() -> Path {
    Path::from("a".repeat(70_000))
}

fn http_store() -> Guarded {
    let store = HttpBuilder::new()
        .with_url("http://127.0.0.1:1/")
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap();
    Guarded(Arc::new(store))
}

fn assert_panicked(e: &object_store::Error) {
    let text = e.to_string();
    assert!(
        text.contains("failed internally") && text.contains("request must be valid"),
        "{text}"
    );
}

#[tokio::test]
async fn a_panic_inside_a_request_is_an_error() {
    let store = http_store();
    let e = store.head(&long_path()).await.unwrap_err();
    assert_panicked(&e);
    let e = store
        .get_opts(&long_path(), GetOptions::default())
        .await
        .unwrap_err();
    assert_panicked(&e);
    // The store still works for the next call (here: fails to connect, as it should).
    let e = store.head(&Path::from("ok")).await.unwrap_err();
    assert!(!e.to_string().contains("failed internally"), "{e}");
    assert!(!is_catching());
}

#[tokio::test]
async fn a_header_value_with_a_line_break_panics_inside_too_and_is_an_error() {
    // The other way to make a request object_store cannot build: an ETag (from
    // a lock file, say) with a line break, sent as `If-Match`.
    let options = GetOptions {
        if_match: Some("\"a\"\r\nX-Injected: 1".into()),
        ..GetOptions::default()
    };
    let e = http_store()
        .get_opts(&Path::from("k"), options)
        .await
        .unwrap_err();
    assert_panicked(&e);
}

#[tokio::test]
async fn a_panic_inside_a_listing_ends_it_with_one_error() {
    let store = http_store();
    let e = store
        .list(Some(&long_path()))
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert_panicked(&e);
}

#[test]
fn catch_turns_a_panic_into_its_message_and_says_it_is_catching() {
    assert!(!is_catching());
    let p = catch(|| {
        assert!(is_catching());
        panic!("boom {}", 42)
    })
    .unwrap_err();
    assert!(p.to_string().contains("boom 42"), "{p}");
    assert!(!is_catching());
    assert_eq!(catch(|| 7).unwrap(), 7);
    // A huge panic message is not repeated in full.
    let p = catch(|| panic!("{}", "x".repeat(100_000))).unwrap_err();
    assert!(p.to_string().len() < 1000, "{} bytes", p.to_string().len());
}
