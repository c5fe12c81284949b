//! Background upkeep of a mounted worker's caches, on one plain thread off the
//! read path: every few seconds it writes the usage journals and this worker's
//! statistics (for `inputfs status`), and every half minute it offers to sweep
//! each cache that has a size limit (one worker per directory wins the lease).

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inputfs_core::Engine;
use inputfs_store::DirStore;
use serde::{Deserialize, Serialize};

const TICK: Duration = Duration::from_secs(5);
const SWEEP_EVERY_TICKS: u32 = 6;

/// What a running worker says about itself, in `<cache>/inputfs-v1/workers/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStats {
    pub host: String,
    pub pid: u32,
    pub mountpoint: PathBuf,
    pub updated_unix_ms: u64,
    pub origin_requests: u64,
    pub origin_bytes: u64,
    pub tiers: Vec<TierStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TierStats {
    pub name: String,
    pub hits: u64,
    pub misses: u64,
    pub bytes_read: u64,
    pub corrupt: u64,
    pub errors: u64,
}

/// The name of this worker's note in a cache directory's `workers/`.
fn own_note() -> String {
    #[allow(clippy::disallowed_methods, reason = "procfs, not a cache directory")]
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}.{}.json",
        host.trim().replace('/', "_"),
        std::process::id()
    )
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The running upkeep thread; `stop` ends it and does a last flush.
pub struct Maintenance {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Maintenance {
    pub fn start(engine: Arc<Engine>, stores: Vec<Arc<DirStore>>, mountpoint: PathBuf) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("inputfs-upkeep".into())
            .spawn(move || {
                let mut tick = 0u32;
                loop {
                    let (lock, cvar) = &*signal;
                    let stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let (stopped, _) = cvar
                        .wait_timeout_while(stopped, TICK, |s| !*s)
                        .unwrap_or_else(|p| p.into_inner());
                    let last = *stopped;
                    drop(stopped);
                    for store in &stores {
                        upkeep(store, &engine, &mountpoint, tick, last);
                    }
                    if last {
                        return;
                    }
                    tick = tick.wrapping_add(1);
                }
            })
            .ok();
        Maintenance { stop, thread }
    }

    /// Stop the thread after a last flush of journals; remove this worker's
    /// statistics files.
    pub fn stop(mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn upkeep(store: &DirStore, engine: &Engine, mountpoint: &std::path::Path, tick: u32, last: bool) {
    // An unusable directory (a vanished mount, say) is left alone: its health
    // check, on the read path, notices when it is back.
    if !store.is_usable() {
        return;
    }
    if let Err(e) = store.flush_usage() {
        tracing::debug!(root = %store.root().display(), error = %e, "usage journal not written");
    }
    if last {
        store.remove_worker_note(&own_note());
        // Leave the directory within its limits: this worker's last blocks count.
        if store.limits().is_set() {
            let _ = store.sweep_usage(false);
        }
        return;
    }
    write_stats(store, engine, mountpoint);
    if store.limits().is_set() && tick.is_multiple_of(SWEEP_EVERY_TICKS) {
        match store.sweep_usage(false) {
            Ok(_) => {}
            Err(e) => tracing::debug!(root = %store.root().display(), error = %e, "sweep failed"),
        }
    }
}

#[allow(clippy::disallowed_methods, reason = "procfs, not a cache directory")]
fn write_stats(store: &DirStore, engine: &Engine, mountpoint: &std::path::Path) {
    let s = engine.stats();
    let stats = WorkerStats {
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
        pid: std::process::id(),
        mountpoint: mountpoint.to_path_buf(),
        updated_unix_ms: unix_ms(),
        origin_requests: s.origin_requests,
        origin_bytes: s.origin_bytes,
        tiers: s
            .tiers
            .iter()
            .map(|(name, t)| TierStats {
                name: name.clone(),
                hits: t.hits,
                misses: t.misses,
                bytes_read: t.bytes_read,
                corrupt: t.corrupt,
                errors: t.errors,
            })
            .collect(),
    };
    let Ok(json) = serde_json::to_vec_pretty(&stats) else {
        return;
    };
    if let Err(e) = store.write_worker_note(&own_note(), &json) {
        tracing::debug!(error = %e, "worker statistics not written");
    }
}
