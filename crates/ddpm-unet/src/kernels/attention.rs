//! Scaled dot-product attention on plain `f32` slices behind the Flex fast path, with its own
//! backward. Under autodiff Burn composes attention from ~12 differentiable ops (transpose,
//! matmul, scale, max with indices, subtract, exp, sum, divide, matmul), each recorded and
//! differentiated separately; here the forward keeps the probabilities S and the backward is
//! four products and one row-wise pass:
//!
//! S = softmax(s·Q Kᵀ) (row-wise), O = S V;
//! dV = Sᵀ dO, dS = dO Vᵀ, dP = S ∘ (dS − rowsum(dS ∘ S)), dQ = s·dP K, dK = s·dPᵀ Q,
//!
//! with s = 1/√d (Vaswani et al. 2017, arXiv:1706.03762v7, Eq. 1). Every (image, head) is one
//! independent problem; they run in parallel (rayon), and a single one lets gemm parallelise.

use gemm::Parallelism;
use rayon::prelude::*;

use super::matmul::{View, matmul};
use super::simd;

/// `[batch·heads]` independent attentions of `n` queries and keys of width `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttnGeom {
    /// batch · heads.
    pub bh: usize,
    /// Sequence length (query and key positions).
    pub n: usize,
    /// Head width.
    pub d: usize,
    /// Channels-first: each problem's Q, K, V and O are stored `[d][n]` (a `[batch, heads·d,
    /// n]` feature map read as `[batch, heads, d, n]`) instead of `[n][d]`, so that an
    /// attention block needs no transposes between its projections and this kernel.
    pub cf: bool,
}

impl AttnGeom {
    /// One problem's `[n, d]` matrix (Q, K, V, O or a gradient) as an `n×d` view.
    fn nd<'a>(&self, block: &'a [f32]) -> View<'a> {
        if self.cf {
            transposed(block, self.n)
        } else {
            rows(block, self.d)
        }
    }

    /// The transpose (`d×n`) of [`Self::nd`].
    fn dn<'a>(&self, block: &'a [f32]) -> View<'a> {
        if self.cf {
            rows(block, self.n)
        } else {
            transposed(block, self.d)
        }
    }

    fn scale(&self) -> f32 {
        1.0 / (self.d as f32).sqrt()
    }

    fn parallelism(&self) -> Parallelism {
        if self.bh >= rayon::current_num_threads() {
            Parallelism::None
        } else {
            Parallelism::Rayon(0)
        }
    }
}

fn rows(data: &[f32], cols: usize) -> View<'_> {
    View {
        data,
        rs: cols,
        cs: 1,
    }
}

fn transposed(data: &[f32], cols: usize) -> View<'_> {
    View {
        data,
        rs: 1,
        cs: cols,
    }
}

/// f32 lanes of the row reductions below (one AVX-512 register).
const LANES: usize = 16;

/// `(max, Σ)`-style reduction of a row in [`LANES`] lanes: `fold(acc, x)` per element,
/// `merge` over the lanes and the tail.
#[inline(always)]
fn lane_reduce(row: &[f32], init: f32, fold: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
    let mut acc = [init; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = fold(*a, x);
        }
    }
    acc.iter().chain(rest).fold(init, |a, &x| fold(a, x))
}

simd::multiversion! {
    /// Row-wise softmax of `scale·x`, in place, for rows of `n`.
    fn softmax_rows(s: &mut [f32], n: usize, scale: f32) {
        for row in s.chunks_exact_mut(n) {
            let max = lane_reduce(row, f32::NEG_INFINITY, f32::max);
            for x in row.iter_mut() {
                *x = simd::exp((*x - max) * scale);
            }
            let inv = 1.0 / lane_reduce(row, 0.0, |a, x| a + x);
            for x in row.iter_mut() {
                *x *= inv;
            }
        }
    }
}

simd::multiversion! {
    /// `dP = scale · S ∘ (dS − rowsum(dS ∘ S))` in place of `dS`, for rows of `n`.
    fn softmax_backward_rows(ds: &mut [f32], s: &[f32], n: usize, scale: f32) {
        for (dr, sr) in ds.chunks_exact_mut(n).zip(s.chunks_exact(n)) {
            let mut acc = [0f32; LANES];
            let (dc, sc) = (dr.chunks_exact(LANES), sr.chunks_exact(LANES));
            let tail: f32 = dc.remainder().iter().zip(sc.remainder()).map(|(a, b)| a * b).sum();
            for (dv, sv) in dc.zip(sc) {
                for i in 0..LANES {
                    acc[i] += dv[i] * sv[i];
                }
            }
            let dot = acc.iter().sum::<f32>() + tail;
            for (x, &p) in dr.iter_mut().zip(sr) {
                *x = scale * p * (*x - dot);
            }
        }
    }
}

/// `(O, S)`: the output `[bh, n, d]` and the probabilities `[bh, n, n]` kept for the backward.
pub(crate) fn attention_forward(
    g: &AttnGeom,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (n, d) = (g.n, g.d);
    let mut s = super::buf::zeroed(g.bh * n * n);
    let mut o = super::buf::zeroed(g.bh * n * d);
    if s.is_empty() || d == 0 {
        return (o, s);
    }
    let par = g.parallelism();
    let scale = g.scale();
    s.par_chunks_mut(n * n)
        .zip(o.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(i, (sb, ob))| {
            let (qb, kb, vb) = (
                &q[i * n * d..][..n * d],
                &k[i * n * d..][..n * d],
                &v[i * n * d..][..n * d],
            );
            matmul(n, n, d, sb, g.nd(qb), g.dn(kb), false, par);
            softmax_rows(sb, n, scale);
            if g.cf {
                // Oᵀ = Vᵀ Sᵀ.
                matmul(d, n, n, ob, g.dn(vb), transposed(sb, n), false, par);
            } else {
                matmul(n, d, n, ob, rows(sb, n), g.nd(vb), false, par);
            }
        });
    (o, s)
}

/// `(dQ, dK, dV)` of [`attention_forward`], each `[bh, n, d]`.
pub(crate) fn attention_backward(
    g: &AttnGeom,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: &[f32],
    dout: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, d) = (g.n, g.d);
    let len = g.bh * n * d;
    let (mut dq, mut dk, mut dv) = (
        super::buf::zeroed(len),
        super::buf::zeroed(len),
        super::buf::zeroed(len),
    );
    if len == 0 {
        return (dq, dk, dv);
    }
    let par = g.parallelism();
    let scale = g.scale();
    dq.par_chunks_mut(n * d)
        .zip(dk.par_chunks_mut(n * d).zip(dv.par_chunks_mut(n * d)))
        .enumerate()
        .for_each_init(
            || vec![0f32; n * n],
            |dp, (i, (dqb, (dkb, dvb)))| {
                let block = i * n * d..(i + 1) * n * d;
                let (qb, kb, vb) = (&q[block.clone()], &k[block.clone()], &v[block.clone()]);
                let gb = &dout[block];
                let sb = &s[i * n * n..][..n * n];
                // dS = dO Vᵀ; dP = s · S ∘ (dS − rowsum(dS ∘ S)), in place.
                matmul(n, n, d, dp, g.nd(gb), g.dn(vb), false, par);
                softmax_backward_rows(dp, sb, n, scale);
                if g.cf {
                    // dVᵀ = dOᵀ S, dQᵀ = Kᵀ dPᵀ, dKᵀ = Qᵀ dP.
                    matmul(d, n, n, dvb, g.dn(gb), rows(sb, n), false, par);
                    matmul(d, n, n, dqb, g.dn(kb), transposed(dp, n), false, par);
                    matmul(d, n, n, dkb, g.dn(qb), rows(dp, n), false, par);
                } else {
                    // dV = Sᵀ dO, dQ = dP K, dK = dPᵀ Q.
                    matmul(n, d, n, dvb, transposed(sb, n), g.nd(gb), false, par);
                    matmul(n, d, n, dqb, rows(dp, n), g.nd(kb), false, par);
                    matmul(n, d, n, dkb, transposed(dp, n), g.nd(qb), false, par);
                }
            },
        );
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// softmax(Q Kᵀ/√d) V and L = Σ O·R in f64 for one problem.
    fn reference(
        n: usize,
        d: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        r: &[f32],
    ) -> (Vec<f64>, f64) {
        let mut o = vec![0f64; n * d];
        let mut loss = 0f64;
        for i in 0..n {
            let logits: Vec<f64> = (0..n)
                .map(|j| {
                    (0..d)
                        .map(|c| q[i * d + c] as f64 * k[j * d + c] as f64)
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..d {
                o[i * d + c] = (0..n).map(|j| e[j] / z * v[j * d + c] as f64).sum();
                loss += o[i * d + c] * r[i * d + c] as f64;
            }
        }
        (o, loss)
    }

    /// Each `[n][d]` problem of `t` stored `[d][n]` (`forward`), or back (`!forward`).
    fn swap_layout(t: &[f32], n: usize, d: usize, forward: bool) -> Vec<f32> {
        let (rows, cols) = if forward { (n, d) } else { (d, n) };
        let mut out = vec![0f32; t.len()];
        for (src, dst) in t.chunks_exact(n * d).zip(out.chunks_exact_mut(n * d)) {
            for r in 0..rows {
                for c in 0..cols {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
        out
    }

    #[test]
    fn forward_and_gradients_match_f64() {
        let (bh, n, d) = (3, 7, 5);
        let (q, k, v, r) = (
            values(bh * n * d, 1),
            values(bh * n * d, 2),
            values(bh * n * d, 3),
            values(bh * n * d, 4),
        );
        // Row-major problems, and the same problems stored channels-first (inputs transposed
        // in, results transposed back).
        for cf in [false, true] {
            let g = AttnGeom { bh, n, d, cf };
            let to = |t: &[f32]| {
                if cf {
                    swap_layout(t, n, d, true)
                } else {
                    t.to_vec()
                }
            };
            let from = |t: Vec<f32>| if cf { swap_layout(&t, n, d, false) } else { t };
            let (qs, ks, vs, rs) = (to(&q), to(&k), to(&v), to(&r));
            let (o, s) = attention_forward(&g, &qs, &ks, &vs);
            let (dq, dk, dv) = attention_backward(&g, &qs, &ks, &vs, &s, &rs);
            let (o, dq, dk, dv) = (from(o), from(dq), from(dk), from(dv));
            for b in 0..bh {
                let at = |t: &[f32]| t[b * n * d..][..n * d].to_vec();
                let (qb, kb, vb, rb) = (at(&q), at(&k), at(&v), at(&r));
                let (want, _) = reference(n, d, &qb, &kb, &vb, &rb);
                for (got, want) in o[b * n * d..][..n * d].iter().zip(&want) {
                    assert!(
                        (*got as f64 - want).abs() < 1e-5,
                        "cf {cf}: O: {got} vs {want}"
                    );
                }
                // Central differences of L = Σ O·R in f64 for every input element.
                let h = 1e-3f32;
                for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
                    for e in 0..n * d {
                        let mut inputs = [qb.clone(), kb.clone(), vb.clone()];
                        inputs[which][e] += h;
                        let (_, up) = reference(n, d, &inputs[0], &inputs[1], &inputs[2], &rb);
                        inputs[which][e] -= 2.0 * h;
                        let (_, down) = reference(n, d, &inputs[0], &inputs[1], &inputs[2], &rb);
                        let want = (up - down) / (2.0 * h as f64);
                        let got = grad[b * n * d + e] as f64;
                        assert!(
                            (got - want).abs() < 1e-3,
                            "cf {cf}: input {which} elem {e}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
