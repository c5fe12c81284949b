//! The synchronisation primitives of state machines that threads share (the
//! engine's tier health): std's in a build, shuttle's when the `shuttle`
//! feature is on, so a model-checked test explores their interleavings (as
//! mountpoint-s3 does). Code that should be model-checked takes its atomics
//! from here, never from `std::sync`.

#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::atomic;

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic;
