//! Expiring exclusive files: the one mechanism behind fetch claims and the
//! sweeper's lease.
//!
//! A holder creates the file with `O_CREAT|O_EXCL` (honoured across hosts by NFS,
//! SMB and sshfs; `flock`/`fcntl` locks are not) and writes one line:
//! `<magic> <host> <pid> <nonce> <expiry in Unix ms>`. Anyone finding it past its
//! expiry — or unreadable and older than its time to live, as a holder killed
//! between create and write leaves it — removes it and creates it afresh.
//! A holder releasing well within its time to live (before anyone may take it
//! over) simply removes the file. Later than that, it removes the file only if
//! it still holds the holder's own line, so a holder whose file was taken over
//! never deletes the new holder's. (The early case must not depend on reading
//! the file back: on SMB and sshfs a file re-created under a reused name can
//! read back the previous file's cached bytes for a second or so.)
//!
//! A live file whose holder died on this very host (by boot id, pid and the
//! process's start time: see `holder`) counts as expired at once.
//!
//! This is an optimisation primitive, never a lock that correctness rests on:
//! two processes can both believe they hold it after racing on an expired file
//! or under clock skew.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::beneath::{Beneath, Found, Rel};
use crate::fsutil::{self, FILE_MODE};

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
    // Two rounds: an expired file removed in round one is taken in round two;
    // so is one whose holder released it between our create and our look (on
    // sshfs that lost race reads EPERM with nothing there: see
    // `fsutil::already_exists`).
    for round in 0..2 {
        let line = line(magic, ttl);
        match at.create_new(rel, FILE_MODE) {
            Ok(mut file) => {
                if let Err(e) = file.write_all(line.as_bytes()) {
                    // A full disk: an empty file would look live to others
                    // for a whole time to live, announcing nothing.
                    drop(file);
                    let _ = at.unlink(rel);
                    return Err(e);
                }
                return Ok(Taken::Ours(Holding {
                    line,
                    at: std::time::Instant::now(),
                    ttl,
                }));
            }
            Err(e) if round == 0 && fsutil::maybe_raced(&e) && at.stat(rel).is_err() => {}
            Err(e) if fsutil::already_exists(at, &e, rel) => match state(at, rel, magic, ttl) {
                State::Live => return Ok(Taken::Held),
                State::Gone => {}
                State::Expired => {
                    tracing::debug!(path = %at.display(rel).display(), "taking over an expired {magic}");
                    remove_busy(at, rel);
                }
            },
            Err(e) => return Err(e),
        }
    }
    Ok(Taken::Held)
}

/// Give up a file this process holds (see the module docs).
pub(crate) fn release(at: &Beneath, rel: &Rel, holding: &Holding) {
    let early = holding.at.elapsed() < holding.ttl / 2;
    if early || read_line(at, rel).is_ok_and(|now| now == Some(holding.line.clone())) {
        remove_busy(at, rel);
    }
}

/// Remove a file others may have open for a moment. SMB refuses to unlink an
/// open file (`EBUSY`), and other workers open these files briefly to read
/// their expiry: retry for a little while rather than leave a lease or claim
/// standing until it expires.
pub(crate) fn remove_busy(at: &Beneath, rel: &Rel) {
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

/// Whether the file at `rel` is live, expired or gone. Anything but a
/// regular file there (a link, a FIFO: planted) is never opened and counts
/// as expired, so it is removed (never followed) and the name taken.
pub(crate) fn state(at: &Beneath, rel: &Rel, magic: &str, ttl: Duration) -> State {
    let text = match read_line(at, rel) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return match at.open_file(rel) {
                Ok(Found::NotRegular(_)) => State::Expired,
                // Too long to be a holder's line: foreign content, by age.
                _ => by_age(at, rel, ttl),
            };
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return State::Gone,
        // Unreadable (EIO...): judge by age below.
        Err(_) => String::new(),
    };
    if let Some(expiry) = parse_expiry(&text, magic) {
        return if expiry <= now_ms() || holder_dead_here(&text, magic) {
            State::Expired
        } else {
            State::Live
        };
    }
    by_age(at, rel, ttl)
}

/// Torn or foreign content: the holder died between create and write, or
/// someone wrote garbage. Old enough means expired.
fn by_age(at: &Beneath, rel: &Rel, ttl: Duration) -> State {
    match at.stat(rel) {
        Ok(stat) if fsutil::age(&stat) >= ttl => State::Expired,
        Ok(_) => State::Live,
        Err(_) => State::Gone,
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
        let dir = tempfile::tempdir().unwrap();
        let at = Beneath::open(dir.path()).unwrap();
        let p = Rel::new("x").unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let at = Beneath::open(dir.path()).unwrap();
        let p = Rel::new("x").unwrap();
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
        std::fs::remove_file(dir.path().join("x")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("x")).unwrap();
        assert!(matches!(
            take(&at, &p, MAGIC, Duration::from_secs(9)).unwrap(),
            Taken::Ours(_)
        ));
        assert!(outside.exists(), "the link's target is left alone");
    }
}
