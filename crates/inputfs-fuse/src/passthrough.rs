//! Kernel passthrough for objects held whole in the local cache.
//!
//! With FUSE passthrough (Linux 6.9+), an `open` reply can name a backing file
//! the kernel then reads directly: no request reaches the daemon, and the page
//! cache is the backing file's. inputfs uses it for objects its local tier holds
//! as one plain file (see `inputfs-core`'s `engine::plain`).
//!
//! The kernel's rules shape this module. An inode is either in cached mode
//! (reads through the daemon) or in passthrough mode with one backing file,
//! for as long as any handle of it is open: a mixed open fails with `EIO` to
//! the application. So the first open of an inode decides, later opens follow
//! it, and the backing file (its id) is shared by every handle until the last
//! one closes. Registering a backing file needs `CAP_SYS_ADMIN`; the first
//! refusal turns passthrough off for the mount, with one log line, and every
//! open falls back to cached mode.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use fuser::{BackingId, InitFlags, KernelConfig, ReplyOpen};

/// Passthrough state of a mount.
#[derive(Debug, Default)]
pub(crate) struct Passthrough {
    /// The user allowed it (`--passthrough auto`).
    wanted: bool,
    /// The kernel granted it and registering backing files has not failed.
    active: AtomicBool,
    opens: Mutex<HashMap<u64, OpenInode>>,
    /// Inodes read through the daemon whose last handle has not been seen
    /// closing: the kernel may drop late `release`s at unmount, so these are
    /// offered for making plain then.
    read_through: Mutex<HashSet<u64>>,
}

/// The open handles of one inode and the mode they share.
#[derive(Debug)]
struct OpenInode {
    handles: usize,
    backing: Option<Arc<BackingId>>,
}

impl Passthrough {
    pub(crate) fn new(wanted: bool) -> Self {
        Passthrough {
            wanted,
            ..Passthrough::default()
        }
    }

    /// Ask the kernel for passthrough during `init`, if wanted and offered.
    pub(crate) fn negotiate(&self, config: &mut KernelConfig) {
        if !self.wanted {
            return;
        }
        if config
            .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
            .is_err()
        {
            tracing::info!(
                "this kernel has no FUSE passthrough: every read goes through the daemon"
            );
            return;
        }
        // Depth 2 lets the backing file sit on a stacked filesystem itself
        // (the overlayfs of a container); the kernel's maximum.
        if config.set_max_stack_depth(2).is_err() {
            tracing::info!(
                "FUSE passthrough refused a stacking depth: reads go through the daemon"
            );
            return;
        }
        self.active.store(true, Ordering::Relaxed);
    }

    /// Register a handle of `ino` and decide its mode: the backing file to pass
    /// through to, or `None` for reads through the daemon. `plain` opens the
    /// object's plain local file (called only for an inode's first handle).
    pub(crate) fn open(
        &self,
        ino: u64,
        reply: &ReplyOpen,
        plain: impl FnOnce() -> Option<File>,
    ) -> Option<Arc<BackingId>> {
        let Ok(mut opens) = self.opens.lock() else {
            return None;
        };
        if let Some(open) = opens.get_mut(&ino) {
            open.handles += 1;
            return open.backing.clone();
        }
        let backing = if self.active.load(Ordering::Relaxed) {
            plain().and_then(|file| self.register(reply, &file))
        } else {
            None
        };
        if backing.is_none()
            && let Ok(mut pending) = self.read_through.lock()
        {
            pending.insert(ino);
        }
        opens.insert(
            ino,
            OpenInode {
                handles: 1,
                backing: backing.clone(),
            },
        );
        backing
    }

    /// A handle of `ino` closed. True when it was the inode's last and its
    /// reads went through the daemon: the object may now be worth holding as a
    /// plain file (the local tier's copy of it, whether or not passthrough
    /// works, since a cold read leaves the local copy to this).
    pub(crate) fn release(&self, ino: u64) -> bool {
        let Ok(mut opens) = self.opens.lock() else {
            return false;
        };
        let Some(open) = opens.get_mut(&ino) else {
            return false;
        };
        open.handles -= 1;
        if open.handles > 0 {
            return false;
        }
        // Dropping the last reference to the backing id closes it in the kernel.
        let was_cached = opens.remove(&ino).is_some_and(|o| o.backing.is_none());
        if let Ok(mut pending) = self.read_through.lock() {
            pending.remove(&ino);
        }
        was_cached
    }

    /// At unmount: the inodes read through the daemon whose closing was not
    /// seen (see `read_through`).
    pub(crate) fn take_read_through(&self) -> Vec<u64> {
        self.read_through
            .lock()
            .map(|mut p| p.drain().collect())
            .unwrap_or_default()
    }

    /// Register `file` as a backing file; on refusal, turn passthrough off.
    fn register(&self, reply: &ReplyOpen, file: &File) -> Option<Arc<BackingId>> {
        match reply.open_backing(file) {
            Ok(id) => Some(Arc::new(id)),
            Err(e) => {
                if self.active.swap(false, Ordering::Relaxed) {
                    tracing::info!(error = %e,
                        "kernel passthrough unavailable (needs CAP_SYS_ADMIN): reads go through the daemon");
                }
                None
            }
        }
    }
}
