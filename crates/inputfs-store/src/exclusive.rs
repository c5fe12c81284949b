//! Expiring exclusive entries: the one mechanism behind fetch claims and the
//! sweeper's lease.
//!
//! A holder makes the entry as a directory with `mkdir`, then writes one line
//! into the file `holder` inside it:
//! `<magic> <host> <pid> <nonce> <expiry in Unix ms>`. `mkdir` is the
//! exclusive step because it is the one every shared filesystem decides on the
//! server: NFS, SMB and sftp (sshfs) all refuse a second `mkdir` of a name. An
//! `O_CREAT|O_EXCL` create is not: smbnetfs (FUSE over libsmbclient) opens with
//! `O_CREAT|O_TRUNC` whatever the flags, so two workers "created" the same
//! claim in 287 of 300 tries (`tests/tests/fleet.rs` saw the duplicate
//! fetches); `mkdir` through the same mounts was exclusive in 300 of 300.
//!
//! Anyone finding the entry past its expiry — or without a readable line and
//! older than its time to live, as a holder killed between `mkdir` and write
//! leaves it — removes it and makes it afresh. A holder releasing well within
//! its time to live (before anyone may take it over) simply removes it. Later
//! than that, it removes it only if it still holds the holder's own line, so a
//! holder whose entry was taken over never deletes the new holder's. (The
//! early case must not depend on reading the line back: on SMB and sshfs a
//! file re-created under a reused name can read back the previous file's
//! cached bytes for a second or so.)
//!
//! A regular file at the name is the previous release's form (the line in the
//! file itself, made with `O_EXCL`): it is read and judged the same way, so
//! workers of both releases respect each other's live entries. A live entry
//! whose holder died on this very host (by boot id, pid and the process's
//! start time: see `holder`) counts as expired at once.
//!
//! This is an optimisation primitive, never a lock that correctness rests on:
//! two processes can both believe they hold it after racing on an expired
//! entry or under clock skew.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::FileStat;

use crate::beneath::{Beneath, Found, Kind, Rel};
use crate::fsutil::{self, DIR_MODE, FILE_MODE};

/// The file inside an entry that holds its holder's line.
const HOLDER: &str = "holder";

/// The most a holder's line can be: anything longer is not one (and is not
/// read further).
const LINE_MAX: u64 = 512;

/// The outcome of trying to take an exclusive file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Ours (what is needed to release it).
    Ours(Holding),
    /// Someone else's, still live.
    Held,
}

/// A file this process holds: the line it wrote, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holding {
    line: String,
    at: std::time::Instant,
    ttl: Duration,
}

/// What an exclusive file says about itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum State {
    Live,
    Expired,
    Gone,
}

/// Try to take `rel` for `ttl`. Errors are the filesystem's (ENOENT for a
/// missing directory included); the caller decides what they mean.
pub(crate) fn take(at: &Beneath, rel: &Rel, magic: &str, ttl: Duration) -> io::Result<Taken> {
    // Two rounds: an expired entry removed in round one is taken in round
    // two; so is one whose holder released it between our `mkdir` and our
    // look (on sshfs that lost race reads EPERM with nothing there: see
    // `fsutil::already_exists`).
    for round in 0..2 {
        match at.mkdir(rel, DIR_MODE) {
            Ok(()) => return write_holder(at, rel, magic, ttl),
            Err(e) if round == 0 && fsutil::maybe_raced(&e) && at.stat(rel).is_err() => {}
            Err(e) if fsutil::already_exists(at, &e, rel) => match state(at, rel, magic, ttl) {
                State::Live => return Ok(Taken::Held),
                State::Gone => {}
                State::Expired => {
                    tracing::debug!(path = %at.display(rel).display(), "taking over an expired {magic}");
                    remove(at, rel);
                }
            },
            Err(e) => return Err(e),
        }
    }
    Ok(Taken::Held)
}

/// Write the holder's line into the entry just made. The line is created
/// with `O_EXCL` too: should another worker's line be there already (a
/// client that let two `mkdir`s through, or showed us a directory another
/// worker had just made as new), the entry is theirs. On any other failure
/// (a full disk) the entry goes: one without a line would look live to
/// others for a whole time to live, announcing nothing.
fn write_holder(at: &Beneath, rel: &Rel, magic: &str, ttl: Duration) -> io::Result<Taken> {
    let line = line(magic, ttl);
    let holder = holder(rel)?;
    let written = at.create_new(&holder, FILE_MODE).and_then(|mut file| {
        file.write_all(line.as_bytes())?;
        Ok(file)
    });
    match written {
        Ok(_) => {}
        Err(e) if fsutil::already_exists(at, &e, &holder) => {
            tracing::debug!(path = %at.display(rel).display(), "another worker's line in the {magic} just made");
            return Ok(Taken::Held);
        }
        Err(e) => {
            remove(at, rel);
            return Err(e);
        }
    }
    Ok(Taken::Ours(Holding {
        line,
        at: std::time::Instant::now(),
        ttl,
    }))
}

fn holder(rel: &Rel) -> io::Result<Rel> {
    rel.join(HOLDER)
}

/// Give up an entry this process holds (see the module docs).
pub(crate) fn release(at: &Beneath, rel: &Rel, holding: &Holding) {
    let early = holding.at.elapsed() < holding.ttl / 2;
    if early
        || holder(rel)
            .and_then(|h| read_line(at, &h))
            .is_ok_and(|now| now == Some(holding.line.clone()))
    {
        remove(at, rel);
    }
}

/// Remove the entry `rel`, whatever its form: the directory and its line, a
/// file of the previous release, or anything planted (never followed).
pub(crate) fn remove(at: &Beneath, rel: &Rel) {
    if let Ok(holder) = holder(rel) {
        remove_busy(at, &holder);
    }
    match at.rmdir(rel) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => remove_busy(at, rel),
        // Something more was put inside.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
            let _ = at.remove_tree(rel);
        }
        _ => {}
    }
}

/// Remove a file others may have open for a moment. SMB refuses to unlink an
/// open file (`EBUSY`), and other workers open these files briefly to read
/// their expiry: retry for a little while rather than leave a lease or claim
/// standing until it expires.
fn remove_busy(at: &Beneath, rel: &Rel) {
    for _ in 0..50 {
        match at.unlink(rel) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return,
        }
    }
}

/// The line of the regular file `rel` (at most [`LINE_MAX`] bytes, lossily
/// UTF-8); `None` if it is something else or longer.
fn read_line(at: &Beneath, rel: &Rel) -> io::Result<Option<String>> {
    match at.read_small(rel, LINE_MAX) {
        Ok(bytes) => Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the entry at `rel` is live, expired or gone. Anything but a
/// directory or a regular file there, or as its line (a link, a FIFO:
/// planted), is never opened and counts as expired, so it is removed (never
/// followed) and the name taken.
pub(crate) fn state(at: &Beneath, rel: &Rel, magic: &str, ttl: Duration) -> State {
    let (entry, line_at) = match look(at, rel) {
        Entry::Gone => return State::Gone,
        Entry::Planted => return State::Expired,
        Entry::Line { entry, line_at } => (entry, line_at),
    };
    let text = match read_line(at, &line_at) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return match at.open_file(&line_at) {
                Ok(Found::NotRegular(_)) => State::Expired,
                // Too long to be a holder's line: foreign content, by age.
                _ => by_age(&entry, ttl),
            };
        }
        // No line yet (its holder is between `mkdir` and write, or died
        // there), or unreadable (EIO...): judge by age.
        Err(_) => return by_age(&entry, ttl),
    };
    if let Some(expiry) = parse_expiry(&text, magic) {
        return if expiry <= now_ms() || holder_dead_here(&text, magic) {
            State::Expired
        } else {
            State::Live
        };
    }
    by_age(&entry, ttl)
}

/// What is at an entry's name, unfollowed.
enum Entry {
    Gone,
    /// Neither a directory nor a regular file (a link, a FIFO): never opened.
    Planted,
    /// An entry of this release (a directory, its line in `holder`) or of
    /// the previous one (a file holding the line): its own stat and where
    /// its line is.
    Line {
        entry: FileStat,
        line_at: Rel,
    },
}

/// Look at the entry `rel` (one `stat`, not followed).
fn look(at: &Beneath, rel: &Rel) -> Entry {
    let Ok(entry) = at.stat(rel) else {
        return Entry::Gone;
    };
    let line_at = match Kind::of(&entry) {
        Kind::Dir => holder(rel),
        Kind::File => Ok(rel.clone()),
        Kind::Symlink | Kind::Special => return Entry::Planted,
    };
    match line_at {
        Ok(line_at) => Entry::Line { entry, line_at },
        Err(_) => Entry::Planted,
    }
}

/// Who holds an entry, as far as one look tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// No entry (or it could not be looked at).
    Free,
    /// The holder's well-formed line.
    Named(String),
    /// An entry without a well-formed line: a holder between making it and
    /// writing its line (a moment), or something planted, which counts as
    /// held by its age alone.
    Unnamed,
}

/// Who holds the entry at `rel`.
pub(crate) fn holder_of(at: &Beneath, rel: &Rel, magic: &str) -> Holder {
    let line_at = match look(at, rel) {
        Entry::Gone => return Holder::Free,
        Entry::Planted => return Holder::Unnamed,
        Entry::Line { line_at, .. } => line_at,
    };
    match read_line(at, &line_at) {
        Ok(Some(text)) if parse_expiry(&text, magic).is_some() => {
            Holder::Named(text.trim_end().to_string())
        }
        _ => Holder::Unnamed,
    }
}

/// No line, a torn one or foreign content: the holder died before writing
/// it, or someone wrote garbage. Old enough means expired.
fn by_age(entry: &FileStat, ttl: Duration) -> State {
    if fsutil::age(entry) >= ttl {
        State::Expired
    } else {
        State::Live
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn line(magic: &str, ttl: Duration) -> String {
    format!(
        "{magic} {} {} {:016x} {}\n",
        crate::holder::host_field(),
        crate::holder::process_field(),
        fsutil::random_u64(),
        now_ms() + ttl.as_millis()
    )
}

/// Parse the expiry (Unix ms) out of a line.
fn parse_expiry(text: &str, magic: &str) -> Option<u128> {
    let rest = text.strip_prefix(magic)?.trim_end_matches('\n');
    match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
        [_host, _pid, _nonce, expiry] => expiry.parse().ok(),
        _ => None,
    }
}

/// Whether the line's holder died on this host (see `holder`).
fn holder_dead_here(text: &str, magic: &str) -> bool {
    let Some(rest) = text.strip_prefix(magic) else {
        return false;
    };
    match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
        [host, process, _nonce, _expiry] => crate::holder::dead_here(host, process),
        _ => false,
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests plant and inspect cache entries by path on purpose"
)]
mod tests {
    use super::*;

    const MAGIC: &str = "inputfs-test 1";

    /// A temp directory, a handle on it and the entry name `x`.
    fn scratch() -> (tempfile::TempDir, Beneath, Rel) {
        let dir = tempfile::tempdir().unwrap();
        let at = Beneath::open(dir.path()).unwrap();
        (dir, at, Rel::new("x").unwrap())
    }

    #[test]
    fn lines_round_trip_and_garbage_never_parses() {
        let l = line(MAGIC, Duration::from_secs(5));
        let expiry = parse_expiry(&l, MAGIC).unwrap();
        assert!(expiry > now_ms() + 4000 && expiry <= now_ms() + 5000);
        for bad in [
            "",
            MAGIC,
            "inputfs-test 1 h 1 n x",
            "other 1 h 1 n 5",
            "inputfs-test 1 a b c d e",
        ] {
            assert_eq!(parse_expiry(bad, MAGIC), None, "{bad:?}");
        }
    }

    #[test]
    fn take_hold_expire_release() {
        let (dir, at, p) = scratch();
        let Taken::Ours(line) = take(&at, &p, MAGIC, Duration::from_millis(40)).unwrap() else {
            panic!("first take failed")
        };
        assert_eq!(
            take(&at, &p, MAGIC, Duration::from_secs(9)).unwrap(),
            Taken::Held
        );
        std::thread::sleep(Duration::from_millis(60));
        let Taken::Ours(other) = take(&at, &p, MAGIC, Duration::from_secs(9)).unwrap() else {
            panic!("expired file not taken over")
        };
        release(&at, &p, &line); // the old holder's release leaves the new holder's file
        assert!(dir.path().join("x").exists());
        release(&at, &p, &other);
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn a_planted_fifo_or_link_is_taken_over_never_opened() {
        let (dir, at, p) = scratch();
        nix::unistd::mkfifo(
            &dir.path().join("x"),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .unwrap();
        assert_eq!(
            state(&at, &p, MAGIC, Duration::from_secs(9)),
            State::Expired
        );
        assert!(matches!(
            take(&at, &p, MAGIC, Duration::from_secs(9)).unwrap(),
            Taken::Ours(_)
        ));
        let outside = dir.path().join("outside");
        std::fs::write(&outside, format!("{MAGIC} h 1 0 {}\n", u64::MAX)).unwrap();
        std::fs::remove_dir_all(dir.path().join("x")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("x")).unwrap();
        assert!(matches!(
            take(&at, &p, MAGIC, Duration::from_secs(9)).unwrap(),
            Taken::Ours(_)
        ));
        assert!(outside.exists(), "the link's target is left alone");
    }

    #[test]
    fn a_file_of_the_previous_release_is_respected_then_taken_over() {
        let (dir, at, p) = scratch();
        let live = format!("{MAGIC} otherhost 1 00 {}\n", now_ms() + 60_000);
        std::fs::write(dir.path().join("x"), live).unwrap();
        assert_eq!(
            take(&at, &p, MAGIC, Duration::from_secs(9)).unwrap(),
            Taken::Held
        );
        std::fs::write(
            dir.path().join("x"),
            format!("{MAGIC} otherhost 1 00 1000\n"),
        )
        .unwrap();
        let Taken::Ours(ours) = take(&at, &p, MAGIC, Duration::from_secs(9)).unwrap() else {
            panic!("expired file of the previous release not taken over")
        };
        assert!(dir.path().join("x/holder").is_file());
        release(&at, &p, &ours);
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn a_directory_without_its_line_counts_by_its_age() {
        let (dir, at, p) = scratch();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        assert_eq!(state(&at, &p, MAGIC, Duration::from_secs(9)), State::Live);
        assert_eq!(state(&at, &p, MAGIC, Duration::ZERO), State::Expired);
        std::fs::write(dir.path().join("x/stray"), b"planted").unwrap();
        assert!(matches!(
            take(&at, &p, MAGIC, Duration::ZERO).unwrap(),
            Taken::Ours(_)
        ));
        assert!(!dir.path().join("x/stray").exists());
    }
}
