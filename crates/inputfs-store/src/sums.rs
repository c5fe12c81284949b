//! The sidecar of a plain file: what is needed to check it, as pure
//! functions (no I/O).
//!
//! A plain file (`object.data`, see `plain`) is the object's bytes and
//! nothing else, so that kernel passthrough can serve it at the same
//! offsets; it has no room for a checksum (a trailer would be read as
//! content). Its checksums live beside it, in `object.sums`, written from
//! the verified blocks the plain file was made of:
//!
//! ```text
//! offset size field
//!      0    8 magic "INPUTFSS"
//!      8   32 cache key
//!     40    8 block size, u64 LE
//!     48    8 object size, u64 LE
//!     56  4*n crc32c of each block, u32 LE (n = blocks of the object)
//!  56+4n    4 crc32c of everything before, u32 LE
//! ```
//!
//! A sidecar that is cut short, too long, of another object or layout, or
//! fails its own checksum is no sidecar: its plain file is never served.
//! Anyone who can write the cache can still forge both files consistently
//! (docs/THREAT-MODEL.md); what this stops is a wrong or torn plain file,
//! such as a zero-filled `object.data` of the right size.

use inputfs_core::{BlockLayout, CacheKey};

pub const MAGIC: [u8; 8] = *b"INPUTFSS";
const FIXED: usize = 56;

/// The checksums of a plain file's blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sums {
    crcs: Vec<u32>,
}

/// The length of the sidecar of an object of `layout` (the most read of one).
pub fn len_for(layout: &BlockLayout) -> u64 {
    FIXED as u64 + 4 * layout.block_count() + 4
}

impl Sums {
    /// Start an empty list, to [`push`](Self::push) block checksums onto.
    pub fn new() -> Sums {
        Sums { crcs: Vec::new() }
    }

    pub fn push(&mut self, block: &[u8]) {
        self.crcs.push(crc32c::crc32c(block));
    }

    /// Whether `data` is block `index` as the sidecar says.
    pub fn check(&self, index: u64, data: &[u8]) -> bool {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.crcs.get(i))
            .is_some_and(|&crc| crc == crc32c::crc32c(data))
    }

    /// The sidecar's bytes for the object `key` of `layout`.
    pub fn encode(&self, key: &CacheKey, layout: &BlockLayout) -> Vec<u8> {
        let mut out = Vec::with_capacity(len_for(layout) as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&key.0);
        out.extend_from_slice(&layout.block_size.to_le_bytes());
        out.extend_from_slice(&layout.object_size.to_le_bytes());
        for crc in &self.crcs {
            out.extend_from_slice(&crc.to_le_bytes());
        }
        let own = crc32c::crc32c(&out);
        out.extend_from_slice(&own.to_le_bytes());
        out
    }

    /// The sums in `bytes`, if they are a sound sidecar of the object `key`
    /// of `layout` (one checksum per block); `None` otherwise.
    pub fn decode(bytes: &[u8], key: &CacheKey, layout: &BlockLayout) -> Option<Sums> {
        if bytes.len() as u64 != len_for(layout) {
            return None;
        }
        let (body, own) = bytes.split_at(bytes.len() - 4);
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or([0; 8]));
        let sound = body[..8] == MAGIC
            && body[8..40] == key.0
            && u64_at(40) == layout.block_size
            && u64_at(48) == layout.object_size
            && own == crc32c::crc32c(body).to_le_bytes();
        sound.then(|| Sums {
            crcs: body[FIXED..]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}

impl Default for Sums {
    fn default() -> Self {
        Sums::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout() -> BlockLayout {
        BlockLayout::new(4, 10)
    }

    #[test]
    fn round_trip_and_check() {
        let key = CacheKey([3; 32]);
        let data = b"0123456789";
        let mut sums = Sums::new();
        data.chunks(4).for_each(|c| sums.push(c));
        let bytes = sums.encode(&key, &layout());
        assert_eq!(bytes.len() as u64, len_for(&layout()));
        let back = Sums::decode(&bytes, &key, &layout()).unwrap();
        assert!(back.check(0, b"0123") && back.check(2, b"89"));
        assert!(!back.check(1, b"0000") && !back.check(3, b"x"));
        // Another object, another layout, a flipped bit, a cut: no sidecar.
        assert_eq!(Sums::decode(&bytes, &CacheKey([4; 32]), &layout()), None);
        assert_eq!(Sums::decode(&bytes, &key, &BlockLayout::new(4, 11)), None);
        let mut flipped = bytes.clone();
        flipped[60] ^= 1;
        assert_eq!(Sums::decode(&flipped, &key, &layout()), None);
        assert_eq!(
            Sums::decode(&bytes[..bytes.len() - 1], &key, &layout()),
            None
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Sums::decode(&bytes, &CacheKey([0; 32]), &layout());
        }
    }
}
