//! [`SharedDir`]: one directory on a real network filesystem, mounted at several
//! mount points at once, each standing in for one host.
//!
//! The block cache of inputfs may live on a filesystem that several workers (VMs)
//! share. Such filesystems are not local disks: attributes are cached on each
//! client, `O_EXCL`, `link`, `rename` and `unlink` may be enforced by the server or
//! not at all, and locks are not shared. There is no kernel NFS/SMB client here,
//! but real network filesystems mount through FUSE, so tests put the cache on
//! these, all on loopback, every server and mount started by us and torn down in
//! `Drop`: unmount every mount point (`fusermount3 -u`, lazily with `-z` if busy),
//! wait for its FUSE process, then stop each server by its PID and wait for it
//! and for what it forked. Everything is spawned with `PR_SET_PDEATHSIG =
//! SIGTERM` (from one long-lived thread: the signal follows the forking thread),
//! so nothing outlives a test process killed outright (libfuse unmounts on
//! SIGTERM), and the test process is a child subreaper, so what sshfs, smbd or
//! smbnetfs fork and orphan is reaped here, not left to init (see `netfs/procs.rs`).
//!
//! Kinds ([`SharedDir::kind`]):
//! - `local`: a plain temp dir; every mount point is that same path (baseline).
//! - `sshfs-strict` / `sshfs-default`: a private sshd, one sshfs per mount point
//!   (`netfs/sshfs.rs`). `ssh-keygen -q -t ed25519 -N '' -f KEY` for a host and a
//!   client key; `mkdir /run/sshd`; `/usr/sbin/sshd -D -e -f CFG` with `Port P`,
//!   `ListenAddress 127.0.0.1`, `HostKey`, `AuthorizedKeysFile` (the client's
//!   `.pub`), `PermitRootLogin prohibit-password`, `PasswordAuthentication no`,
//!   `UsePAM no`, `PidFile`, `Subsystem sftp internal-sftp`, `StrictModes no`;
//!   then `sshfs root@127.0.0.1:SRV MNT -f -F /dev/null -o port=P,IdentityFile=K,
//!   IdentitiesOnly=yes,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,
//!   BatchMode=yes,LogLevel=ERROR`, plus `dir_cache=no,attr_timeout=0,
//!   entry_timeout=0,negative_timeout=0` for `sshfs-strict`. sshfs double-forks
//!   its `ssh`; each mount gets its own copy of the key to tell them apart.
//! - `smb`: samba's smbd, one smbnetfs (FUSE over libsmbclient) per mount point
//!   (`netfs/smb.rs`). `smbd --foreground --no-process-group --debug-stdout -s
//!   CONF` in a process group of its own (smbd stops by SIGTERM-ing its whole
//!   group: in ours, that kills the test). CONF: `interfaces = 127.0.0.1`, `bind
//!   interfaces only`, `smb ports = P`, `disable netbios`, every state directory
//!   in the temp dir (created first, or smbd cannot open `secrets.tdb`), `rpc
//!   start on demand helpers = no` (else it starts a daemonising samba-dcerpcd
//!   that outlives it), `map to guest = Bad User` and a share `share` with `guest
//!   ok`, `force user = root`. Then `HOME=H smbnetfs MNT -f`, with
//!   `H/.smb/smbnetfs.conf` (mode 0600, or smbnetfs ignores `auth`):
//!   `smb_query_browsers "false"` (no browsing broadcasts), `auth "guest" ""`; and
//!   `H/.smb/smb.conf` for libsmbclient (SMB2+, `name resolve order = host`).
//!   libsmbclient (4.17) ignores `smb ports` and connects to 445; the port goes
//!   in the path instead: the share is at `MNT/127.0.0.1:P/share`.
//!
//! [`SharedDir::mount_point`]`(i)` is the i-th client's view of
//! [`SharedDir::server_dir`] (`<share>/shared`), usable as a cache dir; distinct
//! `i` are distinct mounts (FUSE processes and server connections), except for
//! `local`. What two mounts see of each other (`tests/netfs_semantics.rs`): on
//! all kinds `O_EXCL` gives `EEXIST` across mounts and rename over a closed file
//! works; `link` works on sshfs (onto an existing name: `EEXIST`) and fails with
//! `EPERM` on smb. Another mount's stale cached size (sshfs-default up to ~20 s,
//! smb ~1 s) makes a renamed-over file read short (a prefix of the new bytes) and
//! an unlinked file still stat; sshfs-strict shows changes at once.

mod procs;
mod smb;
mod sshfs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bins::require_binary;
use crate::mounts::{is_mounted, unmount};
use procs::{
    Proc, children_mentioning, descendants, log_file, read, reap, spawn_tied, terminate, wait_exit,
};

/// The directory, inside the exported tree, that every mount point shows.
const SHARED: &str = "shared";

/// A directory on a network filesystem, mounted at several mount points at once
/// (each mount point stands in for one host). Everything is torn down in Drop.
pub struct SharedDir {
    kind: &'static str,
    // Drop order is field order: client mounts, then the server, then the files.
    mounts: Vec<Option<ClientMount>>,
    backend: Backend,
    /// The canonical temp dir: `srv/` (the exported tree), `mnt<i>/`, server state.
    root: PathBuf,
    server_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

enum Backend {
    Local,
    Sshfs(sshfs::Sshd, bool),
    Smb(smb::Smbd),
}

impl SharedDir {
    /// A plain temp dir: every mount point is the same path (the baseline).
    pub fn local() -> SharedDir {
        Self::new("local", |_, _| Backend::Local)
    }

    /// A private sshd on 127.0.0.1; each mount point is its own sshfs process.
    /// `strict` turns off sshfs's attribute, entry, negative and directory caches.
    pub fn sshfs(strict: bool) -> SharedDir {
        let kind = if strict {
            "sshfs-strict"
        } else {
            "sshfs-default"
        };
        Self::new(kind, |root, _| {
            Backend::Sshfs(sshfs::Sshd::start(&root.join("sshd")), strict)
        })
    }

    /// A private smbd on 127.0.0.1; each mount point is its own smbnetfs process.
    pub fn smb() -> SharedDir {
        Self::new("smb", |root, srv| {
            Backend::Smb(smb::Smbd::start(&root.join("smbd"), srv))
        })
    }

    fn new(kind: &'static str, start: impl FnOnce(&Path, &Path) -> Backend) -> SharedDir {
        if kind != "local" {
            require_binary("fusermount3");
        }
        let tmp = tempfile::Builder::new()
            .prefix("inputfs-netfs-")
            .tempdir()
            .expect("temp dir for a shared dir");
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        let srv = root.join("srv");
        std::fs::create_dir_all(srv.join(SHARED)).expect("create the server dir");
        let backend = start(&root, &srv);
        SharedDir {
            kind,
            mounts: Vec::new(),
            backend,
            server_dir: srv.join(SHARED),
            root,
            _tmp: tmp,
        }
    }

    /// `"local"`, `"sshfs-strict"`, `"sshfs-default"` or `"smb"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The directory on the server side that every mount point shows (for test
    /// setup and inspection only: the clients do not see changes made here at once).
    pub fn server_dir(&self) -> &Path {
        &self.server_dir
    }

    /// The i-th client's view of [`Self::server_dir`], mounted on first use: a
    /// directory usable as a cache dir. Distinct `i` are distinct mounts.
    pub fn mount_point(&mut self, i: usize) -> PathBuf {
        let srv = self.root.join("srv");
        if let Backend::Local = self.backend {
            return self.server_dir.clone();
        }
        if self.mounts.len() <= i {
            self.mounts.resize_with(i + 1, || None);
        }
        if let Some(mount) = &self.mounts[i] {
            return mount.view.clone();
        }
        let fuse_root = self.root.join(format!("mnt{i}"));
        std::fs::create_dir_all(&fuse_root).expect("create a mount point");
        // sshfs double-forks its ssh, which we then adopt (as subreaper): a key
        // of its own per mount tells which ssh belongs to which mount.
        let key = self.root.join(format!("mnt{i}.key"));
        let (what, command, view, marker) = match &self.backend {
            Backend::Local => unreachable!(),
            Backend::Sshfs(sshd, strict) => (
                "sshfs",
                sshd.mount_command(&srv, &fuse_root, *strict, &key),
                fuse_root.join(SHARED),
                Some(key.to_string_lossy().into_owned()),
            ),
            Backend::Smb(smbd) => (
                "smbnetfs",
                smbd.mount_command(&fuse_root),
                smbd.share_in(&fuse_root).join(SHARED),
                None,
            ),
        };
        let log = self.root.join(format!("mnt{i}.log"));
        let mut mount = ClientMount::start(what, command, fuse_root, view, log);
        if let Some(marker) = marker {
            mount.adopted = children_mentioning(&marker, mount.child.id());
        }
        let view = mount.view.clone();
        self.mounts[i] = Some(mount);
        view
    }
}

impl SharedDir {
    /// Each time the i-th client lost its connection to the server so far, as
    /// the client logged it (empty for a client never mounted, and always for
    /// `local` and sshfs, whose clients log no such thing).
    ///
    /// smbnetfs serves each share through a child process that *exits* when a
    /// call gets an errno it does not expect, logging `srv(PID)->CALL:
    /// errno=N, TEXT`; seen here: `open` getting `EBUSY` and `stat` getting
    /// `EINVAL`, which the server answers while another client deletes the
    /// file or directory (SMB's delete-pending state). Until it starts a new
    /// child (~2 s later), every call through that mount, to any path, fails
    /// with `EIO`, and its open files are gone. That is the client failing,
    /// not the server or the cache: a kernel SMB client reports the same
    /// state as an error of that one call. Tests that judge what a program
    /// saw through a mount use this to tell the client's outages from the
    /// ones they made.
    pub fn client_connection_losses(&self, i: usize) -> Vec<String> {
        let Some(Some(mount)) = self.mounts.get(i) else {
            return Vec::new();
        };
        if !matches!(self.backend, Backend::Smb(_)) {
            return Vec::new();
        }
        read(&mount.log)
            .lines()
            .filter(|l| l.contains("srv(") && l.contains("errno="))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        // Clients first, so that the servers' per-connection processes end too.
        self.mounts.clear();
    }
}

/// One client: a foreground FUSE process (sshfs, smbnetfs) and its mount.
struct ClientMount {
    fuse_root: PathBuf,
    view: PathBuf,
    child: Child,
    /// Processes it forked that were orphaned to us at once (sshfs's ssh).
    adopted: Vec<Proc>,
    /// Its stdout and stderr.
    log: PathBuf,
}

impl ClientMount {
    fn start(
        what: &str,
        mut command: Command,
        fuse_root: PathBuf,
        view: PathBuf,
        log: PathBuf,
    ) -> ClientMount {
        command
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log));
        let child = spawn_tied(command).unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut mount = ClientMount {
            fuse_root,
            view,
            child,
            adopted: Vec::new(),
            log: log.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&mount.fuse_root) {
            if let Ok(Some(status)) = mount.child.try_wait() {
                panic!("{what} exited ({status}) without mounting: {}", read(&log));
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not mount in 30 s: {}",
                read(&log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // smbnetfs mounts before it connects: wait until the share answers.
        while !mount.view.is_dir() {
            assert!(
                Instant::now() < deadline,
                "{what}: {} is not a directory after 30 s: {}",
                mount.view.display(),
                read(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        mount
    }
}

impl Drop for ClientMount {
    fn drop(&mut self) {
        let mut forked = descendants(self.child.id() as i32);
        forked.append(&mut self.adopted);
        unmount(&self.fuse_root);
        if !wait_exit(&mut self.child, Duration::from_secs(10)) {
            terminate(&mut self.child, Duration::from_secs(5));
        }
        reap(forked);
        if is_mounted(&self.fuse_root) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.fuse_root)
                .status();
        }
    }
}
