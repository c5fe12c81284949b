//! Assembling the read path from flags: origin, retry policy, cache tiers, engine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use inputfs_core::{BlockStore, Engine, EngineConfig, Retrying};
use inputfs_source::Origin;
use inputfs_store::DirStore;

use crate::cli::CacheArgs;

/// `$XDG_CACHE_HOME/inputfs`, else `~/.cache/inputfs`, else a temp directory.
pub fn cache_home() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("inputfs")
}

/// The engine for these cache flags, reading from `origin`.
pub fn engine(cache: &CacheArgs, origin: Origin) -> Result<Arc<Engine>> {
    let mut tiers: Vec<Arc<dyn BlockStore>> = Vec::new();
    if !cache.no_local_cache {
        let dir = cache.cache_dir.clone().unwrap_or_else(cache_home);
        // The local directory is ours to create; a missing *shared* directory is
        // never created (it usually means the network mount is missing).
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("--cache-dir {}: cannot create", dir.display()))?;
        let store = DirStore::open(&dir, "local")
            .with_context(|| format!("--cache-dir {}", dir.display()))?;
        tiers.push(Arc::new(store));
    }
    if let Some(dir) = &cache.shared_cache {
        match DirStore::open(dir, "shared") {
            Ok(store) => tiers.push(Arc::new(store)),
            // The origin is the source of truth: a missing shared mount slows the
            // fleet down but must not stop this job.
            Err(e) => tracing::warn!(
                "--shared-cache {} is unusable, reading without it: {e}",
                dir.display()
            ),
        }
    }
    let config = EngineConfig {
        block_size: cache.block_size.as_u64(),
        memory_budget: cache.memory_budget.as_u64(),
        ..EngineConfig::default()
    };
    Engine::new(Arc::new(Retrying::with_defaults(origin)), tiers, config)
        .map_err(|e| anyhow!("--block-size/--memory-budget: {e}"))
}
