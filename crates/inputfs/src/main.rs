//! `inputfs`: the command line.
//!
//! The binary is the only place that knows about processes, flags, environment
//! variables and logging; the library crates below it know none of that. Errors are
//! `anyhow` here and become exactly one line on stderr with a non-zero exit.

mod cli;
mod daemon;
mod doctor;
mod exporter;
mod gc;
mod inputs;
mod lock;
mod logging;
mod maintain;
mod mount;
mod mountpoint;
mod progress;
mod stack;
mod status;
mod userfile;
mod warm;

use clap::Parser;

/// jemalloc, not glibc's malloc: blocks are megabyte buffers allocated and freed
/// at a high rate on many threads. glibc's per-thread arenas kept freed buffers
/// resident (peak RSS 420 MiB at a 256 MiB memory budget); jemalloc with one
/// arena for large buffers and a 1 s purge delay stays near the live data, at
/// the same throughput (docs/PERFORMANCE.md, "Memory").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's configuration, read once at start (the symbol name is the
/// prefixed `malloc_conf` of tikv-jemalloc-sys; an environment variable
/// `_RJEM_MALLOC_CONF` overrides it for experiments).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"narenas:1,dirty_decay_ms:1000\0";

fn main() {
    quiet_caught_panics();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's message without its usage block and hints, on one line
            // (the paragraph before the first blank line: it may list the
            // missing flags on lines of their own).
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("inputfs: {}", message.join(" "));
            std::process::exit(2);
        }
    };
    if !matches!(cli.command, cli::Command::Mount(_)) {
        // Reporting commands behave like other Unix tools when their reader goes
        // away (`inputfs status | head`): end quietly instead of failing to print.
        // SAFETY: setting a signal's disposition to the default is always sound.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        cli::Command::Mount(args) => mount::run(args),
        cli::Command::Warm(args) => warm::run(args),
        cli::Command::Status { dirs, json } => status::run(&dirs, json),
        cli::Command::Gc {
            dirs,
            max_size,
            dry_run,
            json,
        } => gc::run(&dirs, max_size, dry_run, json),
        cli::Command::Doctor(args) => doctor::run(args).map(|passed| {
            if !passed {
                // The report said what failed; the exit code says that something did.
                std::process::exit(1);
            }
        }),
    };
    if let Err(e) = result {
        eprintln!("inputfs: error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// A panic inside `object_store` is caught at our boundary and becomes a
/// one-line error (`inputfs_source::guard`): the default hook would still
/// print its message and a backtrace note first. Other panics (ours: bugs)
/// keep the default behaviour.
fn quiet_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if inputfs_source::guard::is_catching() {
            tracing::debug!("caught a panic in object_store: {info}");
        } else {
            default(info);
        }
    }));
}

/// An error and its causes on one line, most specific last.
pub fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}
