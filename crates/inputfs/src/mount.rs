//! `inputfs mount`: check the mount point, resolve every input, open the caches,
//! mount, report ready, and serve until unmounted or signalled.
//!
//! Everything that can fail because of what the user asked for happens before the
//! kernel mount, so a bad URL or flag leaves nothing mounted behind.
#![allow(
    clippy::disallowed_methods,
    reason = "the mount point, not a cache directory"
)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use inputfs_core::{Engine, Retries};
use inputfs_fuse::{InputFs, MountOptions, Tree, TreeFile};

use crate::cli::MountArgs;
use crate::daemon::{self, Ready};
use crate::maintain::Maintenance;
use crate::mountpoint::{self, MountPoint};
use crate::{exporter, lock, logging, stack};

/// How long an unmount waits for background cache publishes to finish.
const DRAIN: Duration = Duration::from_secs(30);
/// How long the exit waits for blocking threads (tier calls) still running.
const EXIT_WAIT: Duration = Duration::from_secs(1);

pub fn run(args: MountArgs) -> Result<()> {
    if !args.foreground && !daemon::is_child() {
        // Early, for the error in the user's terminal; the daemon claims it
        // again (and holds it) for the mount itself.
        drop(mountpoint::claim(&args.mountpoint)?);
        let log = args.log_file.clone().unwrap_or_else(|| {
            stack::cache_home()
                .join("logs")
                .join(format!("inputfs-{}.log", std::process::id()))
        });
        return daemon::spawn_and_wait(&log);
    }
    let ready = Ready::take();
    logging::init(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inputfs-io")
        .build()
        .context("cannot start the async runtime")?;
    let Started {
        session,
        point,
        engine,
        upkeep,
        retries,
    } = match start(&args, &runtime) {
        Ok(started) => started,
        Err(e) => {
            if let Some(ready) = ready {
                ready.fail(&crate::one_line(&e));
            }
            return Err(e);
        }
    };
    if let Some(ready) = ready {
        ready.ok();
    }
    serve(session, &point, &runtime);
    if !runtime.block_on(engine.shutdown(DRAIN)) {
        tracing::warn!("unmounted before every cache publish finished");
    }
    engine.report_copies();
    engine.report_origin(retries.count());
    upkeep.stop();
    tracing::info!("unmounted {}", args.mountpoint.display());
    // A tier call stuck in the kernel (a hard-hung network mount) holds its
    // thread until the kernel lets go; the process exits without it.
    runtime.shutdown_timeout(EXIT_WAIT);
    Ok(())
}

/// What a started mount holds until it is unmounted.
struct Started {
    session: fuser::BackgroundSession,
    point: MountPoint,
    engine: Arc<Engine>,
    upkeep: Maintenance,
    /// Origin requests asked again, for the unmount summary.
    retries: Arc<Retries>,
}

/// Resolve, assemble and mount. Nothing is mounted if this fails.
fn start(args: &MountArgs, runtime: &tokio::runtime::Runtime) -> Result<Started> {
    let mut point = mountpoint::claim(&args.mountpoint)?;
    let mountpoint = point.path.clone();
    // Bound first: a taken or bad address fails before anything is resolved.
    let metrics = args
        .metrics_addr
        .as_deref()
        .map(exporter::bind)
        .transpose()?;
    // Before resolving: listing snapshots may be kept there.
    let shared = stack::shared(&args.cache)?;
    let origin = stack::mount_origin(args, shared.as_ref());
    // From --locked, or resolved from the inputs (and recorded by --lock-out).
    let (resolved, cache) = lock::inputs(args, &origin, runtime)?;
    let inputs = resolved.len();
    let stack = stack::engine(&cache, origin, shared)?;
    let engine = stack.engine.clone();
    let tree = Tree::build(
        resolved
            .into_iter()
            .map(|input| {
                let files = input
                    .files
                    .into_iter()
                    .map(|f| TreeFile {
                        path: f.path,
                        object: engine.object(f.object),
                    })
                    .collect();
                (input.name, files)
            })
            .collect(),
    )?;
    let (files, bytes) = (tree.len(), tree.total_bytes());
    if let Some(listener) = metrics {
        let sources = exporter::Sources {
            engine: engine.clone(),
            stores: stack.stores.clone(),
            throttling: stack.throttling.clone(),
            retries: stack.retries.clone(),
        };
        exporter::serve(listener, sources, runtime)?;
    }
    if args.copy_to_local {
        // Before the mount exists, so readiness means "copied and serving".
        crate::warm::copy_to_local(&tree, &engine, cache.no_local_cache, runtime)?;
    }
    let fs = InputFs::new(tree, engine.clone(), runtime.handle().clone());
    let options = MountOptions {
        allow_other: args.allow_other,
        fsname: "inputfs".into(),
        threads: 2,
        passthrough: args.passthrough == crate::cli::Passthrough::Auto,
    };
    let session = inputfs_fuse::mount(fs, &mountpoint, &options).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "/dev/fuse must be readable and writable by this user (mode 0666, as distributions ship it)"
        } else {
            "is /dev/fuse present and fusermount3 installed? scripts/setup installs it"
        };
        anyhow::anyhow!("cannot mount at {}: {e} ({hint})", mountpoint.display())
    })?;
    tracing::info!(
        mountpoint = %mountpoint.display(), inodes = files, bytes,
        "mounted {inputs} inputs"
    );
    point.mounted();
    stack.sweep_in_background();
    let upkeep = stack.maintain(mountpoint.clone());
    Ok(Started {
        session,
        point,
        engine,
        upkeep,
        retries: stack.retries.clone(),
    })
}

/// Serve until the mount is unmounted from outside, or a signal asks us to stop.
fn serve(session: fuser::BackgroundSession, point: &MountPoint, runtime: &tokio::runtime::Runtime) {
    let signalled = runtime.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return true,
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => return true,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if session.guard.is_finished() { return false; }
                }
            }
        }
    });
    if signalled {
        tracing::info!("signal received, unmounting");
    }
    let result = mountpoint::end(session, point, signalled);
    if let Err(e) = result {
        tracing::warn!("FUSE session ended with an error: {e}");
    }
}
