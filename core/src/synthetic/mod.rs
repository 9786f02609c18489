//! Ground-truth processes with known drift and diffusion, and the snapshot
//! sampler that observes any SDE the way embryo imaging does.
//!
//! - [`design`]: [`SnapshotDesign`] (bins, embryos per bin, how many are
//!   tracked) and [`snapshots`], exact Euler–Maruyama paths at a fine step.
//! - [`GroundTruth`]: a process whose drift `f(z,t)`, its Jacobian, the
//!   factor `L(z,t)` (`d×d`, `D = L Lᵀ`) and an initial distribution can be
//!   evaluated at any state; every such process is a
//!   [`Dynamics`] and a [`DriftJacobian`].
//! - The processes, one per file, each in any `d ≥ 2` (the recovery suite
//!   uses d = 2, 4, 8), each with a frame gap of 0.2 a real, finite gap
//!   (`h‖∂f/∂z‖` about 0.5 or more where the data are):
//!   [`EmbryoProcess`] (the demo's), [`NonNormalOu`], [`Pitchfork`],
//!   [`LimitCycles`]; [`Process`] names them (`ou`, `pitchfork`, `cycles`,
//!   `embryo`) for runners that pick them by name.
//! - [`LinearSde`]: `dz = (A z + b) dt + L dW` with borrowed constant
//!   coefficients in any `d`, the closed-form process of the tests.

pub mod cycles;
pub mod design;
pub mod embryo;
pub mod linear;
pub mod ou;
pub mod pitchfork;

pub use cycles::LimitCycles;
pub use design::{SnapshotDesign, snapshots, snapshots_workspace_len};
pub use embryo::*;
pub use linear::LinearSde;
pub use ou::NonNormalOu;
pub use pitchfork::Pitchfork;

use crate::MAX_DIM;
use crate::dynamics::DriftJacobian;
use crate::dynamics::Dynamics;
use crate::error::{Detail, Error, Result};
use crate::float::Float;
use crate::rng::Rng;

/// A process `dz = f(z,t) dt + L(z,t) dW` (Itô) known in closed form,
/// evaluated one state at a time. Slices: `z`, `f` of length `d`; `jac`
/// and `l` `d×d` row-major (`jac[a][b] = ∂f_a/∂z_b`; row `a` of `l` is
/// coordinate `a`). Callers guarantee the lengths. Every implementor is a
/// [`Dynamics`] with `q = d` and a [`DriftJacobian`] (blanket impls below).
pub trait GroundTruth {
    /// State dimension `d` (≥ 2).
    fn d(&self) -> usize;
    /// Whether drift and `D` are independent of `t` (time-homogeneous).
    fn autonomous(&self) -> bool;
    /// The drift `f(z, t)`.
    fn drift_at<F: Float>(&self, z: &[F], t: F, f: &mut [F]);
    /// The drift's Jacobian `∂f/∂z` at `(z, t)`.
    fn drift_jacobian_at<F: Float>(&self, z: &[F], t: F, jac: &mut [F]);
    /// The diffusion factor `L(z, t)`.
    fn factor_at<F: Float>(&self, z: &[F], t: F, l: &mut [F]);
    /// A draw of the initial distribution from `rng`.
    fn initial_state<F: Float>(&self, rng: &mut Rng, z: &mut [F]);

    /// `D = L Lᵀ` (`d×d`) at `(z, t)` into `dm`; `l` is `d×d` scratch.
    fn diffusion_at<F: Float>(&self, z: &[F], t: F, l: &mut [F], dm: &mut [F]) {
        let d = self.d();
        self.factor_at(z, t, l);
        for i in 0..d {
            for j in 0..d {
                let mut s = F::ZERO;
                for k in 0..d {
                    s += l[i * d + k] * l[j * d + k];
                }
                dm[i * d + j] = s;
            }
        }
    }

    /// [`snapshots`] of this process, each embryo's initial state from
    /// [`GroundTruth::initial_state`] on its own stream. Errors as
    /// [`snapshots`], and for `d` outside `2..=MAX_DIM`.
    fn snapshots<F: Float>(
        &self,
        design: &SnapshotDesign<'_, F>,
        z: &mut [F],
        t: &mut [F],
        track: &mut [u32],
        workspace: &mut [F],
    ) -> Result<()>
    where
        Self: Sized + Sync,
    {
        check_dim(self.d())?;
        let initial = |_: usize, rng: &mut Rng, row: &mut [F]| self.initial_state(rng, row);
        snapshots(self, initial, design, z, t, track, workspace)
    }
}

/// `d` must be in `2..=MAX_DIM`.
fn check_dim(d: usize) -> Result<()> {
    if !(2..=MAX_DIM).contains(&d) {
        return Err(Error::bad_dim("d", "must be in 2..=MAX_DIM").with(Detail::Index(d)));
    }
    Ok(())
}

impl<F: Float, P: GroundTruth> Dynamics<F> for P {
    fn dim(&self) -> usize {
        self.d()
    }
    fn noise_dim(&self) -> usize {
        self.d()
    }
    fn workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift(&self, z: &[F], t: &[F], f: &mut [F], _workspace: &mut [F]) {
        let d = self.d();
        for (r, &tr) in t.iter().enumerate() {
            self.drift_at(&z[r * d..(r + 1) * d], tr, &mut f[r * d..(r + 1) * d]);
        }
    }
    fn drift_and_factor(&self, z: &[F], t: &[F], f: &mut [F], l: &mut [F], workspace: &mut [F]) {
        let d = self.d();
        self.drift(z, t, f, workspace);
        for (r, &tr) in t.iter().enumerate() {
            self.factor_at(
                &z[r * d..(r + 1) * d],
                tr,
                &mut l[r * d * d..(r + 1) * d * d],
            );
        }
    }
}

impl<F: Float, P: GroundTruth> DriftJacobian<F> for P {
    fn jacobian_workspace_len(&self, _rows: usize) -> usize {
        0
    }
    fn drift_jacobian(&self, z: &[F], t: &[F], f: &mut [F], jac: &mut [F], workspace: &mut [F]) {
        let d = self.d();
        self.drift(z, t, f, workspace);
        for (r, &tr) in t.iter().enumerate() {
            self.drift_jacobian_at(
                &z[r * d..(r + 1) * d],
                tr,
                &mut jac[r * d * d..(r + 1) * d * d],
            );
        }
    }
}

/// The ground-truth processes by name, each in its `d`: what runners,
/// tests and benches pick from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Process {
    Ou(NonNormalOu),
    Pitchfork(Pitchfork),
    Cycles(LimitCycles),
    Embryo(EmbryoProcess),
}

/// Calls `$call` on the process inside a [`Process`].
macro_rules! each {
    ($self:expr, $p:ident => $call:expr) => {
        match $self {
            Process::Ou($p) => $call,
            Process::Pitchfork($p) => $call,
            Process::Cycles($p) => $call,
            Process::Embryo($p) => $call,
        }
    };
}

impl Process {
    /// The names [`Process::named`] knows, in the order of the variants.
    pub const NAMES: [&'static str; 4] = ["ou", "pitchfork", "cycles", "embryo"];

    /// The process called `name` (one of [`Process::NAMES`]) in `d`
    /// dimensions, `2 ≤ d ≤ MAX_DIM`.
    pub fn named(name: &str, d: usize) -> Result<Self> {
        check_dim(d)?;
        Ok(match name {
            "ou" => Process::Ou(NonNormalOu { d }),
            "pitchfork" => Process::Pitchfork(Pitchfork::new(d)),
            "cycles" => Process::Cycles(LimitCycles { d }),
            "embryo" => Process::Embryo(EmbryoProcess { d }),
            _ => {
                return Err(Error::bad_config(
                    "name",
                    "unknown process (ou, pitchfork, cycles, embryo)",
                ));
            }
        })
    }

    /// The process's name (an entry of [`Process::NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Process::Ou(_) => "ou",
            Process::Pitchfork(_) => "pitchfork",
            Process::Cycles(_) => "cycles",
            Process::Embryo(_) => "embryo",
        }
    }
}

impl GroundTruth for Process {
    fn d(&self) -> usize {
        each!(self, p => p.d())
    }
    fn autonomous(&self) -> bool {
        each!(self, p => p.autonomous())
    }
    fn drift_at<F: Float>(&self, z: &[F], t: F, f: &mut [F]) {
        each!(self, p => p.drift_at(z, t, f))
    }
    fn drift_jacobian_at<F: Float>(&self, z: &[F], t: F, jac: &mut [F]) {
        each!(self, p => p.drift_jacobian_at(z, t, jac))
    }
    fn factor_at<F: Float>(&self, z: &[F], t: F, l: &mut [F]) {
        each!(self, p => p.factor_at(z, t, l))
    }
    fn initial_state<F: Float>(&self, rng: &mut Rng, z: &mut [F]) {
        each!(self, p => p.initial_state(rng, z))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rng::Family;
    use std::vec;

    /// Checks [`GroundTruth::drift_jacobian_at`] against central
    /// differences of the drift (f64, step 1e-6) at states drawn from the
    /// initial distribution and moved off it, at several times.
    pub(crate) fn check_jacobian<P: GroundTruth>(p: &P) {
        let d = p.d();
        let (mut z, mut jac) = (vec![0.0f64; d], vec![0.0f64; d * d]);
        let (mut up, mut down) = (vec![0.0f64; d], vec![0.0f64; d]);
        let mut rng = Rng::stream(3, Family::Data, 0);
        for case in 0..12 {
            p.initial_state(&mut rng, &mut z);
            let mut shift = vec![0.0f64; d];
            rng.fill_normal(&mut shift);
            for (x, s) in z.iter_mut().zip(&shift) {
                *x += 0.3 * s;
            }
            let t = 0.15 * case as f64;
            p.drift_jacobian_at(&z, t, &mut jac);
            let scale = jac.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            for b in 0..d {
                let h = 1e-6;
                let mut zp = z.clone();
                zp[b] += h;
                p.drift_at(&zp, t, &mut up);
                zp[b] -= 2.0 * h;
                p.drift_at(&zp, t, &mut down);
                for a in 0..d {
                    let fd = (up[a] - down[a]) / (2.0 * h);
                    assert!(
                        (jac[a * d + b] - fd).abs() < 1e-7 * scale,
                        "d = {d}, case {case}: ∂f{a}/∂z{b} = {} vs {fd}",
                        jac[a * d + b]
                    );
                }
            }
        }
    }

    #[test]
    fn names_round_trip_and_bad_names_or_dims_are_errors() {
        for name in Process::NAMES {
            for d in [2, 4, 8] {
                let p = Process::named(name, d).unwrap();
                assert_eq!((p.name(), p.d()), (name, d));
            }
        }
        assert!(Process::named("ou", 1).is_err());
        assert!(Process::named("ou", MAX_DIM + 1).is_err());
        assert!(Process::named("brownian", 2).is_err());
        let time_homogeneous: [bool; 4] =
            Process::NAMES.map(|name| Process::named(name, 2).unwrap().autonomous());
        assert_eq!(time_homogeneous, [true, true, false, false]);
    }
}
