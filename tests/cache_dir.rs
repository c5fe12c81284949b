//! What a cache directory holds, counted from the outside, as tests check it.
//!
//! An object is cached either as block files (`*.blk`, each a header and one
//! block) or, in a local cache, held whole as one plain file (`object.data`,
//! for kernel passthrough), which stands for all of its blocks. Tests count
//! both the same way, so they say "every block is cached" whichever form the
//! cache chose.

use std::path::Path;

/// Blocks cached under `dir` (a `--cache-dir`/`--shared-cache` directory) and
/// the bytes of the files holding them, for objects cut in `block_size` blocks.
/// An object held as a plain file counts its blocks once: while it is being
/// made plain its block files stay beside it until they are removed (a daemon
/// does that in the background), and a block held twice is still one block.
pub fn cached_blocks(dir: &Path, block_size: u64) -> (usize, u64) {
    let (mut blocks, mut bytes) = (0, 0);
    let mut stack = vec![dir.join(inputfs_store::ROOT_NAME).join("objects")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let entries: Vec<_> = entries
            .flatten()
            .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
            .collect();
        let plain = entries
            .iter()
            .find(|(path, meta)| meta.is_file() && path.ends_with(inputfs_store::PLAIN_NAME));
        if let Some((_, meta)) = plain {
            blocks += meta.len().div_ceil(block_size) as usize;
            bytes += meta.len();
            continue;
        }
        for (path, meta) in entries {
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "blk") {
                blocks += 1;
                bytes += meta.len();
            }
        }
    }
    (blocks, bytes)
}

/// A count from the daemon's unmount line `cache tier NAME copies: N made, N
/// skipped while busy, N retried, N dropped, N pending`.
pub fn tier_copies(log: &str, tier: &str, what: &str) -> u64 {
    let prefix = format!("cache tier {tier} copies: ");
    let line = log
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no `{prefix}` line in the log:\n{log}"));
    line.split(", ")
        .find_map(|part| part.strip_suffix(what).map(str::trim))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `N {what}` in {line:?}"))
}

/// The `N <what>` of the `origin: N block reads, N bytes, N requests repeated, N
/// failed` line a mount logs at unmount.
pub fn origin_summary(log: &str, what: &str) -> u64 {
    let line = log
        .lines()
        .find_map(|l| l.split_once("origin: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no `origin: ` line in the log:\n{log}"));
    line.split(", ")
        .find_map(|part| part.strip_suffix(what).map(str::trim))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `N {what}` in {line:?}"))
}
