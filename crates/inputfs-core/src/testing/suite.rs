//! The conformance suite every [`BlockStore`] must pass: the in-memory fake runs it
//! here, the directory store runs it in `inputfs-store` (on a local directory)
//! and in `tests/tests/conformance_netfs.rs` (on sshfs and SMB), so all
//! implementations mean the same thing.

use bytes::Bytes;

use crate::block::BlockId;
use crate::object::{CacheKey, SourceKind};
use crate::store::{BlockStore, Lookup};

fn block(url: &str, index: u64) -> BlockId {
    BlockId {
        key: CacheKey::new(SourceKind::File, url, "etag:1", 1 << 20, 4096),
        index,
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn expect_hit(store: &dyn BlockStore, id: &BlockId, want: &[u8]) {
    match store.get(id, want.len() as u64) {
        Ok(Lookup::Hit(got)) => assert!(got == want, "block {id:?}: wrong bytes"),
        other => panic!("block {id:?}: expected a hit, got {other:?}"),
    }
}

/// Run every conformance check against a fresh store from `make`.
pub fn block_store_suite<S: BlockStore>(make: impl Fn() -> S) {
    miss_when_empty(&make());
    put_then_get(&make());
    blocks_are_independent(&make());
    republish_is_harmless(&make());
    wrong_length_is_never_a_hit(&make());
    concurrent_publishers_agree(make());
}

fn miss_when_empty(store: &dyn BlockStore) {
    assert_eq!(store.get(&block("a", 0), 10).unwrap(), Lookup::Miss);
}

fn put_then_get(store: &dyn BlockStore) {
    let id = block("a", 3);
    let data = pattern(1, 4096);
    store.put(&id, &data).unwrap();
    expect_hit(store, &id, &data);
    // A short last block.
    let tail = block("a", 4);
    store.put(&tail, &data[..17]).unwrap();
    expect_hit(store, &tail, &data[..17]);
}

fn blocks_are_independent(store: &dyn BlockStore) {
    let (a0, a1, b0) = (block("a", 0), block("a", 1), block("b", 0));
    store.put(&a0, &pattern(1, 100)).unwrap();
    store.put(&a1, &pattern(2, 100)).unwrap();
    store.put(&b0, &pattern(3, 100)).unwrap();
    expect_hit(store, &a0, &pattern(1, 100));
    expect_hit(store, &a1, &pattern(2, 100));
    expect_hit(store, &b0, &pattern(3, 100));
    assert_eq!(store.get(&block("b", 1), 100).unwrap(), Lookup::Miss);
}

fn republish_is_harmless(store: &dyn BlockStore) {
    let id = block("r", 0);
    store.put(&id, &pattern(5, 1000)).unwrap();
    store.put(&id, &pattern(5, 1000)).unwrap();
    expect_hit(store, &id, &pattern(5, 1000));
}

fn wrong_length_is_never_a_hit(store: &dyn BlockStore) {
    let id = block("w", 0);
    store.put(&id, &pattern(9, 500)).unwrap();
    match store.get(&id, 400).unwrap() {
        Lookup::Hit(_) => panic!("a block of the wrong length was served"),
        Lookup::Miss | Lookup::Corrupt(_) => {}
    }
}

fn concurrent_publishers_agree<S: BlockStore>(store: S) {
    let store = std::sync::Arc::new(store);
    let id = block("c", 0);
    let data = Bytes::from(pattern(7, 256 * 1024));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (store, data) = (store.clone(), data.clone());
            s.spawn(move || {
                store.put(&id, &data).unwrap();
                expect_hit(&*store, &id, &data);
            });
        }
    });
    expect_hit(&*store, &id, &data);
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_passes_the_suite() {
        super::block_store_suite(|| crate::testing::MemoryStore::new("mem"));
    }
}
