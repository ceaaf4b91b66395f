//! Plain-slice `f32` kernels behind the Flex fast path (NCHW, contiguous).
//!
//! - Convolution as im2col + one gemm per image, with a backward that is also two gemms
//!   per image: dW += dY·colsᵀ and dcols = Wᵀ·dY followed by col2im. Burn's generic
//!   backward instead computes dW as a convolution of the batch-swapped input with the
//!   batch-swapped output gradient (a 3×3 output with an H×W "kernel") and materialises
//!   both swapped tensors first; on Flex that was ~30% of a training step.
//! - GroupNorm with an optional fused SiLU, one pass for the statistics and one for the
//!   output, and a two-pass backward. Burn's composite GroupNorm spends most of its time in
//!   broadcasts (`x·γ[1,C,1,1]`) that miss Flex's SIMD broadcast patterns.
//!
//! Images of a batch are processed in parallel (rayon); a batch smaller than the thread
//! pool lets gemm parallelise inside each product instead.

use gemm::Parallelism;
use rayon::prelude::*;

/// The geometry of one 2-D convolution (stride and zero padding; no groups, no dilation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// Zero padding before the first row / column (the bottom / right padding is implied by
    /// `oh` / `ow`).
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    /// Rows of the im2col matrix: `ci·kh·kw`.
    fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }

    /// Output positions per image: `oh·ow`.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn image_len(&self) -> usize {
        self.ci * self.h * self.w
    }

    /// A 1×1, stride-1, unpadded conv: the image itself is the im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt == 0
            && self.pl == 0
            && self.oh == self.h
            && self.ow == self.w
    }

    /// Output columns `ox` whose input column `ox·sw + j − pl` lies inside the image.
    fn valid_cols(&self, j: usize) -> (usize, usize) {
        let lo = if j >= self.pl {
            0
        } else {
            (self.pl - j).div_ceil(self.sw)
        };
        let hi = (self.w + self.pl).saturating_sub(j).div_ceil(self.sw);
        (lo.min(self.ow), hi.min(self.ow).max(lo.min(self.ow)))
    }

    /// The input row of output row `oy` for kernel row `i`, if inside the image.
    fn input_row(&self, oy: usize, i: usize) -> Option<usize> {
        (oy * self.sh + i)
            .checked_sub(self.pt)
            .filter(|&iy| iy < self.h)
    }

    fn parallelism(&self) -> Parallelism {
        if self.n >= rayon::current_num_threads() {
            Parallelism::None
        } else {
            Parallelism::Rayon(0)
        }
    }
}

/// `cols[(c·kh + i)·kw + j][oy·ow + ox] = x[c][oy·sh + i − pt][ox·sw + j − pl]` (0 outside).
fn im2col(g: &ConvGeom, x: &[f32], cols: &mut [f32]) {
    let p = g.p();
    for c in 0..g.ci {
        let xc = &x[c * g.h * g.w..][..g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut cols[((c * g.kh + i) * g.kw + j) * p..][..p];
                let (lo, hi) = g.valid_cols(j);
                for oy in 0..g.oh {
                    let out = &mut row[oy * g.ow..][..g.ow];
                    let Some(iy) = g.input_row(oy, i) else {
                        out.fill(0.0);
                        continue;
                    };
                    let xr = &xc[iy * g.w..][..g.w];
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    if g.sw == 1 {
                        if hi > lo {
                            let start = lo + j - g.pl;
                            out[lo..hi].copy_from_slice(&xr[start..start + (hi - lo)]);
                        }
                    } else {
                        for (ox, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
                            *o = xr[ox * g.sw + j - g.pl];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx[c][iy][ix] += cols[(c, i, j)][(oy, ox)]`; `dx` starts zeroed.
fn col2im(g: &ConvGeom, cols: &[f32], dx: &mut [f32]) {
    let p = g.p();
    for c in 0..g.ci {
        let dxc = &mut dx[c * g.h * g.w..][..g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &cols[((c * g.kh + i) * g.kw + j) * p..][..p];
                let (lo, hi) = g.valid_cols(j);
                for oy in 0..g.oh {
                    let Some(iy) = g.input_row(oy, i) else {
                        continue;
                    };
                    let src = &row[oy * g.ow..][..g.ow];
                    let dr = &mut dxc[iy * g.w..][..g.w];
                    if g.sw == 1 {
                        if hi > lo {
                            let start = lo + j - g.pl;
                            let dst = &mut dr[start..start + (hi - lo)];
                            for (d, s) in dst.iter_mut().zip(&src[lo..hi]) {
                                *d += s;
                            }
                        }
                    } else {
                        for (ox, s) in src.iter().enumerate().take(hi).skip(lo) {
                            dr[ox * g.sw + j - g.pl] += s;
                        }
                    }
                }
            }
        }
    }
}

/// A strided view of a row-major-addressable matrix: element `(r, c)` at `r·rs + c·cs`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl View<'_> {
    /// Panics (an internal invariant, not user input) if the view leaves its slice.
    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len());
        }
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, `dst` row-major with row stride `n`.
#[allow(clippy::too_many_arguments)] // gemm's own signature, minus what is fixed here
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n);
    lhs.check(m, k);
    rhs.check(k, n);
    // SAFETY: the three views were bounds-checked above for the m×k, k×n and m×n extents
    // gemm reads and writes; `dst` is exclusively borrowed and does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Convolution forward: `y[n][o] = b[o] + Σ W[o]·im2col(x[n])`, shape `[n, co, oh, ow]`.
pub(crate) fn conv2d_forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    let mut y = vec![0f32; g.n * g.co * p];
    if y.is_empty() {
        return y;
    }
    let pointwise = g.is_pointwise();
    let parallelism = g.parallelism();
    let wv = View {
        data: w,
        rs: k,
        cs: 1,
    };
    y.par_chunks_mut(g.co * p).enumerate().for_each_init(
        || vec![0f32; if pointwise { 0 } else { k * p }],
        |cols, (img, yn)| {
            let xn = &x[img * g.image_len()..][..g.image_len()];
            let rhs = if pointwise {
                xn
            } else {
                im2col(g, xn, cols);
                cols.as_slice()
            };
            for (row, &bo) in yn.chunks_exact_mut(p).zip(bias) {
                row.fill(bo);
            }
            let rv = View {
                data: rhs,
                rs: p,
                cs: 1,
            };
            matmul(g.co, p, k, yn, wv, rv, true, parallelism);
        },
    );
    y
}

/// `(dx, dW, db)`, each computed only if asked for.
pub(crate) type ConvGrads = (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>);

/// Gradients of [`conv2d_forward`] for the requested inputs: `(dx, dW, db)`.
pub(crate) fn conv2d_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need: [bool; 3],
) -> ConvGrads {
    let [need_dx, need_dw, need_db] = need;
    let (k, p) = (g.k(), g.p());
    let pointwise = g.is_pointwise();
    let parallelism = g.parallelism();

    let db = need_db.then(|| {
        let mut db = vec![0f32; g.co];
        for dyn_ in dy.chunks_exact(g.co * p) {
            for (d, row) in db.iter_mut().zip(dyn_.chunks_exact(p)) {
                *d += row.iter().map(|&v| v as f64).sum::<f64>() as f32;
            }
        }
        db
    });
    if !need_dx && !need_dw {
        return (None, None, db);
    }

    // One pass over the images: dW accumulates per worker, dx is written per image.
    let chunk = if need_dx { g.image_len() } else { 1 };
    let mut dx = vec![0f32; g.n * chunk];
    let w_t = View {
        data: w,
        rs: 1,
        cs: k,
    };
    let dw = dx
        .par_chunks_mut(chunk)
        .enumerate()
        .fold(
            || {
                let dw = if need_dw {
                    vec![0f32; g.co * k]
                } else {
                    Vec::new()
                };
                let cols = vec![0f32; if pointwise { 0 } else { k * p }];
                (dw, cols)
            },
            |(mut dw, mut cols), (img, dxn)| {
                let dyn_ = View {
                    data: &dy[img * g.co * p..][..g.co * p],
                    rs: p,
                    cs: 1,
                };
                if need_dw {
                    let xn = &x[img * g.image_len()..][..g.image_len()];
                    let cols_t = if pointwise {
                        xn
                    } else {
                        im2col(g, xn, &mut cols);
                        cols.as_slice()
                    };
                    let rv = View {
                        data: cols_t,
                        rs: 1,
                        cs: p,
                    };
                    matmul(g.co, k, p, &mut dw, dyn_, rv, true, parallelism);
                }
                if need_dx {
                    if pointwise {
                        matmul(k, p, g.co, dxn, w_t, dyn_, false, parallelism);
                    } else {
                        matmul(k, p, g.co, &mut cols, w_t, dyn_, false, parallelism);
                        col2im(g, &cols, dxn);
                    }
                }
                (dw, cols)
            },
        )
        .map(|(dw, _)| dw)
        .reduce(Vec::new, |mut a, b| {
            if a.is_empty() {
                return b;
            }
            for (x, y) in a.iter_mut().zip(&b) {
                *x += y;
            }
            a
        });
    let dw = need_dw.then(|| {
        if dw.is_empty() {
            vec![0f32; g.co * k]
        } else {
            dw
        }
    });
    (need_dx.then_some(dx), dw, db)
}

/// The geometry of a GroupNorm over `[n, c, hw]` with `groups` groups.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct NormGeom {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub groups: usize,
    pub eps: f64,
    /// Apply SiLU to the normalised, affine-transformed output.
    pub silu: bool,
}

impl NormGeom {
    fn group_len(&self) -> usize {
        self.c / self.groups * self.hw
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Σ f(v) over a slice: 8 independent f32 lanes per row of ≤ `ROW` elements (so the loop
/// vectorises; f32 addition is not reassociated otherwise), rows summed in f64.
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32 + Copy) -> f64 {
    const ROW: usize = 1024;
    let mut total = 0f64;
    for row in v.chunks(ROW) {
        let mut acc = [0f32; 8];
        let chunks = row.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += f(x);
            }
        }
        total += acc.iter().map(|&a| a as f64).sum::<f64>();
        total += rest.iter().map(|&x| f(x) as f64).sum::<f64>();
    }
    total
}

/// GroupNorm (+ SiLU) forward: `(y, mean, rstd)` with one mean / 1/σ per (image, group).
/// Statistics are accumulated in f64 (two passes: mean, then Σ(x − μ)²).
pub(crate) fn group_norm_forward(
    g: &NormGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m = g.group_len();
    let blocks = g.n * g.groups;
    let mut y = vec![0f32; x.len()];
    let mut stats = vec![(0f32, 0f32); blocks];
    if m == 0 {
        return (y, vec![0.0; blocks], vec![0.0; blocks]);
    }
    let cg = g.c / g.groups;
    y.par_chunks_mut(m)
        .zip(x.par_chunks(m))
        .zip(stats.par_iter_mut())
        .enumerate()
        .for_each(|(blk, ((yb, xb), st))| {
            let mean = lane_sum(xb, |v| v) / m as f64;
            let mean32 = mean as f32;
            let var = lane_sum(xb, |v| (v - mean32) * (v - mean32)) / m as f64;
            let rstd = 1.0 / (var + g.eps).sqrt();
            let group = blk % g.groups;
            for cc in 0..cg {
                let ch = group * cg + cc;
                let scale = (rstd * gamma[ch] as f64) as f32;
                let shift = (beta[ch] as f64 - mean * rstd * gamma[ch] as f64) as f32;
                let (yr, xr) = (&mut yb[cc * g.hw..][..g.hw], &xb[cc * g.hw..][..g.hw]);
                if g.silu {
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        let z = v * scale + shift;
                        *o = z * sigmoid(z);
                    }
                } else {
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = v * scale + shift;
                    }
                }
            }
            *st = (mean as f32, rstd as f32);
        });
    let (mean, rstd) = stats.into_iter().unzip();
    (y, mean, rstd)
}

/// `(Σ dz·x̂, Σ dz)` with x̂ = (x − μ)·r, in 8 f32 lanes summed in f64.
fn lane_dot(dz: &[f32], x: &[f32], mu: f32, r: f32) -> (f64, f64) {
    let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
    let (dzc, xc) = (dz.chunks_exact(8), x.chunks_exact(8));
    let (dz_rest, x_rest) = (dzc.remainder(), xc.remainder());
    for (d, v) in dzc.zip(xc) {
        for i in 0..8 {
            a[i] += d[i] * ((v[i] - mu) * r);
            b[i] += d[i];
        }
    }
    let mut dot = a.iter().map(|&v| v as f64).sum::<f64>();
    let mut sum = b.iter().map(|&v| v as f64).sum::<f64>();
    for (&d, &v) in dz_rest.iter().zip(x_rest) {
        dot += (d * ((v - mu) * r)) as f64;
        sum += d as f64;
    }
    (dot, sum)
}

/// Gradients of [`group_norm_forward`]: `(dx, dγ, dβ)`.
///
/// With x̂ = (x − μ)·r, z = γ·x̂ + β, y = SiLU(z) (or z): dz = dy·σ(z)(1 + z(1 − σ(z))),
/// dγ = Σ dz·x̂, dβ = Σ dz, and per group dx = r·(d − mean(d) − x̂·mean(d·x̂)) with d = γ·dz.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm_backward(
    g: &NormGeom,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    rstd: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m = g.group_len();
    let cg = g.c / g.groups;
    let mut dx = vec![0f32; x.len()];
    // Per-image partial dγ, dβ: [n, c], reduced over the batch at the end.
    let mut dgamma_part = vec![0f32; g.n * g.c];
    let mut dbeta_part = vec![0f32; g.n * g.c];
    if m > 0 {
        dx.par_chunks_mut(m)
            .zip(x.par_chunks(m).zip(dy.par_chunks(m)))
            .zip(
                dgamma_part
                    .par_chunks_mut(cg)
                    .zip(dbeta_part.par_chunks_mut(cg)),
            )
            .enumerate()
            .for_each(|(blk, ((dxb, (xb, dyb)), (dgp, dbp)))| {
                let (mu, r) = (mean[blk], rstd[blk]);
                let group = blk % g.groups;
                let (mut sum_d, mut sum_dxhat) = (0f64, 0f64);
                for cc in 0..cg {
                    let ch = group * cg + cc;
                    let (gam, bet) = (gamma[ch], beta[ch]);
                    let range = cc * g.hw..(cc + 1) * g.hw;
                    let (dzr, xr) = (&mut dxb[range.clone()], &xb[range.clone()]);
                    // dz (the gradient before γ) into dx's row first ...
                    if g.silu {
                        for ((d, &v), &gy) in dzr.iter_mut().zip(xr).zip(&dyb[range]) {
                            let z = (v - mu) * r * gam + bet;
                            let s = sigmoid(z);
                            *d = gy * (s * (1.0 + z * (1.0 - s)));
                        }
                    } else {
                        dzr.copy_from_slice(&dyb[range]);
                    }
                    // ... then its sums, in vectorisable 8-lane passes.
                    let (dg, dbt) = lane_dot(dzr, xr, mu, r);
                    dgp[cc] = dg as f32;
                    dbp[cc] = dbt as f32;
                    sum_d += gam as f64 * dbt;
                    sum_dxhat += gam as f64 * dg;
                    for d in dzr.iter_mut() {
                        *d *= gam;
                    }
                }
                let a = (sum_d / m as f64) as f32;
                let b = (sum_dxhat / m as f64) as f32;
                for (d, &v) in dxb.iter_mut().zip(xb) {
                    let xhat = (v - mu) * r;
                    *d = r * (*d - a - xhat * b);
                }
            });
    }
    let reduce = |part: &[f32]| {
        let mut out = vec![0f32; g.c];
        for row in part.chunks_exact(g.c) {
            for (o, v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        out
    };
    let (dgamma, dbeta) = (reduce(&dgamma_part), reduce(&dbeta_part));
    (dx, dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct (quadruple-loop) convolution in f64, the oracle for im2col + gemm.
    fn conv_naive(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let mut y = vec![0f64; g.n * g.co * g.p()];
        for n in 0..g.n {
            for o in 0..g.co {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = b[o] as f64;
                        for c in 0..g.ci {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let iy = (oy * g.sh + i) as isize - g.pt as isize;
                                    let ix = (ox * g.sw + j) as isize - g.pl as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((n * g.ci + c) * g.h + iy as usize) * g.w + ix as usize];
                                    let wv = w[((o * g.ci + c) * g.kh + i) * g.kw + j];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((n * g.co + o) * g.oh + oy) * g.ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn conv_forward_matches_direct_loops() {
        // 3×3 same, 1×1, stride-2 with asymmetric (0, 1) padding, an odd width.
        let cases = [
            (3, 3, 1, 1, 1, 1, 5, 7),
            (1, 1, 1, 1, 0, 0, 5, 7),
            (3, 3, 2, 2, 0, 0, 4, 4),
            (3, 3, 2, 2, 1, 1, 5, 3),
        ];
        for (kh, kw, sh, sw, pt, pl, oh, ow) in cases {
            let (n, ci, co, h, w) = (2, 3, 4, 8, 7);
            let oh = if kh == 1 { h } else { oh };
            let ow = if kw == 1 { w } else { ow };
            let g = ConvGeom {
                n,
                ci,
                h,
                w,
                co,
                kh,
                kw,
                sh,
                sw,
                pt,
                pl,
                oh,
                ow,
            };
            let x = values(n * ci * h * w, 1);
            let wt = values(co * ci * kh * kw, 2);
            let b = values(co, 3);
            let got = conv2d_forward(&g, &x, &wt, &b);
            let want = conv_naive(&g, &x, &wt, &b);
            for (a, e) in got.iter().zip(&want) {
                assert!((*a as f64 - e).abs() < 1e-5, "{g:?}: {a} vs {e}");
            }
        }
    }
}
