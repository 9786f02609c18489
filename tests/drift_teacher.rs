//! The drift teacher at a real frame gap, against a closed form: an affine
//! drift model trained on exact, noise-free teachers of the non-normal OU
//! drift `A` (`h‖A‖₂ ≈ 0.6` at `h = 0.2`). The teacher of each source `x`
//! is the chord `(e^{Ah}x − x)/h`, what tracked pairs show on average.
//! [`DriftTeacher::Chord`] learns the chord matrix `(e^{Ah} − I)/h`, 19.1%
//! (relative Frobenius) from `A`; [`DriftTeacher::Flow`] learns the drift
//! whose RK4 flow over the gap (4 substeps) reproduces the chord, `A` up to
//! the RK4 error. Measured (`cargo test --release --test drift_teacher --
//! --nocapture`): chord teacher 19.11% from `A` (0.04% from the chord),
//! flow teacher 0.33% from `A`.

#[path = "common/non_normal_ou.rs"]
#[allow(dead_code)] // the process and its D are not read here
mod non_normal_ou;
#[path = "common/pair_training.rs"]
mod pair_training;

use morphosde_core::dynamics::Dynamics;
use morphosde_core::integrate::{rk4_flow, rk4_flow_workspace_len};
use morphosde_core::model::{Config, DriftTeacher, Learned};
use morphosde_core::rng::{Family, Rng};

const GAP: f64 = 0.2;

/// `‖M − A‖_F / ‖A‖_F` for a 3×3 row-major `m`.
fn off_a(m: &[f64]) -> f64 {
    let a = &non_normal_ou::A;
    let num: f64 = m.iter().zip(a).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = a.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn flow_teacher_learns_the_drift_and_chord_teacher_the_chord() {
    let (n, d) = (4096, 3);
    let mut x = vec![0.0f64; n * d];
    Rng::stream(11, Family::Data, 0).fill_normal(&mut x);
    x.iter_mut().for_each(|v| *v *= 0.7);
    // e^{Ah}x by RK4 with 200 substeps (error ~1e-13).
    let (t, h) = (vec![0.0f64; n], vec![GAP; n]);
    let mut end = vec![0.0f64; n * d];
    let mut ws = vec![0.0f64; rk4_flow_workspace_len::<f64, _>(&non_normal_ou::process(), n)];
    rk4_flow(
        &non_normal_ou::process(),
        &x,
        &t,
        &h,
        200,
        &mut end,
        &mut ws,
    )
    .unwrap();
    let chord: Vec<f64> = end.iter().zip(&x).map(|(e, x)| (e - x) / GAP).collect();
    // The chord matrix, column by column from the basis vectors.
    let mut basis = [0.0f64; 9];
    let mut basis_end = [0.0f64; 9];
    for j in 0..3 {
        basis[j * 3 + j] = 1.0;
    }
    rk4_flow(
        &non_normal_ou::process(),
        &basis,
        &[0.0; 3],
        &[GAP; 3],
        200,
        &mut basis_end,
        &mut ws,
    )
    .unwrap();
    let mut chord_matrix = [0.0f64; 9];
    for i in 0..3 {
        for j in 0..3 {
            chord_matrix[i * 3 + j] = (basis_end[j * 3 + i] - basis[j * 3 + i]) / GAP;
        }
    }
    let f32s = |a: &[f64]| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let (xf, yf, vf) = (f32s(&x), f32s(&end), f32s(&chord));
    let mut learned_off = [0.0f64; 2];
    let mut off_chord = [0.0f64; 2];
    for (slot, drift_teacher) in [DriftTeacher::Chord, DriftTeacher::Flow]
        .into_iter()
        .enumerate()
    {
        let config = Config {
            d,
            time_features: 0,
            depth: 0,
            head: None,
            drift_teacher,
            flow_substeps: 4,
            clip_grad_norm: 0.0,
            seed: 3,
            ..Config::default()
        };
        let params = pair_training::train(
            &config,
            &xf,
            &yf,
            &vf,
            GAP as f32,
            &[(1e-2, 30), (3e-3, 15), (1e-3, 15)],
        );
        let learned = Learned::new(&config, &params).unwrap();
        // Affine f(z) = M z + b: M's columns are f(e_j) − f(0).
        let points = [
            0.0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0,
        ];
        let mut f = [0.0f32; 12];
        let mut iws = vec![0.0f32; Dynamics::<f32>::workspace_len(&learned, 4)];
        learned.drift(&points, &[0.0; 4], &mut f, &mut iws);
        let mut m = [0.0f64; 9];
        for i in 0..3 {
            for j in 0..3 {
                m[i * 3 + j] = f64::from(f[(j + 1) * 3 + i] - f[i]);
            }
        }
        learned_off[slot] = off_a(&m);
        let num: f64 = m
            .iter()
            .zip(&chord_matrix)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        let den: f64 = chord_matrix.iter().map(|b| b * b).sum();
        off_chord[slot] = (num / den).sqrt();
    }
    eprintln!(
        "chord matrix {:.1}% from A; learned with the chord teacher {:.2}% from A ({:.2}% \
         from the chord), with the flow teacher {:.2}% from A ({:.2}% from the chord)",
        100.0 * off_a(&chord_matrix),
        100.0 * learned_off[0],
        100.0 * off_chord[0],
        100.0 * learned_off[1],
        100.0 * off_chord[1]
    );
    assert!(off_a(&chord_matrix) > 0.15);
    assert!(
        off_chord[0] < 0.01,
        "chord teacher learns the chord: {off_chord:?}"
    );
    assert!(
        learned_off[1] < 0.01,
        "flow teacher learns A: {learned_off:?}"
    );
}
