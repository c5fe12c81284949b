//! Listing snapshots (`--listing-max-age`) through real mounts on a real S3
//! server that counts its LIST requests: workers starting together list each
//! prefix once, later workers list nothing while the snapshot is fresh, and
//! every worker mounts the same files at the same versions (equal lock
//! files) with every byte checked. Then the snapshot is replaced by each
//! kind of hostile entry and by forged contents: each is listed over (one
//! more LIST, same bytes), a forged ETag makes reads of that file fail
//! rather than return other bytes, a forged claim delays a mount by the
//! claim timeout at most, and nothing outside the cache is touched.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use inputfs_tests::hostile::{self, PLANTS};
use inputfs_tests::mounts::Mount;
use inputfs_tests::{S3Server, SharedDir, pattern, sha256_hex};

const BUCKET: &str = "listings";
const ALL: &str = "s3://listings/data/";
const BINS: &str = "s3://listings/data/*.bin";

fn objects() -> Vec<(String, Vec<u8>)> {
    let mut objects: Vec<_> = (0..12)
        .map(|i| {
            (
                format!("data/f{i:02}.bin"),
                pattern(i, 1000 + 4099 * i as usize),
            )
        })
        .collect();
    objects.extend((0..6).map(|i| {
        (
            format!("data/sub/g{i}.txt"),
            pattern(100 + i, 333 * i as usize + 1),
        )
    }));
    objects
}

struct Fleet {
    server: S3Server,
    tmp: tempfile::TempDir,
    objects: Vec<(String, Vec<u8>)>,
    /// The shared directory, as the server holds it.
    shared: PathBuf,
    dir: SharedDir,
}

impl Fleet {
    fn new(dir: SharedDir) -> Fleet {
        let objects = objects();
        let server = S3Server::with_objects(BUCKET, &objects);
        let tmp = tempfile::tempdir().unwrap();
        Fleet {
            server,
            tmp,
            objects,
            shared: dir.server_dir().to_path_buf(),
            dir,
        }
    }

    /// Worker `name`'s mount on the local view of the shared directory.
    fn mount(&self, name: &str, extra: &[&str]) -> Mount {
        self.mount_on(&self.shared, name, extra)
    }

    /// Worker `name`'s mount with `shared` as its shared cache, sharing
    /// listings unless `extra` says otherwise.
    fn mount_on(&self, shared: &Path, name: &str, extra: &[&str]) -> Mount {
        let mut args = vec![
            format!("--input=all={ALL}"),
            format!("--input=bins={BINS}"),
            format!(
                "--cache-dir={}",
                self.tmp.path().join(format!("local-{name}")).display()
            ),
            format!("--shared-cache={}", shared.display()),
            format!("--lock-out={}", self.lock(name).display()),
            "--block-size=1MiB".into(),
        ];
        if !extra.contains(&"--no-sharing") {
            args.push("--listing-max-age=1h".into());
        }
        args.extend(
            extra
                .iter()
                .filter(|a| **a != "--no-sharing")
                .map(|a| a.to_string()),
        );
        Mount::start(
            &self.tmp.path().join(format!("mnt-{name}")),
            &args,
            &self.server.env(),
        )
        .unwrap_or_else(|e| panic!("worker {name}: {e}"))
    }

    fn lock(&self, name: &str) -> PathBuf {
        self.tmp.path().join(format!("lock-{name}.json"))
    }

    /// Every object through both inputs of `mount`, checked, except `broken`
    /// under `all/` (whose reads must fail: its snapshot was forged).
    fn check(&self, mount: &Mount, broken: Option<&str>) {
        let mut seen = 0;
        for (key, want) in &self.objects {
            let rel = key.strip_prefix("data/").unwrap();
            let mut paths = vec![format!("all/{rel}")];
            if !rel.contains('/') && rel.ends_with(".bin") {
                paths.push(format!("bins/{rel}"));
            }
            for path in paths {
                let got = std::fs::read(mount.path(&path));
                if broken == Some(key.as_str()) && path.starts_with("all/") {
                    assert!(
                        got.is_err(),
                        "{path}: a forged ETag was served: {}",
                        mount.stderr()
                    );
                    continue;
                }
                let got = got.unwrap_or_else(|e| panic!("{path}: {e}: {}", mount.stderr()));
                assert_eq!(sha256_hex(&got), sha256_hex(want), "{path}: wrong bytes");
                seen += 1;
            }
        }
        let listed = std::fs::read_dir(mount.path("all")).unwrap().count();
        assert_eq!(listed, 13, "all/: 12 files and sub/");
        assert!(seen > 0);
    }

    /// Where the snapshot of `url` is kept.
    fn snapshot(&self, url: &str) -> PathBuf {
        let canonical = inputfs_source::parse_url(url).unwrap().canonical;
        self.shared
            .join(inputfs_store::ROOT_NAME)
            .join("listings")
            .join(format!(
                "{}.json",
                inputfs_core::listing_key(&canonical).to_hex()
            ))
    }
}

fn lists(f: &Fleet) -> u64 {
    f.server.list_requests()
}

fn a_fleet_lists_each_prefix_once_and_mounts_what_it_listed(dir: SharedDir) {
    let mut f = Fleet::new(dir);
    let views: Vec<PathBuf> = (0..4).map(|w| f.dir.mount_point(w)).collect();
    // Four workers starting together: one lists each input, three wait.
    let fleet: Vec<Mount> = std::thread::scope(|s| {
        let started: Vec<_> = views
            .iter()
            .enumerate()
            .map(|(w, view)| {
                let f = &f;
                s.spawn(move || f.mount_on(view, &format!("w{w}"), &[]))
            })
            .collect();
        started.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(lists(&f), 2, "one LIST per input for the whole fleet");
    for m in &fleet {
        f.check(m, None);
    }
    let lock = std::fs::read_to_string(f.lock("w0")).unwrap();
    assert!(
        lock.contains("f11.bin") && lock.contains("g5.txt"),
        "{lock}"
    );
    for w in 1..4 {
        assert_eq!(
            std::fs::read_to_string(f.lock(&format!("w{w}"))).unwrap(),
            lock
        );
    }
    assert!(f.snapshot(ALL).is_file() && f.snapshot(BINS).is_file());

    // A later worker lists nothing; one that does not share listings lists.
    let late = f.mount_on(&views[3], "late", &[]);
    assert_eq!(lists(&f), 2);
    f.check(&late, None);
    assert_eq!(std::fs::read_to_string(f.lock("late")).unwrap(), lock);
    let alone = f.mount_on(&views[2], "alone", &["--no-sharing"]);
    assert_eq!(lists(&f), 4);
    f.check(&alone, None);
    assert_eq!(std::fs::read_to_string(f.lock("alone")).unwrap(), lock);
    drop((fleet, late, alone));
}

#[test]
fn a_fleet_on_a_local_dir_lists_each_prefix_once() {
    a_fleet_lists_each_prefix_once_and_mounts_what_it_listed(SharedDir::local());
}

#[test]
fn a_fleet_on_sshfs_lists_each_prefix_once() {
    a_fleet_lists_each_prefix_once_and_mounts_what_it_listed(SharedDir::sshfs(false));
}

#[test]
fn a_fleet_on_smb_lists_each_prefix_once() {
    a_fleet_lists_each_prefix_once_and_mounts_what_it_listed(SharedDir::smb());
}

/// The valid snapshot of `url`, as JSON, for forging.
fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn hostile_and_forged_snapshots_are_listed_over_and_never_serve_a_wrong_byte() {
    let f = Fleet::new(SharedDir::local());
    let canary = hostile::canary(f.tmp.path());
    let before = hostile::snapshot(&canary);
    f.mount("first", &[]).stop();
    assert_eq!(lists(&f), 2);
    let (all, bins) = (f.snapshot(ALL), f.snapshot(BINS));
    let good = json(&all);

    // Each kind of entry in place of the snapshot of `all/`: listed again.
    let mut expected = 2;
    for what in PLANTS {
        hostile::plant(
            &f.shared,
            all.strip_prefix(&f.shared).unwrap(),
            what,
            &canary,
            b"x",
        );
        // A FIFO or a device read would hang the mount: `Mount::start` fails
        // after 60 s if it does.
        let m = f.mount(&format!("{what:?}"), &[]);
        expected += 1;
        assert_eq!(
            lists(&f),
            expected,
            "{what:?}: the snapshot of all/ was not listed over"
        );
        f.check(&m, None);
        m.stop();
    }

    // The whole directory of snapshots a link to a directory outside: not
    // followed, neither to read nor to publish.
    let listings = all
        .parent()
        .unwrap()
        .strip_prefix(&f.shared)
        .unwrap()
        .to_path_buf();
    hostile::plant(
        &f.shared,
        &listings,
        hostile::Plant::LinkToDir,
        &canary,
        b"x",
    );
    let m = f.mount("listings-link", &[]);
    expected += 2;
    assert_eq!(lists(&f), expected, "both inputs listed");
    f.check(&m, None);
    m.stop();
    std::fs::remove_file(f.shared.join(&listings)).unwrap();
    f.mount("again", &[]).stop();
    expected += 2;
    assert_eq!(lists(&f), expected, "both inputs listed, and published");

    // Forged contents.
    let forge = |name: &str, value: &serde_json::Value| {
        std::fs::write(&all, serde_json::to_vec(value).unwrap()).unwrap();
        let m = f.mount(name, &[]);
        (m, lists(&f))
    };
    let mut dots = good.clone();
    dots["objects"][0]["key"] = "data/../secret".into();
    let mut future = good.clone();
    future["created_unix_ms"] = (now_ms() + 24 * 3600 * 1000).into();
    let mut stale = good.clone();
    stale["created_unix_ms"] = (now_ms() - 2 * 3600 * 1000).into();
    let mut conflict = good.clone();
    // In order, but a file where a directory is.
    conflict["objects"][11]["key"] = "data/sub".into();
    let mut versioned = good.clone();
    versioned["objects"][0]["version"] = "an-older-one".into();
    let other = json(&bins);
    for (name, value) in [
        ("dots", dots),
        ("future", future),
        ("stale", stale),
        ("conflict", conflict),
        ("versioned", versioned),
        ("other-url", other),
    ] {
        let (m, n) = forge(name, &value);
        expected += 1;
        assert_eq!(n, expected, "{name}: the forged snapshot was used");
        f.check(&m, None);
        m.stop();
    }

    // A forged ETag is used (it is well formed), and reads of that file fail.
    let mut etag = good.clone();
    etag["objects"][0]["etag"] = "\"0123456789abcdef0123456789abcdef\"".into();
    let forged_key = etag["objects"][0]["key"].as_str().unwrap().to_string();
    let (m, n) = forge("etag", &etag);
    assert_eq!(n, expected, "a well-formed snapshot was not used");
    f.check(&m, Some(&forged_key));
    m.stop();

    // A claim on the listing that never expires delays a worker by the claim
    // timeout at most; then it lists.
    std::fs::remove_file(&all).unwrap();
    let claim = f
        .shared
        .join(inputfs_store::ROOT_NAME)
        .join("claims")
        .join(format!(
            "{}-ffffffffffffffff.claim",
            inputfs_core::listing_key(&inputfs_source::parse_url(ALL).unwrap().canonical).to_hex()
        ));
    hostile::plant(
        &f.shared,
        claim.strip_prefix(&f.shared).unwrap(),
        hostile::Plant::Garbage,
        &canary,
        b"",
    );
    let m = f.mount("claimed", &["--claim-timeout=2s"]);
    expected += 1;
    assert_eq!(lists(&f), expected);
    f.check(&m, None);
    m.stop();

    assert_eq!(
        hostile::snapshot(&canary),
        before,
        "something outside the cache changed"
    );
}
