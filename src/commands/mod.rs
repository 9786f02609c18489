//! One module per subcommand: argument struct (clap) and `run`.

pub mod ablate;
pub mod bench_heldout;
pub mod cluster;
pub mod demo;
pub mod evaluate;
pub mod field;
pub mod recovery;
pub mod scoring;
pub mod simulate;
pub mod train;
pub mod uot;
