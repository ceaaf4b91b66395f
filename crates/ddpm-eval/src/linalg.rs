//! Dense symmetric linear algebra in f64, what the Fréchet distance needs: the eigendecomposition
//! of a real symmetric matrix and matrix products, all on row-major `Vec<f64>`.
//!
//! The eigensolver is the classical two-stage method (Golub & Van Loan, *Matrix Computations*,
//! 4th ed., §8.3): Householder reduction to tridiagonal form, A = Q T Qᵀ (Alg. 8.3.1), then the
//! implicit QL iteration with Wilkinson shifts on T (the QL form of §8.3.3, as in Wilkinson &
//! Reinsch, *Handbook for Automatic Computation* II, procedure `tql2`). Eigenvalues are accurate
//! to about ε·‖A‖₂; the eigenvectors are orthonormal to about n·ε. Cost: ≈ 4/3·n³ for the
//! reduction (lower triangle only), 4/3·n³ to accumulate Q and ≈ 3·n³ for the QL rotations of
//! the eigenvectors; the last two run on threads (row blocks of Qᵀ, column blocks of the
//! eigenvector matrix). Eigenvalues alone cost ≈ 4/3·n³ (n = 2048: ~10 s, with vectors well
//! under a minute on one core of a shared 2-core machine).

use std::thread;

/// Eigenvalues and (optionally) eigenvectors of a real symmetric matrix: A = V·diag(λ)·Vᵀ.
#[derive(Debug, Clone, PartialEq)]
pub struct SymmetricEigen {
    /// Matrix size n.
    pub n: usize,
    /// The n eigenvalues, ascending.
    pub values: Vec<f64>,
    /// The eigenvectors as the **rows** of an n×n row-major matrix (row i belongs to
    /// `values[i]`), i.e. Vᵀ; empty when only eigenvalues were asked for.
    pub vectors_t: Vec<f64>,
}

/// Rows of Qᵀ accumulated together (cache blocking).
const ACCUMULATE_BLOCK: usize = 16;

/// Most QL iterations spent on one eigenvalue before giving up (two or three are typical).
const MAX_QL_ITERATIONS: usize = 64;

/// Eigendecomposition A = V·diag(λ)·Vᵀ of the symmetric n×n row-major matrix `a` (only its
/// lower triangle is read, so a matrix that is symmetric up to rounding is treated as its
/// lower-triangle mirror). With `vectors = false` only the eigenvalues are computed (≈ 3× faster).
///
/// Returns `None` if the QL iteration does not converge (not observed for finite input since
/// off-diagonal entries are also tested against the matrix's scale, as EISPACK's `tql2`: the
/// purely local test cycled on the singular covariance of 20 MNIST digits' features) or if `a`
/// holds a non-finite value.
///
/// # Panics
///
/// If `a.len() != n * n` (a programmer error: callers build `a` themselves).
pub fn symmetric_eigen(a: &[f64], n: usize, vectors: bool) -> Option<SymmetricEigen> {
    assert_eq!(a.len(), n * n, "symmetric_eigen: matrix is not {n}×{n}");
    if a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    if n == 0 {
        return Some(SymmetricEigen {
            n,
            values: Vec::new(),
            vectors_t: Vec::new(),
        });
    }
    // The reduction reads and updates the lower triangle only, so asymmetric rounding in the
    // caller cannot matter (the strict upper triangle of the copy is never read).
    let w = a.to_vec();
    let (mut diag, mut off, z) = tridiagonalize(w, n, vectors);
    // Qᵀ split into column blocks (each n rows × its width, row-major), one per thread: the QL
    // rotations mix rows, so every column block can take them independently.
    let threads = threads_for(n * n * n).min(n);
    let width = n.div_ceil(threads);
    let mut blocks: Vec<Vec<f64>> = match &z {
        Some(z) => (0..n)
            .step_by(width)
            .map(|c0| {
                let c1 = (c0 + width).min(n);
                (0..n)
                    .flat_map(|r| z[r * n + c0..r * n + c1].iter().copied())
                    .collect()
            })
            .collect(),
        None => Vec::new(),
    };
    tridiagonal_ql(&mut diag, &mut off, &mut blocks, n)?;
    // Sort ascending, carrying the eigenvector rows along.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| diag[i].total_cmp(&diag[j]));
    let values = order.iter().map(|&i| diag[i]).collect();
    let vectors_t = if blocks.is_empty() {
        Vec::new()
    } else {
        let mut sorted = vec![0.0; n * n];
        for (dst, &src) in order.iter().enumerate() {
            let mut c0 = 0;
            for block in &blocks {
                let w = block.len() / n;
                sorted[dst * n + c0..dst * n + c0 + w]
                    .copy_from_slice(&block[src * w..(src + 1) * w]);
                c0 += w;
            }
        }
        sorted
    };
    Some(SymmetricEigen {
        n,
        values,
        vectors_t,
    })
}

/// Householder reduction of the symmetric matrix `a` (row-major; only the lower triangle is read
/// and updated, halving the memory traffic of the O(n³) part): returns the
/// diagonal d, the off-diagonal e (`e[i]` = T[i, i+1], length n − 1 padded to n with a 0) and,
/// when `vectors`, Qᵀ (row-major) with A = Q·T·Qᵀ.
///
/// Step k (k = 0 … n − 3) reflects x = A[k+1.., k] onto a multiple of e₁ with
/// H = I − β·v·vᵀ, β = 2 / vᵀv, then updates the trailing block as
/// A ← A − v·wᵀ − w·vᵀ with p = β·A·v, w = p − (β·vᵀp / 2)·v (Golub & Van Loan, Alg. 8.3.1).
fn tridiagonalize(
    mut a: Vec<f64>,
    n: usize,
    vectors: bool,
) -> (Vec<f64>, Vec<f64>, Option<Vec<f64>>) {
    // Householder vectors are kept (scaled) in the zeroed part of column k, i.e. in a[i, k] for
    // i > k, with their β in `betas[k]`; the tridiagonal entries go to `diag` and `off`.
    let mut betas = vec![0.0; n];
    let mut off = vec![0.0; n];
    let mut p = vec![0.0; n];
    for k in 0..n.saturating_sub(2) {
        // x = a[k+1.., k]; scale to avoid overflow/underflow in the norm.
        let scale: f64 = (k + 1..n).map(|i| a[i * n + k].abs()).sum();
        if scale == 0.0 {
            // Already reduced: H = I, T[k+1, k] = 0, and a zero v marks "no reflection".
            continue;
        }
        let mut norm2 = 0.0;
        for i in k + 1..n {
            a[i * n + k] /= scale;
            let x = a[i * n + k];
            norm2 += x * x;
        }
        let x0 = a[(k + 1) * n + k];
        let alpha = -x0.signum_nonzero() * norm2.sqrt(); // H·x = alpha·scale·e₁
        // v = x/scale − alpha·e₁ (stored in place of x), vᵀv = 2·(norm2 − alpha·x0) > 0.
        let vtv = 2.0 * (norm2 - alpha * x0);
        a[(k + 1) * n + k] = x0 - alpha;
        let beta = 2.0 / vtv;
        betas[k] = beta;
        off[k] = alpha * scale;
        // v copied out contiguously (column k is strided in row-major storage).
        let v: Vec<f64> = (k + 1..n).map(|i| a[i * n + k]).collect();
        // p = β·A₂₂·v over the trailing block (rows/cols k+1..n) from its lower triangle only
        // (one pass: row i's strictly-lower part gives Σⱼ<ᵢ aᵢⱼvⱼ to pᵢ and aᵢⱼvᵢ to each pⱼ).
        p[k + 1..n].iter_mut().for_each(|x| *x = 0.0);
        for (ii, i) in (k + 1..n).enumerate() {
            let vi = v[ii];
            let row = &a[i * n + k + 1..i * n + i];
            let lower = dot(row, &v[..ii]);
            for (pj, &aij) in p[k + 1..i].iter_mut().zip(row) {
                *pj += aij * vi;
            }
            p[i] += lower + a[i * n + i] * vi;
        }
        p[k + 1..n].iter_mut().for_each(|x| *x *= beta);
        // w = p − (β·vᵀp/2)·v
        let vtp = dot(&v, &p[k + 1..n]);
        let half = 0.5 * beta * vtp;
        for (pi, &vi) in p[k + 1..n].iter_mut().zip(&v) {
            *pi -= half * vi;
        }
        // A₂₂ ← A₂₂ − v·wᵀ − w·vᵀ, lower triangle (diagonal included) only.
        for (ii, i) in (k + 1..n).enumerate() {
            let (vi, wi) = (v[ii], p[i]);
            let row = &mut a[i * n + k + 1..=i * n + i];
            for ((aij, &vj), &wj) in row.iter_mut().zip(&v).zip(&p[k + 1..n]) {
                *aij -= vi * wj + wi * vj;
            }
        }
    }
    let mut diag = vec![0.0; n];
    for i in 0..n {
        diag[i] = a[i * n + i];
    }
    if n >= 2 {
        // The last column (k = n − 2) has a single sub-diagonal entry and is not reflected;
        // columns whose x was zero keep off[k] = 0.
        off[n - 2] = a[(n - 1) * n + n - 2];
    }
    if !vectors {
        return (diag, off, None);
    }
    // Qᵀ = H_{n−3} ⋯ H_1 H_0 (each H symmetric), built row by row: row r of Qᵀ is
    // e_rᵀ·H_{n−3}⋯H_0, i.e. e_rᵀ multiplied by H_k for k = n−3 down to 0, each step
    // row ← row − β_k·(row·v_k)·v_kᵀ on entries k+1... H_k leaves e_rᵀ alone while r ≤ k
    // (v_k is zero there), so row r only meets the reflections k < r. Rows are independent:
    // they are processed in blocks of ACCUMULATE_BLOCK (each v_k fetched once per block) and
    // the blocks split over threads.
    let mut packed = Vec::with_capacity(n * n / 2 + n);
    let mut starts = vec![0; n];
    for k in 0..n.saturating_sub(2) {
        starts[k] = packed.len();
        packed.extend((k + 1..n).map(|i| a[i * n + k]));
    }
    let mut q = vec![0.0; n * n];
    for i in 0..n {
        q[i * n + i] = 1.0;
    }
    // Work of row r ∝ Σ_{k<r} (n − k); split rows so that threads get equal shares.
    let threads = threads_for(n * n * n / 4).min(n);
    let work = |r: usize| r * n - r * r.saturating_sub(1) / 2;
    let total = work(n);
    let mut bounds = vec![0];
    for r in 1..n {
        if work(r) * threads >= total * bounds.len() && bounds.len() < threads {
            bounds.push(r);
        }
    }
    bounds.push(n);
    bounds.dedup();
    let (packed, starts, betas) = (&packed, &starts, &betas);
    thread::scope(|scope| {
        let mut rest: &mut [f64] = &mut q;
        for w in bounds.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let (mine, tail) = rest.split_at_mut((hi - lo) * n);
            rest = tail;
            let mut task = move || {
                for (bi, block) in mine.chunks_mut(ACCUMULATE_BLOCK * n).enumerate() {
                    let r0 = lo + bi * ACCUMULATE_BLOCK;
                    let r1 = r0 + block.len() / n;
                    for k in (0..n.saturating_sub(2).min(r1)).rev() {
                        let beta = betas[k];
                        if beta == 0.0 {
                            continue;
                        }
                        let v = &packed[starts[k]..starts[k] + n - k - 1];
                        for r in r0.max(k + 1)..r1 {
                            let row = &mut block[(r - r0) * n + k + 1..(r - r0 + 1) * n];
                            let t = beta * dot(row, v);
                            for (x, &vi) in row.iter_mut().zip(v) {
                                *x -= t * vi;
                            }
                        }
                    }
                }
            };
            if threads == 1 {
                task();
            } else {
                scope.spawn(task);
            }
        }
    });
    (diag, off, Some(q))
}

trait SignumNonzero {
    fn signum_nonzero(self) -> f64;
}

impl SignumNonzero for f64 {
    /// +1 for x ≥ 0 (including +0 and −0), −1 otherwise: the Householder sign choice that
    /// avoids cancellation in x₀ − α.
    fn signum_nonzero(self) -> f64 {
        if self < 0.0 { -1.0 } else { 1.0 }
    }
}

fn transpose_in_place(m: &mut [f64], n: usize) {
    for i in 0..n {
        for j in i + 1..n {
            m.swap(i * n + j, j * n + i);
        }
    }
}

/// Implicit QL iteration with Wilkinson shifts on the symmetric tridiagonal matrix with
/// diagonal `d` and off-diagonal `e` (`e[i]` couples i and i+1; `e[n−1]` is scratch). On return
/// `d` holds the eigenvalues (unsorted); the rotations are applied to the rows of Zᵀ, given as
/// column blocks `zt_blocks` (n rows each, row-major; empty for eigenvalues only), so if Zᵀ = Qᵀ
/// on entry, its rows are the eigenvectors of Q·T·Qᵀ on return. The rotations of each
/// eigenvalue's iterations are collected and then applied to the blocks in parallel.
fn tridiagonal_ql(
    d: &mut [f64],
    e: &mut [f64],
    zt_blocks: &mut [Vec<f64>],
    n: usize,
) -> Option<()> {
    if n > 0 {
        e[n - 1] = 0.0;
    }
    let vectors = !zt_blocks.is_empty();
    // (i, c, s): rows i and i+1 of Zᵀ become c·zᵢ − s·zᵢ₊₁ and s·zᵢ + c·zᵢ₊₁.
    let mut rotations: Vec<(usize, f64, f64)> = Vec::new();
    // The largest |d[l]| + |e[l]| seen so far (EISPACK `tql2`'s `tst1`): an off-diagonal entry
    // is negligible against it too, so a block of eigenvalues at rounding level (a singular
    // covariance) deflates instead of cycling on a test relative to its own tiny neighbours.
    let mut scale = 0.0f64;
    for l in 0..n {
        scale = scale.max(d[l].abs() + e[l].abs());
        if vectors && !rotations.is_empty() {
            apply_rotations(zt_blocks, &rotations, n);
            rotations.clear();
        }
        let mut iterations = 0;
        loop {
            // Smallest m ≥ l with a negligible e[m]: T splits there.
            let mut m = l;
            while m + 1 < n {
                let dd = (d[m].abs() + d[m + 1].abs()).max(scale);
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > MAX_QL_ITERATIONS {
                return None;
            }
            // Wilkinson shift from the leading 2×2 block of T[l..=m]: g = d[m] − μ.
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut underflow = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                let r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    // Exact deflation: the rotation degenerated; restart on the split blocks.
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                let r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                if vectors {
                    rotations.push((i, c, s));
                }
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    if vectors && !rotations.is_empty() {
        apply_rotations(zt_blocks, &rotations, n);
    }
    Some(())
}

/// Applies the plane rotations `(i, c, s)` in order to the rows of each column block of Zᵀ
/// (n rows each), the blocks in parallel when the work is large.
fn apply_rotations(blocks: &mut [Vec<f64>], rotations: &[(usize, f64, f64)], n: usize) {
    let rotate = |block: &mut Vec<f64>| {
        let w = block.len() / n;
        for &(i, c, s) in rotations {
            let (head, tail) = block.split_at_mut((i + 1) * w);
            let zi = &mut head[i * w..];
            for (a, b) in zi.iter_mut().zip(&mut tail[..w]) {
                let f = *b;
                *b = s * *a + c * f;
                *a = c * *a - s * f;
            }
        }
    };
    if blocks.len() == 1 || rotations.len() * n < 1 << 17 {
        blocks.iter_mut().for_each(rotate);
    } else {
        let rotate = &rotate;
        thread::scope(|scope| {
            for block in blocks.iter_mut() {
                scope.spawn(move || rotate(block));
            }
        });
    }
}

/// xᵀy in f64 with eight independent partial sums (so the loop vectorises; a single running
/// sum is a serial dependency chain).
///
/// # Panics
///
/// If the lengths differ (a programmer error).
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "dot: lengths differ");
    let mut acc = [0.0f64; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for k in 0..8 {
            acc[k] += a[k] * b[k];
        }
    }
    let tail: f64 = xr.iter().zip(yr).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f64>() + tail
}

/// Threads used for the O(n³) products (at most what the machine offers).
fn threads_for(work: usize) -> usize {
    if work < 1 << 22 {
        return 1;
    }
    thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16)
}

/// C = A·B for row-major A (r×k) and B (k×c); rows of C are split across threads for large
/// products.
///
/// # Panics
///
/// If the slice lengths do not match the sizes (a programmer error).
pub fn matmul(a: &[f64], b: &[f64], r: usize, k: usize, c: usize) -> Vec<f64> {
    assert_eq!(a.len(), r * k, "matmul: A is not {r}×{k}");
    assert_eq!(b.len(), k * c, "matmul: B is not {k}×{c}");
    let mut out = vec![0.0; r * c];
    if r == 0 || c == 0 {
        return out;
    }
    let threads = threads_for(r * k * c).min(r);
    let rows_per = r.div_ceil(threads);
    thread::scope(|scope| {
        for (chunk_index, chunk) in out.chunks_mut(rows_per * c).enumerate() {
            let row0 = chunk_index * rows_per;
            let mut task = move || {
                for (di, out_row) in chunk.chunks_mut(c).enumerate() {
                    let a_row = &a[(row0 + di) * k..(row0 + di + 1) * k];
                    for (kk, &aik) in a_row.iter().enumerate() {
                        if aik == 0.0 {
                            continue;
                        }
                        let b_row = &b[kk * c..(kk + 1) * c];
                        for (o, &bv) in out_row.iter_mut().zip(b_row) {
                            *o += aik * bv;
                        }
                    }
                }
            };
            if threads == 1 {
                task();
            } else {
                scope.spawn(task);
            }
        }
    });
    out
}

/// V·diag(f(λ))·Vᵀ for an eigendecomposition with vectors (e.g. f = √ for the principal square
/// root of a positive semi-definite matrix).
///
/// # Panics
///
/// If `eig` has no eigenvectors (computed with `vectors = false`).
pub fn spectral_function(eig: &SymmetricEigen, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let n = eig.n;
    assert_eq!(
        eig.vectors_t.len(),
        n * n,
        "spectral_function needs eigenvectors"
    );
    // Vᵀ scaled row-wise by f(λ), then V·(diag(f) Vᵀ) = (Vᵀ)ᵀ·(diag(f) Vᵀ).
    let mut scaled = eig.vectors_t.clone();
    for (i, row) in scaled.chunks_mut(n.max(1)).enumerate().take(n) {
        let fi = f(eig.values[i]);
        row.iter_mut().for_each(|v| *v *= fi);
    }
    let mut v = eig.vectors_t.clone();
    transpose_in_place(&mut v, n);
    let mut out = matmul(&v, &scaled, n, n, n);
    symmetrize(&mut out, n);
    out
}

/// Replaces the n×n matrix `m` by (M + Mᵀ)/2.
pub fn symmetrize(m: &mut [f64], n: usize) {
    for i in 0..n {
        for j in i + 1..n {
            let avg = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = avg;
            m[j * n + i] = avg;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_by_two_closed_form() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3 with vectors (1, −1)/√2 and (1, 1)/√2.
        let eig = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2, true).unwrap();
        assert!((eig.values[0] - 1.0).abs() < 1e-14 && (eig.values[1] - 3.0).abs() < 1e-14);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let v0 = &eig.vectors_t[0..2];
        assert!((v0[0].abs() - h).abs() < 1e-14 && (v0[0] + v0[1]).abs() < 1e-14);
    }

    #[test]
    fn diagonal_and_empty() {
        let eig =
            symmetric_eigen(&[3.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 2.0], 3, false).unwrap();
        assert_eq!(eig.values, vec![-1.0, 2.0, 3.0]);
        assert!(symmetric_eigen(&[], 0, true).unwrap().values.is_empty());
        assert!(symmetric_eigen(&[f64::NAN], 1, true).is_none());
    }

    /// A covariance of fewer samples than dimensions (what FID of a few samples meets) is
    /// singular, with dozens of eigenvalues at rounding level; it must still decompose, to
    /// ε·‖A‖. (The real matrix on which the local-only deflation test cycled, 20 MNIST digits'
    /// features, is in `ddpm-cli`'s `a_few_samples_give_a_finite_distance`.)
    #[test]
    fn rank_deficient_covariances_decompose() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for (samples, n) in [(20usize, 64usize), (5, 128), (2, 40)] {
            // Features as a ReLU network gives them: non-negative, a third of them dead (0 for
            // every sample), some nearly constant.
            let x: Vec<f64> = (0..samples * n)
                .map(|k| {
                    let c = k % n;
                    let v = next() * 10.0;
                    match c % 3 {
                        0 => 0.0,
                        1 => v.max(0.0),
                        _ => 3.0 + 1e-9 * v,
                    }
                })
                .collect();
            let mut mean = vec![0.0; n];
            for r in 0..samples {
                for c in 0..n {
                    mean[c] += x[r * n + c] / samples as f64;
                }
            }
            let mut cov = vec![0.0; n * n];
            for r in 0..samples {
                for i in 0..n {
                    for j in 0..n {
                        cov[i * n + j] += (x[r * n + i] - mean[i]) * (x[r * n + j] - mean[j])
                            / (samples - 1) as f64;
                    }
                }
            }
            let eig = symmetric_eigen(&cov, n, true)
                .unwrap_or_else(|| panic!("{samples} samples in {n} dims did not converge"));
            let norm = eig.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            // Rank ≤ samples − 1: the rest are zero up to rounding.
            let zeros = eig
                .values
                .iter()
                .filter(|v| v.abs() <= 1e-10 * norm)
                .count();
            assert!(
                zeros >= n - (samples - 1),
                "{samples}/{n}: {zeros} zero eigenvalues"
            );
            let back = spectral_function(&eig, |v| v);
            let err = back
                .iter()
                .zip(&cov)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= 1e-10 * norm,
                "{samples}/{n}: reconstruction error {err}"
            );
        }
    }

    #[test]
    fn matmul_small() {
        let c = matmul(
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            2,
            3,
            2,
        );
        assert_eq!(c, vec![4.0, 5.0, 10.0, 11.0]);
    }
}
