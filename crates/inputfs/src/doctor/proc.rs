//! Is `/proc` mounted? inputfs opens every cache file in two steps, a handle
//! that opens nothing (`O_PATH | O_NOFOLLOW`) and then the regular file it
//! names through `/proc/self/fd` (see `inputfs_store::beneath`), so that no
//! link, FIFO or device planted in a shared cache is ever opened. Without
//! `/proc` (a container or chroot that does not mount it) every cache tier
//! fails; the daemon says so in a warning, and this check says it before a job
//! starts.

use super::Check;

const ID: &str = "system.proc";
const TARGET: &str = "/proc/self/fd";

pub fn check() -> Check {
    match nix::sys::stat::stat(TARGET) {
        Ok(_) => Check::ok(
            ID,
            TARGET,
            "/proc is mounted: cache files can be opened through /proc/self/fd",
        ),
        Err(e) => Check::fail(
            ID,
            TARGET,
            format!("{TARGET}: {e}: {}", inputfs_store::beneath::PROC_MISSING),
            "mount proc (`mount -t proc proc /proc`; docker and Kubernetes mount it unless told not to)",
        ),
    }
}
