//! A prefix of many objects: how long `inputfs mount` takes until the tree is
//! serving when one input lists, page by page, tens of thousands of objects —
//! and how long walking the mounted tree takes. Reports the origin's own counts
//! of list pages and HEADs (s3s-fs's listings carry no ETags, so inputfs HEADs
//! each listed object to pin it by the same version token as when named alone;
//! listings of real S3, GCS and Azure carry them and need no HEADs).

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use futures::StreamExt;
use inputfs_tests::mounts::{run_inputfs, unmount};
use inputfs_tests::{S3Server, pattern};
use object_store::ObjectStoreExt;

#[derive(Parser)]
struct Args {
    /// Objects under the prefix.
    #[arg(long, default_value_t = 100_000)]
    objects: usize,
}

const BUCKET: &str = "listing";

fn key(i: usize) -> String {
    format!("big/d{:03}/f{i:06}.bin", i / 1000)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    eprintln!("uploading {} objects...", args.objects);
    let client = server.client(BUCKET);
    let rt = tokio::runtime::Runtime::new()?;
    let start = Instant::now();
    rt.block_on(async {
        futures::stream::iter(0..args.objects)
            .map(|i| {
                let client = client.clone();
                async move {
                    let path = object_store::path::Path::from(key(i));
                    client.put(&path, pattern(i as u64, 16).into()).await
                }
            })
            .buffer_unordered(64)
            .for_each(|r| async {
                r.expect("upload");
            })
            .await;
    });
    eprintln!("  ({:.1} s)", start.elapsed().as_secs_f64());
    server.reset_counts();
    let tmp = tempfile::tempdir()?;
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt)?;
    let start = Instant::now();
    let out = run_inputfs(
        &[
            "mount".into(),
            mnt.display().to_string(),
            format!("--input=big=s3://{BUCKET}/big/"),
            format!("--cache-dir={}", tmp.path().join("cache").display()),
            format!("--log-file={}", tmp.path().join("log").display()),
        ],
        &server.env(),
    );
    let mount_time = start.elapsed();
    if !out.status.success() {
        bail!("mount failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (lists, heads) = (server.list_requests(), server.head_requests());
    let start = Instant::now();
    let files = walkdir_count(&mnt.join("big"));
    let walk_time = start.elapsed();
    // Spot-check bytes of a few files.
    for i in [0, args.objects / 2, args.objects - 1] {
        let got = std::fs::read(mnt.join("big").join(key(i).trim_start_matches("big/")))?;
        if got != pattern(i as u64, 16) {
            bail!("wrong bytes in {}", key(i));
        }
    }
    unmount(&mnt.canonicalize()?);
    if files != args.objects {
        bail!(
            "the mount shows {files} files, {} were uploaded",
            args.objects
        );
    }
    println!("\n| objects | list pages | HEADs | mount until serving | walk of the mounted tree |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {lists} | {heads} | {:.1} s | {:.1} s ({:.0} entries/s) |",
        args.objects,
        mount_time.as_secs_f64(),
        walk_time.as_secs_f64(),
        files as f64 / walk_time.as_secs_f64()
    );
    Ok(())
}

fn walkdir_count(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}
