//! The `morphosde` command-line tool as a library: what its subcommands
//! parse, run and score, for the binary (`src/main.rs`, which only picks the
//! subcommand) and for tests that score models the way the tool does.
//!
//! The numerical work is all in `morphosde_core`; this crate reads and
//! writes files, parses flags and draws:
//! - [`commands`]: one module per subcommand (its clap arguments and `run`),
//!   and the scoring the demo and the benchmarks share
//!   ([`commands::scoring`]);
//! - [`data`]: snapshot tables (the input of `train`) and the built-in
//!   dataset; [`csvio`]: CSV reading and atomic writing; [`times`]: the
//!   distinct times of a table and matching a typed time to them;
//! - [`heldout`]: the held-out-time benchmark; [`plots`]: SVG figures.

pub mod commands;
pub mod csvio;
pub mod data;
pub mod heldout;
pub mod plots;
pub mod times;
