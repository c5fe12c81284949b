//! Deterministic test data and checksums: every byte a test reads back is checked
//! against what was written, so data must be reproducible from a seed and cheap
//! to compare (SHA-256 for whole files, slices for ranges).

use std::io::Read;

/// `len` pseudo-random bytes from `seed` (SplitMix64): the same seed always gives
/// the same bytes, different seeds (and offsets) give unrelated ones, so a block
/// served from the wrong place or the wrong object never matches by accident.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x5eed_1f5e_c0de_d00d;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// Lower-case hex SHA-256 of a file's contents, read in chunks (for big files
/// read back through a mount).
pub fn sha256_file(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The object set most end-to-end tests read: odd sizes (multi-block, one byte,
/// not block-aligned) under a `train/` prefix, with deterministic content from
/// `seed`. Returns (key, bytes) pairs.
pub fn training_set(seed: u64) -> Vec<(String, Vec<u8>)> {
    [
        ("train/a.bin", 3 * (1 << 20) + 17),
        ("train/nested/b.bin", 1 << 20),
        ("train/c.txt", 1),
        ("train/d.bin", 700_001),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (k, n))| (k.to_string(), pattern(seed + i as u64, n)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_seed_dependent() {
        assert_eq!(pattern(1, 1000), pattern(1, 1000));
        assert_ne!(pattern(1, 1000), pattern(2, 1000));
        // A prefix of a longer pattern is the shorter pattern.
        assert_eq!(pattern(7, 13)[..], pattern(7, 100)[..13]);
        assert_eq!(pattern(3, 0).len(), 0);
        // Golden (also computed independently): the data other suites and scripts
        // compare against must never drift.
        assert_eq!(hex::encode(pattern(0, 8)), "6b6f888582cbf752");
        assert_eq!(
            sha256_hex(&pattern(1, 1 << 20)),
            "62b9b3e182cc2e53aee1229d102a7837cda011a6a6d0af7488644add9b1925e6"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_hash_matches_memory_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pattern(9, 3 * 1024 * 1024 + 17);
        std::fs::write(&path, &data).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha256_hex(&data));
    }
}
