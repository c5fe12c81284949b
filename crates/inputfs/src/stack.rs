//! Assembling the read path from flags: origin, retry policy, cache tiers, engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// How old another host's temp file must be before a sweep removes it: far
/// longer than any publish takes.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The read path, and the directory stores under it (for maintenance).
pub struct Stack {
    pub engine: Arc<Engine>,
    pub stores: Vec<Arc<DirStore>>,
}

impl Stack {
    /// Remove what dead workers left in the caches, off the mount's path.
    pub fn sweep_in_background(&self) {
        let ttl = self.engine.config().claim_timeout;
        for store in &self.stores {
            let store = store.clone();
            std::thread::spawn(move || store.sweep(STALE_AFTER, ttl));
        }
    }
}

/// The engine for these cache flags, reading from `origin`.
pub fn engine(cache: &CacheArgs, origin: Origin) -> Result<Stack> {
    let mut stores: Vec<Arc<DirStore>> = Vec::new();
    if !cache.no_local_cache {
        let dir = cache.cache_dir.clone().unwrap_or_else(cache_home);
        // The local directory is ours to create; a missing *shared* directory is
        // never created (it usually means the network mount is missing).
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("--cache-dir {}: cannot create", dir.display()))?;
        let store = DirStore::open(&dir, "local")
            .with_context(|| format!("--cache-dir {}", dir.display()))?;
        stores.push(Arc::new(store));
    }
    if let Some(dir) = &cache.shared_cache {
        match DirStore::open(dir, "shared") {
            Ok(store) => stores.push(Arc::new(store.with_claims())),
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
        claim_timeout: cache.claim_timeout.into(),
        ..EngineConfig::default()
    };
    let tiers = stores
        .iter()
        .map(|s| s.clone() as Arc<dyn BlockStore>)
        .collect();
    let engine = Engine::new(Arc::new(Retrying::with_defaults(origin)), tiers, config)
        .map_err(|e| anyhow!("--block-size/--memory-budget: {e}"))?;
    Ok(Stack { engine, stores })
}
