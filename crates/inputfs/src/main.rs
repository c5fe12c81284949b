//! `inputfs`: the command line.
//!
//! The binary is the only place that knows about processes, flags, environment
//! variables and logging; the library crates below it know none of that. Errors are
//! `anyhow` here and become exactly one line on stderr with a non-zero exit.

mod cli;
mod daemon;
mod inputs;
mod logging;
mod mount;
mod stack;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's message without its usage block and hints: one line.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("inputfs: {}", first.trim());
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        cli::Command::Mount(args) => mount::run(args),
    };
    if let Err(e) = result {
        eprintln!("inputfs: error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// An error and its causes on one line, most specific last.
pub fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}
