//! Workers running as different users of one group share one cache: each can read
//! what the other published, and publish into directories the other created. The
//! users come from scripts/setup (fusermount3 needs real user names).
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use inputfs_tests::mounts::Mount;
use inputfs_tests::users::{owned_dir, sha256_as, user};
use inputfs_tests::{S3Server, pattern, sha256_hex};

const BUCKET: &str = "users";

#[test]
fn workers_of_two_users_in_one_group_share_the_cache() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test switches users: run it as root"
    );
    let (a, b) = (user("inputfs-worker1"), user("inputfs-worker2"));
    assert_eq!(a.1, b.1, "the two test users share a group");
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let one = pattern(5, 3 * (1 << 20) + 9);
    let two = pattern(6, 2 * (1 << 20) + 1);
    server.put_object(BUCKET, "one.bin", &one);
    server.put_object(BUCKET, "two.bin", &two);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The shared directory as an admin would set it up: the group's, setgid.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, None, Some(a.1)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2775)).unwrap();

    let mut n = 0;
    let mut worker = |who: (u32, u32)| {
        n += 1;
        let args = vec![
            format!("--input=d=s3://{BUCKET}/"),
            format!(
                "--cache-dir={}",
                owned_dir(&tmp.path().join(format!("local{n}")), who).display()
            ),
            format!("--shared-cache={}", shared.display()),
            "--block-size=256KiB".into(),
        ];
        let mnt = owned_dir(&tmp.path().join(format!("mnt{n}")), who);
        Mount::start_as(&mnt, &args, &server.env(), Some(who)).unwrap()
    };

    // User A reads one.bin: it lands in the shared cache.
    let m = worker(a);
    assert_eq!(sha256_as(a, &m.path("d/one.bin")), sha256_hex(&one));
    m.stop();
    // What A created is group-writable, and directories pass the group on.
    for entry in walk(&shared) {
        let meta = std::fs::metadata(&entry).unwrap();
        assert_eq!(
            meta.gid(),
            a.1,
            "{} not in the shared group",
            entry.display()
        );
        let mode = meta.mode() & 0o7777;
        if meta.is_dir() {
            assert_eq!(mode & 0o2070, 0o2070, "{}: mode {mode:o}", entry.display());
        } else {
            assert_eq!(mode & 0o060, 0o060, "{}: mode {mode:o}", entry.display());
        }
    }
    // User B reads A's blocks without the origin, and publishes two.bin.
    server.reset_counts();
    let m = worker(b);
    assert_eq!(sha256_as(b, &m.path("d/one.bin")), sha256_hex(&one));
    assert_eq!(sha256_as(b, &m.path("d/two.bin")), sha256_hex(&two));
    m.stop();
    // Counted once B's mount is gone: two.bin's bytes and none of one.bin's.
    assert_eq!(
        server.get_bytes(),
        two.len() as u64,
        "user B did not use user A's blocks"
    );
    // User A, on a fresh local disk, reads B's blocks without the origin.
    server.reset_counts();
    let m = worker(a);
    assert_eq!(sha256_as(a, &m.path("d/two.bin")), sha256_hex(&two));
    m.stop();
    assert_eq!(server.get_bytes(), 0, "user A did not use user B's blocks");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.join("inputfs-v1")];
    while let Some(d) = stack.pop() {
        out.push(d.clone());
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
