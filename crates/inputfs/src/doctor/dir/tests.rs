#![allow(
    clippy::disallowed_methods,
    reason = "tests inspect the directory by path on purpose"
)]

use std::path::Path;

use super::mountinfo::unescape;
use super::*;
use crate::doctor::Status;

fn by_id<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no {id} in {checks:#?}"))
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("doctor-"))
        .collect()
}

#[test]
fn a_local_directory_passes_and_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let checks = Target::shared(tmp.path().to_path_buf(), 4 << 20).checks();
    let ids: Vec<_> = checks.iter().map(|c| c.id).collect();
    assert_eq!(ids, [&IDS[..], &PERF_IDS[..]].concat());
    // A shared cache on this machine's own disk is a warning, not a failure.
    assert_ne!(by_id(&checks, "cache.exists").status, Status::Fail);
    for id in [
        "cache.writable",
        "cache.o_excl",
        "cache.rename_over",
        "cache.link",
    ] {
        assert_eq!(
            by_id(&checks, id).status,
            Status::Ok,
            "{:?}",
            by_id(&checks, id)
        );
    }
    assert!(
        by_id(&checks, "cache.throughput").measurements["read_mb_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(leftovers(tmp.path()).is_empty());
}

#[test]
fn a_missing_shared_directory_fails_and_the_rest_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("not-mounted");
    let checks = Target::shared(missing.clone(), 1 << 20).checks();
    let exists = by_id(&checks, "cache.exists");
    assert_eq!(exists.status, Status::Fail);
    assert!(
        exists
            .fix
            .as_ref()
            .unwrap()
            .contains("mount the network filesystem")
    );
    assert!(checks[1..].iter().all(|c| c.status == Status::Skip));
    assert!(!missing.exists(), "a shared directory is never created");
}

#[test]
fn a_missing_local_directory_is_created_as_mount_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b");
    let checks = Target::local(dir.clone()).checks();
    assert_eq!(by_id(&checks, "cache.exists").status, Status::Ok);
    assert!(dir.is_dir());
    assert_eq!(
        checks.len(),
        IDS.len(),
        "no speed checks for the local cache"
    );
}

#[test]
fn mountinfo_escapes_are_undone() {
    assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
    assert_eq!(unescape(r"/x\\y"), r"/x\\y");
    assert_eq!(unescape(r"/x\134y"), r"/x\y");
    assert_eq!(unescape("/plain"), "/plain");
}
