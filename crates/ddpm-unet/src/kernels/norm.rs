//! GroupNorm with an optional fused SiLU on plain `f32` slices (NCHW, contiguous) behind the
//! Flex fast path: one pass for the statistics and one for the output, and a two-pass
//! backward. Burn's composite GroupNorm spends most of its time in broadcasts
//! (`x·γ[1,C,1,1]`) that miss Flex's SIMD broadcast patterns. The loops run in
//! [`simd::vectorized`], so they use AVX-512 / AVX2 where the CPU has it, and SiLU's sigmoid
//! uses the vectorisable [`simd::exp`].
//!
//! Groups of a batch are processed in parallel (rayon).

use rayon::prelude::*;

use super::simd::{self, sigmoid};

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

/// Independent f32 accumulators of the sums below (one AVX-512 register), so the loops
/// vectorise: f32 addition is not reassociated otherwise.
const LANES: usize = 16;

/// Σ f(v) over a slice: [`LANES`] f32 lanes per row of ≤ `ROW` elements, rows summed in f64.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32 + Copy) -> f64 {
    const ROW: usize = 1024;
    let mut total = 0f64;
    for row in v.chunks(ROW) {
        let mut acc = [0f32; LANES];
        let chunks = row.chunks_exact(LANES);
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
            simd::vectorized(|| {
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
            })
        });
    let (mean, rstd) = stats.into_iter().unzip();
    (y, mean, rstd)
}

/// `(Σ dz·x̂, Σ dz)` with x̂ = (x − μ)·r, in [`LANES`] f32 lanes summed in f64.
#[inline(always)]
fn lane_dot(dz: &[f32], x: &[f32], mu: f32, r: f32) -> (f64, f64) {
    let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
    let (dzc, xc) = (dz.chunks_exact(LANES), x.chunks_exact(LANES));
    let (dz_rest, x_rest) = (dzc.remainder(), xc.remainder());
    for (d, v) in dzc.zip(xc) {
        for i in 0..LANES {
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
                simd::vectorized(|| {
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
                })
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
