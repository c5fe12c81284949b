//! The block file format, as pure functions with no I/O.
//!
//! Block files in a shared cache are read by other workers and by future versions
//! of inputfs, and may be torn, truncated or overwritten by garbage on a network
//! filesystem. Keeping the codec apart from the file handling lets it be pinned by
//! a golden-bytes test and fuzzed for "never panics, never accepts a wrong block"
//! without touching a disk. The layout is documented in `docs/FORMAT.md`.
//!
//! ```text
//! offset size field
//!      0    8 magic              b"INPUTFSB"
//!      8    2 format version     u16 LE = 1
//!     10    2 header length      u16 LE = 72
//!     12    4 flags              u32 LE = 0
//!     16   32 cache key          raw bytes
//!     48    8 block index        u64 LE
//!     56    8 data length        u64 LE
//!     64    4 crc32c of data     u32 LE
//!     68    4 crc32c of bytes 0..68 of the header, u32 LE
//!     72    - data
//! ```

use std::fmt;
use std::ops::Range;

use inputfs_core::{BlockId, CacheKey};

/// First eight bytes of every block file.
pub const MAGIC: [u8; 8] = *b"INPUTFSB";
/// The only block format version this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the header that precedes the data.
pub const HEADER_LEN: usize = 72;
/// The only flags value this code reads and writes.
pub const FLAGS: u32 = 0;

const OFF_VERSION: usize = 8;
const OFF_HEADER_LEN: usize = 10;
const OFF_FLAGS: usize = 12;
const OFF_KEY: usize = 16;
const OFF_INDEX: usize = 48;
const OFF_DATA_LEN: usize = 56;
const OFF_DATA_CRC: usize = 64;
const OFF_HEADER_CRC: usize = 68;

/// A header that passed every self-contained check (magic, version, length,
/// flags, header checksum). Whether it is the block that was asked for is
/// [`check_block`]'s business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key: CacheKey,
    pub index: u64,
    pub data_len: u64,
    pub data_crc: u32,
}

/// Why a block file is unusable. Not an error of the store: a defect turns into
/// `Lookup::Corrupt(reason)`, the file is moved aside and the block is fetched again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defect {
    Empty,
    ShortHeader { len: usize },
    BadMagic,
    UnknownVersion(u16),
    BadHeaderLen(u16),
    UnknownFlags(u32),
    HeaderChecksum { stored: u32, computed: u32 },
    WrongKey,
    WrongIndex { found: u64, wanted: u64 },
    LengthField { found: u64, expected: u64 },
    DataLength { found: u64, header: u64 },
    DataChecksum { stored: u32, computed: u32 },
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::Empty => write!(f, "empty file"),
            Defect::ShortHeader { len } => {
                write!(
                    f,
                    "file of {len} bytes is shorter than the {HEADER_LEN}-byte header"
                )
            }
            Defect::BadMagic => write!(f, "bad magic (not an inputfs block)"),
            Defect::UnknownVersion(v) => write!(f, "unknown format version {v}"),
            Defect::BadHeaderLen(n) => write!(f, "header length field {n}, expected {HEADER_LEN}"),
            Defect::UnknownFlags(x) => write!(f, "unknown flags {x:#x}"),
            Defect::HeaderChecksum { stored, computed } => {
                write!(f, "header checksum {stored:08x} != computed {computed:08x}")
            }
            Defect::WrongKey => write!(f, "block of another object"),
            Defect::WrongIndex { found, wanted } => {
                write!(f, "block {found} where block {wanted} was expected")
            }
            Defect::LengthField { found, expected } => {
                write!(f, "header says {found} data bytes, expected {expected}")
            }
            Defect::DataLength { found, header } => {
                write!(f, "file holds {found} data bytes, header says {header}")
            }
            Defect::DataChecksum { stored, computed } => {
                write!(f, "data checksum {stored:08x} != computed {computed:08x}")
            }
        }
    }
}

/// The header for `data` as block `index` of the object `key`.
pub fn encode_header(key: &CacheKey, index: u64, data: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..OFF_VERSION].copy_from_slice(&MAGIC);
    h[OFF_VERSION..OFF_HEADER_LEN].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[OFF_HEADER_LEN..OFF_FLAGS].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    h[OFF_FLAGS..OFF_KEY].copy_from_slice(&FLAGS.to_le_bytes());
    h[OFF_KEY..OFF_INDEX].copy_from_slice(&key.0);
    h[OFF_INDEX..OFF_DATA_LEN].copy_from_slice(&index.to_le_bytes());
    h[OFF_DATA_LEN..OFF_DATA_CRC].copy_from_slice(&(data.len() as u64).to_le_bytes());
    h[OFF_DATA_CRC..OFF_HEADER_CRC].copy_from_slice(&crc32c::crc32c(data).to_le_bytes());
    let hcrc = crc32c::crc32c(&h[..OFF_HEADER_CRC]);
    h[OFF_HEADER_CRC..].copy_from_slice(&hcrc.to_le_bytes());
    h
}

/// Parse and check the header at the start of `buf` (which may be any bytes at
/// all, including fewer than a header's worth). Never panics.
pub fn parse_header(buf: &[u8]) -> Result<Header, Defect> {
    if buf.is_empty() {
        return Err(Defect::Empty);
    }
    let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(Defect::ShortHeader { len: buf.len() });
    };
    if h[..OFF_VERSION] != MAGIC {
        return Err(Defect::BadMagic);
    }
    let version = u16::from_le_bytes(field(h, OFF_VERSION));
    if version != FORMAT_VERSION {
        return Err(Defect::UnknownVersion(version));
    }
    let header_len = u16::from_le_bytes(field(h, OFF_HEADER_LEN));
    if usize::from(header_len) != HEADER_LEN {
        return Err(Defect::BadHeaderLen(header_len));
    }
    let stored = u32::from_le_bytes(field(h, OFF_HEADER_CRC));
    let computed = crc32c::crc32c(&h[..OFF_HEADER_CRC]);
    if stored != computed {
        return Err(Defect::HeaderChecksum { stored, computed });
    }
    let flags = u32::from_le_bytes(field(h, OFF_FLAGS));
    if flags != FLAGS {
        return Err(Defect::UnknownFlags(flags));
    }
    Ok(Header {
        key: CacheKey(field(h, OFF_KEY)),
        index: u64::from_le_bytes(field(h, OFF_INDEX)),
        data_len: u64::from_le_bytes(field(h, OFF_DATA_LEN)),
        data_crc: u32::from_le_bytes(field(h, OFF_DATA_CRC)),
    })
}

/// Check a whole block file's contents against the block that was asked for and
/// the length it must have; on success, the range of `buf` holding the data.
/// This is everything `get` decides about a file's bytes. Never panics.
pub fn check_block(buf: &[u8], id: &BlockId, expected_len: u64) -> Result<Range<usize>, Defect> {
    let h = parse_header(buf)?;
    if h.key != id.key {
        return Err(Defect::WrongKey);
    }
    if h.index != id.index {
        return Err(Defect::WrongIndex {
            found: h.index,
            wanted: id.index,
        });
    }
    if h.data_len != expected_len {
        return Err(Defect::LengthField {
            found: h.data_len,
            expected: expected_len,
        });
    }
    let data = &buf[HEADER_LEN..];
    if data.len() as u64 != h.data_len {
        return Err(Defect::DataLength {
            found: data.len() as u64,
            header: h.data_len,
        });
    }
    let computed = crc32c::crc32c(data);
    if computed != h.data_crc {
        return Err(Defect::DataChecksum {
            stored: h.data_crc,
            computed,
        });
    }
    Ok(HEADER_LEN..buf.len())
}

/// The `N` bytes at `off` of a header (all offsets are compile-time constants
/// inside [`HEADER_LEN`], so this cannot fail).
fn field<const N: usize>(h: &[u8; HEADER_LEN], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[off..off + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(key: [u8; 32], index: u64) -> BlockId {
        BlockId {
            key: CacheKey(key),
            index,
        }
    }

    fn block(id: &BlockId, data: &[u8]) -> Vec<u8> {
        let mut v = encode_header(&id.key, id.index, data).to_vec();
        v.extend_from_slice(data);
        v
    }

    /// Block 3 of the object with key bytes 00 01 .. 1f holding
    /// `b"inputfs golden block\n"`, byte for byte (also in docs/FORMAT.md). If this
    /// fails, the on-disk format changed: every cache in the field would be read
    /// as corrupt. Change it only together with `FORMAT_VERSION`/the root name.
    const GOLDEN_HEX: &str = concat!(
        "494e505554465342", // magic "INPUTFSB"
        "0100",             // format version 1
        "4800",             // header length 72
        "00000000",         // flags 0
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", // key
        "0300000000000000", // block index 3
        "1500000000000000", // data length 21
        "f7319546",         // crc32c(data) = 0x469531f7
        "7b47e598",         // crc32c(header[0..68]) = 0x98e5477b
        "696e707574667320676f6c64656e20626c6f636b0a", // data "inputfs golden block\n"
    );

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn golden_bytes() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let data = b"inputfs golden block\n";
        let file = block(&id(key, 3), data);
        assert_eq!(hex(&file), GOLDEN_HEX);
        assert_eq!(
            check_block(&file, &id(key, 3), 21),
            Ok(HEADER_LEN..HEADER_LEN + 21)
        );
    }

    #[test]
    fn valid_block_checks_out() {
        let b = id([7; 32], 9);
        let file = block(&b, b"hello");
        assert_eq!(&file[check_block(&file, &b, 5).unwrap()], b"hello");
        let empty = block(&b, b"");
        assert_eq!(check_block(&empty, &b, 0), Ok(HEADER_LEN..HEADER_LEN));
    }

    #[test]
    fn each_check_names_its_defect() {
        let b = id([7; 32], 9);
        let file = block(&b, b"hello");
        assert_eq!(parse_header(&[]), Err(Defect::Empty));
        assert_eq!(
            parse_header(&file[..71]),
            Err(Defect::ShortHeader { len: 71 })
        );
        let mut bad = file.clone();
        bad[0] = b'X';
        assert_eq!(parse_header(&bad), Err(Defect::BadMagic));
        bad = file.clone();
        bad[8] = 2;
        assert_eq!(parse_header(&bad), Err(Defect::UnknownVersion(2)));
        bad = file.clone();
        bad[10] = 73;
        assert_eq!(parse_header(&bad), Err(Defect::BadHeaderLen(73)));
        bad = file.clone();
        bad[20] ^= 1;
        assert!(matches!(
            parse_header(&bad),
            Err(Defect::HeaderChecksum { .. })
        ));
        let other_key = id([8; 32], 9);
        assert_eq!(check_block(&file, &other_key, 5), Err(Defect::WrongKey));
        let other_index = id([7; 32], 10);
        assert!(matches!(
            check_block(&file, &other_index, 5),
            Err(Defect::WrongIndex { .. })
        ));
        assert!(matches!(
            check_block(&file, &b, 4),
            Err(Defect::LengthField { .. })
        ));
        bad = file.clone();
        bad.push(0);
        assert!(matches!(
            check_block(&bad, &b, 5),
            Err(Defect::DataLength { found: 6, .. })
        ));
        bad = file.clone();
        bad[HEADER_LEN] ^= 0x80;
        assert!(matches!(
            check_block(&bad, &b, 5),
            Err(Defect::DataChecksum { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300),
                              len in any::<u64>(), index in any::<u64>()) {
            let _ = parse_header(&buf);
            let _ = check_block(&buf, &id([0; 32], index), len);
        }

        #[test]
        fn garbage_after_a_magic_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200),
                                              len in 0u64..300) {
            let mut buf = MAGIC.to_vec();
            buf.extend_from_slice(&tail);
            let _ = check_block(&buf, &id([0; 32], 0), len);
        }

        #[test]
        fn encode_parse_round_trips(key in any::<[u8; 32]>(), index in any::<u64>(),
                                    data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let b = id(key, index);
            let file = block(&b, &data);
            let h = parse_header(&file).unwrap();
            prop_assert_eq!(h.key, b.key);
            prop_assert_eq!(h.index, index);
            prop_assert_eq!(h.data_len, data.len() as u64);
            prop_assert_eq!(h.data_crc, crc32c::crc32c(&data));
            let r = check_block(&file, &b, data.len() as u64).unwrap();
            prop_assert_eq!(&file[r], &data[..]);
        }

        #[test]
        fn every_single_bit_flip_is_caught(key in any::<[u8; 32]>(), index in any::<u64>(),
                                           data in proptest::collection::vec(any::<u8>(), 1..500),
                                           pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let b = id(key, index);
            let mut file = block(&b, &data);
            let at = pos.index(file.len());
            file[at] ^= 1 << bit;
            prop_assert!(check_block(&file, &b, data.len() as u64).is_err());
        }
    }
}
