//! One module per subcommand: argument struct (clap) and `run`; and
//! `time_span`, what `field` and `simulate` say about times outside a
//! model's training span.

pub mod ablate;
pub mod bench_heldout;
pub mod cluster;
pub mod demo;
mod demo_plots;
pub mod evaluate;
pub mod field;
pub mod matching;
pub mod recovery;
pub mod scoring;
pub mod simulate;
pub mod time_span;
pub mod train;
pub mod uot;
