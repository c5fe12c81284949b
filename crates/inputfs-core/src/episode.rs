//! Conditions that last — the origin throttling us (HTTP 429, 503 `SlowDown`),
//! origin reads failing — said once per *episode* rather than once per read.
//!
//! Such a condition hits every reader at once, for seconds to hours; a log line
//! per block would bury everything else, but operators need to know it
//! happens (it explains slow epochs and `EIO`s). So the first occurrence after
//! a quiet spell is one warning, every occurrence is counted (for metrics), and
//! once an operation succeeds with no occurrence for the quiet period an info
//! line says the condition has cleared. The quiet period keeps an origin that
//! refuses, say, a third of the requests from flapping the log on every success.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long without an occurrence, by default, before an episode ends.
pub const QUIET: Duration = Duration::from_secs(30);

/// A condition's episodes: a counter of occurrences and whether one is open.
/// It decides when to speak; the caller says what.
#[derive(Debug)]
pub struct Episode {
    occurrences: AtomicU64,
    /// Whether an episode is open (its warning was given, its end not yet).
    active: AtomicBool,
    /// When the last occurrence came.
    last: Mutex<Option<Instant>>,
    quiet: Duration,
}

impl Default for Episode {
    fn default() -> Self {
        Self::new(QUIET)
    }
}

impl Episode {
    /// Episodes end after `quiet` without an occurrence.
    pub fn new(quiet: Duration) -> Self {
        Episode {
            occurrences: AtomicU64::new(0),
            active: AtomicBool::new(false),
            last: Mutex::new(None),
            quiet,
        }
    }

    /// Occurrences so far.
    pub fn count(&self) -> u64 {
        self.occurrences.load(Ordering::Relaxed)
    }

    /// Whether an episode is open right now.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// The condition occurred. True when this opened an episode: warn then.
    pub fn occurred(&self) -> bool {
        self.occurrences.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Instant::now());
        }
        !self.active.swap(true, Ordering::AcqRel)
    }

    /// An operation succeeded. True when this closed an episode (none for the
    /// quiet period): say it cleared then. One atomic load when none is open.
    pub fn succeeded(&self) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        let quiet = self
            .last
            .lock()
            .map(|last| last.is_none_or(|t| t.elapsed() >= self.quiet))
            .unwrap_or(true);
        quiet && self.active.swap(false, Ordering::AcqRel)
    }
}

/// Throttling seen from the origin, counted by the retry wrapper (which sees
/// every attempt) and exported as `inputfs_origin_throttled_total`.
#[derive(Debug, Default)]
pub struct Throttling {
    episode: Episode,
}

impl Throttling {
    /// Episodes end after `quiet` without a throttled response.
    pub fn new(quiet: Duration) -> Self {
        Throttling {
            episode: Episode::new(quiet),
        }
    }

    /// Throttled responses so far.
    pub fn count(&self) -> u64 {
        self.episode.count()
    }

    /// Whether an episode is open right now.
    pub fn is_active(&self) -> bool {
        self.episode.is_active()
    }

    /// The origin throttled a request (`what` says how, for the log). Returns
    /// whether this opened an episode (and so gave its one warning).
    pub fn throttled(&self, what: &dyn std::fmt::Display) -> bool {
        if self.episode.occurred() {
            tracing::warn!(error = %what,
                "origin is throttling requests (HTTP 429/503 SlowDown): reads are retried with backoff and may be slow");
            true
        } else {
            tracing::debug!(error = %what, "origin throttled a request");
            false
        }
    }

    /// A request succeeded; may end the episode (one info line).
    pub fn succeeded(&self) {
        if self.episode.succeeded() {
            tracing::info!("origin throttling has cleared");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_episode() {
        let t = Throttling::new(Duration::ZERO);
        let opened: Vec<bool> = (0..50).map(|_| t.throttled(&"503")).collect();
        assert_eq!(opened.iter().filter(|o| **o).count(), 1);
        assert_eq!(t.count(), 50);
        assert!(t.is_active());
        t.succeeded();
        assert!(!t.is_active());
        // A new episode warns again.
        assert!(t.throttled(&"429"));
        assert_eq!(t.count(), 51);
    }

    #[test]
    fn successes_within_the_quiet_period_keep_the_episode() {
        let e = Episode::new(Duration::from_secs(3600));
        assert!(e.occurred());
        for _ in 0..10 {
            assert!(!e.succeeded());
            assert!(!e.occurred(), "a success must not re-arm the warning");
        }
        assert!(e.is_active());
        assert_eq!(e.count(), 11);
    }

    #[test]
    fn concurrent_occurrences_open_one_episode() {
        let e = std::sync::Arc::new(Episode::new(Duration::from_secs(3600)));
        let opened: usize = (0..8)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || (0..100).filter(|_| e.occurred()).count())
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(opened, 1);
        assert_eq!(e.count(), 800);
    }
}
