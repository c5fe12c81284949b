//! Assembling the read path from flags: origin (with its timeouts), retry
//! policy, cache tiers, engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use inputfs_core::{BlockStore, Engine, EngineConfig, Retries, Retrying, Throttling};
use inputfs_source::{ClientConfigKey, Origin, OriginBuilder, Snapshots, Timeouts};
use inputfs_store::{DirStore, Limits};

use crate::cli::{CacheArgs, MountArgs, OriginArgs};

/// The origin, from the cloud's environment and the timeout flags. The connect
/// and whole-request timeouts given as flags win over the cloud's variables
/// (`AWS_CONNECT_TIMEOUT`, ...), which win over the defaults.
pub fn origin(args: &OriginArgs) -> Origin {
    builder(args).build()
}

/// The origin of a mount: [`origin`], sharing listings through snapshots in
/// the shared cache if `--listing-max-age` asks (clap has checked that
/// `--shared-cache` is given with it). The snapshots go through the shared
/// tier's own store, so its counts of directory operations include theirs;
/// while the directory is unusable, workers list as if sharing were off.
pub fn mount_origin(args: &MountArgs, shared: Option<&Shared>) -> Origin {
    let mut builder = builder(&args.origin);
    if let (Some(max_age), Some(shared)) = (args.listing_max_age, shared) {
        builder = builder.listing_snapshots(Snapshots {
            store: shared.store.clone(),
            max_age: max_age.into(),
            claim_timeout: args.cache.claim_timeout.into(),
        });
    }
    builder.build()
}

fn builder(args: &OriginArgs) -> OriginBuilder {
    let defaults = Timeouts::default();
    let mut builder = Origin::builder().timeouts(Timeouts {
        first_byte: args
            .first_byte_timeout
            .map_or(defaults.first_byte, Into::into),
        stall: args.stall_timeout.map_or(defaults.stall, Into::into),
    });
    for (key, value) in [
        (ClientConfigKey::ConnectTimeout, args.connect_timeout),
        (ClientConfigKey::Timeout, args.request_timeout),
    ] {
        if let Some(d) = value {
            builder = builder.client_option(key, d.to_string());
        }
    }
    builder
}

/// `$XDG_CACHE_HOME/inputfs`, else `~/.cache/inputfs`, else a temp directory.
pub fn cache_home() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("inputfs")
}

/// How old another host's temp file must be before a sweep removes it: far
/// longer than any publish takes.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The read path, and the directory stores under it (for maintenance).
pub struct Stack {
    pub engine: Arc<Engine>,
    pub stores: Vec<Arc<DirStore>>,
    /// Throttled origin responses, counted by the retry wrapper.
    pub throttling: Arc<Throttling>,
    /// Origin requests asked again (the retry wrapper's and the origin's own).
    pub retries: Arc<Retries>,
}

impl Stack {
    /// Start the upkeep thread (journals, statistics, periodic sweeps).
    pub fn maintain(&self, mountpoint: std::path::PathBuf) -> crate::maintain::Maintenance {
        crate::maintain::Maintenance::start(self.engine.clone(), self.stores.clone(), mountpoint)
    }

    /// Remove what dead workers left in the caches, off the mount's path.
    pub fn sweep_in_background(&self) {
        let ttl = self.engine.config().claim_timeout;
        for store in &self.stores {
            let store = store.clone();
            std::thread::spawn(move || store.sweep(STALE_AFTER, ttl, false));
        }
    }
}

/// The shared tier's store, opened before inputs are resolved (listing
/// snapshots are kept there), and why it is unusable if it is.
pub struct Shared {
    store: Arc<DirStore>,
    unusable: Option<inputfs_core::Error>,
}

/// The shared tier of these cache flags, if there is one.
///
/// The origin is the source of truth: an unusable shared directory slows the
/// fleet down but must not stop this job, unless asked to. Either way the
/// tier sets itself up by itself once the directory works.
pub fn shared(cache: &CacheArgs) -> Result<Option<Shared>> {
    if cache.require_shared_cache && cache.shared_cache.is_none() {
        bail!("--require-shared-cache needs --shared-cache DIR");
    }
    let Some(dir) = &cache.shared_cache else {
        return Ok(None);
    };
    let (store, unusable) = if cache.require_shared_cache {
        let store = DirStore::open(dir, "shared").with_context(|| {
            format!("--shared-cache {} (--require-shared-cache)", dir.display())
        })?;
        (store, None)
    } else {
        let (store, err) = DirStore::open_lenient(dir, "shared");
        let unusable = err.map(|e| inputfs_core::Error::Tier {
            tier: "shared".into(),
            message: format!(
                "--shared-cache {} is unusable, reading without it until it works: {e}",
                dir.display()
            ),
        });
        (store, unusable)
    };
    let store = store.with_claims().with_limits(Limits {
        max_bytes: cache.shared_cache_max_size.map(|s| s.as_u64()),
        min_free_percent: cache.shared_cache_min_free,
    });
    Ok(Some(Shared {
        store: Arc::new(store),
        unusable,
    }))
}

/// The engine for these cache flags, reading from `origin`, with `shared`
/// (from [`shared`]) as its shared tier.
pub fn engine(cache: &CacheArgs, origin: Origin, shared: Option<Shared>) -> Result<Stack> {
    let (shared, shared_unusable) = match shared {
        Some(Shared { store, unusable }) => (Some(store), unusable),
        None => (None, None),
    };
    let mut stores: Vec<Arc<DirStore>> = Vec::new();
    if !cache.no_local_cache {
        let dir = cache.cache_dir.clone().unwrap_or_else(cache_home);
        // The local directory is ours to create; a missing *shared* directory is
        // never created (it usually means the network mount is missing).
        #[allow(
            clippy::disallowed_methods,
            reason = "DIR itself is configuration: the local one is the mount's to create"
        )]
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("--cache-dir {}: cannot create", dir.display()))?;
        let store = DirStore::open(&dir, "local")
            .with_context(|| format!("--cache-dir {}", dir.display()))?
            // Private to this worker: complete objects may be held as plain
            // files, for kernel passthrough.
            .with_plain_files(cache.block_size.as_u64())
            .with_limits(Limits {
                max_bytes: cache.cache_max_size.map(|s| s.as_u64()),
                min_free_percent: cache.cache_min_free,
            });
        stores.push(Arc::new(store));
    }
    stores.extend(shared);
    let config = EngineConfig {
        block_size: cache.block_size.as_u64(),
        memory_budget: cache.memory_budget.as_u64(),
        max_readahead: cache.max_readahead.as_u64(),
        claim_timeout: cache.claim_timeout.into(),
        ..EngineConfig::default()
    };
    let tiers = stores
        .iter()
        .map(|s| s.clone() as Arc<dyn BlockStore>)
        .collect();
    let throttling = Arc::new(Throttling::default());
    let retries = origin.retries();
    let source = Retrying::with_defaults(origin)
        .with_throttling(throttling.clone())
        .with_retries(retries.clone());
    let engine = Engine::new(Arc::new(source), tiers, config)
        .map_err(|e| anyhow!("--block-size/--memory-budget: {e}"))?;
    if let Some(e) = shared_unusable {
        // One warning now; the engine says when the tier has recovered.
        engine.report_tier_error("shared", &e);
    }
    Ok(Stack {
        engine,
        stores,
        throttling,
        retries,
    })
}
