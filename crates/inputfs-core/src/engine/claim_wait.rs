//! When a worker waiting for another worker's fetch looks for the block.
//!
//! Each look is a round trip to the shared directory's server (a failed
//! `open` of the block file, then a `mkdir` of the claim, which fails while it
//! is held): on NFS or SMB, metadata operations are what a fleet exhausts
//! first. Polling at a fixed short period costs looks in proportion to the
//! fetch time: at 50 ms, a 3 s fetch is 60 looks per waiting worker.
//!
//! Instead a waiter schedules its looks from two things it knows without
//! trusting the shared directory:
//! - **How long a fetch takes**: its own origin fetches of whole blocks,
//!   smoothed ([`FetchTime`]). Workers of one fleet fetch from the same origin
//!   over similar links, so the holder's fetch takes about as long; and in a
//!   cold start each worker also fetches (cooperative readahead), so the
//!   estimate exists early.
//! - **How long it has waited already.**
//!
//! The pause before the next look is a quarter of the larger of the two
//! ([`next_pause`]), between [`FIRST_LOOK`] and [`LONGEST_PAUSE`]. So a block
//! that lands when expected is found in about four looks, whatever the fetch
//! time, and at most a quarter of a fetch after it landed; a holder slower
//! than expected (or dead, until its claim expires) costs looks that grow
//! with the logarithm of the wait (each pause a quarter of the time waited),
//! not linearly. Before the first fetch of its own, a worker has no estimate
//! and starts at [`FIRST_LOOK`], growing the same way.
//!
//! A look is one `open` of the block file. Only once the block is due (one
//! fetch time after the wait began, or at once without an estimate) does a
//! look also try the claim ([`claim_due`]), which costs a `mkdir` and a read of
//! the holder's line: that is how a waiter learns that the holder failed
//! (the claim is gone) or died (it expired), and takes the fetch over. A
//! holder that fails is so noticed at most one fetch time late.
//!
//! Why not a hint in the claim file (the holder's start time and expected
//! duration)? The claim is written by other workers, other releases and
//! people: a forged or skewed hint would have to be bounded and checked, and
//! it would change the claim format that the previous release reads. The
//! worker's own clock and fetches need neither.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The pause before the first look without an estimate, and the shortest
/// pause: a claimed block rarely lands sooner.
pub(super) const FIRST_LOOK: Duration = Duration::from_millis(5);

/// The longest pause between two looks: a block that lands while a waiter
/// sleeps is found this late at most.
pub(super) const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// The pause is this fraction (1/n) of the fetch time or of the time waited.
const LOOKS_PER_FETCH: u32 = 4;

/// The smoothed duration of this worker's origin fetches of whole blocks.
#[derive(Debug, Default)]
pub(super) struct FetchTime {
    /// Microseconds; 0 until the first fetch.
    micros: AtomicU64,
}

impl FetchTime {
    /// Take one fetch's duration into the estimate (weight 1/4: a few fetches
    /// follow a change of link speed, one slow fetch does not dominate).
    pub(super) fn record(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    old - old / 4 + sample / 4
                })
            });
    }

    /// The current estimate, if this worker has fetched a block.
    pub(super) fn estimate(&self) -> Option<Duration> {
        match self.micros.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// The pause before the next look for a claimed block, having waited
/// `waited` so far, with the fetch time `estimate` (see the module docs).
pub(super) fn next_pause(estimate: Option<Duration>, waited: Duration) -> Duration {
    let base = estimate.unwrap_or(FIRST_LOOK * LOOKS_PER_FETCH);
    (base.max(waited) / LOOKS_PER_FETCH).clamp(FIRST_LOOK, LONGEST_PAUSE)
}

/// Whether a look, having waited `waited`, should also try the claim (see
/// the module docs).
pub(super) fn claim_due(estimate: Option<Duration>, waited: Duration) -> bool {
    estimate.is_none_or(|fetch| waited >= fetch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks a waiter makes until a block lands `lands` after it started
    /// waiting (the look that finds it included).
    fn looks(estimate: Option<Duration>, lands: Duration) -> u32 {
        let (mut waited, mut n) = (Duration::ZERO, 0);
        loop {
            waited += next_pause(estimate, waited);
            n += 1;
            if waited >= lands {
                return n;
            }
        }
    }

    #[test]
    fn a_block_landing_when_expected_costs_four_looks_whatever_the_fetch_time() {
        for ms in [20, 60, 300, 1000, 3000] {
            let t = Duration::from_millis(ms);
            assert_eq!(looks(Some(t), t), 4, "{ms} ms");
        }
    }

    #[test]
    fn a_slow_or_dead_holder_costs_looks_in_the_logarithm_of_the_wait() {
        let fetch = Duration::from_millis(60);
        // 100x slower than expected: a few dozen looks, not 400.
        let n = looks(Some(fetch), fetch * 100);
        assert!(n <= 30, "{n} looks");
        // A dead holder's claim expires after the claim timeout (20 s).
        let n = looks(Some(fetch), Duration::from_secs(20));
        assert!(n <= 40, "{n} looks for 20 s");
        // Without an estimate, from 5 ms on: the same growth.
        let n = looks(None, Duration::from_secs(3));
        assert!(n <= 40, "{n} looks for 3 s");
    }

    #[test]
    fn a_waiter_is_late_by_at_most_a_quarter_of_the_larger_of_fetch_and_wait() {
        let fetch = Duration::from_millis(200);
        for lands_ms in [1u64, 37, 150, 199, 420, 999, 5000] {
            let lands = Duration::from_millis(lands_ms);
            let mut waited = Duration::ZERO;
            while waited < lands {
                waited += next_pause(Some(fetch), waited);
            }
            let late = waited - lands;
            let bound = (fetch.max(lands) / LOOKS_PER_FETCH).max(FIRST_LOOK);
            assert!(late <= bound, "{late:?} late for {lands:?}");
        }
    }

    #[test]
    fn pauses_stay_between_the_first_look_and_the_longest_pause() {
        assert_eq!(next_pause(Some(Duration::ZERO), Duration::ZERO), FIRST_LOOK);
        assert_eq!(next_pause(None, Duration::ZERO), FIRST_LOOK);
        let huge = Duration::from_secs(86_400);
        assert_eq!(next_pause(Some(huge), huge), LONGEST_PAUSE);
    }

    #[test]
    fn the_claim_is_tried_once_the_block_is_due() {
        let fetch = Duration::from_millis(300);
        assert!(!claim_due(Some(fetch), Duration::from_millis(75)));
        assert!(claim_due(Some(fetch), fetch));
        assert!(claim_due(None, Duration::ZERO));
    }

    #[test]
    fn the_estimate_follows_the_fetches() {
        let t = FetchTime::default();
        assert_eq!(t.estimate(), None);
        t.record(Duration::from_millis(100));
        assert_eq!(t.estimate(), Some(Duration::from_millis(100)));
        for _ in 0..40 {
            t.record(Duration::from_millis(20));
        }
        let e = t.estimate().unwrap();
        assert!(e < Duration::from_millis(21), "{e:?}");
        t.record(Duration::MAX);
        assert!(t.estimate().is_some());
    }
}
