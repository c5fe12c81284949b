//! The synchronisation primitives of the state machines that threads share
//! (the store's `health`): std's in a build, shuttle's when the `shuttle`
//! feature is on, so that a model-checked test explores their interleavings
//! (as mountpoint-s3 does). Code that should be model-checked takes its
//! `Mutex`, `Condvar` and atomics from here, never from `std::sync`.

#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, atomic};

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::{Condvar, Mutex, MutexGuard, atomic};
