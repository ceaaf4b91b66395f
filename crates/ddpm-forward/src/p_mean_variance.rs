//! The reverse step p_θ(x_{t−1} | x_t) = N(μ_θ, σ_t² I) a model output implies: x̂₀ from the
//! prediction (ε, x₀, v or μ̃), μ_θ = μ̃_t(x_t, x̂₀) (or the μ̃ prediction itself), and log σ_t²
//! for every variance type. The one
//! implementation of these formulas: the DDPM sampler and the variational bound both call
//! [`p_mean_variance`].
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eqs. 1, 7 and 11 and §3.2; learned variances from
//! Nichol & Dhariwal 2021 (arXiv:2102.09672v1), Eq. 15. The coefficients come per batch (one
//! timestep: a sampler, [`ReverseCoefficients::from_host`]) or per sample (training and
//! likelihood: [`crate::ForwardProcess::reverse_coefficients`]).

use burn::tensor::{Tensor, backend::Backend};
use ddpm_schedule::{PredictionType, ReverseStepCoefficients, VarianceType};

use crate::{Coef, NoiseLevel};

/// μ̃_t(x_t, x₀) = coef1 · x₀ + coef2 · x_t   (Ho et al. 2020, Eq. 7)
pub fn posterior_mean<B: Backend, const D: usize>(
    coef1: &Coef<B, D>,
    coef2: &Coef<B, D>,
    x_0: Tensor<B, D>,
    x_t: Tensor<B, D>,
) -> Tensor<B, D> {
    coef1.mul(x_0) + coef2.mul(x_t)
}

/// Everything one reverse step needs from the schedule, per batch or per sample.
#[derive(Debug, Clone)]
pub struct ReverseCoefficients<B: Backend, const D: usize> {
    /// √ᾱ_t, √(1 − ᾱ_t) and the training chain's μ̃_t coefficients, for x̂₀ from the
    /// prediction.
    pub level: NoiseLevel<B, D>,
    /// μ̃_t's coefficient of x̂₀ (Eq. 7).
    pub mean_coef1: Coef<B, D>,
    /// μ̃_t's coefficient of x_t (Eq. 7).
    pub mean_coef2: Coef<B, D>,
    /// log β̃_t, clipped: σ_t² of `fixed_small` and the lower end of `learned_range`.
    pub log_posterior_variance: Coef<B, D>,
    /// log σ_t² of `fixed_large`: log β_t (log β̃₂ at t = 1, as the original code).
    pub fixed_large_log_variance: Coef<B, D>,
    /// log β_t: the upper end of `learned_range` (Nichol & Dhariwal 2021, Eq. 15).
    pub log_beta: Coef<B, D>,
    /// Whether the step is the training chain's own t → t − 1 (always, per sample), so that a
    /// mean prediction is μ_θ itself.
    pub consecutive: bool,
}

impl<B: Backend, const D: usize> ReverseCoefficients<B, D> {
    /// The same coefficients for a whole batch, from the host values of
    /// [`ddpm_schedule::NoiseSchedule::reverse_step`].
    pub fn from_host(step: &ReverseStepCoefficients) -> Self {
        Self {
            level: NoiseLevel::from_alpha_bar(step.alpha_bar)
                .with_posterior_mean(step.one_step_mean_coefs),
            mean_coef1: Coef::Scalar(step.posterior.mean_coef1),
            mean_coef2: Coef::Scalar(step.posterior.mean_coef2),
            log_posterior_variance: Coef::Scalar(step.log_posterior_variance),
            fixed_large_log_variance: Coef::Scalar(step.fixed_large_log_variance),
            log_beta: Coef::Scalar(step.log_beta),
            consecutive: step.consecutive,
        }
    }

    /// μ̃_t(x_t, x₀) (see [`posterior_mean`]).
    pub fn posterior_mean(&self, x_0: Tensor<B, D>, x_t: Tensor<B, D>) -> Tensor<B, D> {
        posterior_mean(&self.mean_coef1, &self.mean_coef2, x_0, x_t)
    }
}

/// The reverse step p_θ(x_{t−1} | x_t) a model output implies.
#[derive(Debug, Clone)]
pub struct PMeanVariance<B: Backend, const D: usize> {
    /// μ_θ(x_t, t) = μ̃_t(x_t, x̂₀)   (Ho et al. 2020, Eq. 7 with x̂₀ from the model).
    pub mean: Tensor<B, D>,
    /// log σ_t²: `[batch or 1, 1, …, 1]` for fixed variances, shaped like x_t for learned ones.
    pub log_variance: Tensor<B, D>,
    /// x̂₀, after the caller's processing (clipping, thresholding).
    pub pred_x0: Tensor<B, D>,
}

/// Splits a model output into its prediction (first C channels) and, for a learned variance,
/// the variance channels (the last C): the "C or 2·C outputs" rule.
///
/// # Shapes
/// `model_output`: `[batch, C, …]`, or `[batch, 2·C, …]` when `variance_type` is learned.
///
/// # Panics
/// If the channel count is not C (fixed variance) or 2·C (learned), with both counts.
pub fn split_model_output<B: Backend, const D: usize>(
    variance_type: VarianceType,
    model_output: Tensor<B, D>,
    data_channels: usize,
) -> (Tensor<B, D>, Option<Tensor<B, D>>) {
    let out = model_output.dims()[1];
    let learned = variance_type.is_learned();
    let expected = if learned {
        2 * data_channels
    } else {
        data_channels
    };
    assert!(
        out == expected,
        "the model outputs {out} channels for {data_channels}-channel data, but variance type \
         {} needs {expected}",
        variance_type.diffusers_name()
    );
    if learned {
        let prediction = model_output.clone().narrow(1, 0, data_channels);
        (
            prediction,
            Some(model_output.narrow(1, data_channels, data_channels)),
        )
    } else {
        (model_output, None)
    }
}

/// Reads `model_output` as p_θ(x_{t−1} | x_t): x̂₀ from the prediction, then `process_x0`
/// (clipping or thresholding, or the identity), μ_θ = μ̃_t(x_t, x̂₀), and
///
/// A mean prediction ([`PredictionType::Mean`]) on the training chain's own step is μ_θ itself
/// (the paper's μ̃ parameterisation, §3.2; `process_x0` then changes only the returned x̂₀, as
/// the original code's `xprev`); on a strided step μ_θ = μ̃(x_t, processed x̂₀) as for the
/// other types.
///
/// - fixed small: log σ_t² = log β̃_t (clipped: log β̃₂ at t = 1);
/// - fixed large: log σ_t² = log β_t (log β̃₂ at t = 1, as the original code);
/// - learned: log σ_t² = the variance channels (improved-diffusion's reading);
/// - learned range: log σ_t² = v · log β_t + (1 − v) · log β̃_t, v = (out + 1)/2
///   (Nichol & Dhariwal 2021, Eq. 15; log β̃_t clipped).
///
/// # Shapes
/// `model_output`: `[batch, C or 2·C, …]`; `x_t`: `[batch, C, …]`; per-sample coefficients
/// `[batch, 1, …, 1]`.
///
/// # Panics
/// If the output's channels do not fit the variance type (see [`split_model_output`]).
pub fn p_mean_variance<B: Backend, const D: usize>(
    coefficients: &ReverseCoefficients<B, D>,
    prediction_type: PredictionType,
    variance_type: VarianceType,
    model_output: Tensor<B, D>,
    x_t: Tensor<B, D>,
    process_x0: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> PMeanVariance<B, D> {
    let device = x_t.device();
    let c = coefficients;
    let (prediction, variance_values) =
        split_model_output(variance_type, model_output, x_t.dims()[1]);
    let log_variance = match (variance_type, variance_values) {
        (VarianceType::Learned, Some(log_var)) => log_var,
        (VarianceType::LearnedRange, Some(v)) => {
            let frac = v.add_scalar(1.0).mul_scalar(0.5);
            let min_log = c.log_posterior_variance.to_tensor(&device);
            let max_log = c.log_beta.to_tensor(&device);
            frac * (max_log - min_log.clone()) + min_log
        }
        (VarianceType::FixedLarge, _) => c.fixed_large_log_variance.to_tensor(&device),
        _ => c.log_posterior_variance.to_tensor(&device),
    };
    let direct_mean =
        (prediction_type == PredictionType::Mean && c.consecutive).then(|| prediction.clone());
    let pred_x0 = process_x0(
        c.level
            .x0_from_prediction(prediction_type, x_t.clone(), prediction),
    );
    let mean = match direct_mean {
        Some(mean) => mean,
        None => c.posterior_mean(pred_x0.clone(), x_t),
    };
    PMeanVariance {
        mean,
        log_variance,
        pred_x0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ForwardProcess;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Int};
    use ddpm_schedule::NoiseSchedule;

    type B = Flex;

    /// The sampler's per-batch coefficients (host scalars) and the likelihood's per-sample
    /// ones (device tables) give the same reverse step for every variance type.
    #[test]
    fn per_batch_and_per_sample_coefficients_agree() {
        let device = Default::default();
        let schedule = NoiseSchedule::paper();
        let fp = ForwardProcess::<B>::new(&schedule, &device);
        let x_t = Tensor::<B, 4>::random([1, 2, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        for t in [0usize, 1, 700, 999] {
            for variance_type in [
                VarianceType::FixedSmall,
                VarianceType::FixedLarge,
                VarianceType::Learned,
                VarianceType::LearnedRange,
            ] {
                let channels = if variance_type.is_learned() { 4 } else { 2 };
                let out = Tensor::<B, 4>::random(
                    [1, channels, 3, 3],
                    Distribution::Uniform(-1.0, 1.0),
                    &device,
                );
                let host = ReverseCoefficients::<B, 4>::from_host(
                    &schedule.reverse_step(t, t.checked_sub(1)),
                );
                let tt = Tensor::<B, 1, Int>::from_ints([t as i32], &device);
                let device_coefs = fp.reverse_coefficients::<4>(tt);
                let run = |c: &ReverseCoefficients<B, 4>| {
                    let p = p_mean_variance(
                        c,
                        PredictionType::VPrediction,
                        variance_type,
                        out.clone(),
                        x_t.clone(),
                        |x| x.clamp(-1.0, 1.0),
                    );
                    [p.mean, p.log_variance.expand([1, 2, 3, 3]), p.pred_x0]
                };
                for (a, b) in run(&host).into_iter().zip(run(&device_coefs)) {
                    let d = (a - b).abs().max().into_scalar();
                    assert!(d < 1e-5, "t = {t}, {variance_type:?}: {d}");
                }
            }
        }
    }

    #[test]
    fn learned_range_spans_log_posterior_variance_to_log_beta() {
        let device = Default::default();
        let schedule = NoiseSchedule::paper();
        let step = schedule.reverse_step(500, Some(499));
        let c = ReverseCoefficients::<B, 4>::from_host(&step);
        let x_t = Tensor::<B, 4>::zeros([1, 1, 1, 1], &device);
        for (v, expected) in [(-1.0, step.log_posterior_variance), (1.0, step.log_beta)] {
            let out = Tensor::<B, 4>::from_floats([[[[0.0]], [[v]]]], &device);
            let p = p_mean_variance(
                &c,
                PredictionType::Epsilon,
                VarianceType::LearnedRange,
                out,
                x_t.clone(),
                |x| x,
            );
            let got = p.log_variance.into_scalar() as f64;
            assert!((got - expected).abs() < 1e-5, "{v}: {got} vs {expected}");
        }
    }

    #[test]
    #[should_panic(
        expected = "the model outputs 1 channels for 1-channel data, but variance type \
                               learned_range needs 2"
    )]
    fn a_learned_variance_needs_twice_the_channels() {
        let x = Tensor::<B, 4>::zeros([1, 1, 2, 2], &Default::default());
        let _ = split_model_output(VarianceType::LearnedRange, x, 1);
    }
}
