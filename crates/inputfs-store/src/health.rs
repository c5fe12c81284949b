//! Keeping a store usable when its directory is not: a shared cache that is
//! missing at mount, loses its root while mounted, or sits on a network mount
//! that went away and came back.
//!
//! The origin is the source of truth, so an unusable cache directory must slow
//! a mount down, never stop it, must come back by itself the moment it is
//! fixed, and must never be taken for unusable while it works. A store is *set
//! up* when `DIR` is a directory and `DIR/inputfs-v1` and its subdirectories
//! exist. [`Health`] is the state machine that decides when to set up, written
//! against the `sync` module so that a shuttle test (`health_model`) explores
//! its interleavings:
//!
//! - Every successful set-up starts a new *generation*. A call runs under the
//!   generation it was admitted in (its [`Ticket`]). A failure only counts
//!   against the store if its call was admitted in the current generation: a
//!   call that started before the root was re-created says nothing about the
//!   new root.
//! - A counting failure (`ENOENT`, `ESTALE`) takes the store down only if a
//!   check of the root confirms it: an `ENOENT` below an intact root is a lost
//!   race (another worker evicted the object) or a miss, not "root gone".
//! - A store that is down sets itself up again on the very next call — no
//!   timer — so a re-created root is usable at once. One set-up runs at a
//!   time; a call arriving meanwhile waits for the outcome of a set-up that
//!   started after it arrived (one that looked at the directory before the
//!   call began does not answer it), for at most [`SETUP_PATIENCE`]: a set-up
//!   slower than that means a hung network mount, and calls then fail fast (no
//!   thread piles up behind it) until it returns.
//!
//! A call the store answers "unusable" is *refused*; each refusal is counted
//! and logged at debug level (target `inputfs_store::refused`) with the
//! monotonic-clock span of the call (`cache_dir`), so a test can prove no call was
//! refused while the directory was there.
//!
//! Setting up never creates `DIR`, and creates the root only while `DIR` is on
//! the device it was on when first seen: a network mount that vanished leaves
//! its empty mount point on the local disk, and a "shared" cache written there
//! would fill the wrong disk and share nothing. A root that already exists is
//! used wherever it is, since a remounted network filesystem may come back with
//! a new device number.

use std::time::Duration;

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{Condvar, Mutex, MutexGuard};

/// The longest a call waits for another call's set-up of the store before it
/// takes the directory for hung and fails fast.
pub const SETUP_PATIENCE: Duration = Duration::from_secs(2);

/// The generation a call was admitted in, handed back when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

impl Ticket {
    /// The set-up generation the call was admitted in (1: the first set-up).
    pub(crate) fn generation(self) -> u64 {
        self.0
    }
}

/// Whether a store is set up, in which generation, and the set-up in progress.
#[derive(Debug)]
pub(crate) struct Health {
    /// `generation << 1 | ready`. The generation counts successful set-ups
    /// (0: never set up); `ready` is cleared when a check confirms the root is
    /// gone. Read alone on the happy path: one atomic load per call.
    state: AtomicU64,
    setup: Mutex<Setup>,
    finished: Condvar,
    refused: AtomicU64,
    /// How long to wait for another call's set-up ([`SETUP_PATIENCE`]).
    patience: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: AtomicU64::new(0),
            setup: Mutex::default(),
            finished: Condvar::new(),
            refused: AtomicU64::new(0),
            patience: SETUP_PATIENCE,
        }
    }
}

#[derive(Debug, Default)]
struct Setup {
    running: bool,
    /// Set-ups started so far; the running one is number `started`.
    started: u64,
    /// A waiter gave up on the running set-up: fail fast until it returns.
    slow: bool,
    /// Set-ups finished so far (a waiter's way to tell "it is done").
    finished: u64,
    /// Why the store is down ("" while it is up).
    reason: String,
}

impl Health {
    fn lock(&self) -> MutexGuard<'_, Setup> {
        self.setup.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the store is set up (its last set-up worked and no confirmed
    /// failure since).
    pub(crate) fn is_ready(&self) -> bool {
        self.ticket().is_some()
    }

    /// Calls refused as unusable so far (this call's own set-up failed, the
    /// one it waited for did, or a set-up hangs).
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The ticket of a call admitted now, if the store is set up.
    fn ticket(&self) -> Option<Ticket> {
        let state = self.state.load(Ordering::Acquire);
        (state & 1 == 1).then_some(Ticket(state >> 1))
    }

    /// Admit a call: at once when the store is set up; otherwise after a
    /// set-up (`set_up`, run by one caller at a time) that started after this
    /// call arrived. `Err` is why the store is unusable (the call is refused:
    /// it must not touch the directory).
    pub(crate) fn enter(
        &self,
        set_up: impl FnOnce() -> Result<(), String>,
    ) -> Result<Ticket, String> {
        if let Some(ticket) = self.ticket() {
            return Ok(ticket);
        }
        let mut setup = self.lock();
        let arrived = setup.started;
        loop {
            if let Some(ticket) = self.ticket() {
                return Ok(ticket);
            }
            if !setup.running {
                setup.running = true;
                setup.started += 1;
                drop(setup);
                return self.set_up(set_up);
            }
            if setup.slow {
                return Err(self.refuse(format!(
                    "setting the cache directory up takes longer than {:?} (a hung mount?)",
                    self.patience
                )));
            }
            // Wait for the running set-up (number `setup.started`).
            let (running, finished) = (setup.started, setup.finished);
            while setup.finished == finished && !setup.slow {
                let (next, timeout) = self
                    .finished
                    .wait_timeout(setup, self.patience)
                    .unwrap_or_else(|p| p.into_inner());
                setup = next;
                if timeout.timed_out() && setup.finished == finished {
                    setup.slow = true;
                }
            }
            if running > arrived && setup.finished != finished {
                return match self.ticket() {
                    Some(ticket) => Ok(ticket),
                    None => Err(self.refuse(setup.reason.clone())),
                };
            }
            // It began before this call did, or it hangs: look again.
        }
    }

    /// Run `set_up` (this call owns the running set-up) and publish its outcome.
    fn set_up(&self, set_up: impl FnOnce() -> Result<(), String>) -> Result<Ticket, String> {
        // Not under the lock: on a hung network mount this may take long, and
        // every other call must be answered meanwhile.
        let result = set_up();
        let mut setup = self.lock();
        setup.running = false;
        setup.slow = false;
        setup.finished += 1;
        let admitted = match result {
            Ok(()) => {
                // Only a set-up changes the generation, and one runs at a time.
                let generation = (self.state.load(Ordering::Acquire) >> 1) + 1;
                self.state.store((generation << 1) | 1, Ordering::Release);
                setup.reason.clear();
                Ok(Ticket(generation))
            }
            Err(reason) => {
                setup.reason.clone_from(&reason);
                Err(self.refuse(reason))
            }
        };
        drop(setup);
        self.finished.notify_all();
        admitted
    }

    fn refuse(&self, reason: String) -> String {
        self.refused.fetch_add(1, Ordering::Relaxed);
        reason
    }

    /// A call admitted with `ticket` failed in a way that may mean the root is
    /// gone (`ENOENT`, `ESTALE`). It counts only if no set-up happened since
    /// the call was admitted, and only if `root_gone` (a check of the root)
    /// confirms it, returning why: then the store is down and the next call
    /// sets it up again.
    pub(crate) fn failed(&self, ticket: Ticket, root_gone: impl FnOnce() -> Option<String>) {
        let current = (ticket.0 << 1) | 1;
        if self.state.load(Ordering::Acquire) != current {
            return; // A set-up since, or already down: stale news.
        }
        let Some(reason) = root_gone() else {
            return; // The root is there: a lost race or a miss.
        };
        let mut setup = self.lock();
        if self
            .state
            .compare_exchange(current, current & !1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            setup.reason = reason;
        }
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::Health;

    /// A set-up that hangs (a hung network mount): one waiter gives up after
    /// the patience, later calls are refused at once, and the store is usable
    /// as soon as the set-up returns.
    #[test]
    fn a_hung_set_up_is_waited_for_once_then_refused_fast() {
        let health = Arc::new(Health {
            patience: Duration::from_millis(50),
            ..Health::default()
        });
        let (release, hung) = mpsc::channel::<()>();
        let (started, set_up_running) = mpsc::channel::<()>();
        let owner = {
            let health = health.clone();
            std::thread::spawn(move || {
                health.enter(|| {
                    started.send(()).unwrap();
                    hung.recv().unwrap();
                    Ok(())
                })
            })
        };
        set_up_running.recv().unwrap();
        let e = health.enter(|| panic!("one set-up at a time")).unwrap_err();
        assert!(e.contains("hung mount"), "{e}");
        let t = std::time::Instant::now();
        let e = health.enter(|| panic!("one set-up at a time")).unwrap_err();
        assert!(e.contains("hung mount"), "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "refused without waiting again"
        );
        assert_eq!(health.refused(), 2);
        release.send(()).unwrap();
        assert!(owner.join().unwrap().is_ok());
        assert!(health.is_ready());
        assert!(health.enter(|| panic!("already set up")).is_ok());
    }

    /// Failures of calls admitted before a set-up are stale; an `ENOENT`
    /// under an intact root is not "root gone".
    #[test]
    fn only_confirmed_failures_of_the_current_generation_count() {
        let health = Health::default();
        let old = health.enter(|| Ok(())).unwrap();
        health.failed(old, || None);
        assert!(health.is_ready(), "root intact: a lost race");
        health.failed(old, || Some("root gone".into()));
        assert!(!health.is_ready());
        let new = health.enter(|| Ok(())).unwrap();
        assert_eq!(new.generation(), old.generation() + 1);
        health.failed(old, || panic!("a stale failure is not even checked"));
        assert!(health.is_ready());
        assert_eq!(health.refused(), 0);
    }
}
