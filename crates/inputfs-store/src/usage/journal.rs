//! Each worker's journal of what it published to a cache directory and what it
//! read from it.
//!
//! Recording usage must not cost a metadata write per read, and must not need a
//! coordinator: so each worker keeps records in memory and writes them, every few
//! seconds, to a journal file only it writes (`journal/<host>.<pid>.<nonce>.<seq>.log`),
//! with explicit offsets (no `O_APPEND`: SMB breaks it) and a close after each
//! write (which is what makes the bytes visible to other NFS clients). Reads are
//! recorded coarsely: at most once per [`ACCESS_INTERVAL`] per object. The
//! sweeper folds journals into the usage index (see `index`), so its work grows
//! with what happened since the last sweep, not with the size of the cache.
//!
//! Records, one per line:
//! - `A <key> <unix ms>`: the object was read.
//! - `P <key> <index> <file bytes> <unix ms>`: this worker placed a block file.
//! - `R <key> <index>`: this worker removed a block file (it failed a check).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inputfs_core::{BlockId, CacheKey};

use crate::beneath::{Beneath, Found, Rel};
use crate::fsutil::{self, FILE_MODE};

/// How often at most one worker records a read of one object.
pub const ACCESS_INTERVAL: Duration = Duration::from_secs(60);

/// A journal file is rotated past this size, so consumed ones can be deleted.
const ROTATE_AT: u64 = 4 << 20;

/// Unix time in milliseconds: seconds would tie objects read in one second.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This worker's journal in one cache directory.
pub(crate) struct Journal {
    dir: Rel,
    stem: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: String,
    seq: u32,
    offset: u64,
    last_access: HashMap<CacheKey, u64>,
}

impl Journal {
    pub(crate) fn new(dir: &Rel) -> Self {
        Journal {
            dir: dir.clone(),
            stem: fsutil::unique_stem(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a read of `key` (coarsely).
    pub(crate) fn accessed(&self, key: &CacheKey) {
        let now = unix_ms();
        let mut st = self.state();
        let due = st
            .last_access
            .get(key)
            .is_none_or(|&t| now.saturating_sub(t) >= ACCESS_INTERVAL.as_millis() as u64);
        if due {
            st.last_access.insert(*key, now);
            st.pending.push_str(&format!("A {} {now}\n", key.to_hex()));
        }
    }

    /// Record a block file this worker placed, of `bytes` bytes on disk, in a
    /// placement that started at `since` (Unix ms).
    pub(crate) fn placed(&self, id: &BlockId, bytes: u64, since: u64) {
        let mut st = self.state();
        st.last_access.insert(id.key, unix_ms());
        st.pending.push_str(&format!(
            "P {} {} {bytes} {since}\n",
            id.key.to_hex(),
            id.index
        ));
    }

    /// Record a block file this worker removed.
    pub(crate) fn removed(&self, id: &BlockId) {
        let mut st = self.state();
        st.pending
            .push_str(&format!("R {} {}\n", id.key.to_hex(), id.index));
    }

    /// Write pending records to this worker's journal file. On failure they stay
    /// pending for the next flush (bounded: a cache that cannot be written to
    /// only loses usage records, which the next full rescan restores).
    pub(crate) fn flush(&self, at: &Beneath) -> io::Result<()> {
        let mut st = self.state();
        if st.pending.is_empty() {
            return Ok(());
        }
        if st.pending.len() > 16 << 20 {
            // The directory has been unwritable for long: drop the oldest half.
            let cut = st.pending.len() / 2;
            let cut = st.pending[cut..].find('\n').map_or(0, |i| cut + i + 1);
            st.pending.drain(..cut);
        }
        let file = match at.open_file_write(&self.path(st.seq)) {
            Ok(Found::File(f, _)) => f,
            // Someone put something else at our name: drop it, start anew.
            Ok(Found::NotRegular(_)) => {
                at.remove_tree(&self.path(st.seq)).1?;
                return Err(io::ErrorKind::NotFound.into());
            }
            // Ours was removed (a sweeper judged it stale): start a new one
            // rather than write at an offset into an empty file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if st.offset > 0 {
                    st.seq += 1;
                    st.offset = 0;
                }
                at.create_new(&self.path(st.seq), FILE_MODE)?
            }
            Err(e) => return Err(e),
        };
        file.write_all_at(st.pending.as_bytes(), st.offset)?;
        drop(file);
        st.offset += st.pending.len() as u64;
        st.pending.clear();
        if st.offset >= ROTATE_AT {
            st.seq += 1;
            st.offset = 0;
        }
        Ok(())
    }

    fn path(&self, seq: u32) -> Rel {
        self.dir
            .trusted_join(&format!("{}.{seq:04}.log", self.stem))
    }

    /// The name prefix of this worker's journal files.
    pub(crate) fn stem(&self) -> &str {
        &self.stem
    }
}

/// One parsed journal record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Access {
        key: CacheKey,
        at: u64,
    },
    Placed {
        key: CacheKey,
        index: u64,
        bytes: u64,
        at: u64,
    },
    Removed {
        key: CacheKey,
        index: u64,
    },
}

/// Parse one line; `None` for anything malformed (a journal is written by other
/// workers and may be torn or foreign: never panic, skip).
pub(crate) fn parse(line: &str) -> Option<Record> {
    let f: Vec<&str> = line.split(' ').collect();
    let num = |s: &str| s.parse::<u64>().ok();
    match f.as_slice() {
        ["A", key, at] => Some(Record::Access {
            key: parse_key(key)?,
            at: num(at)?,
        }),
        ["P", key, index, bytes, at] => Some(Record::Placed {
            key: parse_key(key)?,
            index: num(index)?,
            bytes: num(bytes)?,
            at: num(at)?,
        }),
        ["R", key, index] => Some(Record::Removed {
            key: parse_key(key)?,
            index: num(index)?,
        }),
        _ => None,
    }
}

/// A key from its 64 hex digits.
pub(crate) fn parse_key(hex: &str) -> Option<CacheKey> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(CacheKey(out))
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests plant and inspect cache entries by path on purpose"
)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;

    fn key(b: u8) -> CacheKey {
        CacheKey([b; 32])
    }

    #[test]
    fn records_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let at = Beneath::open(dir.path()).unwrap();
        let j = Journal::new(&Rel::new("j").unwrap());
        fs::create_dir(dir.path().join("j")).unwrap();
        let dir = dir.path().join("j");
        j.accessed(&key(1));
        j.accessed(&key(1)); // coarse: recorded once
        j.placed(
            &BlockId {
                key: key(2),
                index: 7,
            },
            4168,
            unix_ms(),
        );
        j.removed(&BlockId {
            key: key(2),
            index: 7,
        });
        j.flush(&at).unwrap();
        j.flush(&at).unwrap(); // nothing pending: no-op
        let files: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let text = fs::read_to_string(files[0].path()).unwrap();
        let recs: Vec<_> = text.lines().map(|l| parse(l).unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert!(matches!(recs[0], Record::Access { key: k, .. } if k == key(1)));
        assert!(matches!(
            recs[1],
            Record::Placed {
                index: 7,
                bytes: 4168,
                ..
            }
        ));
        assert!(matches!(recs[2], Record::Removed { index: 7, .. }));
    }

    #[test]
    fn a_removed_journal_file_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let at = Beneath::open(dir.path()).unwrap();
        let j = Journal::new(&Rel::new("j").unwrap());
        fs::create_dir(dir.path().join("j")).unwrap();
        let dir = dir.path().join("j");
        j.accessed(&key(1));
        j.flush(&at).unwrap();
        for e in fs::read_dir(&dir).unwrap().flatten() {
            fs::remove_file(e.path()).unwrap();
        }
        j.accessed(&key(2));
        j.flush(&at).unwrap();
        let files: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let text = fs::read_to_string(files[0].path()).unwrap();
        assert!(text.starts_with("A "), "no hole at the start: {text:?}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(line in ".*") {
            let _ = parse(&line);
        }
    }
}
