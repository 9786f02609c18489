//! Dense products for linear layers on row-major slices: forward
//! `y = x·W + b`, backward to the input `dx = dy·Wᵀ` and to the weights
//! `dW += xᵀ·dy`, `db += Σ_rows dy`.
//!
//! Shapes: `x` is `rows×n_in`, `W` is `n_in×n_out` (row `i` holds the
//! weights from input `i`), `b` has `n_out` entries, `y`/`dy` are
//! `rows×n_out`.
//!
//! All three are one accumulate-kernel `C += A·B` (B row-major, unit stride
//! along its columns; A with arbitrary row and column strides, so `xᵀ` needs
//! no copy). For `f32` on x86-64 the kernel is register-blocked and
//! vectorised: AVX-512F tiles of 8 rows × 32 columns (16 accumulators, the
//! column tail under a lane mask) or AVX2+FMA tiles of 6 rows × 16 columns
//! (scalar column tail), chosen at run time by [`crate::cpu::level`]. `f64`
//! and other targets use the portable loop. Results of different levels may
//! differ in the last bits (fused multiply-adds), never between runs.
#![allow(
    unsafe_code,
    reason = "AVX2/AVX-512 intrinsics behind runtime detection, on bounds checked before the kernels run"
)]

use crate::error::{Result, check_len, check_room, checked_mul};
use crate::float::Float;
#[cfg(target_arch = "x86_64")]
use core::any::TypeId;

/// `y = x·W + b` (see the module docs for shapes).
#[allow(clippy::too_many_arguments)]
pub fn linear_forward<F: Float>(
    x: &[F],
    w: &[F],
    b: &[F],
    rows: usize,
    n_in: usize,
    n_out: usize,
    y: &mut [F],
) -> Result<()> {
    check_len(x, checked_mul(rows, n_in, "x")?, "x")?;
    check_len(w, checked_mul(n_in, n_out, "w")?, "w")?;
    check_len(b, n_out, "b")?;
    check_len(y, checked_mul(rows, n_out, "y")?, "y")?;
    if n_out == 0 {
        return Ok(());
    }
    for row in y.chunks_exact_mut(n_out) {
        row.copy_from_slice(b);
    }
    gemm_acc(rows, n_out, n_in, x, n_in, 1, w, n_out, y, n_out);
    Ok(())
}

/// Workspace elements [`linear_backward_input`] needs (room for `Wᵀ`).
pub fn linear_backward_input_workspace_len(n_in: usize, n_out: usize) -> usize {
    n_in.saturating_mul(n_out)
}

/// `dx += dy·Wᵀ` (accumulates: zero `dx` first for a plain product).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_input<F: Float>(
    dy: &[F],
    w: &[F],
    rows: usize,
    n_in: usize,
    n_out: usize,
    dx: &mut [F],
    workspace: &mut [F],
) -> Result<()> {
    check_len(dy, checked_mul(rows, n_out, "dy")?, "dy")?;
    check_len(w, checked_mul(n_in, n_out, "w")?, "w")?;
    check_len(dx, checked_mul(rows, n_in, "dx")?, "dx")?;
    check_room(workspace, n_in * n_out, "workspace")?;
    if n_in == 0 || n_out == 0 {
        return Ok(());
    }
    let wt = &mut workspace[..n_in * n_out];
    for i in 0..n_in {
        for o in 0..n_out {
            wt[o * n_in + i] = w[i * n_out + o];
        }
    }
    gemm_acc(rows, n_in, n_out, dy, n_out, 1, wt, n_in, dx, n_in);
    Ok(())
}

/// `dw += xᵀ·dy` and `db += Σ_rows dy` (accumulates: zero them first for a
/// plain gradient).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_weight<F: Float>(
    x: &[F],
    dy: &[F],
    rows: usize,
    n_in: usize,
    n_out: usize,
    dw: &mut [F],
    db: &mut [F],
) -> Result<()> {
    check_len(x, checked_mul(rows, n_in, "x")?, "x")?;
    check_len(dy, checked_mul(rows, n_out, "dy")?, "dy")?;
    check_len(dw, checked_mul(n_in, n_out, "dw")?, "dw")?;
    check_len(db, n_out, "db")?;
    if n_out == 0 {
        return Ok(());
    }
    for row in dy.chunks_exact(n_out) {
        for (g, &v) in db.iter_mut().zip(row) {
            *g += v;
        }
    }
    // A = xᵀ: element (i, r) at x[r*n_in + i].
    gemm_acc(n_in, n_out, rows, x, 1, n_in, dy, n_out, dw, n_out);
    Ok(())
}

/// `C += A·B` for dense row-major blocks through the same kernels as the
/// layers: `C` is `m×n`, `B` is `k×n`, and `A` is `m×k`, or, with
/// `a_transposed`, stored as its `k×m` transpose (so `AᵀB` needs no copy).
/// For the many small products of the propagated target (`d×d` blocks per
/// row). Slices shorter than these shapes leave `C` unchanged (callers size
/// them; a debug build asserts).
#[allow(clippy::too_many_arguments)]
pub fn matmul_acc<F: Float>(
    a: &[F],
    a_transposed: bool,
    b: &[F],
    m: usize,
    k: usize,
    n: usize,
    c: &mut [F],
) {
    let (rs_a, cs_a) = if a_transposed { (1, m) } else { (k, 1) };
    gemm_acc(m, n, k, a, rs_a, cs_a, b, n, c, n);
}

/// `C = (A·B) ⊙ S` for row-major `A` (`m×k`), `B` (`k×n`) and `C`
/// (`m×n`, overwritten), where row `i` of the product is multiplied
/// elementwise by row `i / group` of `S` (`⌈m/group⌉×n`): a batch of
/// `group`-row blocks each scaled by its own row, as the forward-mode
/// tangents of a layer by its activation's slope. The same values as
/// zeroing `C`, [`matmul_acc`] and scaling after; the AVX-512 kernel scales
/// in registers. Slices shorter than these shapes (or `group = 0`) leave `C`
/// unchanged (callers size them; a debug build asserts).
#[allow(clippy::too_many_arguments)]
pub fn matmul_scale_rows<F: Float>(
    a: &[F],
    b: &[F],
    m: usize,
    k: usize,
    n: usize,
    scale: &[F],
    group: usize,
    c: &mut [F],
) {
    if m == 0 || n == 0 || group == 0 {
        return;
    }
    let scale_ok = (m - 1) / group * n + n <= scale.len();
    let shapes_ok = m * k <= a.len() && k * n <= b.len() && m * n <= c.len();
    if !(scale_ok && shapes_ok) {
        debug_assert!(false, "matmul_scale_rows: slices too short");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if k > 0
        && crate::cpu::level() == crate::cpu::Level::Avx512
        && TypeId::of::<F>() == TypeId::of::<f32>()
    {
        let epi = x86::Epilogue {
            overwrite: true,
            scale: scale.as_ptr() as *const f32,
            group,
            lds: n,
        };
        // SAFETY: F is f32 (same TypeId); A, B, C and the scale rows were
        // checked to cover the shapes above; the level guarantees AVX-512F.
        unsafe {
            x86::gemm_avx512(
                m,
                n,
                k,
                a.as_ptr() as *const f32,
                k,
                1,
                b.as_ptr() as *const f32,
                n,
                c.as_mut_ptr() as *mut f32,
                n,
                epi,
            );
        }
        return;
    }
    c[..m * n].fill(F::ZERO);
    gemm_acc(m, n, k, a, k, 1, b, n, c, n);
    for (i, row) in c[..m * n].chunks_exact_mut(n).enumerate() {
        let s = &scale[i / group * n..i / group * n + n];
        for (x, &g) in row.iter_mut().zip(s) {
            *x *= g;
        }
    }
}

/// `C[m×n] += A[m×k]·B[k×n]`, `A(i,p) = a[i*rs_a + p*cs_a]`,
/// `B(p,j) = b[p*ldb + j]`, `C(i,j) = c[i*ldc + j]`. Callers guarantee the
/// slices cover these indices (the public wrappers check it).
#[allow(clippy::too_many_arguments)]
fn gemm_acc<F: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: &[F],
    rs_a: usize,
    cs_a: usize,
    b: &[F],
    ldb: usize,
    c: &mut [F],
    ldc: usize,
) {
    gemm_acc_at(crate::cpu::level(), m, n, k, a, rs_a, cs_a, b, ldb, c, ldc);
}

/// [`gemm_acc`] with the kernel of `level` (at most [`crate::cpu::level`]).
#[allow(clippy::too_many_arguments)]
fn gemm_acc_at<F: Float>(
    level: crate::cpu::Level,
    m: usize,
    n: usize,
    k: usize,
    a: &[F],
    rs_a: usize,
    cs_a: usize,
    b: &[F],
    ldb: usize,
    c: &mut [F],
    ldc: usize,
) {
    if m == 0 || n == 0 || k == 0 || level > crate::cpu::level() {
        return;
    }
    // Bounds of the raw-pointer kernels, established once here.
    let a_ok = (m - 1) * rs_a + (k - 1) * cs_a < a.len();
    let b_ok = (k - 1) * ldb + n <= b.len();
    let c_ok = (m - 1) * ldc + n <= c.len();
    if !(a_ok && b_ok && c_ok) {
        debug_assert!(false, "gemm_acc: slices too short");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if TypeId::of::<F>() == TypeId::of::<f32>() {
        use crate::cpu::Level;
        let (a, b, c) = (
            a.as_ptr() as *const f32,
            b.as_ptr() as *const f32,
            c.as_mut_ptr() as *mut f32,
        );
        match level {
            // SAFETY: F is f32 (same TypeId); the bounds were checked above;
            // the level guarantees the target features.
            Level::Avx512 => {
                return unsafe {
                    x86::gemm_avx512(
                        m,
                        n,
                        k,
                        a,
                        rs_a,
                        cs_a,
                        b,
                        ldb,
                        c,
                        ldc,
                        x86::Epilogue::ACCUMULATE,
                    )
                };
            }
            // SAFETY: as above.
            Level::Avx2Fma => {
                return unsafe { x86::gemm_avx2(m, n, k, a, rs_a, cs_a, b, ldb, c, ldc) };
            }
            Level::Portable => {}
        }
    }
    gemm_portable(m, n, 0, k, a, rs_a, cs_a, b, ldb, c, ldc);
}

/// The portable kernel over columns `j0..n` (row by row, `axpy` along the
/// unit-stride columns).
#[allow(clippy::too_many_arguments)]
fn gemm_portable<F: Float>(
    m: usize,
    n: usize,
    j0: usize,
    k: usize,
    a: &[F],
    rs_a: usize,
    cs_a: usize,
    b: &[F],
    ldb: usize,
    c: &mut [F],
    ldc: usize,
) {
    for i in 0..m {
        let c_row = &mut c[i * ldc + j0..i * ldc + n];
        for p in 0..k {
            let aip = a[i * rs_a + p * cs_a];
            let b_row = &b[p * ldb + j0..p * ldb + n];
            for (cv, &bv) in c_row.iter_mut().zip(b_row) {
                *cv += aip * bv;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// One AVX-512 tile: `MR` rows × `NV` vectors of 16 columns; the last
    /// vector's lanes are limited by `last_mask`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn tile512<const MR: usize, const NV: usize>(
        k: usize,
        a: *const f32,
        rs_a: usize,
        cs_a: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        last_mask: u16,
        (row0, col, epi): (usize, usize, Epilogue),
    ) {
        let mask = |v: usize| if v + 1 == NV { last_mask } else { 0xFFFF };
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        // SAFETY (all pointer arithmetic below): the caller passes a tile
        // inside the bounds checked by `gemm_acc` (and `matmul_scale_rows`
        // for the scale rows); masked lanes are not read.
        unsafe {
            if !epi.overwrite {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    for (v, acc_rv) in acc_r.iter_mut().enumerate() {
                        *acc_rv = _mm512_maskz_loadu_ps(mask(v), c.add(r * ldc + 16 * v));
                    }
                }
            }
            for p in 0..k {
                let bp = b.add(p * ldb);
                let mut bv = [_mm512_setzero_ps(); NV];
                for (v, bvv) in bv.iter_mut().enumerate() {
                    *bvv = _mm512_maskz_loadu_ps(mask(v), bp.add(16 * v));
                }
                let ap = a.add(p * cs_a);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(r * rs_a));
                    for (acc_rv, &bvv) in acc_r.iter_mut().zip(&bv) {
                        *acc_rv = _mm512_fmadd_ps(av, bvv, *acc_rv);
                    }
                }
            }
            if !epi.scale.is_null() {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let row = epi.scale.add((row0 + r) / epi.group * epi.lds + col);
                    for (v, acc_rv) in acc_r.iter_mut().enumerate() {
                        let sv = _mm512_maskz_loadu_ps(mask(v), row.add(16 * v));
                        *acc_rv = _mm512_mul_ps(*acc_rv, sv);
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (v, &acc_rv) in acc_r.iter().enumerate() {
                    _mm512_mask_storeu_ps(c.add(r * ldc + 16 * v), mask(v), acc_rv);
                }
            }
        }
    }

    /// What a tile does besides `C += A·B`: start from zero instead of `C`
    /// (`overwrite`), and multiply row `i` of the result elementwise by row
    /// `i / group` of `scale` (row stride `lds`, columns aligned with `C`)
    /// before storing it (`scale` null: no scaling).
    #[derive(Clone, Copy)]
    pub(super) struct Epilogue {
        pub overwrite: bool,
        pub scale: *const f32,
        pub group: usize,
        pub lds: usize,
    }

    impl Epilogue {
        /// Plain `C += A·B`.
        pub const ACCUMULATE: Epilogue = Epilogue {
            overwrite: false,
            scale: core::ptr::null(),
            group: 1,
            lds: 0,
        };
    }

    /// Rows in blocks of `MR512` (then the remainder) for one column panel.
    macro_rules! rows512 {
        ($nv:literal, $m:expr, $k:expr, $a:expr, $rs:expr, $cs:expr, $b:expr, $ldb:expr, $c:expr, $ldc:expr, $mask:expr, $j:expr, $epi:expr) => {{
            let mut i = 0;
            while i + 8 <= $m {
                tile512::<8, $nv>(
                    $k,
                    $a.add(i * $rs),
                    $rs,
                    $cs,
                    $b,
                    $ldb,
                    $c.add(i * $ldc),
                    $ldc,
                    $mask,
                    (i, $j, $epi),
                );
                i += 8;
            }
            let (a, c, at) = ($a.add(i * $rs), $c.add(i * $ldc), (i, $j, $epi));
            match $m - i {
                1 => tile512::<1, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc, $mask, at),
                2 => tile512::<2, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc, $mask, at),
                3 => tile512::<3, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc, $mask, at),
                4 => tile512::<4, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc, $mask, at),
                5 => tile512::<5, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc, $mask, at),
                6 => tile512::<6, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc, $mask, at),
                7 => tile512::<7, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc, $mask, at),
                _ => {}
            }
        }};
    }

    /// `C += A·B` with AVX-512F, then the epilogue `epi` (bounds checked
    /// by the caller).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm_avx512(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        rs_a: usize,
        cs_a: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        epi: Epilogue,
    ) {
        // SAFETY: every tile lies inside the checked bounds.
        unsafe {
            let mut j = 0;
            while j + 32 <= n {
                rows512!(
                    2,
                    m,
                    k,
                    a,
                    rs_a,
                    cs_a,
                    b.add(j),
                    ldb,
                    c.add(j),
                    ldc,
                    0xFFFF,
                    j,
                    epi
                );
                j += 32;
            }
            let rest = n - j;
            if rest > 16 {
                let mask = ((1u32 << (rest - 16)) - 1) as u16;
                rows512!(
                    2,
                    m,
                    k,
                    a,
                    rs_a,
                    cs_a,
                    b.add(j),
                    ldb,
                    c.add(j),
                    ldc,
                    mask,
                    j,
                    epi
                );
            } else if rest > 0 {
                let mask = ((1u32 << rest) - 1) as u16;
                rows512!(
                    1,
                    m,
                    k,
                    a,
                    rs_a,
                    cs_a,
                    b.add(j),
                    ldb,
                    c.add(j),
                    ldc,
                    mask,
                    j,
                    epi
                );
            }
        }
    }

    /// One AVX2 tile: `MR` rows × `NV` vectors of 8 columns.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn tile256<const MR: usize, const NV: usize>(
        k: usize,
        a: *const f32,
        rs_a: usize,
        cs_a: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        // SAFETY: the tile lies inside the bounds checked by `gemm_acc`.
        unsafe {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (v, acc_rv) in acc_r.iter_mut().enumerate() {
                    *acc_rv = _mm256_loadu_ps(c.add(r * ldc + 8 * v));
                }
            }
            for p in 0..k {
                let bp = b.add(p * ldb);
                let mut bv = [_mm256_setzero_ps(); NV];
                for (v, bvv) in bv.iter_mut().enumerate() {
                    *bvv = _mm256_loadu_ps(bp.add(8 * v));
                }
                let ap = a.add(p * cs_a);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*ap.add(r * rs_a));
                    for (acc_rv, &bvv) in acc_r.iter_mut().zip(&bv) {
                        *acc_rv = _mm256_fmadd_ps(av, bvv, *acc_rv);
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (v, &acc_rv) in acc_r.iter().enumerate() {
                    _mm256_storeu_ps(c.add(r * ldc + 8 * v), acc_rv);
                }
            }
        }
    }

    macro_rules! rows256 {
        ($nv:literal, $m:expr, $k:expr, $a:expr, $rs:expr, $cs:expr, $b:expr, $ldb:expr, $c:expr, $ldc:expr) => {{
            let mut i = 0;
            while i + 6 <= $m {
                tile256::<6, $nv>(
                    $k,
                    $a.add(i * $rs),
                    $rs,
                    $cs,
                    $b,
                    $ldb,
                    $c.add(i * $ldc),
                    $ldc,
                );
                i += 6;
            }
            let (a, c) = ($a.add(i * $rs), $c.add(i * $ldc));
            match $m - i {
                1 => tile256::<1, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc),
                2 => tile256::<2, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc),
                3 => tile256::<3, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc),
                4 => tile256::<4, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc),
                5 => tile256::<5, $nv>($k, a, $rs, $cs, $b, $ldb, c, $ldc),
                _ => {}
            }
        }};
    }

    /// `C += A·B` with AVX2+FMA; columns past the last multiple of 8 go
    /// through the portable loop.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm_avx2(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        rs_a: usize,
        cs_a: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: every tile lies inside the checked bounds.
        unsafe {
            let mut j = 0;
            while j + 16 <= n {
                rows256!(2, m, k, a, rs_a, cs_a, b.add(j), ldb, c.add(j), ldc);
                j += 16;
            }
            if j + 8 <= n {
                rows256!(1, m, k, a, rs_a, cs_a, b.add(j), ldb, c.add(j), ldc);
                j += 8;
            }
            if j < n {
                let a_len = (m - 1) * rs_a + (k - 1) * cs_a + 1;
                let a = core::slice::from_raw_parts(a, a_len);
                let b = core::slice::from_raw_parts(b, (k - 1) * ldb + n);
                let c = core::slice::from_raw_parts_mut(c, (m - 1) * ldc + n);
                super::gemm_portable(m, n, j, k, a, rs_a, cs_a, b, ldb, c, ldc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Family, Rng};

    fn random(n: usize, stream: u64) -> [f32; 4096] {
        let mut out = [0.0f32; 4096];
        Rng::stream(3, Family::Data, stream).fill_normal(&mut out[..n]);
        out
    }

    /// Naive triple loops in f64 against every kernel path, over shapes that
    /// hit full tiles, row remainders and column tails of every width.
    #[test]
    fn linear_layer_matches_naive_loops() {
        for &(rows, n_in, n_out) in &[
            (1, 1, 1),
            (3, 5, 7),
            (8, 16, 32),
            (9, 17, 33),
            (13, 20, 47),
            (6, 31, 16),
            (17, 12, 136),
            (32, 40, 24),
        ] {
            let x = random(rows * n_in, 1);
            let w = random(n_in * n_out, 2);
            let b = random(n_out, 3);
            let dy = random(rows * n_out, 4);
            let (x, w, b, dy) = (
                &x[..rows * n_in],
                &w[..n_in * n_out],
                &b[..n_out],
                &dy[..rows * n_out],
            );
            let mut y = [0.0f32; 4096];
            linear_forward(x, w, b, rows, n_in, n_out, &mut y[..rows * n_out]).unwrap();
            let mut dx = [0.0f32; 4096];
            dx[..rows * n_in].fill(0.0);
            let mut ws = [f32::NAN; 4096];
            linear_backward_input(dy, w, rows, n_in, n_out, &mut dx[..rows * n_in], &mut ws)
                .unwrap();
            let mut dw = [0.5f32; 4096];
            let mut db = [0.25f32; 4096];
            linear_backward_weight(
                x,
                dy,
                rows,
                n_in,
                n_out,
                &mut dw[..n_in * n_out],
                &mut db[..n_out],
            )
            .unwrap();
            let tol = |s: f64| 1e-5 * (1.0 + s);
            for r in 0..rows {
                for o in 0..n_out {
                    let mut s = b[o] as f64;
                    let mut mag = (b[o] as f64).abs();
                    for i in 0..n_in {
                        s += x[r * n_in + i] as f64 * w[i * n_out + o] as f64;
                        mag += (x[r * n_in + i] as f64 * w[i * n_out + o] as f64).abs();
                    }
                    assert!(
                        (y[r * n_out + o] as f64 - s).abs() < tol(mag),
                        "y {rows} {n_in} {n_out}"
                    );
                }
                for i in 0..n_in {
                    let s: f64 = (0..n_out)
                        .map(|o| dy[r * n_out + o] as f64 * w[i * n_out + o] as f64)
                        .sum();
                    let mag: f64 = (0..n_out)
                        .map(|o| (dy[r * n_out + o] as f64 * w[i * n_out + o] as f64).abs())
                        .sum();
                    assert!((dx[r * n_in + i] as f64 - s).abs() < tol(mag), "dx");
                }
            }
            for i in 0..n_in {
                for o in 0..n_out {
                    let s: f64 = 0.5
                        + (0..rows)
                            .map(|r| x[r * n_in + i] as f64 * dy[r * n_out + o] as f64)
                            .sum::<f64>();
                    assert!(
                        (dw[i * n_out + o] as f64 - s).abs() < tol(rows as f64 * 4.0),
                        "dw"
                    );
                }
            }
            for o in 0..n_out {
                let s: f64 = 0.25 + (0..rows).map(|r| dy[r * n_out + o] as f64).sum::<f64>();
                assert!((db[o] as f64 - s).abs() < tol(rows as f64), "db");
            }
            // Untouched beyond the output.
            assert_eq!(y[rows * n_out], 0.0);
            assert_eq!(dw[n_in * n_out], 0.5);
        }
    }

    /// Every kernel this CPU supports against naive f64 loops, through
    /// `C += A·B` with a transposed (strided) `A` and a wider `ldc`.
    #[test]
    fn every_kernel_level_matches_naive_loops() {
        use crate::cpu::Level;
        for level in [Level::Portable, Level::Avx2Fma, Level::Avx512] {
            if level > crate::cpu::level() {
                continue;
            }
            for &(m, n, k) in &[(1, 1, 1), (7, 9, 5), (8, 32, 16), (13, 47, 11), (19, 23, 3)] {
                let a = random(m * k, 5);
                let b = random(k * n, 6);
                let ldc = n + 3;
                let mut c = random(m * ldc, 7);
                let c0 = c;
                // A stored transposed: A(i,p) = a[p*m + i].
                gemm_acc_at(
                    level,
                    m,
                    n,
                    k,
                    &a[..m * k],
                    1,
                    m,
                    &b[..k * n],
                    n,
                    &mut c[..m * ldc],
                    ldc,
                );
                for i in 0..m {
                    for j in 0..ldc {
                        let want = if j < n {
                            c0[i * ldc + j] as f64
                                + (0..k)
                                    .map(|p| a[p * m + i] as f64 * b[p * n + j] as f64)
                                    .sum::<f64>()
                        } else {
                            c0[i * ldc + j] as f64
                        };
                        let got = c[i * ldc + j] as f64;
                        assert!((got - want).abs() < 1e-4, "{level:?} {m} {n} {k}");
                    }
                }
            }
        }
    }

    /// `matmul_acc` in both orientations of `A`, against naive loops
    /// (exact: f64 on small integers).
    #[test]
    fn matmul_acc_matches_naive_loops_in_both_orientations() {
        let (m, k, n) = (5, 4, 3);
        let a: std::vec::Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 - 3.0).collect();
        let b: std::vec::Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 - 2.0).collect();
        let c0: std::vec::Vec<f64> = (0..m * n).map(|i| i as f64).collect();
        for transposed in [false, true] {
            let mut c = c0.clone();
            matmul_acc(&a, transposed, &b, m, k, n, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let a_at = |p: usize| {
                        if transposed {
                            a[p * m + i]
                        } else {
                            a[i * k + p]
                        }
                    };
                    let want = c0[i * n + j] + (0..k).map(|p| a_at(p) * b[p * n + j]).sum::<f64>();
                    assert_eq!(c[i * n + j], want, "{transposed} ({i},{j})");
                }
            }
        }
        // Too-short slices leave C unchanged (release builds).
        if !cfg!(debug_assertions) {
            let mut c = c0.clone();
            matmul_acc(&a[..3], false, &b, m, k, n, &mut c);
            assert_eq!(c, c0);
        }
    }

    /// `matmul_scale_rows` gives the bits of zeroing, `matmul_acc` and
    /// scaling after (the AVX-512 kernel scales in registers; odd sizes hit
    /// the row remainder and the column mask).
    #[test]
    fn matmul_scale_rows_matches_product_then_scale() {
        for &(m, k, n, group) in &[
            (19, 7, 37, 3),
            (32, 16, 16, 16),
            (5, 1, 3, 5),
            (1, 4, 50, 1),
        ] {
            let a = random(m * k, 11);
            let b = random(k * n, 12);
            let s = random(m.div_ceil(group) * n, 13);
            let mut want = std::vec![0.0f32; m * n];
            matmul_acc(&a[..m * k], false, &b[..k * n], m, k, n, &mut want);
            for (i, row) in want.chunks_exact_mut(n).enumerate() {
                for (j, x) in row.iter_mut().enumerate() {
                    *x *= s[i / group * n + j];
                }
            }
            let mut got = random(m * n, 14)[..m * n].to_vec();
            matmul_scale_rows(
                &a[..m * k],
                &b[..k * n],
                m,
                k,
                n,
                &s[..m.div_ceil(group) * n],
                group,
                &mut got,
            );
            assert_eq!(got, want, "{m} {k} {n} {group}");
        }
    }

    /// The f64 path (portable) is exact for small integers.
    #[test]
    fn f64_forward_is_exact_on_integers() {
        let x = [1.0f64, 2.0, 3.0, 4.0];
        let w = [1.0f64, 0.0, -1.0, 2.0, 1.0, 0.5];
        let b = [0.5f64, -0.5, 0.0];
        let mut y = [0.0f64; 6];
        linear_forward(&x, &w, &b, 2, 2, 3, &mut y).unwrap();
        assert_eq!(y, [5.5, 1.5, 0.0, 11.5, 3.5, -1.0]);
    }

    #[test]
    fn linear_rejects_bad_lengths() {
        let mut y = [0.0f32; 4];
        let e = linear_forward(&[0.0f32; 3], &[0.0; 4], &[0.0; 2], 2, 2, 2, &mut y).unwrap_err();
        assert_eq!(e.arg, "x");
        let mut dx = [0.0f32; 4];
        let e = linear_backward_input(&[0.0f32; 4], &[0.0; 4], 2, 2, 2, &mut dx, &mut [0.0; 3])
            .unwrap_err();
        assert_eq!(e.arg, "workspace");
    }
}
