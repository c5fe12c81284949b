//! Model-checked tests of the `tier_health` state machine: shuttle explores
//! interleavings of calls that start in one epoch and report in another
//! (`scripts/test` runs these with `--features shuttle`).
//!
//! A modelled tier is broken or fixed by an operator thread while workers
//! make calls, each of which succeeds or fails by the tier's state at some
//! moment inside the call. Asserted in every explored interleaving:
//! - a tier that is broken from some moment on, and stays so, ends degraded
//!   once a call started after the breakage has reported (a failing one is
//!   always reported);
//! - a tier fixed for good ends healthy once a call started after the fix has
//!   reported, whatever stale failures arrive after it;
//! - every degradation has its own recovery (warnings and info lines pair up).

use std::sync::Arc;

use shuttle::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use shuttle::thread;

use super::tier_health::{Op, TierHealth, Transition};

#[derive(Default)]
struct Model {
    health: TierHealth,
    broken: AtomicBool,
    degradations: AtomicU64,
    recoveries: AtomicU64,
}

impl Model {
    /// A call: stamped, then its outcome decided by the tier's state now
    /// (after a yield, so other threads act in between), then reported.
    fn call(&self, op: Op) {
        let stamp = self.health.stamp();
        thread::yield_now();
        let transition = if self.broken.load(Ordering::SeqCst) {
            self.health.failed(op, stamp)
        } else {
            self.health.succeeded(op, stamp)
        };
        match transition {
            Transition::Degraded => self.degradations.fetch_add(1, Ordering::SeqCst),
            Transition::Recovered => self.recoveries.fetch_add(1, Ordering::SeqCst),
            Transition::None | Transition::Stale => 0,
        };
    }

    fn paired(&self) {
        let (d, r) = (
            self.degradations.load(Ordering::SeqCst),
            self.recoveries.load(Ordering::SeqCst),
        );
        let degraded = u64::from(self.health.degraded());
        assert_eq!(
            d,
            r + degraded,
            "{d} degradations, {r} recoveries, degraded now: {degraded}"
        );
    }
}

fn run(model: &Arc<Model>, ops: &[Op], operator: impl FnOnce(&Model) + Send + 'static) {
    let mut threads: Vec<_> = ops
        .iter()
        .map(|&op| {
            let m = model.clone();
            thread::spawn(move || {
                m.call(op);
                m.call(op);
            })
        })
        .collect();
    let m = model.clone();
    threads.push(thread::spawn(move || operator(&m)));
    for t in threads {
        t.join().unwrap();
    }
}

const ITERATIONS: usize = 5_000;

#[test]
fn a_tier_broken_for_good_ends_degraded() {
    shuttle::check_random(
        || {
            let model = Arc::new(Model::default());
            run(&model, &[Op::Get, Op::Put, Op::Put], |m| {
                m.broken.store(true, Ordering::SeqCst);
            });
            // A call that starts now sees the breakage.
            model.call(Op::Put);
            assert!(model.health.degraded(), "a failing tier is reported");
            model.paired();
        },
        ITERATIONS,
    );
}

#[test]
fn a_tier_fixed_for_good_ends_healthy_despite_stale_failures() {
    shuttle::check_random(
        || {
            let model = Arc::new(Model::default());
            model.broken.store(true, Ordering::SeqCst);
            model.call(Op::Put);
            assert!(model.health.degraded());
            run(&model, &[Op::Get, Op::Put, Op::Claim], |m| {
                m.broken.store(false, Ordering::SeqCst);
            });
            // Calls that start after the fix clear every kind that failed.
            for op in [Op::Get, Op::Put, Op::Claim] {
                model.call(op);
            }
            assert!(!model.health.degraded(), "a fixed tier recovers");
            model.paired();
        },
        ITERATIONS,
    );
}

#[test]
fn flapping_tier_pairs_every_warning_with_a_recovery() {
    shuttle::check_pct(
        || {
            let model = Arc::new(Model::default());
            run(&model, &[Op::Get, Op::Put], |m| {
                m.broken.store(true, Ordering::SeqCst);
                thread::yield_now();
                m.broken.store(false, Ordering::SeqCst);
                thread::yield_now();
                m.broken.store(true, Ordering::SeqCst);
            });
            model.paired();
        },
        ITERATIONS,
        3,
    );
}
