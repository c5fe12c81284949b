//! Reading the files users name on the command line (`--inputs`, `--locked`)
//! with a bound on their size.
//!
//! `read_to_string` reads until end of file, and some files never end:
//! `--inputs /dev/zero` read until memory ran out. A manifest or lock file is
//! JSON text, a few hundred bytes per input or file; 64 MiB is some 200,000
//! files, far more than a mount is made of, and little enough memory to read
//! whole. Anything longer fails at once, in one line naming the limit. Pipes
//! (`--inputs <(make-manifest)`) still work: only the bytes read count.
#![allow(
    clippy::disallowed_methods,
    reason = "files the user names (manifest, lock file), not a cache directory"
)]

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The most bytes read from a user's file.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The text of `path`, given with `flag`, if it has at most [`MAX_FILE_BYTES`].
pub fn read(path: &Path, flag: &str) -> Result<String> {
    read_at_most(path, flag, MAX_FILE_BYTES)
}

fn read_at_most(path: &Path, flag: &str, limit: u64) -> Result<String> {
    let shown = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{flag} {shown}: cannot read"))?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "at the limit" from "over it".
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{flag} {shown}: cannot read"))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{flag} {shown}: larger than {} ({limit} bytes), the most inputfs reads from it",
            bytesize::ByteSize::b(limit).display().iec()
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{flag} {shown}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_fails_fast_naming_the_limit() {
        let started = std::time::Instant::now();
        let e = format!(
            "{:#}",
            read(Path::new("/dev/zero"), "--inputs").unwrap_err()
        );
        assert_eq!(
            e,
            "--inputs /dev/zero: larger than 64.0 MiB (67108864 bytes), the most inputfs reads from it"
        );
        // 64 MiB from /dev/zero, nothing more: well under a few seconds.
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }

    #[test]
    fn files_up_to_the_limit_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_at_most(&path, "--inputs", 10).unwrap(), "0123456789");
        let e = format!("{:#}", read_at_most(&path, "--inputs", 9).unwrap_err());
        assert!(e.contains("larger than 9 B (9 bytes)"), "{e}");
        std::fs::write(&path, b"{\"a\": \"\xff\"}").unwrap();
        let e = format!("{:#}", read(&path, "--locked").unwrap_err());
        assert!(
            e.ends_with("not UTF-8 text (invalid byte at offset 7)"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            read(&dir.path().join("none"), "--locked").unwrap_err()
        );
        assert!(e.contains("none: cannot read"), "{e}");
    }
}
