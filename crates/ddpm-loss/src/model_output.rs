//! How a model output is read as the reverse step p_θ(x_{t−1} | x_t) = N(μ_θ, Σ_θ): its
//! prediction type (ε, x₀ or v) and variance type (fixed small/large, learned, learned range).
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eqs. 1, 7 and 11 and §3.2; learned variances from
//! Nichol & Dhariwal 2021 (arXiv:2102.09672v1), Eq. 15. The ε/x₀/v conversions and the
//! posterior mean are the forward crate's ([`ddpm_forward`]); this file only decides which to
//! call and how to get log σ_t².

use burn::tensor::{Int, Tensor, backend::Backend};
use ddpm_forward::{ForwardProcess, Table};
use ddpm_schedule::{PredictionType, VarianceType};

use crate::LossError;

/// What a model output means: the prediction type of its first C channels and the variance type
/// (a learned variance adds C more channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parameterization {
    /// ε, x₀ or v (the paper: ε).
    pub prediction_type: PredictionType,
    /// Σ_θ (the paper: fixed; this crate's default [`VarianceType::FixedSmall`], as diffusers).
    pub variance_type: VarianceType,
}

impl Parameterization {
    /// A parameterization from its two parts.
    pub fn new(prediction_type: PredictionType, variance_type: VarianceType) -> Self {
        Self {
            prediction_type,
            variance_type,
        }
    }

    /// Output channels the model must have for `data_channels`-channel data: C, or 2·C with a
    /// learned variance.
    pub fn output_channels(&self, data_channels: usize) -> usize {
        if self.variance_type.is_learned() {
            2 * data_channels
        } else {
            data_channels
        }
    }

    /// Checks a model's output channel count against the data's.
    ///
    /// # Errors
    /// [`LossError::OutputChannels`] naming both counts and the variance type.
    pub fn check_output_channels(
        &self,
        out_channels: usize,
        data_channels: usize,
    ) -> Result<(), LossError> {
        let expected = self.output_channels(data_channels);
        if out_channels == expected {
            Ok(())
        } else {
            Err(LossError::OutputChannels {
                out_channels,
                data_channels,
                variance_type: self.variance_type.diffusers_name(),
                expected,
            })
        }
    }

    /// Splits a model output into its prediction (first C channels) and, for learned variances,
    /// the variance values (last C channels).
    ///
    /// # Shapes
    /// `model_output`: `[batch, C or 2·C, …]`.
    ///
    /// # Panics
    /// If the channel count does not fit (see [`Parameterization::check_output_channels`]).
    pub fn split<B: Backend, const D: usize>(
        &self,
        model_output: Tensor<B, D>,
        data_channels: usize,
    ) -> (Tensor<B, D>, Option<Tensor<B, D>>) {
        let out_channels = model_output.dims()[1];
        if let Err(e) = self.check_output_channels(out_channels, data_channels) {
            panic!("{e}");
        }
        if self.variance_type.is_learned() {
            let prediction = model_output.clone().narrow(1, 0, data_channels);
            let variance = model_output.narrow(1, data_channels, data_channels);
            (prediction, Some(variance))
        } else {
            (model_output, None)
        }
    }
}

/// The reverse step p_θ(x_{t−1} | x_t) a model output implies.
#[derive(Debug, Clone)]
pub struct PMeanVariance<B: Backend, const D: usize> {
    /// μ_θ(x_t, t) = μ̃_t(x_t, x̂₀)   (Ho et al. 2020, Eq. 7 with x̂₀ from the model).
    pub mean: Tensor<B, D>,
    /// log σ_t²: `[batch, 1, …, 1]` for fixed variances, shaped like x_t for learned ones.
    pub log_variance: Tensor<B, D>,
    /// x̂₀ (clipped to [−1, 1] when asked).
    pub pred_x0: Tensor<B, D>,
}

/// Reads `model_output` as p_θ(x_{t−1} | x_t): x̂₀ from the prediction (optionally clipped to
/// [−1, 1], as the original code), μ_θ = μ̃_t(x_t, x̂₀), and
///
/// - fixed small: log σ_t² = log β̃_t (clipped: log β̃₂ at t = 1);
/// - fixed large: log σ_t² = log β_t (log β̃₂ at t = 1, as the original code);
/// - learned: log σ_t² = the variance channels;
/// - learned range: log σ_t² = v · log β_t + (1 − v) · log β̃_t, v = (out + 1)/2
///   (Nichol & Dhariwal 2021, Eq. 15; log β̃_t clipped).
///
/// # Shapes
/// `model_output`: `[batch, C or 2·C, …]`; `x_t`: `[batch, C, …]`; `t`: `[batch]` (0-based).
///
/// # Panics
/// If the output's channels do not fit the variance type or the batch sizes differ.
pub fn p_mean_variance<B: Backend, const D: usize>(
    forward: &ForwardProcess<B>,
    parameterization: Parameterization,
    model_output: Tensor<B, D>,
    x_t: Tensor<B, D>,
    t: Tensor<B, 1, Int>,
    clip_denoised: bool,
) -> PMeanVariance<B, D> {
    let data_channels = x_t.dims()[1];
    let (prediction, variance_values) = parameterization.split(model_output, data_channels);
    let log_variance = match parameterization.variance_type {
        VarianceType::FixedSmall => forward.gather(Table::PosteriorLogVarianceClipped, t.clone()),
        VarianceType::FixedLarge => forward.gather(Table::FixedLargeLogVariance, t.clone()),
        VarianceType::Learned => variance_values.expect("learned variance has its channels"),
        VarianceType::LearnedRange => {
            let v = variance_values
                .expect("learned variance has its channels")
                .add_scalar(1.0)
                .mul_scalar(0.5);
            let min_log: Tensor<B, D> =
                forward.gather(Table::PosteriorLogVarianceClipped, t.clone());
            let max_log: Tensor<B, D> = forward.gather::<D>(Table::Betas, t.clone()).log();
            v * (max_log - min_log.clone()) + min_log
        }
    };
    let level = forward.noise_level::<D>(t.clone());
    let mut pred_x0 =
        level.x0_from_prediction(parameterization.prediction_type, x_t.clone(), prediction);
    if clip_denoised {
        pred_x0 = pred_x0.clamp(-1.0, 1.0);
    }
    let mean = forward.q_posterior(pred_x0.clone(), x_t, t).mean;
    PMeanVariance {
        mean,
        log_variance,
        pred_x0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;
    use ddpm_schedule::NoiseSchedule;

    type B = Flex;

    #[test]
    fn channel_check_names_the_problem() {
        let p = Parameterization::new(PredictionType::Epsilon, VarianceType::LearnedRange);
        assert_eq!(p.output_channels(3), 6);
        let err = p.check_output_channels(3, 3).unwrap_err().to_string();
        assert!(err.contains("3 channels") && err.contains("learned_range") && err.contains('6'));
        assert!(
            Parameterization::default()
                .check_output_channels(3, 3)
                .is_ok()
        );
    }

    #[test]
    #[should_panic(expected = "needs 2")]
    fn split_panics_on_wrong_channels() {
        let p = Parameterization::new(PredictionType::Epsilon, VarianceType::Learned);
        let out = Tensor::<B, 4>::zeros([1, 1, 2, 2], &Default::default());
        let _ = p.split(out, 1);
    }

    #[test]
    fn learned_range_spans_fixed_small_to_fixed_large() {
        let device = Default::default();
        let fp = ForwardProcess::<B>::new(&NoiseSchedule::paper(), &device);
        let t = Tensor::<B, 1, Int>::from_ints([5, 700], &device);
        let x_t = Tensor::<B, 4>::random([2, 1, 2, 2], Distribution::Normal(0.0, 1.0), &device);
        let eps = Tensor::<B, 4>::zeros([2, 1, 2, 2], &device);
        let lr = Parameterization::new(PredictionType::Epsilon, VarianceType::LearnedRange);
        let log_var = |v: f32| {
            let out = Tensor::cat(vec![eps.clone(), eps.clone().add_scalar(v)], 1);
            p_mean_variance(&fp, lr, out, x_t.clone(), t.clone(), false).log_variance
        };
        let fixed = |vt| {
            let p = Parameterization::new(PredictionType::Epsilon, vt);
            p_mean_variance(&fp, p, eps.clone(), x_t.clone(), t.clone(), false).log_variance
        };
        let small = fixed(VarianceType::FixedSmall);
        let d = (log_var(-1.0) - small).abs().max().into_scalar();
        assert!(d < 1e-6, "v = -1 is fixed small: {d}");
        let large = fp.gather::<4>(Table::Betas, t.clone()).log();
        let d = (log_var(1.0) - large).abs().max().into_scalar();
        assert!(d < 1e-6, "v = 1 is log β_t: {d}");
    }
}
