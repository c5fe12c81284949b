//! Progress of a long copy (`inputfs warm`, `mount --copy-to-local`), shown the
//! way the place it goes can take it: a live `indicatif` bar (bytes, rate, ETA)
//! when stderr is a terminal, and otherwise — a daemon's log file, a CI job, a
//! pipe — a log line when it starts, every few seconds, and when it ends, so a
//! log shows the copy is moving without drowning in redraws.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The progress of copying `total` bytes.
pub struct Progress {
    what: &'static str,
    total: u64,
    start: Instant,
    bar: Option<ProgressBar>,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// Start showing the progress of `what` (e.g. "copy to local") over `files`
    /// files of `total` bytes.
    pub fn start(what: &'static str, files: usize, total: u64) -> Progress {
        let start = Instant::now();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() {
            tracing::info!(
                files,
                total_bytes = total,
                "{what}: {files} files, {}",
                ByteSize::b(total).display().iec()
            );
        }
        Progress {
            what,
            total,
            start,
            bar,
            last_log: Mutex::new(start),
        }
    }

    /// `done` bytes are done. Cheap: called after every block.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let now = Instant::now();
        let Ok(mut last) = self.last_log.lock() else {
            return;
        };
        if now.duration_since(*last) >= LOG_EVERY {
            *last = now;
            drop(last);
            self.log(done, "progress");
        }
    }

    /// The copy ended (successfully or not): clear the bar, or log a last line.
    pub fn finish(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => self.log(done, "done"),
        }
    }

    fn log(&self, done: u64, stage: &str) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = (done as f64 / secs) as u64;
        let percent = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        tracing::info!(
            done_bytes = done,
            total_bytes = self.total,
            bytes_per_sec = rate,
            "{} {stage}: {} of {} ({percent:.0}%), {}/s",
            self.what,
            ByteSize::b(done).display().iec(),
            ByteSize::b(self.total).display().iec(),
            ByteSize::b(rate).display().iec()
        );
    }
}
