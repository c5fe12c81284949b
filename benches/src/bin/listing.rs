//! A prefix of many objects: how long `inputfs mount` takes until the tree is
//! serving when one input lists, page by page, tens of thousands of objects —
//! and how long walking the mounted tree takes. Two origins: S3 (s3s, which
//! counts list pages and HEADs)
//! and Azure (azurite, whose listings carry ETags, as real S3, GCS and Azure
//! listings do: no HEADs). The S3 test server fills in ETags in its listings as
//! S3 does, but its listing walks the whole bucket for every page (quadratic),
//! so the table separates the time the server spent answering lists from
//! inputfs's own.
#![allow(
    clippy::disallowed_methods,
    reason = "the benchmarks' own data, logs and result files, not a cache directory read by the product"
)]

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
    /// Which origins: s3, azure, or both.
    #[arg(long, default_value = "both")]
    store: String,
}

const BUCKET: &str = "listing";

fn key(i: usize) -> String {
    format!("big/d{:03}/f{i:06}.bin", i / 1000)
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "\n| origin | objects | list pages | HEADs | mount until serving | walk of the mounted tree |"
    );
    println!("|---|---|---|---|---|---|");
    if args.store != "azure" {
        s3(&args)?;
    }
    if args.store != "s3" {
        azure(&args)?;
    }
    Ok(())
}

/// Upload `n` tiny objects with `put`, 64 at a time.
fn upload<S: object_store::ObjectStore + Clone>(store: &S, n: usize) -> Result<()> {
    eprintln!("uploading {n} objects...");
    let rt = tokio::runtime::Runtime::new()?;
    let start = Instant::now();
    rt.block_on(async {
        futures::stream::iter(0..n)
            .map(|i| {
                let store = store.clone();
                async move {
                    let path = object_store::path::Path::from(key(i));
                    store.put(&path, pattern(i as u64, 16).into()).await
                }
            })
            .buffer_unordered(64)
            .for_each(|r| async {
                r.expect("upload");
            })
            .await;
    });
    eprintln!("  ({:.1} s)", start.elapsed().as_secs_f64());
    Ok(())
}

fn azure(args: &Args) -> Result<()> {
    let server = inputfs_tests::azurite::AzuriteServer::start();
    server.create_container(BUCKET);
    upload(&server.store(BUCKET), args.objects)?;
    let (mount_time, walk_time) =
        mount_and_walk(args, &format!("az://{BUCKET}/big/"), &server.env())?;
    println!(
        "| azure (azurite) | {} | - | - | {:.1} s | {:.1} s |",
        args.objects,
        mount_time.as_secs_f64(),
        walk_time.as_secs_f64()
    );
    Ok(())
}

fn s3(args: &Args) -> Result<()> {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    upload(&server.client(BUCKET), args.objects)?;
    server.reset_counts();
    let (mount_time, walk_time) =
        mount_and_walk(args, &format!("s3://{BUCKET}/big/"), &server.env())?;
    let server_time = server.list_time();
    println!(
        "| s3 (s3s) | {} | {} | {} | {:.1} s, of which {:.1} s the server answering lists: inputfs {:.1} s | {:.1} s |",
        args.objects,
        server.list_requests(),
        server.head_requests(),
        mount_time.as_secs_f64(),
        server_time.as_secs_f64(),
        mount_time.saturating_sub(server_time).as_secs_f64(),
        walk_time.as_secs_f64()
    );
    Ok(())
}

/// Mount `url` as input `big`, time it until serving, walk the tree, check a few
/// files' bytes, unmount.
fn mount_and_walk(
    args: &Args,
    url: &str,
    env: &[(String, String)],
) -> Result<(std::time::Duration, std::time::Duration)> {
    let tmp = tempfile::tempdir()?;
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt)?;
    let start = Instant::now();
    let out = run_inputfs(
        &[
            "mount".into(),
            mnt.display().to_string(),
            format!("--input=big={url}"),
            format!("--cache-dir={}", tmp.path().join("cache").display()),
            format!("--log-file={}", tmp.path().join("log").display()),
        ],
        env,
    );
    let mount_time = start.elapsed();
    if !out.status.success() {
        bail!(
            "mount of {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let start = Instant::now();
    let files = walkdir_count(&mnt.join("big"));
    let walk_time = start.elapsed();
    let checked = [0, args.objects / 2, args.objects - 1]
        .into_iter()
        .try_for_each(|i| {
            let got = std::fs::read(mnt.join("big").join(key(i).trim_start_matches("big/")))?;
            if got != pattern(i as u64, 16) {
                bail!("wrong bytes in {}", key(i));
            }
            Ok(())
        });
    unmount(&mnt.canonicalize()?);
    checked?;
    if files != args.objects {
        bail!(
            "the mount shows {files} files, {} were uploaded",
            args.objects
        );
    }
    Ok((mount_time, walk_time))
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
