//! In-memory fakes and fault-injecting wrappers for [`Source`](crate::Source) and
//! [`BlockStore`](crate::BlockStore).
//!
//! They are public so that every crate's tests — and the shared trait test
//! suites — can use the same fakes instead of growing their own.

mod faulty;
mod memory;
mod suite;

pub use faulty::{Fault, FaultySource, FaultyStore, StoreFault};
pub use memory::{MemorySource, MemoryStore};
pub use suite::block_store_suite;
