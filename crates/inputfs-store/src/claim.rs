//! Claim files: how workers that share a directory agree that one of them fetches
//! a block from the origin while the others wait.
//!
//! `claims/<key hex>-<index as 16 hex>.claim` is created with `O_CREAT|O_EXCL`
//! (honoured across hosts by NFSv3+, SMB and sshfs alike; `flock`/`fcntl` locks
//! are not) and holds one line: `inputfs-claim 1 <host> <pid> <nonce> <expiry>`,
//! the expiry in Unix milliseconds by the claimant's clock. A claim past its
//! expiry — or unreadable and older than the time to live, as a claimant killed
//! between create and write leaves it — is removed and claimed afresh. Release
//! removes the file only if it still holds this worker's line, so a worker whose
//! claim was taken over never deletes the new holder's claim.
//!
//! Claims are an optimisation, never a lock: two workers can both believe they
//! hold a claim after racing on an expired one (or under clock skew), and the
//! cost is a duplicate fetch. Blocks are content-addressed and verified, so no
//! outcome of any race can serve a wrong byte.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inputfs_core::BlockId;
use inputfs_core::store::Claim;

use crate::dir::DirStore;
use crate::error::StoreError;
use crate::fsutil::{self, FILE_MODE, ensure_dir};

const MAGIC: &str = "inputfs-claim 1";

/// Claims this worker holds, by block, with the exact line it wrote.
pub(crate) type Held = std::sync::Mutex<HashMap<BlockId, String>>;

/// What a claim file says about itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum State {
    Live,
    Expired,
    Gone,
}

impl DirStore {
    /// Where the claim of block `id` lives.
    pub fn claim_path(&self, id: &BlockId) -> PathBuf {
        self.claims_dir()
            .join(format!("{}-{:016x}.claim", id.key.to_hex(), id.index))
    }

    pub(crate) fn try_claim(&self, id: &BlockId, ttl: Duration) -> Result<Claim, StoreError> {
        if !self.claims_enabled() {
            return Ok(Claim::Unsupported);
        }
        let path = self.claim_path(id);
        let mut recreated_dir = false;
        // Two rounds: a stale claim removed in round one is claimed in round two.
        for _ in 0..2 {
            let line = claim_line(ttl);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
            {
                Ok(mut file) => {
                    fsutil::set_file_mode(&file);
                    file.write_all(line.as_bytes())
                        .map_err(|e| StoreError::io("write claim", &path, e))?;
                    drop(file);
                    self.held()
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(*id, line);
                    return Ok(Claim::Acquired);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match read_state(&path, ttl) {
                        State::Live => return Ok(Claim::Held),
                        State::Gone => {}
                        State::Expired => {
                            tracing::debug!(path = %path.display(), "taking over an expired claim");
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !recreated_dir => {
                    recreated_dir = true;
                    ensure_dir(self.claims_dir(), self.root())?;
                }
                Err(e) => return Err(StoreError::io("create claim", &path, e)),
            }
        }
        Ok(Claim::Held)
    }

    pub(crate) fn release_claim(&self, id: &BlockId) {
        let Some(line) = self
            .held()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        else {
            return;
        };
        let path = self.claim_path(id);
        if fs::read_to_string(&path).is_ok_and(|now| now == line) {
            let _ = fs::remove_file(&path);
        }
    }

    /// Remove every expired claim (as left by killed workers). Returns how many.
    pub(crate) fn sweep_claims(&self, ttl: Duration) -> usize {
        let Ok(entries) = fs::read_dir(self.claims_dir()) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| read_state(p, ttl) == State::Expired && fs::remove_file(p).is_ok())
            .count()
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn claim_line(ttl: Duration) -> String {
    format!(
        "{MAGIC} {} {} {:016x} {}\n",
        fsutil::hostname(),
        std::process::id(),
        fsutil::random_u64(),
        now_ms() + ttl.as_millis()
    )
}

/// Parse the expiry (Unix ms) out of a claim line.
fn parse_expiry(text: &str) -> Option<u128> {
    let rest = text.strip_prefix(MAGIC)?.trim_end_matches('\n');
    let fields: Vec<&str> = rest.split_whitespace().collect();
    match fields.as_slice() {
        [_host, _pid, _nonce, expiry] => expiry.parse().ok(),
        _ => None,
    }
}

fn read_state(path: &Path, ttl: Duration) -> State {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return State::Gone,
        // Unreadable (not UTF-8, EIO...): judge by age below.
        Err(_) => String::new(),
    };
    if let Some(expiry) = parse_expiry(&text) {
        return if expiry <= now_ms() {
            State::Expired
        } else {
            State::Live
        };
    }
    // Torn or foreign content: the claimant died between create and write, or
    // someone wrote garbage. Old enough means expired.
    match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(mtime) if mtime.elapsed().is_ok_and(|age| age >= ttl) => State::Expired,
        Ok(_) => State::Live,
        Err(_) => State::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_lines_round_trip_and_garbage_never_parses() {
        let line = claim_line(Duration::from_secs(5));
        let expiry = parse_expiry(&line).unwrap();
        assert!(expiry > now_ms() + 4000 && expiry <= now_ms() + 5000);
        for bad in [
            "",
            "inputfs-claim 1",
            "inputfs-claim 1 h 1 n x",
            "other 1 h 1 n 5",
            "inputfs-claim 1 a b c d e",
        ] {
            assert_eq!(parse_expiry(bad), None, "{bad:?}");
        }
    }
}
