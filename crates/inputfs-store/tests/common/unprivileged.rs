//! Running one test's body as the unprivileged test user (`inputfs-worker1`,
//! created by `scripts/setup`), for checks that need mode bits to bind: as root
//! (as the tests run here and in CI) a mode-000 file is still readable and a
//! mode-555 directory still writable.
//!
//! The credentials of the test binary itself are never changed (it is
//! multi-threaded; `setuid` would change one thread only). Instead the test
//! binary re-executes itself for exactly that test (`NAME --exact`) in a child
//! process that starts as the user (`Command::uid`/`gid`; std also clears the
//! supplementary groups when root drops to another uid). The child's `TMPDIR`
//! is a directory the user owns, so the temp dirs the body makes are its own.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The user the body runs as.
pub const USER: &str = "inputfs-worker1";

/// Set in the child to the name of the test it runs.
const CHILD: &str = "INPUTFS_TEST_AS_UNPRIVILEGED_USER";

/// Run `body` as [`USER`]: `test` must be the name of the calling `#[test]`
/// function (the child runs `test --exact`). Fails, never skips, when the user
/// is missing or the child does not run exactly that one test successfully.
pub fn run_as_test_user(test: &str, body: impl FnOnce()) {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        assert!(
            !nix::unistd::Uid::effective().is_root(),
            "{test}: the child still runs as root"
        );
        body();
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        // Already unprivileged: mode bits bind this process as they would the
        // test user.
        body();
        return;
    }
    let user = nix::unistd::User::from_name(USER)
        .unwrap_or_else(|e| panic!("look up user {USER}: {e}"))
        .unwrap_or_else(|| {
            panic!("user {USER} is missing: run scripts/setup (as root) to create it")
        });
    let scratch = tempfile::Builder::new()
        .prefix("inputfs-as-user-")
        .tempdir()
        .unwrap();
    nix::unistd::chown(scratch.path(), Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {} to {USER}: {e}", scratch.path().display()));
    let exe = std::env::current_exe().expect("own executable path");
    let out = Command::new(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .env("TMPDIR", scratch.path())
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .output()
        .unwrap_or_else(|e| panic!("run {} as {USER}: {e}", exe.display()));
    // Quoted, so that the child's `test result:` line is not taken for one of
    // this binary's by whoever sums them (scripts/test).
    let quote = |b: &[u8]| -> String {
        String::from_utf8_lossy(b)
            .lines()
            .map(|l| format!("  | {l}\n"))
            .collect()
    };
    let (stdout, stderr) = (quote(&out.stdout), quote(&out.stderr));
    assert!(
        out.status.success(),
        "{test} as {USER} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("| test result: ok. 1 passed;"),
        "{test} as {USER} did not run exactly this one test:\n{stdout}\n{stderr}"
    );
}
