//! Gaussian building blocks of the variational bound: the KL divergence between two diagonal
//! Gaussians, the tanh approximation of the standard normal CDF, and the discretized Gaussian
//! log-likelihood of the decoder.
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eqs. 5 and 13; the formulas are those of the original
//! code (`diffusion_tf/utils.py`, `diffusion_tf/diffusion_utils_2.py`) as ported to
//! `improved_diffusion/losses.py` (Nichol & Dhariwal 2021, arXiv:2102.09672). All values are in
//! nats, elementwise; [`mean_flat`] and [`NATS_PER_BIT`] turn them into bits/dim.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, backend::Backend};

/// ln 2: divide a mean per-dimension value in nats by this to get bits/dim.
pub const NATS_PER_BIT: f64 = std::f64::consts::LN_2;

/// Half the width of one of the 256 bins of 8-bit data scaled to [−1, 1]: 1/255.
pub const BIN_HALF_WIDTH: f64 = 1.0 / 255.0;

/// Lower bound on a bin probability before its log is taken (the original code's 1e-12).
pub const MIN_PROB: f64 = 1e-12;

/// |x| above this is an edge bin (x = ±1) whose interval extends to ±∞ (original code: 0.999).
pub const EDGE_THRESHOLD: f64 = 0.999;

/// KL(N(μ₁, e^{ℓ₁}) ‖ N(μ₂, e^{ℓ₂})) elementwise, in nats:
///
/// KL = ½ · (−1 + ℓ₂ − ℓ₁ + e^{ℓ₁ − ℓ₂} + (μ₁ − μ₂)² · e^{−ℓ₂})
///
/// The per-term loss L_{t−1} of Ho et al. 2020, Eq. 5 (and L_T against ℓ₂ = μ₂ = 0).
///
/// # Shapes
/// `mean1`, `mean2`: `[batch, …]`, the same shape; `logvar1`, `logvar2`: that shape or one that
/// broadcasts to it (e.g. `[batch, 1, 1, 1]`). The result has the means' shape.
///
/// # Panics
/// If the means' shapes differ.
pub fn normal_kl<B: Backend, const D: usize>(
    mean1: Tensor<B, D>,
    logvar1: Tensor<B, D>,
    mean2: Tensor<B, D>,
    logvar2: Tensor<B, D>,
) -> Tensor<B, D> {
    assert_eq!(
        mean1.dims(),
        mean2.dims(),
        "normal_kl: the means have different shapes"
    );
    let mean_term = (mean1 - mean2).powi_scalar(2) * logvar2.clone().neg().exp();
    let var_term = (logvar2.clone() - logvar1.clone()).sub_scalar(1.0) + (logvar1 - logvar2).exp();
    (mean_term + var_term).mul_scalar(0.5)
}

/// Φ(x) ≈ ½ · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
///
/// The fast approximation of the standard normal CDF used by the original code for the decoder
/// of Eq. 13 (Page 1977). It is not `erf`: to reproduce the published bits/dim we keep it.
///
/// NOTE: evaluated as the identical σ(2 · √(2/π) · (x + 0.044715 · x³)) (½(1 + tanh z) = σ(2z)),
/// which keeps relative precision in the lower tail where 1 + tanh z cancels (in float32 below
/// ~6e-8, in float64 below ~1e-16).
pub fn approx_standard_normal_cdf<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let cubic = x.clone().powi_scalar(3).mul_scalar(0.044715) + x;
    sigmoid(cubic.mul_scalar(2.0 * (2.0 / std::f64::consts::PI).sqrt()))
}

/// log p(x) of 8-bit data x ∈ [−1, 1] under N(μ, e^{2·log_scale}) discretized to 256 bins:
///
/// p(x) = Φ((x + 1/255 − μ)/σ) − Φ((x − 1/255 − μ)/σ), with the lower limit −∞ at x = −1 and the
/// upper limit +∞ at x = 1   (Ho et al. 2020, Eq. 13)
///
/// As in the original code: Φ is [`approx_standard_normal_cdf`], a value is an edge bin when
/// x < −0.999 or x > 0.999, and every probability is clamped to ≥ 1e-12 before the log.
///
/// NOTE: bins above the mean are evaluated through the symmetry Φ(a) − Φ(b) = Φ(−b) − Φ(−a)
/// (exact for this Φ, as tanh is odd), and 1 − Φ(b) as Φ(−b), so that no probability is a
/// difference of two numbers close to 1. Same values as the original code in exact arithmetic;
/// in float32 it keeps improbable bins from collapsing onto the 1e-12 clamp.
///
/// # Shapes
/// `x`, `means`: `[batch, …]`, the same shape; `log_scales`: that shape or one that broadcasts
/// to it. The result has `x`'s shape.
///
/// # Panics
/// If `x` and `means` have different shapes. Data outside [−1, 1] is not checked here (a hot
/// path); see [`check_data_range`](crate::check_data_range).
pub fn discretized_gaussian_log_likelihood<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    means: Tensor<B, D>,
    log_scales: Tensor<B, D>,
) -> Tensor<B, D> {
    assert_eq!(
        x.dims(),
        means.dims(),
        "discretized_gaussian_log_likelihood: x and means have different shapes"
    );
    let centered = x.clone() - means;
    let inv_stdv = log_scales.neg().exp();
    let plus_in = centered.clone().add_scalar(BIN_HALF_WIDTH) * inv_stdv.clone();
    let min_in = centered.clone().sub_scalar(BIN_HALF_WIDTH) * inv_stdv;
    // Upper edge bin: log Φ(plus_in); lower: log(1 − Φ(min_in)) = log Φ(−min_in).
    let log_cdf_plus = approx_standard_normal_cdf(plus_in.clone())
        .clamp_min(MIN_PROB)
        .log();
    let log_one_minus_cdf_min = approx_standard_normal_cdf(min_in.clone().neg())
        .clamp_min(MIN_PROB)
        .log();
    // Interior bins, mirrored to the lower tail when above the mean.
    let above = centered.greater_elem(0.0);
    let upper = plus_in
        .clone()
        .mask_where(above.clone(), min_in.clone().neg());
    let lower = min_in.mask_where(above, plus_in.neg());
    let cdf_delta = approx_standard_normal_cdf(upper) - approx_standard_normal_cdf(lower);
    let log_cdf_delta = cdf_delta.clamp_min(MIN_PROB).log();
    log_cdf_delta
        .mask_where(x.clone().lower_elem(-EDGE_THRESHOLD), log_cdf_plus)
        .mask_where(x.greater_elem(EDGE_THRESHOLD), log_one_minus_cdf_min)
}

/// The mean over every dimension but the first: `[batch, …] → [batch]` (the original code's
/// `mean_flat`).
pub fn mean_flat<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    let batch = x.dims()[0];
    let n = x.shape().num_elements() / batch.max(1);
    x.reshape([batch, n]).mean_dim(1).reshape([batch])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    type B = Flex;

    fn t1(v: &[f32]) -> Tensor<B, 1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
    }

    fn host(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn kl_of_identical_gaussians_is_zero() {
        let m = t1(&[0.3, -1.0, 2.0]);
        let lv = t1(&[-2.0, 0.0, 1.5]);
        let kl = host(normal_kl(m.clone(), lv.clone(), m, lv));
        assert!(kl.iter().all(|&k| k.abs() < 1e-7), "{kl:?}");
    }

    #[test]
    fn kl_matches_closed_form() {
        // KL(N(1, 1) || N(0, e^2)) = ½(−1 + 2 − 0 + e^{−2} + e^{−2})
        let kl = host(normal_kl(t1(&[1.0]), t1(&[0.0]), t1(&[0.0]), t1(&[2.0])));
        let expected = 0.5 * (1.0 + 2.0 * (-2.0f64).exp());
        assert!((kl[0] as f64 - expected).abs() < 1e-6);
    }

    #[test]
    fn cdf_is_symmetric_and_monotone() {
        let y = host(approx_standard_normal_cdf(t1(&[-3.0, -1.0, 0.0, 1.0, 3.0])));
        assert!((y[2] - 0.5).abs() < 1e-7);
        assert!((y[1] + y[3] - 1.0).abs() < 1e-6);
        assert!(y.windows(2).all(|w| w[0] < w[1]));
        assert!((y[3] - 0.841_344_7).abs() < 2e-4, "Φ(1) ≈ 0.8413: {}", y[3]);
    }

    #[test]
    fn decoder_probabilities_sum_to_one_over_the_256_bins() {
        let levels: Vec<f32> = (0..256).map(|i| i as f32 / 127.5 - 1.0).collect();
        let x = t1(&levels);
        let means = t1(&[0.1; 256]);
        let log_scales = t1(&[(0.05f32).ln(); 256]);
        let lp = host(discretized_gaussian_log_likelihood(x, means, log_scales));
        let total: f64 = lp.iter().map(|&l| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "Σ p = {total}");
    }

    #[test]
    fn decoder_clamps_impossible_bins() {
        let lp = host(discretized_gaussian_log_likelihood(
            t1(&[0.0]),
            t1(&[0.9]),
            t1(&[-8.0]),
        ));
        assert!((lp[0] as f64 - MIN_PROB.ln()).abs() < 1e-3, "{lp:?}");
    }

    #[test]
    #[should_panic(expected = "x and means have different shapes")]
    fn decoder_rejects_mismatched_shapes() {
        let _ = discretized_gaussian_log_likelihood(t1(&[0.0, 1.0]), t1(&[0.0]), t1(&[0.0]));
    }

    #[test]
    fn mean_flat_reduces_all_but_batch() {
        let x = Tensor::<B, 3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [2, 2, 2]),
            &Default::default(),
        );
        assert_eq!(host(mean_flat(x)), vec![2.5, 6.5]);
    }
}
