//! The flags of the distribution-matching stage
//! (`morphosde_core::train::matching`), shared by every command that
//! trains, and the stage's run on a trained model.

use clap::Args;
use morphosde_core::model::Config;
use morphosde_core::train::fit::Observations;
use morphosde_core::train::matching::{
    MatchConfig, MatchReport, match_rollouts, match_workspace_len,
};
use serde_json::{Value, json};

/// After the teacher fit, roll the learned SDE out from every embryo of a
/// bin (tracked or not) and move it so the simulated clouds match the
/// observed ones at the next bins (energy distance), keeping the
/// parameters with the lowest held-out loss. Every default is the core's
/// `MatchConfig::default()`.
#[derive(Args, Clone, Debug)]
pub struct MatchArgs {
    /// Adam steps of the matching stage (0 = off).
    #[arg(long, default_value_t = MatchConfig::default().steps)]
    pub match_steps: usize,
    /// Simulated embryos per start bin, and observed embryos each cloud is
    /// compared with.
    #[arg(long, default_value_t = MatchConfig::default().batch)]
    pub match_batch: usize,
    /// Euler–Maruyama substeps per gap between bins.
    #[arg(long, default_value_t = MatchConfig::default().substeps)]
    pub match_substeps: usize,
    /// Gaps rolled out from each start bin (matching at every bin crossed).
    #[arg(long, default_value_t = MatchConfig::default().horizon)]
    pub match_horizon: usize,
    /// Adam step size of the stage.
    #[arg(long, default_value_t = MatchConfig::default().learning_rate)]
    pub match_learning_rate: f64,
    /// Fraction of every bin held out to choose the parameters kept.
    #[arg(long, default_value_t = MatchConfig::default().validation_fraction)]
    pub match_validation_fraction: f64,
    /// Steps between held-out checks.
    #[arg(long, default_value_t = MatchConfig::default().check_every)]
    pub match_check_every: usize,
    /// Start bins rolled out per step, each drawn at random (0 = every
    /// start bin).
    #[arg(long, default_value_t = MatchConfig::default().starts_per_step)]
    pub match_starts_per_step: usize,
}

impl MatchArgs {
    /// The stage's settings under `seed`.
    pub fn config(&self, seed: u64) -> MatchConfig {
        MatchConfig {
            steps: self.match_steps,
            batch: self.match_batch,
            substeps: self.match_substeps,
            horizon: self.match_horizon,
            learning_rate: self.match_learning_rate,
            validation_fraction: self.match_validation_fraction,
            check_every: self.match_check_every,
            starts_per_step: self.match_starts_per_step,
            seed,
            ..MatchConfig::default()
        }
    }

    /// Runs the stage on `params` (a model of `config`) when it is on.
    pub fn run(
        &self,
        config: &Config,
        params: &mut [f32],
        obs: &Observations<'_, f32>,
        seed: u64,
    ) -> Result<Option<MatchReport<f32>>, String> {
        if self.match_steps == 0 {
            return Ok(None);
        }
        let cfg = self.config(seed);
        let need = match_workspace_len(config, &cfg, obs.t.len())
            .map_err(|e| format!("matching config: {e}"))?;
        let mut floats = vec![0.0f32; need.floats];
        let mut indices = vec![0u32; need.indices];
        match_rollouts(config, params, obs, &cfg, &mut floats, &mut indices)
            .map(Some)
            .map_err(|e| format!("matching: {e}"))
    }
}

/// The stage's report in the run summary.
pub fn report_json(report: &Option<MatchReport<f32>>) -> Value {
    report.map_or(Value::Null, |r| {
        json!({
            "steps": r.steps,
            "held_out_initial": r.initial,
            "held_out_kept": r.best,
            "kept_step": r.best_step,
            "last_train_loss": r.last_train,
            "stopped_non_finite": r.stopped_non_finite,
        })
    })
}
