//! Every way a block file can be bad is caught: the read reports `Corrupt` (never
//! a hit), the file is gone from its path, the next read is a miss, and a fresh
//! publish is served again byte for byte.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{TestStore, block, expect_hit, fresh, pattern};
use inputfs_core::store::Lookup;
use inputfs_core::{BlockId, BlockStore};
use inputfs_store::format::HEADER_LEN;

const LEN: usize = 5000;

/// Publish a good block, let `damage` rewrite the file, then check the whole
/// corrupt → miss → republish → hit cycle.
fn check_caught(damage: impl FnOnce(&TestStore, &BlockId, &[u8])) {
    let s = fresh();
    let id = block("s3://b/corrupt", 7);
    let data = pattern(3, LEN);
    s.put(&id, &data).unwrap();
    expect_hit(&s, &id, &data);
    damage(&s, &id, &data);
    let path = s.block_path(&id);
    match s.get(&id, LEN as u64).unwrap() {
        Lookup::Corrupt(reason) => assert!(!reason.contains('\n'), "multi-line reason: {reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        fs::symlink_metadata(&path).is_err(),
        "bad file still at {}",
        path.display()
    );
    assert_eq!(s.get(&id, LEN as u64).unwrap(), Lookup::Miss);
    s.put(&id, &data).unwrap();
    expect_hit(&s, &id, &data);
    // Nothing left in tmp/ by any of this.
    assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
}

fn rewrite(s: &TestStore, id: &BlockId, f: impl FnOnce(&mut Vec<u8>)) {
    let path = s.block_path(id);
    let mut bytes = fs::read(&path).unwrap();
    f(&mut bytes);
    fs::write(&path, bytes).unwrap();
}

fn flip(pos: usize) -> impl FnOnce(&TestStore, &BlockId, &[u8]) {
    move |s, id, _| rewrite(s, id, |b| b[pos] ^= 0x10)
}

#[test]
fn flipped_bit_in_data() {
    for pos in [
        HEADER_LEN,
        HEADER_LEN + 1,
        HEADER_LEN + LEN / 2,
        HEADER_LEN + LEN - 1,
    ] {
        check_caught(flip(pos));
    }
}

#[test]
fn flipped_bit_in_header() {
    // magic, version, header length, flags, key, index, length, data crc, header crc
    for pos in [0, 8, 10, 12, 16, 47, 48, 56, 64, 68, 71] {
        check_caught(flip(pos));
    }
}

#[test]
fn truncated_file() {
    for keep in [
        1,
        HEADER_LEN - 1,
        HEADER_LEN,
        HEADER_LEN + 1,
        HEADER_LEN + LEN - 1,
    ] {
        check_caught(move |s, id, _| rewrite(s, id, |b| b.truncate(keep)));
    }
}

#[test]
fn empty_file() {
    check_caught(|s, id, _| rewrite(s, id, |b| b.clear()));
}

#[test]
fn over_long_file() {
    for extra in [1usize, 2, 4096] {
        check_caught(move |s, id, _| rewrite(s, id, |b| b.extend(std::iter::repeat_n(0u8, extra))));
    }
}

#[test]
fn valid_block_of_another_index() {
    check_caught(|s, id, data| {
        let other = BlockId {
            index: id.index + 1,
            ..*id
        };
        s.put(&other, data).unwrap();
        fs::copy(s.block_path(&other), s.block_path(id)).unwrap();
    });
}

#[test]
fn valid_block_of_another_object() {
    check_caught(|s, id, data| {
        let other = block("s3://b/another-object", id.index);
        s.put(&other, data).unwrap();
        fs::copy(s.block_path(&other), s.block_path(id)).unwrap();
    });
}

#[test]
fn valid_block_of_another_length() {
    check_caught(|s, id, data| {
        let short = BlockId {
            index: id.index + 1,
            ..*id
        };
        s.put(&short, &data[..LEN - 1]).unwrap();
        let mut bytes = fs::read(s.block_path(&short)).unwrap();
        // Same key and index as `id`: only the length differs.
        bytes[..HEADER_LEN].copy_from_slice(&inputfs_store::format::encode_header(
            &id.key,
            id.index,
            &data[..LEN - 1],
        ));
        fs::write(s.block_path(id), bytes).unwrap();
    });
}

#[test]
fn random_garbage() {
    for len in [10usize, HEADER_LEN + LEN, 3 * LEN] {
        check_caught(move |s, id, _| {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            fs::write(s.block_path(id), junk).unwrap();
        });
    }
}

#[test]
fn garbage_behind_a_valid_magic() {
    check_caught(|s, id, _| {
        let mut junk = b"INPUTFSB".to_vec();
        junk.extend(pattern(9, HEADER_LEN + LEN));
        fs::write(s.block_path(id), junk).unwrap();
    });
}

#[test]
fn directory_where_the_file_should_be() {
    check_caught(|s, id, _| {
        let path = s.block_path(id);
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inner"), b"x").unwrap();
    });
}

#[test]
fn fifo_where_the_file_should_be_does_not_hang() {
    check_caught(|s, id, _| {
        let path = s.block_path(id);
        fs::remove_file(&path).unwrap();
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    });
}

#[test]
fn corrupt_file_is_kept_in_corrupt_dir_for_post_mortem() {
    let s = fresh();
    let id = block("s3://b/aside", 0);
    s.put(&id, &pattern(1, 100)).unwrap();
    rewrite(&s, &id, |b| b[HEADER_LEN] ^= 1);
    assert!(matches!(s.get(&id, 100).unwrap(), Lookup::Corrupt(_)));
    let aside: Vec<_> = fs::read_dir(s.corrupt_dir()).unwrap().flatten().collect();
    assert_eq!(aside.len(), 1);
    let bytes = fs::read(aside[0].path()).unwrap();
    assert_eq!(bytes.len(), HEADER_LEN + 100);
    assert_eq!(bytes[HEADER_LEN + 1..], pattern(1, 100)[1..]);
}

/// Run as the unprivileged test user: as root a mode-555 directory does not stop
/// the corrupt file from being moved aside.
#[test]
fn cleanup_failure_still_reports_corrupt() {
    common::unprivileged::run_as_test_user("cleanup_failure_still_reports_corrupt", || {
        let s = fresh();
        assert!(
            common::permissions_are_enforced(s.dir.path()),
            "mode bits do not bind this process"
        );
        let id = block("s3://b/stuck", 0);
        s.put(&id, &pattern(1, 100)).unwrap();
        rewrite(&s, &id, |b| b[HEADER_LEN] ^= 1);
        let obj = s.object_dir(&id.key);
        fs::set_permissions(&obj, fs::Permissions::from_mode(0o555)).unwrap();
        let got = s.get(&id, 100);
        let stuck = s.block_path(&id).exists();
        fs::set_permissions(&obj, fs::Permissions::from_mode(0o2775)).unwrap();
        assert!(matches!(got.unwrap(), Lookup::Corrupt(_)));
        // The cleanup really failed: the bad file could not leave its directory.
        assert!(
            stuck,
            "the corrupt file was removed from a read-only directory"
        );
        // It is still caught on the next read, and removed once it can be.
        assert!(matches!(s.get(&id, 100).unwrap(), Lookup::Corrupt(_)));
        assert_eq!(s.get(&id, 100).unwrap(), Lookup::Miss);
        s.put(&id, &pattern(1, 100)).unwrap();
        expect_hit(&s, &id, &pattern(1, 100));
    });
}
