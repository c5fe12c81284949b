//! Logging setup: `tracing` with a filter from `INPUTFS_LOG` (default: info for
//! inputfs, warnings for libraries) and a text or JSON format.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber, writing to stderr.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("INPUTFS_LOG").unwrap_or_else(|_| {
        // fuser warns when it unmounts a mount that `fusermount3 -u` already
        // removed; that is the normal way to stop, so only its errors are shown.
        // rustls-platform-verifier logs every rejected certificate as an error;
        // the failure itself reaches the user once, in the mount's one line.
        EnvFilter::new(
            "warn,fuser=error,rustls_platform_verifier=off,inputfs=info,inputfs_core=info,inputfs_store=info,\
             inputfs_source=info,inputfs_fuse=info",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
