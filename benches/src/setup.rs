//! The stage every system is measured on: the data (deterministic, with
//! checksums), the origin (the harness's in-process S3 server, uploaded through
//! its API) behind the shaping proxy, a plain local copy of the big object for
//! the local-disk baselines, and the configuration of the run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use inputfs_tests::{S3Server, pattern, sha256_hex};

use crate::direct::Direct;
use crate::shape::{Shaping, ShapingProxy};
use crate::systems::{BIG_KEY, BUCKET, SMALL_BUCKET};

/// Everything the user chose for this run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    pub label: Option<String>,
    pub quick: bool,
    pub size: u64,
    pub small_files: usize,
    pub small_size: u64,
    pub shaping: Shaping,
    pub systems: Vec<String>,
    pub scenarios: Vec<String>,
    pub inputfs_args: Vec<String>,
    /// Readers of the random-read and small-file scenarios.
    pub threads: usize,
    pub random_duration: Duration,
    pub workers: usize,
    /// inputfs's block size and largest readahead window, as the mounts use them
    /// (from `--inputfs-arg` or inputfs's defaults): the direct client uses the
    /// same request size and `max_readahead / block_size` requests in flight.
    pub block_size: u64,
    pub max_readahead: u64,
    /// Keep the work directory (mount logs, caches) after the run.
    pub keep_work: bool,
}

impl Config {
    pub fn has_system(&self, s: &str) -> bool {
        self.systems.iter().any(|x| x == s)
    }
    pub fn has_scenario(&self, s: &str) -> bool {
        self.scenarios.iter().any(|x| x == s)
    }
    pub fn direct_in_flight(&self) -> usize {
        (self.max_readahead / self.block_size.max(1)).max(1) as usize
    }
}

/// The value of an inputfs flag among `args` (`--flag V` or `--flag=V`), if given.
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let eq = format!("{flag}=");
    args.iter().enumerate().rev().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&eq) {
            Some(v.to_string())
        } else if a == flag {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

/// The data, the origin and the proxy.
pub struct Stage {
    pub work: tempfile::TempDir,
    pub big: Vec<u8>,
    pub big_sha: String,
    /// Small files: path relative to the prefix -> (length, SHA-256).
    pub small: BTreeMap<String, (u64, String)>,
    /// The same, keyed by object key (for the direct client).
    pub small_keys: BTreeMap<String, (u64, String)>,
    /// A plain local file with the big object's bytes.
    pub local_file: PathBuf,
    // Drop order: the client and proxy before the server.
    pub direct: Direct,
    /// The same, for the small files' bucket.
    pub direct_small: Direct,
    pub proxy: ShapingProxy,
    pub server: S3Server,
}

impl Stage {
    pub fn build(cfg: &Config) -> Result<Stage> {
        let work = tempfile::Builder::new()
            .prefix("inputfs-bench.")
            .tempdir()
            .context("a work directory")?;
        let mut work = work;
        if cfg.keep_work {
            work.disable_cleanup(true);
            eprintln!(
                "bench: keeping the work directory {}",
                work.path().display()
            );
        }
        let size = usize::try_from(cfg.size).context("--size")?;
        eprintln!(
            "bench: generating {} of data and uploading it...",
            bytesize::ByteSize(cfg.size)
        );
        let big = pattern(1, size);
        let big_sha = sha256_hex(&big);
        let local_file = work.path().join("local-copy.bin");
        std::fs::write(&local_file, &big).context("write the local copy")?;
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        server.put_object(BUCKET, BIG_KEY, &big);
        server.create_bucket(SMALL_BUCKET);
        let mut small = BTreeMap::new();
        let mut small_keys = BTreeMap::new();
        for i in 0..cfg.small_files {
            let data = pattern(1_000_000 + i as u64, cfg.small_size as usize);
            let name = format!("f{i:05}.bin");
            let sum = (data.len() as u64, sha256_hex(&data));
            server.put_object(SMALL_BUCKET, &name, &data);
            small_keys.insert(name.clone(), sum.clone());
            small.insert(name, sum);
        }
        let proxy = ShapingProxy::start(server.addr(), cfg.shaping)?;
        let direct = Direct::new(&proxy.endpoint(), BUCKET)?;
        let direct_small = Direct::new(&proxy.endpoint(), SMALL_BUCKET)?;
        server.reset_counts();
        Ok(Stage {
            work,
            big,
            big_sha,
            small,
            small_keys,
            local_file,
            direct,
            direct_small,
            proxy,
            server,
        })
    }

    /// A fresh, empty directory under the work directory.
    pub fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.path().join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    pub fn size(&self) -> u64 {
        self.big.len() as u64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flag_values_in_both_spellings_last_wins() {
        let args: Vec<String> = [
            "--block-size=8MiB",
            "--max-readahead",
            "32MiB",
            "--block-size=2MiB",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            super::flag_value(&args, "--block-size").as_deref(),
            Some("2MiB")
        );
        assert_eq!(
            super::flag_value(&args, "--max-readahead").as_deref(),
            Some("32MiB")
        );
        assert_eq!(super::flag_value(&args, "--memory-budget"), None);
    }
}
