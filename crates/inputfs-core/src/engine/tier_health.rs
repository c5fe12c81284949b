//! Whether a cache tier is degraded, decided from its calls' outcomes without
//! any time window: the state machine behind "one warning per episode".
//!
//! A tier that fails (full, read-only, gone, permission denied) usually fails
//! on every call until someone fixes it, so the log gets one line per
//! degraded *episode*: the first failure is a warning, and the first time
//! every kind of call that failed has succeeded again an info line says the
//! tier recovered. Kinds ([`Op`]) are tracked apart because a full or
//! read-only directory still answers lookups: a miss must not count as
//! "recovered" while every publish still fails, or the log would flap.
//!
//! Calls overlap, so an outcome is only evidence about the state the tier was
//! in when its call *started*. Every transition (healthy → degraded →
//! healthy) bumps an epoch, each call is stamped with the epoch it started in
//! ([`TierHealth::stamp`]), and:
//! - a failure of a call that started before the last recovery is stale (the
//!   tier was fixed under it): counted as an error, but it opens no episode;
//! - a success of a call that started before the episode began proves nothing
//!   about the fix, so it ends nothing.
//!
//! Epoch and failing kinds share one atomic word, so the healthy path is one
//! load and no interleaving can see one without the other. A shuttle test
//! (`tier_health_model`) explores the interleavings.

use crate::sync::atomic::{AtomicU64, Ordering};

/// A kind of tier call, for telling when a degraded tier has recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Put,
    Claim,
    /// A failure found outside the read path (opening the tier at mount); any
    /// successful call clears it.
    Outside,
}

impl Op {
    fn bit(self) -> u64 {
        match self {
            Op::Get => 1,
            Op::Put => 2,
            Op::Claim => 4,
            Op::Outside => 8,
        }
    }
}

/// Bits of the word that hold the failing kinds; the epoch is above them.
const KINDS: u64 = 0xff;
const EPOCH: u64 = 0x100;

/// The epoch a call started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(u64);

/// What an outcome did to the tier's state: the caller logs and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing changed.
    None,
    /// This failure opened an episode: warn.
    Degraded,
    /// This success closed one: say the tier recovered.
    Recovered,
    /// A failure of a call from before the last recovery: no episode.
    Stale,
}

/// Epoch (even while healthy, odd while degraded) and the kinds failing.
#[derive(Debug, Default)]
pub(crate) struct TierHealth {
    word: AtomicU64,
}

impl TierHealth {
    /// Stamp a call about to start.
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp(self.word.load(Ordering::Acquire) / EPOCH)
    }

    /// Whether some kind of call is failing right now.
    pub(crate) fn degraded(&self) -> bool {
        self.word.load(Ordering::Acquire) & KINDS != 0
    }

    /// Whether calls of kind `op` are failing right now (publishes may work
    /// while lookups of a just re-created directory have not been seen to).
    pub(crate) fn failing(&self, op: Op) -> bool {
        self.word.load(Ordering::Acquire) & op.bit() != 0
    }

    /// A call of kind `op`, stamped `stamp`, failed.
    pub(crate) fn failed(&self, op: Op, stamp: Stamp) -> Transition {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let (epoch, kinds) = (word / EPOCH, word & KINDS);
            // The last recovery is `epoch` while healthy, `epoch - 1` while
            // degraded: a call stamped before it is stale.
            let last_recovery = if kinds == 0 { epoch } else { epoch - 1 };
            if stamp.0 < last_recovery {
                return Transition::Stale;
            }
            if kinds & op.bit() != 0 {
                return Transition::None;
            }
            let (next, transition) = if kinds == 0 {
                (((epoch + 1) * EPOCH) | op.bit(), Transition::Degraded)
            } else {
                (word | op.bit(), Transition::None)
            };
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return transition,
                Err(now) => word = now,
            }
        }
    }

    /// A call of kind `op`, stamped `stamp`, succeeded. One atomic load when
    /// the tier is healthy.
    pub(crate) fn succeeded(&self, op: Op, stamp: Stamp) -> Transition {
        let clears = op.bit() | Op::Outside.bit();
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let (epoch, kinds) = (word / EPOCH, word & KINDS);
            // Healthy, or this kind is not failing, or the call started
            // before the episode did: nothing to clear.
            if kinds & clears == 0 || stamp.0 < epoch {
                return Transition::None;
            }
            let left = kinds & !clears;
            let (next, transition) = if left == 0 {
                ((epoch + 1) * EPOCH, Transition::Recovered)
            } else {
                ((epoch * EPOCH) | left, Transition::None)
            };
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return transition,
                Err(now) => word = now,
            }
        }
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;

    #[test]
    fn one_episode_per_condition() {
        let h = TierHealth::default();
        let s = h.stamp();
        assert_eq!(h.failed(Op::Put, s), Transition::Degraded);
        assert_eq!(h.failed(Op::Put, s), Transition::None);
        assert!(h.degraded());
        // A lookup that started before the episode proves nothing.
        assert_eq!(h.succeeded(Op::Put, s), Transition::None);
        let after = h.stamp();
        assert_eq!(
            h.succeeded(Op::Get, after),
            Transition::None,
            "Get was not failing"
        );
        assert!(h.degraded(), "publishes still fail");
        assert!(h.failing(Op::Put) && !h.failing(Op::Get));
        assert_eq!(h.succeeded(Op::Put, after), Transition::Recovered);
        assert!(!h.failing(Op::Put));
        assert!(!h.degraded());
        // A failure of a call from before the recovery opens nothing...
        assert_eq!(h.failed(Op::Put, s), Transition::Stale);
        assert_eq!(h.failed(Op::Get, after), Transition::Stale);
        assert!(!h.degraded());
        // ...one that started after it does.
        assert_eq!(h.failed(Op::Get, h.stamp()), Transition::Degraded);
    }

    #[test]
    fn kinds_recover_apart_and_outside_clears_with_any() {
        let h = TierHealth::default();
        let s = h.stamp();
        assert_eq!(h.failed(Op::Outside, s), Transition::Degraded);
        assert_eq!(h.failed(Op::Claim, s), Transition::None);
        let after = h.stamp();
        assert_eq!(h.succeeded(Op::Get, after), Transition::None);
        assert!(h.degraded(), "claims still fail");
        assert_eq!(h.succeeded(Op::Claim, after), Transition::Recovered);
    }
}
