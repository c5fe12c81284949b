//! The doctor's own scratch directory inside a cache directory,
//! `DIR/doctor-<pid>-<random>/`, and every file operation the checks make
//! in it. A cache directory is untrusted (anyone who can write the export
//! can swap the probe directory for a link between two checks), so the
//! probe goes through `inputfs_store::beneath` like the store itself: names
//! relative to a handle on `DIR`, never following a link, only regular files
//! opened. It is removed, with everything in it, on drop.

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use inputfs_store::beneath::{Beneath, Found, Rel};

/// How often, and how far apart, a removal that meets `EBUSY` is retried.
const BUSY_RETRIES: u32 = 50;
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

pub struct Probe {
    at: Beneath,
    rel: Rel,
    /// The probe directory's path, for messages only.
    pub dir: PathBuf,
}

impl Probe {
    /// Make a new probe directory in `parent` (a cache directory).
    pub fn create(parent: &std::path::Path) -> io::Result<Probe> {
        let at = Beneath::open(parent)?;
        let mut attempt = 0;
        loop {
            let rel = Rel::new(format!("doctor-{}-{:016x}", std::process::id(), random()))?;
            match at.mkdir(&rel, 0o2775) {
                Ok(()) => {
                    let dir = at.display(&rel);
                    return Ok(Probe { at, rel, dir });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn name(&self, file: &str) -> io::Result<Rel> {
        self.rel.join(file)
    }

    /// A file's path, for messages only.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Create `file` exclusively (`O_CREAT|O_EXCL`), for writing.
    pub fn create_new(&self, file: &str) -> io::Result<File> {
        self.at.create_new(&self.name(file)?, 0o664)
    }

    /// Create `file` (it must not exist), write `data`, fsync, close.
    pub fn write_new(&self, file: &str, data: &[u8]) -> io::Result<()> {
        let mut f = self.create_new(file)?;
        f.write_all(data)?;
        f.sync_all()
    }

    /// Open `file` for reading; anything but a regular file is an error.
    pub fn open(&self, file: &str) -> io::Result<File> {
        match self.at.open_file(&self.name(file)?)? {
            Found::File(f, _) => Ok(f),
            Found::NotRegular(kind) => Err(io::Error::other(format!(
                "{} is a {kind:?}, not a regular file (replaced by someone else?)",
                self.path(file).display()
            ))),
        }
    }

    /// The bytes of `file`.
    pub fn read(&self, file: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(file)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.at.rename(&self.name(from)?, &self.name(to)?)
    }

    pub fn link(&self, from: &str, to: &str) -> io::Result<()> {
        self.at.link(&self.name(from)?, &self.name(to)?)
    }

    /// Whether anything has the name `file`.
    pub fn exists(&self, file: &str) -> bool {
        self.name(file).is_ok_and(|rel| self.at.stat(&rel).is_ok())
    }

    /// Remove `file`, retrying while the filesystem answers `EBUSY` (SMB,
    /// until the server has closed it); returns how many retries it took.
    pub fn remove_busy(&self, file: &str) -> io::Result<u32> {
        let rel = self.name(file)?;
        let mut retries = 0;
        loop {
            match self.at.unlink(&rel) {
                Ok(()) => return Ok(retries),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && retries < BUSY_RETRIES => {
                    retries += 1;
                    std::thread::sleep(BUSY_PAUSE);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let mut result = self.at.remove_tree(&self.rel).1;
        for _ in 0..BUSY_RETRIES {
            match &result {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(BUSY_PAUSE);
                    result = self.at.remove_tree(&self.rel).1;
                }
                _ => break,
            }
        }
        if let Err(e) = result {
            eprintln!(
                "inputfs: warning: could not remove the probe directory {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// 64 random bits: std's per-process random hash keys, mixed with the clock.
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.finish()
}
