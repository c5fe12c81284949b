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
use std::io::{self, Read, Seek, SeekFrom, Write};

use inputfs_core::CacheKey;
use nix::sys::stat::FileStat;

use super::journal::{self, Record, parse_key, unix_ms};
use crate::beneath::{Beneath, Found, Kind, Rel};
use crate::fsutil::{self, FILE_MODE};

/// The largest snapshot read (about five million objects): a larger file in
/// `index/` is not ours and counts as no snapshot.
const SNAPSHOT_MAX: u64 = 512 << 20;
/// The most read of one journal file in one ingest (journals rotate at
/// 4 MiB; a larger one is foreign, and its tail is left for later).
const JOURNAL_READ_MAX: u64 = 64 << 20;

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
    pub fn load_latest(at: &Beneath, index_dir: &Rel) -> io::Result<Option<Index>> {
        match newest(at, index_dir) {
            Some(rel) => Self::load(at, &rel),
            None => Ok(None),
        }
    }

    /// Write a new snapshot into `index_dir` (through `tmp_dir`) and remove the
    /// older ones.
    pub fn save_new(&self, at: &Beneath, index_dir: &Rel, tmp_dir: &Rel) -> io::Result<()> {
        let name = format!("usage.{:013}.{:016x}", unix_ms(), fsutil::random_u64());
        self.save(at, &index_dir.trusted_join(&name), tmp_dir)?;
        for (other, _) in at.entries(Some(index_dir))? {
            let other = other.to_string_lossy().into_owned();
            if other.starts_with("usage.") && other < name {
                let _ = index_dir.join(&other).map(|rel| at.remove_tree(&rel));
            }
        }
        Ok(())
    }

    /// Load the snapshot at `rel`: `Ok(None)` if there is none or it is
    /// unusable (not a regular file, too large, malformed).
    pub fn load(at: &Beneath, rel: &Rel) -> io::Result<Option<Index>> {
        match at.read_small(rel, SNAPSHOT_MAX) {
            Ok(Some(bytes)) => Ok(std::str::from_utf8(&bytes).ok().and_then(Self::parse)),
            Ok(None) => Ok(None),
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

    /// Write the snapshot to `rel` atomically (temp file in `tmp_dir`, rename).
    fn save(&self, at: &Beneath, rel: &Rel, tmp_dir: &Rel) -> io::Result<()> {
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
        let tmp = tmp_dir.trusted_join(&format!("{}.usage", fsutil::unique_stem()));
        let result = at
            .create_new(&tmp, FILE_MODE)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| at.rename(&tmp, rel));
        if result.is_err() {
            let _ = at.unlink(&tmp);
        }
        result
    }

    /// Apply one journal record. `on_disk(key, index)` says whether a block
    /// file is there now: asked only of a placement recorded before its
    /// object's eviction, which landed either in the directory the eviction
    /// moved away (gone with it) or in one made again after it (there). The
    /// times alone cannot tell: the eviction's time is taken after its
    /// rename, and a placement may start in between.
    fn apply(&mut self, record: Record, on_disk: &dyn Fn(&CacheKey, u64) -> bool) {
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
                if self.evicted.get(&key).is_some_and(|&evicted| at < evicted)
                    && !on_disk(&key, index)
                {
                    return;
                }
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
    /// records were applied. Journal files that vanished are forgotten;
    /// anything in `journal/` but a regular file is skipped.
    pub fn ingest(
        &mut self,
        at: &Beneath,
        journal_dir: &Rel,
        on_disk: &dyn Fn(&CacheKey, u64) -> bool,
    ) -> usize {
        let Ok(entries) = at.entries(Some(journal_dir)) else {
            return 0;
        };
        let mut applied = 0;
        let mut present = BTreeMap::new();
        for (name, _) in entries {
            let name = name.to_string_lossy().into_owned();
            let from = self.consumed.get(&name).copied().unwrap_or(0);
            let tail = journal_dir
                .join(&name)
                .and_then(|rel| read_from(at, &rel, from));
            let Ok(Some(tail)) = tail else {
                present.insert(name, from);
                continue;
            };
            // Only whole lines: a writer may be half way through one.
            let complete = tail.rfind('\n').map_or(0, |i| i + 1);
            for line in tail[..complete].lines() {
                if let Some(record) = journal::parse(line) {
                    self.apply(record, on_disk);
                    applied += 1;
                }
            }
            present.insert(name, from + complete as u64);
        }
        self.consumed = present;
        applied
    }

    /// Build the index from the block files themselves. Costs a directory listing
    /// per object and a `stat` per block file (from the listing, never
    /// following a link: only regular files count).
    pub fn rescan(at: &Beneath, objects_dir: &Rel) -> Index {
        let mut index = Index {
            rescanned_at: unix_ms(),
            ..Index::default()
        };
        let dirs = |rel: &Rel| {
            at.entries(Some(rel))
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, stat)| Kind::of(stat) == Kind::Dir)
                .filter_map(|(name, stat)| Some((rel.join(&name).ok()?, name, stat)))
                .collect::<Vec<_>>()
        };
        for (fan, _, _) in dirs(objects_dir) {
            for (obj_dir, name, stat) in dirs(&fan) {
                let Some(key) = parse_key(&name.to_string_lossy()) else {
                    continue;
                };
                let mut obj = ObjectUsage {
                    last_access: mtime_ms(&stat),
                    ..ObjectUsage::default()
                };
                for (file, stat) in at.entries(Some(&obj_dir)).unwrap_or_default() {
                    if Kind::of(&stat) != Kind::File {
                        continue;
                    }
                    let len = u64::try_from(stat.st_size).unwrap_or(0);
                    if file == crate::plain::PLAIN_NAME {
                        // An object held whole: its bytes, under an index no block has.
                        obj.blocks.insert(u64::MAX, len);
                        continue;
                    }
                    let Some(hex) = file
                        .to_string_lossy()
                        .strip_suffix(".blk")
                        .map(str::to_owned)
                    else {
                        continue;
                    };
                    if let Ok(i) = u64::from_str_radix(&hex, 16) {
                        obj.blocks.insert(i, len);
                    }
                }
                index.objects.insert(key, obj);
            }
        }
        index
    }
}

/// The newest snapshot file of `index_dir` (names sort by time).
fn newest(at: &Beneath, index_dir: &Rel) -> Option<Rel> {
    at.entries(Some(index_dir))
        .ok()?
        .into_iter()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .filter(|n| n.starts_with("usage."))
        .max()
        .and_then(|n| index_dir.join(n).ok())
}

/// The regular file `rel` from `offset` on, at most [`JOURNAL_READ_MAX`]
/// bytes; `None` if it is not a regular file.
fn read_from(at: &Beneath, rel: &Rel, offset: u64) -> io::Result<Option<String>> {
    let Found::File(mut f, _) = at.open_file(rel)? else {
        return Ok(None);
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    f.take(JOURNAL_READ_MAX).read_to_end(&mut bytes)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn mtime_ms(stat: &FileStat) -> u64 {
    u64::try_from(stat.st_mtime).unwrap_or(0) * 1000
        + u64::try_from(stat.st_mtime_nsec).unwrap_or(0) / 1_000_000
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests plant and inspect cache entries by path on purpose"
)]
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

    /// A placement recorded before its object's eviction is counted only if
    /// its block is on disk (it went with the directory the eviction moved
    /// away, or landed in one made again); one after it is counted without
    /// a look. Folding journals after a sweep evicted is the normal order:
    /// workers write their journals every few seconds.
    #[test]
    fn placements_from_before_an_eviction_count_only_if_on_disk() {
        let mut index = sample();
        let key = CacheKey([7; 32]);
        index.evict(&key);
        let evicted = index.evicted[&key];
        let placed = |at| Record::Placed {
            key,
            index: 3,
            bytes: 4168,
            at,
        };
        let gone = |_: &CacheKey, _: u64| false;
        let there = |_: &CacheKey, _: u64| true;
        index.apply(placed(evicted - 1), &gone);
        assert!(
            !index.objects.contains_key(&key),
            "counted a block evicted with its directory"
        );
        index.apply(placed(evicted - 1), &there);
        assert_eq!(
            index.objects[&key].bytes(),
            4168,
            "a block made again after"
        );
        index.evict(&key);
        let evicted = index.evicted[&key];
        index.apply(placed(evicted), &gone);
        assert_eq!(
            index.objects[&key].bytes(),
            4168,
            "placed after the eviction"
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let at = Beneath::open(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let path = Rel::new("usage").unwrap();
        sample()
            .save(&at, &path, &Rel::new("tmp").unwrap())
            .unwrap();
        assert_eq!(Index::load(&at, &path).unwrap(), Some(sample()));
        assert_eq!(sample().bytes(), 4268);
        assert_eq!(sample().blocks(), 2);
    }

    #[test]
    fn unusable_snapshots_load_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let at = Beneath::open(dir.path()).unwrap();
        let rel = Rel::new("usage").unwrap();
        let path = dir.path().join("usage");
        assert_eq!(Index::load(&at, &rel).unwrap(), None);
        for bad in [
            "",
            "garbage",
            "inputfs-usage 1 x",
            "inputfs-usage 1 5\nO zz 1 0:1",
            "inputfs-usage 1 5\nQ a b",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert_eq!(Index::load(&at, &rel).unwrap(), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".*") {
            let _ = Index::parse(&text);
        }
    }
}
