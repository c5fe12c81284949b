//! Filling caches ahead of a job: the `inputfs warm` command, and the copy that
//! `mount --copy-to-local` makes before the mount serves. Both resolve the same
//! inputs as a mount and hand every object to [`Engine::warm_all`], which loads
//! blocks through the normal read path and waits until they are stored; this
//! module only picks the target tiers, shows progress and reports the summary.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytesize::ByteSize;
use inputfs_core::Engine;
use inputfs_core::engine::{Object, WarmSummary, WarmTarget};
use inputfs_fuse::{NodeKind, Tree};

use crate::cli::WarmArgs;
use crate::progress::Progress;
use crate::{inputs, logging, stack};

/// How long the end of a warm waits for background publishes into tiers it did
/// not target (a read's copies), so it leaves nothing half done.
const DRAIN: Duration = Duration::from_secs(30);

/// Make every block of `objects` present in the tiers of `to`, showing progress
/// as `what`. Fails on the first object that cannot be fetched or stored.
pub fn fill(
    engine: &Arc<Engine>,
    objects: &[Arc<Object>],
    to: WarmTarget,
    what: &'static str,
    runtime: &tokio::runtime::Runtime,
) -> Result<WarmSummary> {
    let total = objects.iter().map(|o| o.id.size).sum();
    let progress = Progress::start(what, objects.len(), total);
    let done = AtomicU64::new(0);
    let result = runtime.block_on(engine.warm_all(objects, to, |bytes| {
        done.store(bytes, Ordering::Relaxed);
        progress.set(bytes);
    }));
    progress.finish(done.load(Ordering::Relaxed));
    result.map_err(|e| anyhow!("{what}: {e}"))
}

/// One line saying what a warm did.
pub fn describe(s: &WarmSummary) -> String {
    let secs = s.elapsed.as_secs_f64();
    let rate = (s.bytes as f64 / secs.max(1e-3)) as u64;
    let mut tiers: Vec<String> = s
        .present_bytes
        .iter()
        .map(|(t, b)| format!("{t}: {}", ByteSize(*b)))
        .collect();
    tiers.extend(
        s.copied_bytes
            .iter()
            .map(|(t, b)| format!("copied from {t}: {}", ByteSize(*b))),
    );
    let by_tier = if tiers.is_empty() {
        String::new()
    } else {
        format!(" ({})", tiers.join(", "))
    };
    let everything = if s.origin_bytes == 0 && s.bytes > 0 {
        "; everything was already cached"
    } else {
        ""
    };
    format!(
        "{} files, {} in {secs:.1} s ({}/s): {} from the origin, {} already cached{by_tier}{everything}",
        s.objects,
        ByteSize(s.bytes),
        ByteSize(rate),
        ByteSize(s.origin_bytes),
        ByteSize(s.cached_bytes()),
    )
}

/// `mount --copy-to-local`: make every file of the tree present in the local
/// tier before the mount serves, and log what it took.
pub fn copy_to_local(
    tree: &Tree,
    engine: &Arc<Engine>,
    no_local_cache: bool,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    if no_local_cache {
        bail!("--copy-to-local needs the local cache: drop --no-local-cache");
    }
    let objects: Vec<Arc<Object>> = (1..=tree.len() as u64)
        .filter_map(|ino| match &tree.get(ino)?.kind {
            NodeKind::File { object } => Some(object.clone()),
            NodeKind::Dir { .. } => None,
        })
        .collect();
    let summary = fill(
        engine,
        &objects,
        WarmTarget::Local,
        "copy to local",
        runtime,
    )?;
    // Held whole, the copies can be read with kernel passthrough; this runs in
    // the background while the mount serves (opens until then read through
    // the daemon).
    let _guard = runtime.enter();
    for object in objects {
        engine.make_plain_locally(object);
    }
    tracing::info!(
        origin_bytes = summary.origin_bytes,
        cached_bytes = summary.cached_bytes(),
        "copied to local: {}",
        describe(&summary)
    );
    Ok(())
}

/// `inputfs warm`: fill the shared cache (and with `--to-local` the local one;
/// without `--shared-cache`, the local one) and print a summary.
pub fn run(args: WarmArgs) -> Result<()> {
    logging::init(crate::logging::LogFormat::Text);
    let mut cache = args.cache.clone();
    let to = match (&cache.shared_cache, args.to_local) {
        (Some(_), true) => WarmTarget::LocalAndShared,
        (Some(_), false) => {
            // Only the shared tier: warming a fleet's cache must not also fill
            // (or be limited by) this machine's disk.
            cache.no_local_cache = true;
            cache.cache_dir = None;
            WarmTarget::Shared
        }
        (None, _) => WarmTarget::Local,
    };
    if to != WarmTarget::Shared && cache.no_local_cache {
        if cache.shared_cache.is_none() {
            bail!("nothing to warm: --no-local-cache without --shared-cache DIR");
        }
        bail!("--to-local needs the local cache: drop --no-local-cache");
    }
    // Warming an unusable shared directory would only fail block by block:
    // say what is wrong with it up front.
    if let Some(dir) = &cache.shared_cache {
        #[allow(
            clippy::disallowed_methods,
            reason = "DIR itself is configuration: can this user list it at all?"
        )]
        let listed = std::fs::read_dir(dir);
        if let Err(e) = listed {
            bail!("--shared-cache {}: {e}", dir.display());
        }
        cache.require_shared_cache = true;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inputfs-io")
        .build()
        .context("cannot start the async runtime")?;
    let specs = inputs::collect(&args.inputs)?;
    let origin = stack::origin(&args.origin);
    let resolved = runtime.block_on(origin.resolve(&specs))?;
    let stack = stack::engine(&cache, origin, stack::shared(&cache)?)?;
    let engine = stack.engine.clone();
    let objects: Vec<Arc<Object>> = resolved
        .into_iter()
        .flat_map(|input| input.files)
        .map(|f| engine.object(f.object))
        .collect();
    let upkeep = stack.maintain(PathBuf::from("(inputfs warm)"));
    let result = fill(&engine, &objects, to, "warm", &runtime);
    if !runtime.block_on(engine.shutdown(DRAIN)) {
        tracing::warn!("ended before every background cache publish finished");
    }
    upkeep.stop();
    let summary = result?;
    println!("warmed {}", describe(&summary));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_where_bytes_came_from() {
        let mut s = WarmSummary {
            objects: 2,
            blocks: 3,
            bytes: 3 << 20,
            origin_bytes: 1 << 20,
            elapsed: Duration::from_secs(2),
            ..WarmSummary::default()
        };
        s.present_bytes.insert("shared".into(), 2 << 20);
        let line = describe(&s);
        assert!(line.contains("2 files"), "{line}");
        assert!(line.contains("1.0 MiB from the origin"), "{line}");
        assert!(
            line.contains("2.0 MiB already cached (shared: 2.0 MiB)"),
            "{line}"
        );
        assert!(!line.contains("everything"), "{line}");
        s.origin_bytes = 0;
        assert!(describe(&s).contains("everything was already cached"));
    }
}
