//! The ML-readers group (`ml`, issue 13): real libraries reading through each
//! system, cold, on the same shaped origin.
//!
//! `benches/ml/mlreaders.py` writes the data with the libraries themselves
//! (a 256 MiB Parquet file of 8 row groups, a 256 MiB safetensors file of 64
//! tensors, a 256 MiB chunked HDF5 dataset, 8 WebDataset tar shards, 10,000
//! small files), says what each sparse reader needs from the file's own
//! layout (rounded out to inputfs's blocks), and runs each reader, timing the
//! first batch and the whole, checking every result against what it wrote:
//!
//! | reader | what it does |
//! |---|---|
//! | `parquet` | `pq.read_table(columns=["c3"])`, 8 threads (after the first row group alone) |
//! | `safetensors` | `safe_open(framework="np")` (mmap), 2 of 64 tensors |
//! | `hdf5` | h5py, 100 rows of the chunked dataset |
//! | `tar` | 4 threads streaming the shards (`tarfile` `r|`) in a shuffled order |
//! | `small` | 8 threads reading every small file in a shuffled order |
//!
//! Rows per reader: origin bytes over what the reader needs (the blocks it
//! touches for the sparse readers, the files' bytes for the others: the
//! baseline is 1.00), time to first batch and total time against the same
//! reader on the local copy the generator wrote (its pages evicted first);
//! for the tar shards and the small files also the total time against direct
//! GETs of the same files with the same parallelism.
//!
//! Each group of files sits at the root of a bucket of its own (s3fs probes
//! "directory" keys, which the harness's S3 server answers with 500); the
//! readers find them through a directory of symbolic links where a system
//! shows a bucket rather than named inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::Bench;
use crate::direct::Direct;
use crate::measure::evict;
use crate::report::{Better, Cell, Row, Target};
use crate::systems::{self, Mounted};

/// (reader, the bucket its files are in, the directory the reader expects them in)
const READERS: [(&str, &str, Option<&str>); 5] = [
    ("parquet", "bench-ml", None),
    ("safetensors", "bench-ml", None),
    ("hdf5", "bench-ml", None),
    ("tar", "bench-ml-shards", Some("shards")),
    ("small", "bench-ml-small", Some("small")),
];

/// Threads of the whole-file readers (as `mlreaders.py` runs them).
fn threads(reader: &str) -> usize {
    if reader == "tar" { 4 } else { 8 }
}

/// A reader's result, and for a mounted system the origin bytes it cost and
/// the daemon's peak RSS.
type Run = (Value, Option<(u64, Option<u64>)>);

/// The generated data, uploaded.
pub(super) struct MlData {
    dir: PathBuf,
    manifest: PathBuf,
    needed: Value,
    /// Per bucket: key -> (length, SHA-256).
    objects: BTreeMap<&'static str, BTreeMap<String, (u64, String)>>,
}

fn python() -> Result<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ml-venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: run scripts/setup (it installs pyarrow, safetensors, h5py and numpy there)",
            python.display()
        );
    }
    Ok(python)
}

/// Run `mlreaders.py ARGS` and return its JSON output.
fn mlreaders(args: &[&str]) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ml/mlreaders.py");
    let out = Command::new(python()?)
        .arg(&script)
        .args(args)
        .output()
        .context("run mlreaders.py")?;
    if !out.status.success() {
        bail!(
            "mlreaders.py {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("mlreaders.py printed no JSON")
}

impl Bench<'_> {
    /// Generate, upload and measure every reader on every selected system.
    pub(super) fn ml(&mut self) -> Result<()> {
        let data = self.ml_data()?;
        for (reader, bucket, subdir) in READERS {
            eprintln!("bench: ml {reader}");
            // Sparse readers need the blocks they touch; the others every byte.
            let needed = match subdir {
                None => data.needed[reader]["bytes"]
                    .as_u64()
                    .with_context(|| format!("needed bytes of {reader}"))?,
                Some(_) => data.objects[bucket].values().map(|(n, _)| n).sum(),
            };
            let mut runs = BTreeMap::new();
            let local = data.dir.clone();
            evict(&[&local]);
            runs.insert("baseline", (self.ml_run(&data, reader, &local)?, None));
            if self.cfg.has_system("inputfs") {
                runs.insert("inputfs", self.ml_inputfs(&data, reader, bucket, subdir)?);
            }
            for peer in self.peers() {
                let run = self.ml_peer(&data, peer, reader, bucket, subdir)?;
                runs.insert(peer, run);
            }
            let direct = match subdir {
                Some(_) if self.cfg.has_system("direct") => {
                    Some(self.ml_direct(&data, reader, bucket)?)
                }
                _ => None,
            };
            self.ml_rows(reader, subdir.is_none(), needed, &runs, direct);
        }
        Ok(())
    }

    fn ml_data(&self) -> Result<MlData> {
        let dir = self.st.dir("ml-data");
        let dir_arg = dir.to_str().context("work directory path")?;
        let whole = if self.cfg.quick { "0.1" } else { "1.0" };
        eprintln!("bench: generating the ML readers' data (mlreaders.py generate)...");
        mlreaders(&["generate", dir_arg, "--whole-scale", whole])?;
        let manifest = self.st.dir("ml-manifest.json");
        std::fs::rename(dir.join("manifest.json"), &manifest)?;
        let block = self.cfg.block_size.to_string();
        let needed = mlreaders(&["needed", dir_arg, "--block-size", &block])?;
        let listed: Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
        let mut objects: BTreeMap<&'static str, BTreeMap<String, (u64, String)>> = BTreeMap::new();
        for (_, bucket, _) in READERS {
            if !objects.contains_key(bucket) {
                self.st.server.create_bucket(bucket);
                objects.insert(bucket, BTreeMap::new());
            }
        }
        for f in listed["files"].as_array().context("manifest files")? {
            let path = f["path"].as_str().context("manifest path")?;
            let (bucket, key) = match path.split_once('/') {
                Some(("shards", key)) => ("bench-ml-shards", key),
                Some(("small", key)) => ("bench-ml-small", key),
                _ => ("bench-ml", path),
            };
            let bytes = std::fs::read(dir.join(path))?;
            self.st.server.put_object(bucket, key, &bytes);
            let sum = (
                bytes.len() as u64,
                f["sha256"].as_str().unwrap_or("").to_string(),
            );
            objects
                .entry(bucket)
                .or_default()
                .insert(key.to_string(), sum);
        }
        Ok(MlData {
            dir,
            manifest,
            needed,
            objects,
        })
    }

    /// Run `reader` on the files under `root`; its JSON result.
    fn ml_run(&self, data: &MlData, reader: &str, root: &Path) -> Result<Value> {
        let root = root.to_str().context("root path")?;
        let manifest = data.manifest.to_str().context("manifest path")?;
        mlreaders(&["run", reader, root, "--manifest", manifest])
    }

    /// A cold inputfs mount with a fresh local cache: the reader's result and
    /// the origin bytes it cost.
    fn ml_inputfs(
        &self,
        data: &MlData,
        reader: &str,
        bucket: &str,
        subdir: Option<&str>,
    ) -> Result<Run> {
        let name = subdir.unwrap_or("d");
        let cache = self.st.fresh_dir(&format!("ml-inputfs-{reader}-cache"))?;
        let mut args = vec![format!("--cache-dir={}", cache.display())];
        args.extend(self.cfg.inputfs_args.iter().cloned());
        let env = inputfs_tests::s3::aws_env(
            &self.st.proxy.endpoint(),
            inputfs_tests::s3::ACCESS_KEY,
            inputfs_tests::s3::SECRET_KEY,
            inputfs_tests::s3::REGION,
        );
        let input = format!("--input={name}=s3://{bucket}/");
        let m = systems::mount_inputfs_with(
            &self.st.dir(&format!("mnt-ml-{reader}")),
            &[input],
            env,
            &args,
        )?;
        let root = match (&m, subdir) {
            (Mounted::Inputfs(mount), Some(_)) => mount.mountpoint.clone(),
            (Mounted::Inputfs(mount), None) => mount.path(name),
            (Mounted::Peer(p), _) => p.mountpoint.clone(),
        };
        self.st.server.reset_counts();
        let result = self.ml_run(data, reader, &root);
        let origin = (self.st.server.get_bytes(), m.peak_rss());
        m.stop();
        Ok((result?, Some(origin)))
    }

    /// The same with a peer mounting the bucket, seen through a directory of
    /// links where the reader expects a subdirectory.
    fn ml_peer(
        &self,
        data: &MlData,
        peer: &str,
        reader: &str,
        bucket: &str,
        subdir: Option<&str>,
    ) -> Result<Run> {
        let cache = self.st.fresh_dir(&format!("ml-{peer}-{reader}-cache"))?;
        let m = self.peer_of(peer, &format!("mnt-ml-{peer}-{reader}"), bucket, &cache)?;
        let Mounted::Peer(mount) = &m else {
            bail!("{peer} is not a peer mount");
        };
        let root = match subdir {
            None => mount.mountpoint.clone(),
            Some(sub) => {
                let view = self.st.fresh_dir(&format!("ml-{peer}-{reader}-view"))?;
                std::os::unix::fs::symlink(&mount.mountpoint, view.join(sub))?;
                view
            }
        };
        self.st.server.reset_counts();
        let result = self.ml_run(data, reader, &root);
        let origin = (self.st.server.get_bytes(), m.peak_rss());
        drop(m);
        Ok((result.with_context(|| peer.to_string())?, Some(origin)))
    }

    /// Direct GETs of every file of a whole-file reader, as many at a time
    /// as its threads, each checked.
    fn ml_direct(&self, data: &MlData, reader: &str, bucket: &str) -> Result<Duration> {
        let direct = Direct::new(&self.st.proxy.endpoint(), bucket)?;
        direct.read_all(&data.objects[bucket], threads(reader))
    }

    fn ml_rows(
        &mut self,
        reader: &'static str,
        sparse: bool,
        needed: u64,
        runs: &BTreeMap<&str, Run>,
        direct: Option<Duration>,
    ) {
        let mut origin = Row::new(
            "ml",
            format!("ml {reader}: origin bytes / needed"),
            "x",
            Better::Lower,
            if sparse {
                "the bytes of the blocks the reader needs, from the file's layout (1.00)"
            } else {
                "the files' bytes (1.00)"
            },
            Some(Target::ValueAtMost(if sparse { 1.3 } else { 1.0 })),
        );
        origin.cells.insert(
            "baseline".into(),
            Cell {
                value: 1.0,
                peak_rss: None,
                raw: json!({ "needed_bytes": needed }),
            },
        );
        let mut first = Row::new(
            "ml",
            format!("ml {reader}: time to first batch"),
            "s",
            Better::Lower,
            "the same reader on a local copy of the files (pages evicted)",
            None,
        );
        let mut total = Row::new(
            "ml",
            format!("ml {reader}: total time"),
            "s",
            Better::Lower,
            "the same reader on a local copy of the files (pages evicted)",
            None,
        );
        for (system, (result, cost)) in runs {
            let rss = cost.and_then(|(_, rss)| rss);
            let secs = |k: &str| result[k].as_f64().unwrap_or(f64::NAN);
            first.cells.insert(
                system.to_string(),
                Cell {
                    value: secs("first_s"),
                    peak_rss: rss,
                    raw: result.clone(),
                },
            );
            total.cells.insert(
                system.to_string(),
                Cell {
                    value: secs("total_s"),
                    peak_rss: rss,
                    raw: result.clone(),
                },
            );
            if let Some((bytes, _)) = cost {
                origin.cells.insert(
                    system.to_string(),
                    Cell {
                        value: *bytes as f64 / needed as f64,
                        peak_rss: rss,
                        raw: json!({ "origin_bytes": bytes, "needed_bytes": needed }),
                    },
                );
            }
        }
        self.add(origin);
        self.add(first);
        self.add(total.clone());
        if let Some(d) = direct {
            let mut vs_direct = total;
            vs_direct.title = format!("ml {reader}: total time vs direct GETs");
            vs_direct.baseline = "direct GETs of the same files, as many at a time as the reader's threads, each checked";
            vs_direct.cells.insert(
                "baseline".into(),
                Cell {
                    value: d.as_secs_f64(),
                    peak_rss: None,
                    raw: json!({ "secs": d.as_secs_f64(), "in_flight": threads(reader) }),
                },
            );
            self.add(vs_direct);
        }
    }
}
