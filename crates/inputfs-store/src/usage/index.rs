//! The usage index: which objects a cache directory holds, their block files and
//! sizes, and when each was last read — kept by whichever worker sweeps.
//!
//! It lives in `index/` as text snapshots, each under a name never used before
//! (`usage.<unix ms>.<random>`), written to a temp file and renamed into place;
//! the newest name wins and older ones are removed. Never reusing a name matters
//! on SMB and sshfs, where a file replaced under a reused name can read back
//! stale for a second or so; a reader that sees an older snapshot only re-folds
//! records it already had (folding is idempotent). A sweep
//! loads it, folds in what the journals recorded since (it remembers how far it
//! read each journal file), and writes it back: the cost of a sweep grows with
//! the activity since the last one, not with the size of the cache. A full rescan
//! of `objects/` — the only step whose cost grows with the cache — runs only when
//! there is no usable snapshot, or once a day to correct drift (block files
//! removed by hand, records lost with a worker that was killed before flushing).
//!
//! Snapshot lines: `inputfs-usage 1 <rescanned at>`, `L <max bytes> <min free
//! percent>`, then `J <journal file> <offset>` per journal file, then
//! `O <key> <last access> <index>:<bytes>,...` per object, and last
//! `end <number of objects>`. Anything malformed or cut short makes the snapshot
//! unusable, which only costs a rescan. The trailer matters on SMB and sshfs,
//! where a file just replaced by another client can read back cut at its old
//! size: a snapshot missing its tail must not pass for one missing objects.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use inputfs_core::CacheKey;

use super::journal::{self, Record, parse_key, unix_ms};
use crate::fsutil;

const MAGIC: &str = "inputfs-usage 1";

/// One object version in the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectUsage {
    /// Unix milliseconds of the last recorded read (or placement).
    pub last_access: u64,
    /// Block index -> bytes of its file.
    pub blocks: BTreeMap<u64, u64>,
    /// Order of the last record that touched it in this sweep's ingest: breaks
    /// ties between equal times (later in a journal is more recent). Not saved.
    pub touched: u64,
}

impl ObjectUsage {
    pub fn bytes(&self) -> u64 {
        self.blocks.values().sum()
    }
}

/// The index of one cache directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Index {
    pub objects: HashMap<CacheKey, ObjectUsage>,
    /// How far each journal file has been folded in.
    pub consumed: BTreeMap<String, u64>,
    /// Unix milliseconds of the last full rescan.
    pub rescanned_at: u64,
    /// The limits of the last worker that swept with its configured limits.
    pub limits: super::Limits,
    /// Objects evicted recently, with when: a placement recorded before its
    /// object's eviction landed in a directory the eviction moved away, so it
    /// is not counted (kept an hour, far longer than any journal lags).
    pub evicted: BTreeMap<CacheKey, u64>,
    /// Records applied so far (the source of `ObjectUsage::touched`). Not saved.
    applied: u64,
}

impl Index {
    /// Total bytes of block files.
    pub fn bytes(&self) -> u64 {
        self.objects.values().map(ObjectUsage::bytes).sum()
    }

    /// Total block files.
    pub fn blocks(&self) -> usize {
        self.objects.values().map(|o| o.blocks.len()).sum()
    }

    /// Load the newest snapshot in `index_dir`: `Ok(None)` if there is none or it
    /// is unusable.
    pub fn load_latest(index_dir: &Path) -> io::Result<Option<Index>> {
        match newest(index_dir) {
            Some(path) => Self::load(&path),
            None => Ok(None),
        }
    }

    /// Write a new snapshot into `index_dir` (through `tmp_dir`) and remove the
    /// older ones.
    pub fn save_new(&self, index_dir: &Path, tmp_dir: &Path) -> io::Result<()> {
        let name = format!("usage.{:013}.{:016x}", unix_ms(), fsutil::random_u64());
        self.save(&index_dir.join(&name), tmp_dir)?;
        for entry in fs::read_dir(index_dir)?.flatten() {
            let other = entry.file_name().to_string_lossy().into_owned();
            if other.starts_with("usage.") && other < name {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Load the snapshot at `path`: `Ok(None)` if there is none or it is unusable.
    pub fn load(path: &Path) -> io::Result<Option<Index>> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn parse(text: &str) -> Option<Index> {
        let mut lines = text.lines();
        let header = lines.next()?.strip_prefix(MAGIC)?.trim();
        let mut index = Index {
            rescanned_at: header.parse().ok()?,
            ..Index::default()
        };
        let mut ended = false;
        for line in lines {
            if ended {
                return None;
            }
            let mut f = line.splitn(4, ' ');
            match (f.next()?, f.next(), f.next(), f.next()) {
                ("end", Some(n), None, None) => {
                    if n.parse::<usize>().ok()? != index.objects.len() {
                        return None;
                    }
                    ended = true;
                }
                ("L", Some(max), Some(free), None) => {
                    index.limits = super::Limits {
                        max_bytes: if max == "-" {
                            None
                        } else {
                            Some(max.parse().ok()?)
                        },
                        min_free_percent: if free == "-" {
                            None
                        } else {
                            Some(free.parse().ok()?)
                        },
                    };
                }
                ("X", Some(key), Some(at), None) => {
                    index.evicted.insert(parse_key(key)?, at.parse().ok()?);
                }
                ("J", Some(name), Some(off), None) => {
                    index.consumed.insert(name.to_string(), off.parse().ok()?);
                }
                ("O", Some(key), Some(at), blocks) => {
                    let mut obj = ObjectUsage {
                        last_access: at.parse().ok()?,
                        ..ObjectUsage::default()
                    };
                    for pair in blocks.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
                        let (i, b) = pair.split_once(':')?;
                        obj.blocks.insert(i.parse().ok()?, b.parse().ok()?);
                    }
                    index.objects.insert(parse_key(key)?, obj);
                }
                _ => return None,
            }
        }
        ended.then_some(index)
    }

    /// Write the snapshot to `path` atomically (temp file in `tmp_dir`, rename).
    fn save(&self, path: &Path, tmp_dir: &Path) -> io::Result<()> {
        let mut text = format!("{MAGIC} {}\n", self.rescanned_at);
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "L {} {}\n",
            opt(self.limits.max_bytes.map(|v| v.to_string())),
            opt(self.limits.min_free_percent.map(|v| v.to_string()))
        ));
        for (name, off) in &self.consumed {
            text.push_str(&format!("J {name} {off}\n"));
        }
        for (key, at) in &self.evicted {
            text.push_str(&format!("X {} {at}\n", key.to_hex()));
        }
        for (key, obj) in &self.objects {
            let blocks: Vec<String> = obj.blocks.iter().map(|(i, b)| format!("{i}:{b}")).collect();
            text.push_str(&format!(
                "O {} {} {}\n",
                key.to_hex(),
                obj.last_access,
                blocks.join(",")
            ));
        }
        text.push_str(&format!("end {}\n", self.objects.len()));
        let tmp = tmp_dir.join(format!("{}.usage", fsutil::unique_stem()));
        let result = fs::File::create(&tmp)
            .and_then(|mut f| {
                fsutil::set_file_mode(&f);
                f.write_all(text.as_bytes())
            })
            .and_then(|()| fs::rename(&tmp, path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Apply one journal record.
    fn apply(&mut self, record: Record) {
        self.applied += 1;
        let touched = self.applied;
        match record {
            Record::Access { key, at } => {
                if let Some(obj) = self.objects.get_mut(&key) {
                    obj.last_access = obj.last_access.max(at);
                    obj.touched = touched;
                }
            }
            Record::Placed {
                key,
                index,
                bytes,
                at,
            } => {
                let obj = self.objects.entry(key).or_default();
                obj.last_access = obj.last_access.max(at);
                obj.touched = touched;
                obj.blocks.insert(index, bytes);
            }
            Record::Removed { key, index } => {
                if let Some(obj) = self.objects.get_mut(&key) {
                    obj.blocks.remove(&index);
                }
            }
        }
    }

    /// Forget `key` as evicted now.
    pub fn evict(&mut self, key: &CacheKey) {
        self.objects.remove(key);
        let now = unix_ms();
        self.evicted.insert(*key, now);
        self.evicted
            .retain(|_, at| now.saturating_sub(*at) < 3_600_000);
    }

    /// Fold in every complete journal line not yet consumed. Returns how many
    /// records were applied. Journal files that vanished are forgotten.
    pub fn ingest(&mut self, journal_dir: &Path) -> usize {
        let Ok(entries) = fs::read_dir(journal_dir) else {
            return 0;
        };
        let mut applied = 0;
        let mut present = BTreeMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let from = self.consumed.get(&name).copied().unwrap_or(0);
            let Ok(tail) = read_from(&entry.path(), from) else {
                present.insert(name, from);
                continue;
            };
            // Only whole lines: a writer may be half way through one.
            let complete = tail.rfind('\n').map_or(0, |i| i + 1);
            for line in tail[..complete].lines() {
                if let Some(record) = journal::parse(line) {
                    self.apply(record);
                    applied += 1;
                }
            }
            present.insert(name, from + complete as u64);
        }
        self.consumed = present;
        applied
    }

    /// Build the index from the block files themselves. Costs a directory listing
    /// per object and a `stat` per block file.
    pub fn rescan(objects_dir: &Path) -> Index {
        let mut index = Index {
            rescanned_at: unix_ms(),
            ..Index::default()
        };
        for fan in fs::read_dir(objects_dir).into_iter().flatten().flatten() {
            for obj_dir in fs::read_dir(fan.path()).into_iter().flatten().flatten() {
                let name = obj_dir.file_name();
                let Some(key) = parse_key(&name.to_string_lossy()) else {
                    continue;
                };
                let mut obj = ObjectUsage {
                    last_access: mtime_ms(&obj_dir.path()),
                    ..ObjectUsage::default()
                };
                for block in fs::read_dir(obj_dir.path()).into_iter().flatten().flatten() {
                    let file = block.file_name();
                    if file == crate::plain::PLAIN_NAME {
                        // An object held whole: its bytes, under an index no block has.
                        if let Ok(meta) = block.metadata() {
                            obj.blocks.insert(u64::MAX, meta.len());
                        }
                        continue;
                    }
                    let Some(hex) = file
                        .to_string_lossy()
                        .strip_suffix(".blk")
                        .map(str::to_owned)
                    else {
                        continue;
                    };
                    if let (Ok(i), Ok(meta)) = (u64::from_str_radix(&hex, 16), block.metadata()) {
                        obj.blocks.insert(i, meta.len());
                    }
                }
                index.objects.insert(key, obj);
            }
        }
        index
    }
}

/// The newest snapshot file of `index_dir` (names sort by time).
fn newest(index_dir: &Path) -> Option<std::path::PathBuf> {
    fs::read_dir(index_dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("usage."))
        .max()
        .map(|n| index_dir.join(n))
}

fn read_from(path: &Path, offset: u64) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn mtime_ms(path: &Path) -> u64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Index {
        let mut index = Index {
            rescanned_at: 1234,
            limits: super::super::Limits {
                max_bytes: Some(5000),
                min_free_percent: None,
            },
            ..Index::default()
        };
        index.consumed.insert("h.1.ab.0000.log".into(), 77);
        let mut obj = ObjectUsage {
            last_access: 99,
            ..ObjectUsage::default()
        };
        obj.blocks.insert(0, 4168);
        obj.blocks.insert(5, 100);
        index.objects.insert(CacheKey([7; 32]), obj);
        index
            .objects
            .insert(CacheKey([8; 32]), ObjectUsage::default());
        index
    }

    #[test]
    fn snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage");
        sample().save(&path, dir.path()).unwrap();
        assert_eq!(Index::load(&path).unwrap(), Some(sample()));
        assert_eq!(sample().bytes(), 4268);
        assert_eq!(sample().blocks(), 2);
    }

    #[test]
    fn unusable_snapshots_load_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage");
        assert_eq!(Index::load(&path).unwrap(), None);
        for bad in [
            "",
            "garbage",
            "inputfs-usage 1 x",
            "inputfs-usage 1 5\nO zz 1 0:1",
            "inputfs-usage 1 5\nQ a b",
        ] {
            fs::write(&path, bad).unwrap();
            assert_eq!(Index::load(&path).unwrap(), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".*") {
            let _ = Index::parse(&text);
        }
    }
}
