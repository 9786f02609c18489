//! Exact optimal transport (`core::metrics::emd`) against POT's `ot.emd2`
//! on the fixtures of `tests/fixtures/emd/make_fixtures.py` (equal and
//! unequal sizes, non-uniform and zero weights, ties, duplicate points,
//! d = 1 where the CDF closed form agrees, the squared Euclidean cost), in
//! f64 and f32; the coupling's marginals and cost; and W1 of a translated
//! cloud, which is the translation's length.

use morphosde_core::Float;
use morphosde_core::metrics::{Emd, GroundCost, PlanEntry, emd, emd_workspace_len, wasserstein1};
use serde_json::Value;

struct Case {
    name: String,
    d: usize,
    ground: GroundCost,
    x: Vec<f64>,
    y: Vec<f64>,
    a: Option<Vec<f64>>,
    b: Option<Vec<f64>>,
    cost: f64,
}

fn nums(v: &Value) -> Option<Vec<f64>> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect())
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/emd/cases.json"
    ))
    .unwrap();
    let root: Value = serde_json::from_str(&text).unwrap();
    root["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            d: c["d"].as_u64().unwrap() as usize,
            ground: match c["metric"].as_str().unwrap() {
                "euclidean" => GroundCost::Euclidean,
                _ => GroundCost::SquaredEuclidean,
            },
            x: nums(&c["x"]).unwrap(),
            y: nums(&c["y"]).unwrap(),
            a: nums(&c["a"]),
            b: nums(&c["b"]),
            cost: c["cost"].as_f64().unwrap(),
        })
        .collect()
}

/// Solves a case in `F`; checks the coupling's marginals (the normalised
/// weights) and that its cost is the reported one.
fn solve<F: Float>(case: &Case) -> Emd {
    let conv = |v: &[f64]| v.iter().map(|&x| F::from_f64(x)).collect::<Vec<F>>();
    let (x, y) = (conv(&case.x), conv(&case.y));
    let (a, b) = (case.a.as_deref().map(conv), case.b.as_deref().map(conv));
    let (n, m) = (x.len() / case.d, y.len() / case.d);
    let len = emd_workspace_len(n, m);
    let (mut floats, mut indices) = (vec![0.0f64; len.floats], vec![0u32; len.indices]);
    let mut plan = vec![PlanEntry::default(); n + m - 1];
    let out = emd(
        &x,
        a.as_deref(),
        &y,
        b.as_deref(),
        case.d,
        case.ground,
        Some(&mut plan),
        &mut floats,
        &mut indices,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let weights = |w: &Option<Vec<F>>, k: usize| -> Vec<f64> {
        match w {
            None => vec![1.0 / k as f64; k],
            Some(w) => {
                let s: f64 = w.iter().map(|v| v.to_f64()).sum();
                w.iter().map(|v| v.to_f64() / s).collect()
            }
        }
    };
    let (wa, wb) = (weights(&a, n), weights(&b, m));
    let (mut rows, mut cols, mut cost) = (vec![0.0; n], vec![0.0; m], 0.0);
    for e in &plan[..out.plan_len] {
        let (i, j) = (e.source as usize, e.target as usize);
        assert!(e.mass > 0.0);
        rows[i] += e.mass;
        cols[j] += e.mass;
        let sq: f64 = (0..case.d)
            .map(|k| (x[i * case.d + k].to_f64() - y[j * case.d + k].to_f64()).powi(2))
            .sum();
        cost += e.mass
            * match case.ground {
                GroundCost::Euclidean => sq.sqrt(),
                GroundCost::SquaredEuclidean => sq,
            };
    }
    for (got, want) in rows.iter().zip(&wa).chain(cols.iter().zip(&wb)) {
        assert!(
            (got - want).abs() < 1e-12,
            "{}: marginal {got} vs {want}",
            case.name
        );
    }
    assert!(out.plan_len < n + m);
    assert!(
        (cost - out.cost).abs() <= 1e-12 * out.cost.max(1.0),
        "{}",
        case.name
    );
    out
}

#[test]
fn emd_matches_pot_in_f64_and_f32() {
    let cases = cases();
    assert!(cases.len() >= 10);
    for case in &cases {
        for (what, got) in [
            ("f64", solve::<f64>(case).cost),
            ("f32", solve::<f32>(case).cost),
        ] {
            let err = (got - case.cost).abs() / case.cost.max(1e-12);
            assert!(
                err < 1e-9,
                "{} ({what}): {got} vs POT {}",
                case.name,
                case.cost
            );
        }
    }
}

#[test]
fn w1_of_a_translated_cloud_is_the_translation() {
    // Any coupling moves every point at least |shift| on average along the
    // shift, and the identity coupling achieves it: W1 = |shift| exactly.
    let d = 3;
    let x: Vec<f64> = (0..200 * d)
        .map(|k| ((k * 7919) % 1013) as f64 / 101.3 - 5.0)
        .collect();
    let shift = [0.3, -0.4, 1.2];
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(k, v)| v + shift[k % d])
        .collect();
    let len = emd_workspace_len(200, 200);
    let (mut floats, mut indices) = (vec![0.0f64; len.floats], vec![0u32; len.indices]);
    let w = wasserstein1(&x, None, &y, None, d, &mut floats, &mut indices).unwrap();
    assert!((w - 1.3).abs() < 1e-12, "{w}");
}

/// W1 on the line from the CDFs: `∫ |F_a − F_b|` over the merged support.
fn cdf_w1(x: &[f64], a: &[f64], y: &[f64], b: &[f64]) -> f64 {
    let mut pts: Vec<(f64, f64)> = x.iter().zip(a).map(|(&p, &w)| (p, w)).collect();
    pts.extend(y.iter().zip(b).map(|(&p, &w)| (p, -w)));
    pts.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut cum = 0.0;
    let mut total = 0.0;
    for k in 0..pts.len() - 1 {
        cum += pts[k].1;
        total += cum.abs() * (pts[k + 1].0 - pts[k].0);
    }
    total
}

#[test]
fn w1_on_the_line_with_ties_matches_the_cdf_closed_form() {
    // Integer points (many ties and duplicates), random weights, 40 cases.
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    for case in 0..40 {
        let (n, m) = (5 + case % 17, 3 + (case * 7) % 29);
        let mut points = |k: usize| (0..k).map(|_| (next() * 12.0).floor()).collect::<Vec<_>>();
        let (x, y) = (points(n), points(m));
        let mut weights = |k: usize| {
            let w: Vec<f64> = (0..k).map(|_| next() + 0.01).collect();
            let s: f64 = w.iter().sum();
            w.into_iter().map(|v| v / s).collect::<Vec<_>>()
        };
        let (a, b) = (weights(n), weights(m));
        let len = emd_workspace_len(n, m);
        let (mut floats, mut indices) = (vec![0.0f64; len.floats], vec![0u32; len.indices]);
        let got = wasserstein1(&x, Some(&a), &y, Some(&b), 1, &mut floats, &mut indices).unwrap();
        let want = cdf_w1(&x, &a, &y, &b);
        assert!(
            (got - want).abs() < 1e-10 * want.max(1.0),
            "case {case}: {got} vs {want}"
        );
    }
}
