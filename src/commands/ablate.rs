//! `morphosde ablate`: the same data, the same seed, one change at a time —
//! drift-only vs drift + diffusion, full-rank vs diagonal vs low-rank head,
//! pairwise vs plan-weighted D̂ (with the relative or the bridge ε), one-step
//! vs flow vs propagated residual (exact or frozen Jacobian), chord vs
//! flow drift teacher —
//! scored on the built-in process as in `demo` (held-out energy distance and sliced
//! Wasserstein, drift and D recovery where the truth is known, and the
//! energy distance with the true drift or the true noise swapped in). Writes a Markdown
//! table (stdout and `--out`) and the JSON behind it.

use super::demo::{BINS, Scores, bin_rows, builtin_dataset, rollouts, score};
use super::train::{DriftTeacherArg, ModelArgs, ResidualArg, TargetArg};
use crate::csvio::write_atomic;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AblateArgs {
    /// State dimension of the built-in process (≥ 2).
    #[arg(long, default_value_t = 2)]
    pub d: usize,
    /// Embryos observed per bin.
    #[arg(long, default_value_t = 1000)]
    pub per_bin: usize,
    /// Markdown table output (the JSON goes beside it, `.json`).
    #[arg(long, default_value = "ablation.md")]
    pub out: PathBuf,
    /// Run only these variants (comma-separated keys: drift-only, full,
    /// diagonal, low-rank, plan, plan-bridge, one-step, flow-residual,
    /// propagated, propagated-frozen, chord-teacher, flow-teacher; default
    /// all).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Keys of the variants, in table order (see [`variants`]).
const KEYS: [&str; 12] = [
    "drift-only",
    "full",
    "diagonal",
    "low-rank",
    "plan",
    "plan-bridge",
    "one-step",
    "flow-residual",
    "propagated",
    "propagated-frozen",
    "chord-teacher",
    "flow-teacher",
];

/// The variants: a name and the change to the base settings (one per
/// entry of [`KEYS`]).
fn variants(base: &ModelArgs, d: usize) -> Vec<(String, ModelArgs)> {
    let on = ModelArgs {
        learn_diffusion: true,
        ..base.clone()
    };
    let with = |f: &dyn Fn(&mut ModelArgs)| {
        let mut m = on.clone();
        f(&mut m);
        m
    };
    let rank = (d / 2).max(1);
    vec![
        (
            "drift only".into(),
            ModelArgs {
                learn_diffusion: false,
                ..base.clone()
            },
        ),
        ("full rank (the defaults)".into(), on.clone()),
        ("diagonal".into(), with(&|m| m.diffusion_diagonal = true)),
        (
            format!("low rank q = {rank}"),
            with(&|m| {
                m.diffusion_low_rank = true;
                m.q = rank;
            }),
        ),
        (
            "plan-weighted D̂".into(),
            with(&|m| m.target = TargetArg::Plan),
        ),
        (
            "plan-weighted D̂, bridge ε".into(),
            with(&|m| {
                m.target = TargetArg::Plan;
                m.bridge_epsilon = true;
            }),
        ),
        (
            "one-step residual (seed)".into(),
            with(&|m| m.residual = ResidualArg::OneStep),
        ),
        (
            "flow residual".into(),
            with(&|m| m.residual = ResidualArg::Flow),
        ),
        (
            "propagated residual".into(),
            with(&|m| m.residual = ResidualArg::Propagated),
        ),
        (
            "propagated residual, frozen Jacobian".into(),
            with(&|m| m.residual = ResidualArg::PropagatedFrozen),
        ),
        (
            "chord drift teacher (seed)".into(),
            with(&|m| m.drift_teacher = DriftTeacherArg::Chord),
        ),
        (
            "flow drift teacher".into(),
            with(&|m| m.drift_teacher = DriftTeacherArg::Flow),
        ),
    ]
}

pub fn run(args: &AblateArgs) -> Result<(), String> {
    if args.d < 2 {
        return Err("--d must be at least 2".into());
    }
    let wanted = |key: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|k| k == key))
    };
    if let Some(unknown) = args
        .only
        .iter()
        .flatten()
        .find(|k| !KEYS.contains(&k.as_str()))
    {
        return Err(format!(
            "--only: unknown variant '{unknown}' (known: {})",
            KEYS.join(", ")
        ));
    }
    let seed = args.model.seed;
    let train = builtin_dataset(args.d, args.per_bin, seed)?;
    let test = builtin_dataset(args.d, args.per_bin, seed + 1)?;
    let reference = builtin_dataset(args.d, args.per_bin, seed + 2)?;
    let start = bin_rows(&test, BINS[0]);
    let mut table = format!(
        "| variant (d = {}) | energy distance | true vs true | true process rollouts | true drift, learned noise | learned drift, true noise | sliced W₂ | true vs true | drift rel. error | D rel. error | seconds |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        args.d
    );
    let mut rows = Vec::new();
    let all = variants(&args.model, args.d);
    for ((name, model), key) in all.into_iter().zip(KEYS) {
        if !wanted(key) {
            continue;
        }
        eprintln!("ablate: {name}");
        let trained = model.train(&train, &mut |_| {})?;
        let paths = rollouts(&trained, &start, seed + 3)?;
        let s = score(&trained, &test, &reference, &paths, seed + 3)?;
        let cell =
            |v: Option<f64>, digits: usize| v.map_or("–".into(), |e| format!("{e:.digits$}"));
        table.push_str(&format!(
            "| {name} | {:.4} | {:.4} | {:.4} | {} | {} | {:.4} | {:.4} | {:.3} | {} | {:.1} |\n",
            Scores::mean(&s.energy),
            Scores::mean(&s.energy_floor),
            Scores::mean(&s.energy_true_rollouts),
            cell(s.energy_true_drift.as_deref().map(Scores::mean), 4),
            cell(s.energy_true_noise.as_deref().map(Scores::mean), 4),
            Scores::mean(&s.sliced),
            Scores::mean(&s.sliced_floor),
            s.drift_error,
            cell(s.d_error, 3),
            trained.seconds
        ));
        rows.push(
            json!({"variant": name, "key": key, "scores": s.json(), "seconds": trained.seconds,
                         "epochs": trained.report.epochs}),
        );
    }
    print!("{table}");
    write_atomic(&args.out, |w| w.write_all(table.as_bytes()))?;
    let text = serde_json::to_string_pretty(
        &json!({"d": args.d, "per_bin": args.per_bin, "variants": rows}),
    )
    .map_err(|e| e.to_string())?;
    write_atomic(&args.out.with_extension("json"), |w| {
        w.write_all(text.as_bytes())
    })
}
