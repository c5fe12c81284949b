//! Several workers on one cache directory, and publishes that cannot succeed.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::{block, expect_hit, files_under, fresh, pattern};
use inputfs_core::BlockStore;
use inputfs_core::store::Lookup;
use inputfs_store::DirStore;

#[test]
fn two_workers_publish_at_once() {
    two_workers(false, false);
}

#[test]
fn two_workers_publish_at_once_by_rename() {
    two_workers(true, true);
}

#[test]
fn worker_with_links_and_worker_without() {
    two_workers(false, true);
}

fn two_workers(rename_a: bool, rename_b: bool) {
    let dir = tempfile::tempdir().unwrap();
    let workers = [
        Arc::new(DirStore::open(dir.path(), "shared").unwrap()),
        Arc::new(DirStore::open(dir.path(), "shared").unwrap()),
    ];
    if rename_a {
        workers[0].publish_by_rename();
    }
    if rename_b {
        workers[1].publish_by_rename();
    }
    const THREADS: usize = 4;
    const SHARED: u64 = 12;
    let len = |i: u64| 1000 + (i as usize * 7919) % 70_000;
    let seed = |i: u64| (i * 13 + 1) as u8;
    std::thread::scope(|s| {
        for (w, store) in workers.iter().enumerate() {
            for t in 0..THREADS {
                let store = store.clone();
                s.spawn(move || {
                    for round in 0..3 {
                        // Blocks every thread of every worker publishes.
                        for i in 0..SHARED {
                            let i = (i + t as u64 + round) % SHARED;
                            let id = block("s3://b/shared", i);
                            store.put(&id, &pattern(seed(i), len(i))).unwrap();
                            expect_hit(&*store, &id, &pattern(seed(i), len(i)));
                        }
                        // Blocks only this thread publishes.
                        let own = format!("s3://b/own-{w}-{t}");
                        let id = block(&own, round);
                        let data = pattern(seed(round) ^ 0x55, len(round + 100));
                        store.put(&id, &data).unwrap();
                        expect_hit(&*store, &id, &data);
                    }
                });
            }
        }
    });
    // Every worker sees every block, with the right bytes.
    for store in &workers {
        for i in 0..SHARED {
            expect_hit(
                &**store,
                &block("s3://b/shared", i),
                &pattern(seed(i), len(i)),
            );
        }
        for w in 0..2 {
            for t in 0..THREADS {
                for round in 0..3 {
                    let id = block(&format!("s3://b/own-{w}-{t}"), round);
                    expect_hit(
                        &**store,
                        &id,
                        &pattern(seed(round) ^ 0x55, len(round + 100)),
                    );
                }
            }
        }
    }
    let root = workers[0].root();
    assert_eq!(
        fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "temp files left"
    );
    assert_eq!(fs::read_dir(root.join("corrupt")).unwrap().count(), 0);
    let blocks: HashSet<_> = files_under(&root.join("objects")).into_iter().collect();
    assert_eq!(blocks.len(), SHARED as usize + 2 * THREADS * 3);
}

/// Make the publish fail, check it is an error (not a panic, not a false
/// success) and that no temp file is left anywhere under the root.
fn assert_put_fails_cleanly(s: &common::TestStore, url: &str) {
    let id = block(url, 0);
    let e = s.put(&id, &pattern(1, 4096)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("inputfs-v1") && !msg.contains('\n'), "{msg}");
    let temps: Vec<_> = files_under(&s.root())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
    assert_eq!(s.get(&id, 4096).unwrap(), Lookup::Miss);
}

/// Run as the unprivileged test user: as root a mode-555 directory is still
/// writable (the root-proof way to break a publish is the next test's).
#[test]
fn put_into_read_only_objects_dir_fails_cleanly() {
    common::unprivileged::run_as_test_user("put_into_read_only_objects_dir_fails_cleanly", || {
        let s = fresh();
        assert!(
            common::permissions_are_enforced(s.dir.path()),
            "mode bits do not bind this process"
        );
        fs::set_permissions(s.objects_dir(), fs::Permissions::from_mode(0o555)).unwrap();
        assert_put_fails_cleanly(&s, "s3://b/ro");
        fs::set_permissions(s.objects_dir(), fs::Permissions::from_mode(0o2775)).unwrap();
        // Writable again: the same publish succeeds.
        let id = block("s3://b/ro", 0);
        s.put(&id, &pattern(1, 4096)).unwrap();
        expect_hit(&s, &id, &pattern(1, 4096));
    });
}

/// Something other than a directory where the layout has one (a file, a
/// link, a FIFO: written by someone else) is removed, never followed, and
/// the publish goes through; no temp file is left behind.
fn assert_put_heals(s: &common::TestStore, url: &str) {
    let id = block(url, 0);
    let data = pattern(1, 4096);
    s.put(&id, &data).unwrap();
    expect_hit(s, &id, &data);
    let temps: Vec<_> = files_under(&s.root())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
}

#[test]
fn a_file_or_link_in_place_of_tmp_is_replaced() {
    let s = fresh();
    fs::remove_dir(s.tmp_dir()).unwrap();
    fs::write(s.tmp_dir(), b"not a directory").unwrap();
    assert_put_heals(&s, "s3://b/tmpfile");
    assert!(s.tmp_dir().is_dir());
    let elsewhere = tempfile::tempdir().unwrap();
    fs::remove_dir(s.tmp_dir()).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), s.tmp_dir()).unwrap();
    assert_put_heals(&s, "s3://b/tmplink");
    assert_eq!(
        fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing written through the link"
    );
}

#[test]
fn a_file_or_link_in_place_of_an_object_directory_is_replaced() {
    for by_rename in [false, true] {
        let s = fresh();
        if by_rename {
            s.publish_by_rename();
        }
        let id = block("s3://b/objfile", 0);
        let object_dir = s.object_dir(&id.key);
        fs::create_dir_all(object_dir.parent().unwrap()).unwrap();
        fs::write(&object_dir, b"in the way").unwrap();
        assert_put_heals(&s, "s3://b/objfile");
        let elsewhere = tempfile::tempdir().unwrap();
        let id = block("s3://b/objlink", 0);
        let object_dir = s.object_dir(&id.key);
        fs::create_dir_all(object_dir.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &object_dir).unwrap();
        assert_put_heals(&s, "s3://b/objlink");
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }
}
