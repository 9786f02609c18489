//! One module per subcommand: argument struct (clap) and `run`.

pub mod cluster;
pub mod evaluate;
pub mod simulate;
pub mod uot;
