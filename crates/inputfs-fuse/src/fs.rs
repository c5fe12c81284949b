//! The `fuser::Filesystem` implementation: metadata from the immutable tree, reads
//! handed to the engine on a tokio runtime and answered when they complete.
//!
//! The FUSE threads never wait on I/O: `read` spawns a task that owns the reply.
//! Every operation gets one `tracing` span. Errors reach the kernel only through
//! `inputfs_core::Error::errno`, the single errno mapping.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use inputfs_core::{Engine, FileReader, metric_names};
use tracing::Instrument;

use crate::direct_io;
use crate::passthrough::Passthrough;
use crate::tree::{Node, NodeKind, Tree};

/// Content is pinned for the mount's life, so the kernel may cache metadata long.
const TTL: Duration = Duration::from_secs(3600);
const BLKSIZE: u32 = 128 * 1024;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Let users other than the mounting one read (needs `user_allow_other` in
    /// /etc/fuse.conf for non-root).
    pub allow_other: bool,
    /// Shown as the source in /proc/mounts.
    pub fsname: String,
    /// FUSE request threads. Reads are answered asynchronously, so few are needed.
    pub threads: usize,
    /// Open objects held whole in the local cache with kernel passthrough,
    /// where the kernel and privileges allow.
    pub passthrough: bool,
}

/// An open file: its reader, and for an `O_DIRECT` open of an object held
/// plain locally, the plain file its reads come from (see `direct_io`).
#[derive(Clone)]
struct Handle {
    reader: Arc<FileReader>,
    plain: Option<Arc<File>>,
}

/// The mounted filesystem.
pub struct InputFs {
    tree: Arc<Tree>,
    engine: Arc<Engine>,
    runtime: tokio::runtime::Handle,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    passthrough: Passthrough,
    uid: u32,
    gid: u32,
}

impl InputFs {
    /// Serve `tree` through `engine`; reads run on `runtime`.
    pub fn new(tree: Tree, engine: Arc<Engine>, runtime: tokio::runtime::Handle) -> Self {
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        InputFs {
            tree: Arc::new(tree),
            engine,
            runtime,
            handles: Mutex::default(),
            next_fh: AtomicU64::new(1),
            passthrough: Passthrough::default(),
            uid,
            gid,
        }
    }

    fn attr(&self, ino: u64, node: &Node) -> FileAttr {
        let (kind, size, perm, nlink) = match &node.kind {
            NodeKind::Dir { .. } => (FileType::Directory, 0, 0o555, 2),
            NodeKind::File { object } => (FileType::RegularFile, object.id.size, 0o444, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    /// Remember handle `fh` (before the open is answered: its reads follow).
    fn keep(&self, fh: u64, handle: Handle) {
        if let Ok(mut handles) = self.handles.lock() {
            handles.insert(fh, handle);
        }
    }

    fn handle(&self, fh: u64) -> Option<Handle> {
        self.handles.lock().ok()?.get(&fh).cloned()
    }
}

impl fuser::Filesystem for InputFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        self.passthrough.negotiate(config);
        Ok(())
    }

    fn destroy(&mut self) {
        // Objects read through the daemon whose last `release` never came (the
        // kernel drops late ones at unmount): make them plain now. The daemon
        // waits for background work before it exits.
        let _guard = self.runtime.enter();
        for ino in self.passthrough.take_read_through() {
            if let Some(NodeKind::File { object }) = self.tree.get(ino).map(|n| &n.kind) {
                self.engine.make_plain_locally(object.clone());
            }
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _span = tracing::debug_span!("lookup", parent = parent.0, ?name).entered();
        match self.tree.child(parent.0, name) {
            Some(ino) => {
                let node = self.tree.get(ino).expect("child inodes exist");
                reply.entry(&TTL, &self.attr(ino, node), Generation(0));
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _span = tracing::debug_span!("getattr", ino = ino.0).entered();
        match self.tree.get(ino.0) {
            Some(node) => reply.attr(&TTL, &self.attr(ino.0, node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _span = tracing::debug_span!("open", ino = ino.0).entered();
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::from_i32(libc::EROFS));
        }
        let object = match self.tree.get(ino.0).map(|n| &n.kind) {
            Some(NodeKind::File { object }) => object.clone(),
            Some(NodeKind::Dir { .. }) => return reply.error(Errno::from_i32(libc::EISDIR)),
            None => return reply.error(Errno::ENOENT),
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let mut handle = Handle {
            reader: Arc::new(self.engine.reader(object.clone())),
            plain: None,
        };
        // One local open+fstat, only for an inode's first handle; an
        // O_DIRECT open never starts passthrough (see `direct_io`).
        let direct = direct_io::wanted(flags.0);
        let plain = || (!direct).then(|| self.engine.local_plain_file(&object))?;
        match self.passthrough.open(ino.0, &reply, plain) {
            Some(backing) => {
                tracing::debug!("opened with kernel passthrough");
                self.keep(fh, handle);
                reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &backing);
            }
            None => {
                if direct && let Some(file) = self.engine.local_plain_file(&object) {
                    tracing::debug!("O_DIRECT: reads come from the plain local file");
                    handle.plain = Some(Arc::new(file));
                }
                self.keep(fh, handle);
                // Pinned content never changes under the kernel: keep its page cache.
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE)
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let span = tracing::debug_span!("read", ino = ino.0, offset, size);
        let Some(Handle { reader, plain }) = self.handle(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let started = std::time::Instant::now();
        let plain = plain.map(|file| {
            let end = reader.object().id.size;
            let len = end.saturating_sub(offset).min(u64::from(size));
            (file, usize::try_from(len).unwrap_or(0))
        });
        let reply = match &plain {
            Some((file, len)) => {
                let _in = span.enter();
                let hit = direct_io::answer_cached(file, offset, *len, reply, |reply, data| {
                    answer(Ok(data), started, reply)
                });
                match hit {
                    Ok(()) => return,
                    Err(reply) => reply,
                }
            }
            None => reply,
        };
        self.runtime.spawn(
            async move {
                if let Some((file, len)) = plain {
                    let read =
                        tokio::task::spawn_blocking(move || direct_io::read_blocking(&file, offset, len))
                            .await;
                    match read {
                        Ok(Ok(data)) => return answer(Ok(data), started, reply),
                        Ok(Err(e)) => tracing::debug!(error = %e, "reading the plain file failed: the engine serves the read"),
                        Err(e) => tracing::debug!(error = %e, "reading the plain file panicked: the engine serves the read"),
                    }
                }
                answer(reader.read(offset, u64::from(size)).await, started, reply)
            }
            .instrument(span),
        );
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _span = tracing::debug_span!("release", fh = fh.0).entered();
        let reader = self
            .handles
            .lock()
            .ok()
            .and_then(|mut h| h.remove(&fh.0))
            .map(|h| h.reader);
        if self.passthrough.release(ino.0)
            && let Some(reader) = reader
        {
            // The last handle read through the daemon: next time, pass through
            // if the local tier now holds the whole object.
            let _guard = self.runtime.enter();
            self.engine.make_plain_locally(reader.object().clone());
        }
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written, so there is nothing to flush.
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, _size: u32, reply: ReplyXattr) {
        let _span = tracing::debug_span!("getxattr", ino = ino.0, ?name).entered();
        reply.error(Errno::from_i32(libc::ENODATA));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _span = tracing::debug_span!("listxattr", ino = ino.0).entered();
        // No extended attributes: an empty list.
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _span = tracing::debug_span!("readdir", ino = ino.0, offset).entered();
        let Some(node) = self.tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let NodeKind::Dir { children } = &node.kind else {
            return reply.error(Errno::from_i32(libc::ENOTDIR));
        };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (node.parent, FileType::Directory, OsStr::new("..")),
        ];
        let entries = dots
            .into_iter()
            .chain(children.iter().map(|(name, &child)| {
                let kind = match self.tree.get(child).map(|n| &n.kind) {
                    Some(NodeKind::Dir { .. }) => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                (child, kind, name.as_os_str())
            }));
        for (i, (child, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let _span = tracing::debug_span!("access", ino = ino.0).entered();
        if self.tree.get(ino.0).is_none() {
            reply.error(Errno::ENOENT);
        } else if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::from_i32(libc::EROFS));
        } else {
            reply.ok();
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _span = tracing::debug_span!("statfs").entered();
        let blocks = self.tree.total_bytes().div_ceil(u64::from(BLKSIZE));
        let files = self.tree.len() as u64;
        reply.statfs(blocks, 0, 0, files, 0, BLKSIZE, 255, BLKSIZE);
    }
}

/// Mount `fs` read-only at `mountpoint` and serve it from background threads.
/// Dropping the returned session unmounts.
pub fn mount(
    mut fs: InputFs,
    mountpoint: &Path,
    options: &MountOptions,
) -> io::Result<fuser::BackgroundSession> {
    fs.passthrough = Passthrough::new(options.passthrough);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::FSName(options.fsname.clone()),
        MountOption::Subtype("inputfs".into()),
        MountOption::DefaultPermissions,
    ];
    if options.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(options.threads.max(1));
    let session = fuser::spawn_mount(fs, mountpoint, &config)?;
    raise_kernel_readahead(mountpoint);
    Ok(session)
}

/// Kernel readahead of the mount, in KiB. The kernel starts a FUSE mount at
/// 128 KiB, so a sequential reader sees 128 KiB requests; at 1 MiB (the largest
/// FUSE request, 256 pages) reads through the daemon ran 1.8x faster here
/// (docs/PERFORMANCE.md), and larger windows did not help.
const KERNEL_READAHEAD_KIB: u32 = 1024;

/// Raise the mount's kernel readahead (`/sys/class/bdi/MAJ:MIN/read_ahead_kb`).
/// Needs root; otherwise the kernel's default stays, which is only slower.
#[allow(
    clippy::disallowed_methods,
    reason = "the mount point and sysfs, not a cache directory"
)]
fn raise_kernel_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = match std::fs::metadata(mountpoint) {
        Ok(m) => m.dev(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot stat the mount to tune its readahead");
            return;
        }
    };
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    match std::fs::write(&bdi, KERNEL_READAHEAD_KIB.to_string()) {
        Ok(()) => tracing::debug!(%bdi, kib = KERNEL_READAHEAD_KIB, "kernel readahead raised"),
        Err(e) => tracing::debug!(%bdi, error = %e, "kernel readahead left at its default"),
    }
}

/// Reply to a read with its data or its error, counted in the read metrics
/// first: once the application has its data (and a scrape may follow), the
/// read is counted.
fn answer<B: AsRef<[u8]>>(
    result: inputfs_core::Result<B>,
    started: std::time::Instant,
    reply: ReplyData,
) {
    metrics::histogram!(metric_names::READ_SECONDS).record(started.elapsed().as_secs_f64());
    match result {
        Ok(data) => {
            let data = data.as_ref();
            metrics::counter!(metric_names::READ_BYTES).increment(data.len() as u64);
            reply.data(data)
        }
        Err(e) => {
            tracing::debug!(error = %e, "read failed");
            reply.error(Errno::from_i32(e.errno()));
        }
    }
}
