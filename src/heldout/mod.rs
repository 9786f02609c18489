//! The held-out-time task, the way trajectory-inference tools are judged:
//! hold out one intermediate time point, train on the others, roll out from
//! the first bin to the held-out time, score the exact Wasserstein-1
//! distance to the held-out points; beside it the same split's baselines
//! (OT interpolation of the neighbouring bins, the nearest bin).
//!
//! - `datasets`: the benchmark's own snapshot data (no tracks);
//! - `baselines`: the score and the two baselines;
//! - `runner`: one held-out bin, every variant and seed;
//! - `report`: the Markdown table.
//!
//! `morphosde bench-heldout` (`commands::bench_heldout`) runs it.

pub mod baselines;
pub mod datasets;
pub mod report;
pub mod runner;
