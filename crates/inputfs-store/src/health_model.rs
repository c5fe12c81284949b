//! Model-checked tests of the `health` state machine (shuttle explores the
//! interleavings of threads; `scripts/test` runs these with
//! `--features shuttle`).
//!
//! The directory is modelled by two flags: `dir` (the configured directory,
//! which only an operator removes or brings back) and `root` (which the
//! store's set-up creates while `dir` is there). Worker threads make calls —
//! admitted, then failing with `ENOENT` when the root is missing — while an
//! operator thread removes the root or the directory and brings it back.
//! Asserted in every explored interleaving:
//! - no call is refused unless the directory was missing at some moment of
//!   that call (a usable directory is never reported unusable);
//! - a failure of a call admitted before a set-up never takes the new root down;
//! - once the directory is gone for good, the store says so: after one call
//!   fails, the next is refused, and the first call after it is back succeeds.
//!
//! Shuttle's `Condvar::wait_timeout` never times out, so the hung-set-up path
//! (waiters giving up after the patience) is covered by the std test in
//! `health`'s unit tests instead.

use std::sync::Arc;

use shuttle::sync::atomic::{AtomicU64, Ordering};
use shuttle::thread;

use crate::health::Health;

/// The modelled cache directory.
#[derive(Default)]
struct Dir {
    /// Even while the configured directory is there, odd while it is
    /// missing; every removal and every return adds one. One atomic, so a
    /// call can tell from two reads whether it was missing at any moment.
    dir: AtomicU64,
    /// The root exists while this is the current `dir` value + 1: a root
    /// made in a directory that has since gone went with it (0: removed).
    root: AtomicU64,
}

impl Dir {
    fn present() -> Arc<Dir> {
        let d = Dir::default();
        d.root.store(1, Ordering::SeqCst);
        Arc::new(d)
    }

    fn set_up(&self) -> Result<(), String> {
        let dir = self.dir.load(Ordering::SeqCst);
        if dir % 2 == 1 {
            return Err("dir missing".into());
        }
        self.root.store(dir + 1, Ordering::SeqCst);
        Ok(())
    }

    fn root_there(&self) -> bool {
        let dir = self.dir.load(Ordering::SeqCst);
        dir.is_multiple_of(2) && self.root.load(Ordering::SeqCst) == dir + 1
    }

    fn root_gone(&self) -> Option<String> {
        (!self.root_there()).then(|| "root missing".into())
    }

    fn remove_root(&self) {
        self.root.store(0, Ordering::SeqCst);
    }

    fn remove_dir(&self) {
        self.dir.fetch_add(1, Ordering::SeqCst);
    }

    fn restore_dir(&self) {
        self.dir.fetch_add(1, Ordering::SeqCst);
    }
}

/// One call: admitted, then touching the root. Asserts a refusal is deserved.
fn call(health: &Health, d: &Dir) -> bool {
    let before = d.dir.load(Ordering::SeqCst);
    match health.enter(|| d.set_up()) {
        Ok(ticket) => {
            if d.root_there() {
                true
            } else {
                health.failed(ticket, || d.root_gone());
                false
            }
        }
        Err(reason) => {
            let missing_at_some_point = before % 2 == 1 || d.dir.load(Ordering::SeqCst) != before;
            assert!(
                missing_at_some_point,
                "refused ({reason}) while the directory was there throughout"
            );
            false
        }
    }
}

fn workers(
    health: &Arc<Health>,
    d: &Arc<Dir>,
    n: usize,
    calls: usize,
) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (health, d) = (health.clone(), d.clone());
            thread::spawn(move || {
                for _ in 0..calls {
                    call(&health, &d);
                }
            })
        })
        .collect()
}

/// After the operator is done and the directory is there: the next call that
/// finds the root works, or sets it up.
fn settles_usable(health: &Health, d: &Dir) {
    // At most one call may fail on a root removed under an admitted store.
    if !call(health, d) {
        assert!(
            call(health, d),
            "a present directory must be usable by the next call"
        );
    }
    assert!(health.is_ready());
}

const ITERATIONS: usize = 5_000;

#[test]
fn root_removed_and_recreated_under_concurrent_calls() {
    shuttle::check_random(
        || {
            let (health, d) = (Arc::new(Health::default()), Dir::present());
            assert!(health.enter(|| d.set_up()).is_ok());
            let mut threads = workers(&health, &d, 2, 3);
            let op = d.clone();
            threads.push(thread::spawn(move || {
                op.remove_root();
                thread::yield_now();
                op.remove_root();
            }));
            for t in threads {
                t.join().unwrap();
            }
            settles_usable(&health, &d);
            assert_eq!(health.refused(), 0, "the directory never went missing");
        },
        ITERATIONS,
    );
}

#[test]
fn directory_missing_then_back_never_refuses_while_there() {
    shuttle::check_random(
        || {
            let (health, d) = (Arc::new(Health::default()), Dir::present());
            assert!(health.enter(|| d.set_up()).is_ok());
            let mut threads = workers(&health, &d, 3, 3);
            let op = d.clone();
            threads.push(thread::spawn(move || {
                op.remove_dir();
                thread::yield_now();
                op.restore_dir();
            }));
            for t in threads {
                t.join().unwrap();
            }
            settles_usable(&health, &d);
        },
        ITERATIONS,
    );
}

#[test]
fn a_directory_gone_for_good_is_reported() {
    shuttle::check_random(
        || {
            let (health, d) = (Arc::new(Health::default()), Dir::present());
            assert!(health.enter(|| d.set_up()).is_ok());
            let mut threads = workers(&health, &d, 2, 2);
            let op = d.clone();
            threads.push(thread::spawn(move || op.remove_dir()));
            for t in threads {
                t.join().unwrap();
            }
            // The directory is gone: at most one more call is admitted (and
            // fails on the missing root); every later one is refused.
            let before = health.refused();
            call(&health, &d);
            assert!(!call(&health, &d));
            assert!(!health.is_ready(), "a missing directory is reported");
            assert!(health.refused() > before);
            d.restore_dir();
            assert!(call(&health, &d), "back: the first call sets it up");
        },
        ITERATIONS,
    );
}

#[test]
fn two_calls_against_a_root_removal_under_pct() {
    // PCT (probabilistic concurrency testing) finds bugs of small depth with a
    // known probability per run: a complement to the random schedules.
    shuttle::check_pct(
        || {
            let (health, d) = (Arc::new(Health::default()), Dir::present());
            assert!(health.enter(|| d.set_up()).is_ok());
            let mut threads = workers(&health, &d, 2, 1);
            let op = d.clone();
            threads.push(thread::spawn(move || op.remove_root()));
            for t in threads {
                t.join().unwrap();
            }
            settles_usable(&health, &d);
            assert_eq!(health.refused(), 0);
        },
        ITERATIONS,
        3,
    );
}
