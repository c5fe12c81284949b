//! The file operations the cache relies on to stay correct across workers
//! without talking to them (DESIGN.md, "The shared cache on disk"): `O_EXCL`
//! for temp files, rename over an existing file and hard links for atomic
//! publishing. Each is tried on probe files. (Claims and the sweep lease are
//! made with `mkdir`, which every shared filesystem decides on its server;
//! one host cannot see whether a client lets two racing creates through, so
//! that is tested between two mounts in `tests/tests/netfs_semantics.rs`.)

use std::io;

use super::{Probe, Target};
use crate::doctor::Check;

impl Target {
    /// A second `O_CREAT|O_EXCL` create of one name must fail with `EEXIST`:
    /// temp files depend on it (a name clash must not mix two blocks).
    pub(super) fn o_excl(&self, probe: &Probe) -> Check {
        const ID: &str = "cache.o_excl";
        let target = self.dir.display().to_string();

        let fix = "put the cache on a filesystem that honours O_EXCL (NFSv3 and later, SMB, EFS, Azure Files and Filestore do)";
        if let Err(e) = probe.write_new("excl", b"first") {
            let text = format!("{}: the first O_EXCL create failed: {e}", self.name());
            return Check::fail(ID, &target, text, fix);
        }
        match probe.create_new("excl") {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Check::ok(
                ID,
                &target,
                format!(
                    "{}: a second O_EXCL create of one name fails with EEXIST",
                    self.name()
                ),
            ),
            Err(e) => Check::fail(
                ID,
                &target,
                format!(
                    "{}: a second O_EXCL create failed with {e}, not EEXIST",
                    self.name()
                ),
                fix,
            ),
            Ok(_) => Check::fail(
                ID,
                &target,
                format!(
                    "{}: a second O_EXCL create of an existing name succeeded: temp files of two workers could clash",
                    self.name()
                ),
                fix,
            ),
        }
    }

    /// Rename onto an existing name must replace it: afterwards the name holds
    /// the new bytes and the old name is gone.
    pub(super) fn rename_over(&self, probe: &Probe) -> Check {
        const ID: &str = "cache.rename_over";
        let target = self.dir.display().to_string();
        let (old, new) = ("rename-target", "rename-source");
        let new_bytes = b"the new content, longer than the old";
        let result = (|| -> io::Result<Option<String>> {
            probe.write_new(old, b"old content")?;
            probe.write_new(new, new_bytes)?;
            probe.rename(new, old)?;
            let now = probe.read(old)?;
            if now != new_bytes {
                return Ok(Some(format!(
                    "after the rename the file holds {} bytes that are not the new content",
                    now.len()
                )));
            }
            if probe.exists(new) {
                return Ok(Some(
                    "the renamed file is still there under its old name".into(),
                ));
            }
            Ok(None)
        })();
        let fix = "put the cache on a filesystem where rename replaces an existing file (POSIX rename: NFS, EFS, Filestore, Azure Files, SMB all do for closed files)";
        match result {
            Ok(None) => Check::ok(
                ID,
                &target,
                format!("{}: rename onto an existing file replaces it", self.name()),
            ),
            Ok(Some(what)) => Check::fail(ID, &target, format!("{}: {what}", self.name()), fix),
            Err(e) => Check::fail(
                ID,
                &target,
                format!("{}: rename onto an existing file: {e}", self.name()),
                fix,
            ),
        }
    }

    /// Hard links publish blocks without replacing a winner's file; where they
    /// are unsupported (SMB) inputfs publishes by rename, so that is a warning.
    pub(super) fn link(&self, probe: &Probe) -> Check {
        const ID: &str = "cache.link";
        let target = self.dir.display().to_string();
        let (src, dst) = ("link-source", "link-target");
        let content = b"linked content";
        if let Err(e) = probe.write_new(src, content) {
            return Check::fail(
                ID,
                &target,
                format!("{}: cannot write a file to link: {e}", self.name()),
                &self.fix_for(&e),
            );
        }
        match probe.link(src, dst) {
            Err(e) if links_unsupported(&e) => {
                return Check::warn(
                    ID,
                    &target,
                    format!("{}: hard links are not supported here ({e})", self.name()),
                    "nothing to do for correctness: inputfs detects this and publishes blocks by rename instead (same bytes; when workers race, the loser's copy replaces the winner's instead of being dropped). An NFS export supports links",
                );
            }
            Err(e) => {
                return Check::fail(
                    ID,
                    &target,
                    format!("{}: link failed: {e}", self.name()),
                    &self.fix_for(&e),
                );
            }
            Ok(()) => {}
        }
        let fix = "put the cache on a filesystem where link onto an existing name fails with EEXIST (NFS, EFS, Filestore do)";
        match probe.link(src, dst) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => {
                let got = match other {
                    Ok(()) => "succeeded".to_string(),
                    Err(e) => format!("failed with {e}"),
                };
                let text = format!(
                    "{}: a link onto an existing name {got}, not EEXIST",
                    self.name()
                );
                return Check::fail(ID, &target, text, fix);
            }
        }
        match probe.read(dst) {
            Ok(read) if read == content => Check::ok(
                ID,
                &target,
                format!(
                    "{}: hard links work; a link onto an existing name fails with EEXIST",
                    self.name()
                ),
            ),
            Ok(_) => Check::fail(
                ID,
                &target,
                format!("{}: the link does not show the file's bytes", self.name()),
                fix,
            ),
            Err(e) => Check::fail(
                ID,
                &target,
                format!("{}: cannot read through the link: {e}", self.name()),
                fix,
            ),
        }
    }
}

/// The same "this filesystem has no hard links" errors inputfs-store's publish
/// falls back to rename on.
fn links_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().unwrap_or(0),
        libc::EPERM | libc::ENOTSUP | libc::ENOSYS | libc::EXDEV | libc::EMLINK
    )
}
