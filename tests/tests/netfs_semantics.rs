//! What each shared filesystem a cache may live on actually guarantees between two
//! hosts (two mount points of one [`SharedDir`]): visibility of a closed file,
//! `O_EXCL`, `link`, rename over an existing file, unlink, and which of `O_EXCL`
//! and `mkdir` stays exclusive when two hosts race for one name at the same
//! moment (the store's claims are checked under that race too). Each test
//! prints one `netfs[KIND]: ...` line of what it observed; the cache is
//! designed from these.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use inputfs_tests::{SharedDir, pattern};

/// How long a client may take to see another client's change (sshfs caches
/// attributes and directories for 20 s by default).
const EVENTUALLY: Duration = Duration::from_secs(30);

/// Poll `check` until it gives `Ok`, for up to [`EVENTUALLY`] after `since`.
/// Returns how long after `since` that was, and what the first try saw instead
/// ("0.05s (first: 100000 bytes, not the 200000 written)"). Panics with the last
/// thing seen when it never happens.
fn eventually(what: &str, since: Instant, mut check: impl FnMut() -> Result<(), String>) -> String {
    let mut first = None;
    loop {
        match check() {
            Ok(()) => {
                let lag = format!("{:.2}s", since.elapsed().as_secs_f64());
                return match first {
                    Some(seen) => format!("{lag} (first: {seen})"),
                    None => lag,
                };
            }
            Err(seen) if since.elapsed() > EVENTUALLY => {
                panic!("{what}: still not so after {EVENTUALLY:?}: {seen}")
            }
            Err(seen) => {
                first.get_or_insert(seen);
                std::thread::sleep(Duration::from_millis(50))
            }
        }
    }
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?}", nix::errno::Errno::from_raw(code)),
        None => e.to_string(),
    }
}

fn write_file(path: &Path, data: &[u8]) {
    let mut file = fs::File::create(path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
    file.write_all(data)
        .unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    drop(file);
}

/// `path` reads back as exactly `want`.
fn reads_as(path: &Path, want: &[u8]) -> Result<(), String> {
    match fs::read(path) {
        Ok(got) if got == want => Ok(()),
        Ok(got) if want.starts_with(&got) => Err(format!(
            "the first {} of the {} bytes written",
            got.len(),
            want.len()
        )),
        Ok(got) => Err(format!(
            "{} bytes, not the {} written",
            got.len(),
            want.len()
        )),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn size_is(path: &Path, len: usize) -> Result<(), String> {
    match fs::metadata(path) {
        Ok(m) if m.len() == len as u64 => Ok(()),
        Ok(m) => Err(format!("size {}, not {len}", m.len())),
        Err(e) => Err(format!("stat: {e}")),
    }
}

fn is_gone(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("stat: {e}")),
        Ok(m) => Err(format!("still there ({} bytes)", m.len())),
    }
}

fn create_new(path: &Path) -> std::io::Result<fs::File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

fn semantics(mut shared: SharedDir) {
    let kind = shared.kind();
    let a = shared.mount_point(0);
    let b = shared.mount_point(1);
    if kind != "local" {
        assert_ne!(a, b, "two hosts need two mounts");
        let (dev_a, dev_b) = (
            fs::metadata(&a).unwrap().dev(),
            fs::metadata(&b).unwrap().dev(),
        );
        assert_ne!(dev_a, dev_b, "{a:?} and {b:?} are one mount");
    }
    let mut facts = Vec::new();

    // A closed file written through one host reads back byte-exact on the other.
    let data = pattern(1, (3 << 20) + 12_345);
    write_file(&a.join("f"), &data);
    let lag = eventually(
        "f written via mount 0 reads via mount 1",
        Instant::now(),
        || reads_as(&b.join("f"), &data),
    );
    assert_eq!(fs::read(shared.server_dir().join("f")).unwrap(), data);
    facts.push(format!("closed write read after {lag}"));

    // O_EXCL on an existing name fails on the other host, even for a name it had
    // just looked up as missing (a cached negative entry must not let it through).
    let err = create_new(&b.join("f")).expect_err("O_EXCL over an existing file");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "O_EXCL: {err}");
    is_gone(&b.join("x")).unwrap();
    create_new(&a.join("x")).expect("O_EXCL of a new name");
    match create_new(&b.join("x")) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        other => panic!(
            "O_EXCL via mount 1 of a name created via mount 0 it had seen missing: {other:?}"
        ),
    }
    facts.push("O_EXCL EEXIST across mounts".into());

    // link: works (and then is exclusive across hosts) or fails with an errno.
    match fs::hard_link(a.join("f"), a.join("f.link")) {
        Ok(()) => {
            let lag = eventually(
                "link made via mount 0 read via mount 1",
                Instant::now(),
                || reads_as(&b.join("f.link"), &data),
            );
            let again = fs::hard_link(b.join("x"), b.join("f.link"))
                .expect_err("link onto an existing name");
            assert_eq!(
                again.raw_os_error(),
                Some(libc::EEXIST),
                "link onto existing: {again}"
            );
            facts.push(format!("link ok (read after {lag}; onto existing EEXIST)"));
        }
        Err(e) => {
            let errno = e
                .raw_os_error()
                .unwrap_or_else(|| panic!("link: not an OS error: {e}"));
            if kind == "smb" {
                let allowed = [libc::EPERM, libc::ENOTSUP, libc::EOPNOTSUPP, libc::ENOSYS];
                assert!(allowed.contains(&errno), "link on smb: {e}");
            } else {
                panic!("link on {kind}: {e}");
            }
            facts.push(format!("link fails {}", errno_name(&e)));
        }
    }

    // Rename over existing files that nobody has open, with their old attributes
    // freshly cached on the other host: one is then read (are the new bytes
    // served, whole?), the other only stat'ed (when does the new size show?).
    let (old, new) = (pattern(2, 100_000), pattern(3, 200_000));
    for name in ["t", "u"] {
        write_file(&a.join(name), &old);
        eventually(&format!("{name} read via mount 1"), Instant::now(), || {
            reads_as(&b.join(name), &old)
        });
        write_file(&b.join(format!("{name}.new")), &new);
        assert_eq!(fs::metadata(a.join(name)).unwrap().len(), old.len() as u64);
    }
    let renamed = Instant::now();
    for name in ["t", "u"] {
        fs::rename(b.join(format!("{name}.new")), b.join(name))
            .unwrap_or_else(|e| panic!("rename over {name}: {e}"));
    }
    let read = eventually(
        "renamed-over t reads the new bytes via mount 0",
        renamed,
        || reads_as(&a.join("t"), &new),
    );
    let stat = eventually(
        "renamed-over u has the new size via mount 0",
        renamed,
        || size_is(&a.join("u"), new.len()),
    );
    eventually("renamed t.new gone via mount 0", renamed, || {
        is_gone(&a.join("t.new"))
    });
    facts.push(format!(
        "rename-over ok (other mount reads new bytes after {read}, stats new size after {stat})"
    ));

    // Unlink through one host removes the file for the other, which had just
    // looked it up.
    assert!(fs::metadata(a.join("f")).is_ok());
    fs::remove_file(b.join("f")).unwrap_or_else(|e| panic!("unlink f: {e}"));
    let lag = eventually(
        "f unlinked via mount 1 gone via mount 0",
        Instant::now(),
        || is_gone(&a.join("f")),
    );
    facts.push(format!("unlink seen after {lag}"));

    facts.push(races(&a, &b));
    eprintln!("netfs[{kind}]: {}", facts.join("; "));
}

/// Rounds of each race: at 287 of 300, smbnetfs let both `O_EXCL` creates
/// through; one round that lets two claims through fails the test.
const ROUNDS: usize = 100;

/// Race the two hosts for fresh names, both at once (a barrier), `ROUNDS`
/// times; returns in how many rounds both won.
fn both_won(a: &Path, b: &Path, what: &str, take: impl Fn(&Path, usize) -> bool + Sync) -> usize {
    (0..ROUNDS)
        .filter(|&round| {
            let start = std::sync::Barrier::new(2);
            let won: Vec<bool> = std::thread::scope(|s| {
                let racers: Vec<_> = [a, b]
                    .into_iter()
                    .map(|root| {
                        let (start, take) = (&start, &take);
                        s.spawn(move || {
                            start.wait();
                            take(root, round)
                        })
                    })
                    .collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            });
            assert!(won.iter().any(|w| *w), "{what} round {round}: nobody won");
            won.iter().all(|w| *w)
        })
        .count()
}

/// `O_EXCL` (observed only: the store does not rely on it), `mkdir` and the
/// store's claims (both must be exclusive) when two hosts race.
fn races(a: &Path, b: &Path) -> String {
    let excl = both_won(a, b, "O_EXCL", |root, i| {
        create_new(&root.join(format!("excl{i}"))).is_ok()
    });
    let mkdir = both_won(a, b, "mkdir", |root, i| {
        fs::create_dir(root.join(format!("dir{i}"))).is_ok()
    });
    assert_eq!(mkdir, 0, "mkdir: both hosts made one directory");
    let stores = [a, b].map(|root| {
        inputfs_store::DirStore::open(root, "shared")
            .unwrap()
            .with_claims()
    });
    let claims = both_won(a, b, "claim", |root, i| {
        use inputfs_core::BlockStore;
        let store = &stores[usize::from(root == b)];
        let id = inputfs_core::BlockId {
            key: inputfs_core::CacheKey::new(
                inputfs_core::SourceKind::S3,
                "s3://b/k",
                "etag:1",
                1 << 30,
                4096,
            ),
            index: i as u64,
        };
        let claim = store.claim(&id, Duration::from_secs(60));
        claim.unwrap_or_else(|e| panic!("claim {i}: {e}")) == inputfs_core::store::Claim::Acquired
    });
    assert_eq!(claims, 0, "claims: both hosts acquired one block's claim");
    format!("racing hosts both won O_EXCL {excl}/{ROUNDS}, mkdir 0/{ROUNDS}, a claim 0/{ROUNDS}")
}

#[test]
fn local_dir() {
    semantics(SharedDir::local());
}

#[test]
fn sshfs_strict() {
    semantics(SharedDir::sshfs(true));
}

#[test]
fn sshfs_default() {
    semantics(SharedDir::sshfs(false));
}

#[test]
fn smb() {
    semantics(SharedDir::smb());
}
