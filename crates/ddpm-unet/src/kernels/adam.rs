//! One fused pass of the Adam update over a parameter, its gradient and its two moments.
//!
//! Burn's `Adam` runs ~13 element-wise tensor ops per parameter (scale, add, square, sqrt,
//! divide, …), each a serial pass on Flex that reads and writes the whole tensor; for the
//! 35.7M parameters of `ddpm-cifar10` that kept one core busy and the other idle for a
//! noticeable share of a training step. Here every element is updated once, by the whole
//! pool, with the same f32 operations in the same order as Burn's, so the results are
//! bit-identical to Burn's `Adam` (amsgrad off, no weight decay).

use rayon::prelude::*;

use super::AdamStep;

/// Elements per parallel task (large enough that the hand-off costs nothing).
const CHUNK: usize = 1 << 14;

/// The scalars of one Adam step, computed as Burn's `AdaptiveMomentum` computes them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Coefs {
    beta_1: f32,
    beta_2: f32,
    /// `1 − β₁` and `1 − β₂`.
    one_minus_1: f32,
    one_minus_2: f32,
    /// `√(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    combined: f32,
    /// `ε · √(1 − β₂ᵗ)`.
    epsilon: f32,
    lr: f32,
}

impl Coefs {
    /// The coefficients of `step`.
    pub(crate) fn new(step: &AdamStep) -> Self {
        let (combined, epsilon) = step.corrections();
        Self {
            beta_1: step.beta_1,
            beta_2: step.beta_2,
            one_minus_1: 1.0 - step.beta_1,
            one_minus_2: 1.0 - step.beta_2,
            combined,
            epsilon,
            lr: step.lr as f32,
        }
    }
}

/// Updates `param`, `m` and `v` in place from `grad`:
/// `m ← β₁m + (1 − β₁)g`, `v ← β₂v + (1 − β₂)g²`, `p ← p − lr · (c·m) / (√v + ε')`. With
/// `first`, the old moments are taken as zero (their contents are ignored: Burn's first step
/// computes `(1 − β₁)g` and `(1 − β₂)g²` without the sums).
pub(crate) fn update(
    c: &Coefs,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    first: bool,
) {
    assert!(
        grad.len() == param.len() && m.len() == param.len() && v.len() == param.len(),
        "adam::update: buffers of different lengths"
    );
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            if first {
                chunk::<true>(c, p, g, m, v);
            } else {
                chunk::<false>(c, p, g, m, v);
            }
        });
}

#[inline(always)]
fn chunk<const FIRST: bool>(c: &Coefs, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let (mg, vg) = (g * c.one_minus_1, (g * g) * c.one_minus_2);
        let (mi, vi) = if FIRST {
            (mg, vg)
        } else {
            (*m * c.beta_1 + mg, *v * c.beta_2 + vg)
        };
        *m = mi;
        *v = vi;
        let step = (mi * c.combined) / (vi.sqrt() + c.epsilon);
        *p -= step * c.lr;
    }
}

/// `ema ← ema·decay + model·(1 − decay)` in place, in parallel: the f32 operations of Burn's
/// `ema.mul_scalar(decay) + model.mul_scalar(1 − decay)`, so the result is bit-identical.
pub(crate) fn ema(ema: &mut [f32], model: &[f32], decay: f64) {
    assert_eq!(
        ema.len(),
        model.len(),
        "adam::ema: buffers of different lengths"
    );
    let (keep, take) = (decay as f32, (1.0 - decay) as f32);
    ema.par_chunks_mut(CHUNK)
        .zip(model.par_chunks(CHUNK))
        .for_each(|(e, m)| {
            for (e, &m) in e.iter_mut().zip(m) {
                *e = *e * keep + m * take;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps against the formula written out in f64 (the bit-exact comparison with
    /// Burn's `Adam` is in `tests/kernels.rs`).
    #[test]
    fn two_steps_follow_the_formula() {
        let n = 3 * CHUNK + 5;
        let p0: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
        let g: Vec<f32> = (0..n).map(|i| ((i % 89) as f32 - 44.0) / 30.0).collect();
        let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8f64, 2e-4f64);
        let mut p = p0.clone();
        let (mut m, mut v) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        for time in 1..=2 {
            let step = AdamStep {
                lr,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                time,
            };
            update(&Coefs::new(&step), &mut p, &g, &mut m, &mut v, time == 1);
        }
        for i in [0, 1, CHUNK, n - 1] {
            let gi = g[i] as f64;
            let (mut pi, mut mi, mut vi) = (p0[i] as f64, 0.0, 0.0);
            for t in 1..=2 {
                mi = b1 * mi + (1.0 - b1) * gi;
                vi = b2 * vi + (1.0 - b2) * gi * gi;
                let (mh, vh) = (mi / (1.0 - b1.powi(t)), vi / (1.0 - b2.powi(t)));
                pi -= lr * mh / (vh.sqrt() + eps);
            }
            assert!((p[i] as f64 - pi).abs() < 1e-6, "p[{i}] {} vs {pi}", p[i]);
            assert!((m[i] as f64 - mi).abs() < 1e-6 * (1.0 + mi.abs()), "m[{i}]");
            assert!((v[i] as f64 - vi).abs() < 1e-6 * (1.0 + vi.abs()), "v[{i}]");
        }
    }
}
