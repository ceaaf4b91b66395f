//! GroupNorm with an optional fused SiLU on plain `f32` slices (NCHW, contiguous) behind the
//! Flex fast path: one pass for the statistics and one for the output, and a two-pass
//! backward. Burn's composite GroupNorm spends most of its time in broadcasts
//! (`x·γ[1,C,1,1]`) that miss Flex's SIMD broadcast patterns. The per-block loops are
//! [`simd::multiversion!`]ed (AVX-512 / AVX2 where the CPU has it), and SiLU's sigmoid uses
//! the vectorisable [`simd::exp`].
//!
//! Groups of a batch are processed in parallel (rayon).

use std::mem::MaybeUninit;

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
/// Elements summed in f32 lanes before the lanes are added to an f64 total.
const ROW: usize = 1024;

/// Σ f(v) over a slice: [`LANES`] f32 lanes per row of ≤ [`ROW`] elements, rows summed in
/// f64.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32 + Copy) -> f64 {
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

simd::multiversion! {
    /// One (image, group) block of the forward: writes `yb`, returns (mean, 1/σ).
    fn forward_block(
        g: &NormGeom,
        group: usize,
        xb: &[f32],
        yb: &mut [MaybeUninit<f32>],
        gamma: &[f32],
        beta: &[f32],
    ) -> (f32, f32) {
        let m = xb.len() as f64;
        let mean = lane_sum(xb, |v| v) / m;
        let mean32 = mean as f32;
        let var = lane_sum(xb, |v| (v - mean32) * (v - mean32)) / m;
        let rstd = 1.0 / (var + g.eps).sqrt();
        let cg = g.c / g.groups;
        for cc in 0..cg {
            let ch = group * cg + cc;
            let scale = (rstd * gamma[ch] as f64) as f32;
            let shift = (beta[ch] as f64 - mean * rstd * gamma[ch] as f64) as f32;
            let (yr, xr) = (&mut yb[cc * g.hw..][..g.hw], &xb[cc * g.hw..][..g.hw]);
            if g.silu {
                for (o, &v) in yr.iter_mut().zip(xr) {
                    let z = v * scale + shift;
                    o.write(z * sigmoid(z));
                }
            } else {
                for (o, &v) in yr.iter_mut().zip(xr) {
                    o.write(v * scale + shift);
                }
            }
        }
        (mean32, rstd as f32)
    }
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
    if m == 0 {
        return (vec![0.0; x.len()], vec![0.0; blocks], vec![0.0; blocks]);
    }
    let mut y = super::buf::uninit(x.len());
    let mut stats = vec![(0f32, 0f32); blocks];
    y.par_chunks_mut(m)
        .zip(x.par_chunks(m))
        .zip(stats.par_iter_mut())
        .enumerate()
        .for_each(|(blk, ((yb, xb), st))| {
            *st = forward_block(g, blk % g.groups, xb, yb, gamma, beta);
        });
    let (mean, rstd) = stats.into_iter().unzip();
    // SAFETY: the blocks partition `y` (x.len() = n·groups·m) and `forward_block` writes
    // every float of its block (each channel row of the group).
    (unsafe { super::buf::assume_init(y) }, mean, rstd)
}

/// dz (the gradient before the affine γ) of one channel row into `dz`, returning
/// `(Σ dz·x̂, Σ dz)` (f32 lanes per [`ROW`], summed in f64), x̂ = (x − μ)·r; with SiLU
/// z = γ·x̂ + β and dz = dy·σ(z)(1 + z(1 − σ(z))), else dz = dy.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dz_row<const SILU: bool>(
    x: &[f32],
    dy: &[f32],
    dz: &mut [MaybeUninit<f32>],
    mu: f32,
    r: f32,
    gam: f32,
    bet: f32,
) -> (f64, f64) {
    let grad = |v: f32, gy: f32| {
        let xhat = (v - mu) * r;
        let d = if SILU {
            let z = xhat * gam + bet;
            let s = sigmoid(z);
            gy * (s * (1.0 + z * (1.0 - s)))
        } else {
            gy
        };
        (d, xhat)
    };
    let (mut dot, mut sum) = (0f64, 0f64);
    for ((xr, gr), dr) in x.chunks(ROW).zip(dy.chunks(ROW)).zip(dz.chunks_mut(ROW)) {
        let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
        let mut xc = xr.chunks_exact(LANES);
        let mut gc = gr.chunks_exact(LANES);
        let mut dc = dr.chunks_exact_mut(LANES);
        for ((xv, gv), dv) in (&mut xc).zip(&mut gc).zip(&mut dc) {
            for i in 0..LANES {
                let (d, xhat) = grad(xv[i], gv[i]);
                dv[i].write(d);
                a[i] += d * xhat;
                b[i] += d;
            }
        }
        dot += a.iter().map(|&v| v as f64).sum::<f64>();
        sum += b.iter().map(|&v| v as f64).sum::<f64>();
        let rest = xc.remainder().iter().zip(gc.remainder());
        for ((&v, &gy), d) in rest.zip(dc.into_remainder()) {
            let (dv, xhat) = grad(v, gy);
            d.write(dv);
            dot += (dv * xhat) as f64;
            sum += dv as f64;
        }
    }
    (dot, sum)
}

simd::multiversion! {
    /// One (image, group) block of the backward: `dx` into `dxb`, the block's per-channel
    /// `Σ dz·x̂` and `Σ dz` into `dgp`, `dbp`.
    #[allow(clippy::too_many_arguments)]
    fn backward_block(
        g: &NormGeom,
        group: usize,
        mu: f32,
        r: f32,
        xb: &[f32],
        dyb: &[f32],
        dxb: &mut [MaybeUninit<f32>],
        dgp: &mut [f32],
        dbp: &mut [f32],
        gamma: &[f32],
        beta: &[f32],
    ) {
        let cg = g.c / g.groups;
        let (mut sum_d, mut sum_dxhat) = (0f64, 0f64);
        for cc in 0..cg {
            let ch = group * cg + cc;
            let range = cc * g.hw..(cc + 1) * g.hw;
            let (x, dy, dz) = (&xb[range.clone()], &dyb[range.clone()], &mut dxb[range]);
            let (dg, dbt) = if g.silu {
                dz_row::<true>(x, dy, dz, mu, r, gamma[ch], beta[ch])
            } else {
                dz_row::<false>(x, dy, dz, mu, r, gamma[ch], beta[ch])
            };
            dgp[cc] = dg as f32;
            dbp[cc] = dbt as f32;
            sum_d += gamma[ch] as f64 * dbt;
            sum_dxhat += gamma[ch] as f64 * dg;
        }
        // SAFETY: `dz_row` wrote every float of each channel row, and the rows make up the
        // block (cg·hw floats).
        let dxb: &mut [f32] = unsafe { &mut *(dxb as *mut [MaybeUninit<f32>] as *mut [f32]) };
        let m = xb.len() as f64;
        let a = (sum_d / m) as f32;
        let b = (sum_dxhat / m) as f32;
        for cc in 0..cg {
            let gam = gamma[group * cg + cc];
            let range = cc * g.hw..(cc + 1) * g.hw;
            for (d, &v) in dxb[range.clone()].iter_mut().zip(&xb[range]) {
                let xhat = (v - mu) * r;
                *d = r * (gam * *d - a - xhat * b);
            }
        }
    }
}

/// Gradients of [`group_norm_forward`]: `(dx, dγ, dβ)`.
///
/// With x̂ = (x − μ)·r, z = γ·x̂ + β, y = SiLU(z) (or z): dz = dy·σ(z)(1 + z(1 − σ(z))),
/// dγ = Σ dz·x̂, dβ = Σ dz, and per group dx = r·(d − mean(d) − x̂·mean(d·x̂)) with d = γ·dz.
/// Two passes per block: dz with its sums, then dx.
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
    if m == 0 {
        return (vec![0.0; x.len()], vec![0.0; g.c], vec![0.0; g.c]);
    }
    let mut dx = super::buf::uninit(x.len());
    // Per-image partial dγ, dβ: [n, c], reduced over the batch at the end.
    let mut dgamma_part = vec![0f32; g.n * g.c];
    let mut dbeta_part = vec![0f32; g.n * g.c];
    {
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
                backward_block(
                    g,
                    blk % g.groups,
                    mu,
                    r,
                    xb,
                    dyb,
                    dxb,
                    dgp,
                    dbp,
                    gamma,
                    beta,
                );
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
    // SAFETY: the blocks partition `dx` and `backward_block` writes every float of its block.
    (unsafe { super::buf::assume_init(dx) }, dgamma, dbeta)
}
