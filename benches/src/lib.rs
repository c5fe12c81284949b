//! Benchmarks of inputfs. Each is a binary under `src/bin/` that sets up its own
//! origin and mounts (through the end-to-end test harness, so benchmarks and tests
//! exercise the same real parts), checks every byte it reads, and prints ratios
//! measured side by side in one run: these machines are shared and noisy, so
//! absolute figures mean little and no benchmark asserts a speed.
#![allow(
    clippy::disallowed_methods,
    reason = "the benchmarks' own data, logs and result files, not a cache directory read by the product"
)]

pub mod chart;
pub mod direct;
pub mod fleet;
pub mod measure;
pub mod report;
pub mod scenarios;
pub mod setup;
pub mod shape;
pub mod systems;
