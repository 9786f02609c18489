//! `morphosde`: the command-line tool. This file picks the subcommand; each
//! subcommand lives in the library's `commands` module (`src/lib.rs`).

use clap::{Parser, Subcommand};
use morphosde_cli::commands;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "morphosde",
    version,
    about = "Learn and simulate stochastic morphology dynamics from snapshots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and the vector kernel level this machine uses.
    Info,
    /// Time-weighted spectral clustering of a snapshot table.
    Cluster(commands::cluster::ClusterArgs),
    /// Energy distance and sliced Wasserstein distance between two CSV clouds.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Roll out trajectories (SDE or mean-path ODE) from initial states.
    Simulate(commands::simulate::SimulateArgs),
    /// Unbalanced optimal transport between two CSV clouds: plan, masses,
    /// teacher velocities.
    Uot(commands::uot::UotArgs),
    /// Learn drift (and diffusion) from a snapshot table; write the model.
    Train(Box<commands::train::TrainArgs>),
    /// The whole job on the built-in embryo-like dataset (no download).
    Demo(Box<commands::demo::DemoArgs>),
    /// The learned drift f and D = L Lᵀ at given points and times (CSV);
    /// with --estimate, D estimated from tracked pairs three ways beside it.
    Field(commands::field::FieldArgs),
    /// One change at a time on the built-in dataset; a table of scores.
    Ablate(Box<commands::ablate::AblateArgs>),
    /// The ground-truth recovery suite: train on known processes, score
    /// against the truth; a table and per-run JSON.
    BenchRecovery(Box<commands::recovery::BenchRecoveryArgs>),
    /// The held-out-time benchmark: each intermediate bin of its own
    /// datasets held out in turn, W1 of the rollouts beside the baselines.
    BenchHeldout(Box<commands::bench_heldout::BenchHeldoutArgs>),
}

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    match command {
        Command::Info => {
            println!(
                "{{\"version\":\"{}\",\"kernel_level\":\"{:?}\"}}",
                env!("CARGO_PKG_VERSION"),
                morphosde_core::cpu::level()
            );
            ExitCode::SUCCESS
        }
        Command::Cluster(args) => report(commands::cluster::run(&args)),
        Command::Evaluate(args) => report(commands::evaluate::run(&args)),
        Command::Simulate(args) => report(commands::simulate::run(&args)),
        Command::Uot(args) => report(commands::uot::run(&args)),
        Command::Train(args) => report(commands::train::run(&args)),
        Command::Demo(args) => report(commands::demo::run(&args)),
        Command::Field(args) => report(commands::field::run(&args)),
        Command::Ablate(args) => report(commands::ablate::run(&args)),
        Command::BenchRecovery(args) => report(commands::recovery::run(&args)),
        Command::BenchHeldout(args) => report(commands::bench_heldout::run(&args)),
    }
}

/// Exit status of a subcommand; errors go to stderr.
fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
