//! Real ML readers through a mount, cold, over the S3 origin: pyarrow reading
//! one column of a Parquet file, safetensors loading 2 of 64 tensors (mmap),
//! h5py reading 100 rows of a chunked dataset, WebDataset-style tar shards
//! streamed by 4 threads, and 1,000 small files read by 8 threads in a
//! shuffled order. The data is written by the libraries themselves
//! (`benches/ml/mlreaders.py generate`), every result is checked against what
//! the generator wrote, and the origin's own count of the bytes it served is
//! compared with what the readers need, computed from each file's layout
//! (`mlreaders.py needed`: the Parquet footer and the column's chunks, the
//! safetensors header and the two tensors' `data_offsets`, the HDF5 metadata
//! and the chunks the slice covers, each rounded out to 4 MiB blocks).
//!
//! The bound checked is the design's (issue 13): a sparse reader pulls at most
//! 1.3x the blocks it needs (a stream shorter than two blocks reads nothing
//! ahead; the kernel's own readahead is counted too), with one worker and
//! with four sharing one cache; whole-file readers pull each byte once.
//!
//! The libraries come from the package registry into `target/ml-venv`
//! (`scripts/setup`); without them the test fails, saying so.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make and read files by path on purpose"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use inputfs_tests::S3Server;
use inputfs_tests::mounts::Mount;

const BUCKET: &str = "ml-readers";
const BLOCK: u64 = 4 << 20;
/// Origin bytes over the bytes of the blocks a sparse reader needs.
const SPARSE_BOUND: f64 = 1.3;
const SPARSE: [&str; 3] = ["parquet", "safetensors", "hdf5"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let python = target.join("ml-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it installs pyarrow, safetensors, h5py and numpy there)",
        python.display()
    );
    python
}

/// Run `mlreaders.py ARGS`, returning its JSON output; fail with its stderr.
fn mlreaders(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(root().join("benches/ml/mlreaders.py"))
        .args(args)
        .output()
        .expect("run mlreaders.py");
    assert!(
        out.status.success(),
        "mlreaders.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("mlreaders.py printed JSON")
}

/// The generated data, uploaded, with what each sparse reader needs.
struct Data {
    _dir: tempfile::TempDir,
    manifest: String,
    needed: serde_json::Value,
    /// Bytes of every file under `prefix/`.
    sizes: Vec<(String, u64)>,
    server: S3Server,
}

fn data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("data");
    let gen_arg = gen_dir.to_str().unwrap();
    // The sparse readers' files at full size (256 MiB each: their layouts are
    // the issue's); the whole-file readers' at 1/20 (their check is every
    // byte once, at any size: 8 shards of 1.7 MB, 1,000 small files).
    mlreaders(&["generate", gen_arg, "--whole-scale", "0.05"]);
    let needed = mlreaders(&["needed", gen_arg, "--block-size", &BLOCK.to_string()]);
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let mut sizes = vec![];
    let mut stack = vec![gen_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&gen_dir).unwrap().to_str().unwrap();
            if rel == "manifest.json" {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            server.put_object(BUCKET, &format!("data/{rel}"), &bytes);
            sizes.push((rel.to_string(), bytes.len() as u64));
        }
    }
    // The manifest stays outside the mount: the checks do not read through it.
    let manifest = dir.path().join("manifest.json");
    std::fs::rename(gen_dir.join("manifest.json"), &manifest).unwrap();
    Data {
        manifest: manifest.to_str().unwrap().to_string(),
        needed,
        sizes,
        _dir: dir,
        server,
    }
}

impl Data {
    fn needed_bytes(&self, scenario: &str) -> u64 {
        self.needed[scenario]["bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("no needed bytes for {scenario}: {}", self.needed))
    }

    fn bytes_under(&self, prefix: &str) -> u64 {
        self.sizes
            .iter()
            .filter(|(rel, _)| rel.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// A worker: its own local cache, and the shared one if given.
    fn mount(&self, work: &Path, name: &str, shared: Option<&Path>) -> Mount {
        let mut args = vec![
            format!("--input=d=s3://{BUCKET}/data/"),
            format!(
                "--cache-dir={}",
                work.join(format!("{name}-cache")).display()
            ),
            "--passthrough=off".to_string(),
        ];
        if let Some(shared) = shared {
            args.push(format!("--shared-cache={}", shared.display()));
        }
        Mount::start(&work.join(name), &args, &self.server.env())
            .unwrap_or_else(|e| panic!("mount {name}: {e}"))
    }

    /// Run one reader under `mount` (it checks every result itself).
    fn run(&self, mount: &Mount, scenario: &str) {
        let root = mount.path("d");
        mlreaders(&[
            "run",
            scenario,
            root.to_str().unwrap(),
            "--manifest",
            &self.manifest,
        ]);
    }

    fn assert_sparse_bound(&self, scenario: &str, origin: u64, who: &str) {
        let needed = self.needed_bytes(scenario);
        let ratio = origin as f64 / needed as f64;
        assert!(
            ratio <= SPARSE_BOUND,
            "{scenario}, {who}: the origin served {origin} bytes for {needed} bytes of needed blocks ({ratio:.2}x, bound {SPARSE_BOUND}x); needed ranges {}",
            self.needed[scenario]["ranges"]
        );
    }
}

#[test]
fn one_worker_reads_every_reader_right_and_pulls_what_it_needs() {
    let d = data();
    let work = tempfile::tempdir().unwrap();
    for (i, scenario) in SPARSE.iter().enumerate() {
        // A fresh worker each time: cold caches, cold page cache.
        d.server.reset_counts();
        let mount = d.mount(work.path(), &format!("w{i}"), None);
        d.run(&mount, scenario);
        let log = mount.stop();
        assert!(!log.contains("panicked"), "{log}");
        d.assert_sparse_bound(scenario, d.server.get_bytes(), "one worker");
    }
    // Whole-file readers: every byte once.
    for (scenario, prefix) in [("tar", "shards/"), ("small", "small/")] {
        d.server.reset_counts();
        let mount = d.mount(work.path(), &format!("w-{scenario}"), None);
        d.run(&mount, scenario);
        mount.stop();
        assert_eq!(
            d.server.get_bytes(),
            d.bytes_under(prefix),
            "{scenario}: origin bytes != the files' bytes"
        );
    }
}

#[test]
fn four_workers_on_one_shared_cache_pull_what_the_readers_need_once() {
    let d = data();
    let work = tempfile::tempdir().unwrap();
    let shared = work.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let mounts: Vec<Mount> = (0..4)
        .map(|w| d.mount(work.path(), &format!("w{w}"), Some(&shared)))
        .collect();
    for scenario in SPARSE {
        d.server.reset_counts();
        std::thread::scope(|s| {
            for m in &mounts {
                s.spawn(|| d.run(m, scenario));
            }
        });
        d.assert_sparse_bound(scenario, d.server.get_bytes(), "4 workers");
    }
    d.server.reset_counts();
    std::thread::scope(|s| {
        for m in &mounts {
            s.spawn(|| d.run(m, "tar"));
        }
    });
    let shards = d.bytes_under("shards/");
    let origin = d.server.get_bytes();
    let logs: Vec<String> = mounts.into_iter().map(Mount::stop).collect();
    // A block fetched twice is one a worker found already published when it
    // published its own copy (a claim lost to a tier error): counted.
    let found: u64 = logs
        .iter()
        .map(|log| inputfs_tests::tier_copies(log, "shared", "found already there"))
        .sum();
    assert!(
        origin >= shards && origin <= shards + found * BLOCK,
        "tar shards, 4 workers: the origin served {origin} bytes for {shards} bytes of shards ({found} blocks found already there)"
    );
}
