//! How a model output is read as the reverse step p_θ(x_{t−1} | x_t) = N(μ_θ, Σ_θ): its
//! prediction type (ε, x₀ or v) and variance type (fixed small/large, learned, learned range).
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eqs. 1, 7 and 11 and §3.2; learned variances from
//! Nichol & Dhariwal 2021 (arXiv:2102.09672v1), Eq. 15. The formulas (x̂₀, μ̃, log σ_t², the
//! C or 2·C split) are `ddpm-forward`'s [`ddpm_forward::p_mean_variance`], which the DDPM
//! sampler calls too; this file checks channel counts with [`LossError`] and gathers the
//! per-sample coefficients.

use burn::tensor::{Int, Tensor, backend::Backend};
use ddpm_forward::ForwardProcess;
pub use ddpm_forward::PMeanVariance;
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
        ddpm_forward::split_model_output(self.variance_type, model_output, data_channels)
    }
}

/// Reads `model_output` as p_θ(x_{t−1} | x_t) at each sample's t: [`ddpm_forward::p_mean_variance`]
/// with the schedule's per-sample coefficients and x̂₀ optionally clipped to [−1, 1] (the
/// original code).
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
    if let Err(e) = parameterization.check_output_channels(model_output.dims()[1], data_channels) {
        panic!("{e}");
    }
    assert_eq!(
        x_t.dims()[0],
        t.dims()[0],
        "p_mean_variance: x_t has batch {} but t has {} timesteps",
        x_t.dims()[0],
        t.dims()[0]
    );
    ddpm_forward::p_mean_variance(
        &forward.reverse_coefficients::<D>(t),
        parameterization.prediction_type,
        parameterization.variance_type,
        model_output,
        x_t,
        |x_0| {
            if clip_denoised {
                x_0.clamp(-1.0, 1.0)
            } else {
                x_0
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;
    use ddpm_forward::Table;
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
