//! DDPM ancestral sampling: the reverse process p_θ(x_{t−1} | x_t) = N(μ_θ, σ_t² I) of Ho, Jain
//! & Abbeel 2020 (arXiv:2006.11239v2), Eq. 1 and Algorithm 2, with μ_θ computed as in their
//! code: x̂₀ from the model output, optionally clipped, then the posterior mean μ̃_t(x_t, x̂₀)
//! of Eq. 7. For ε-prediction and no clipping this equals Eq. 11. A μ̃-predicting model
//! (`PredictionType::Mean`, Table 2) gives μ_θ directly on the training chain's own steps; on
//! strided steps its x̂₀ = (μ − c₂ x_t)/c₁ is read off the output, which amplifies the model's
//! error by 1/c₁ (≈ 10⁴ at large t): sample such models with all T steps, as the paper does.
//!
//! Variances σ_t²: `fixed_small` β̃_t, `fixed_large` β_t (§3.2), `learned` (the model outputs
//! log σ_t²) and `learned_range` (Nichol & Dhariwal 2021, arXiv:2102.09672v1, Eq. 15).
//! Strided sampling (fewer steps than T, Nichol & Dhariwal §4) uses β'_t = 1 − ᾱ_t/ᾱ_prev over
//! the kept steps, where `prev` is the next entry of the timestep list.
//!
//! NOTE (departures from diffusers' `DDPMScheduler`):
//! - No noise is added at the last step of the list (Algorithm 2: z = 0 at t = 1), also when
//!   the list ends above t = 0 (`steps_offset`, `trailing`); diffusers adds noise whenever
//!   t > 0, with variance β'_t for `fixed_large`, a large jump at the very end.
//! - `learned`: the extra channels are log σ_t² (as in improved-diffusion); diffusers uses them
//!   as σ_t² directly.
//! - `fixed_large` is the original code's variance (β_t; log β̃₂ at t = 1 never matters since
//!   no noise is drawn there); diffusers' `fixed_large_log` returns NaN and is mapped to it.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};
use ddpm_forward::{ReverseCoefficients, p_mean_variance};
use ddpm_schedule::{
    NoiseSchedule, PredictionType, ReverseStepCoefficients, TimestepSpacing, VarianceType,
    custom_timesteps,
};

use crate::sampler::{check_shapes, select_timesteps, step_index};
use crate::{Sampler, SamplerError, StepOutput, X0ProcessingConfig};

/// Settings of [`DdpmSampler`]; defaults are the paper's (ε, fixed_small as in diffusers,
/// x̂₀ clipped to [−1, 1], all T steps).
#[derive(Config, Debug)]
#[doc(alias = "DDPMScheduler")]
pub struct DdpmSamplerConfig {
    /// What the model predicts (paper: ε).
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// σ_t² (diffusers' default `fixed_small`; the paper reports both fixed choices).
    #[config(default = "VarianceType::FixedSmall")]
    pub variance_type: VarianceType,
    /// Clipping / dynamic thresholding of x̂₀ (original code: clip to [−1, 1]).
    #[config(default = "X0ProcessingConfig::new()")]
    pub x0_processing: X0ProcessingConfig,
    /// Number of steps; `None` visits all T timesteps (Algorithm 2).
    pub num_inference_steps: Option<usize>,
    /// How the steps are picked when `num_inference_steps` < T (diffusers: leading).
    #[config(default = "TimestepSpacing::Leading")]
    pub timestep_spacing: TimestepSpacing,
    /// Offset added to `leading` timesteps (diffusers' `steps_offset`, 0).
    #[config(default = 0)]
    pub steps_offset: usize,
}

/// Host-side coefficients of one step ([`NoiseSchedule::reverse_step`]).
#[derive(Debug, Clone)]
struct StepCoefs {
    reverse: ReverseStepCoefficients,
    add_noise: bool,
}

/// DDPM ancestral sampler (Ho et al. 2020, Algorithm 2), over all T or a strided subsequence.
///
/// x_prev = μ̃(x_t, x̂₀) + σ_t · z,  μ̃ = coef1 · x̂₀ + coef2 · x_t   (Eqs. 1, 7)
#[derive(Debug, Clone)]
#[doc(alias = "DDPMScheduler")]
pub struct DdpmSampler {
    config: DdpmSamplerConfig,
    timesteps: Vec<usize>,
    steps: Vec<StepCoefs>,
}

impl DdpmSamplerConfig {
    /// Builds the sampler for `schedule`, picking the timesteps from this config.
    ///
    /// # Errors
    /// [`SamplerError::Schedule`] for 0 or more than T steps or an offset past T − 1;
    /// [`SamplerError::InvalidParameter`] for a bad clip range or thresholding ratio.
    pub fn init(&self, schedule: &NoiseSchedule) -> Result<DdpmSampler, SamplerError> {
        let ts = select_timesteps(
            schedule,
            self.num_inference_steps,
            self.timestep_spacing,
            self.steps_offset,
        )?;
        DdpmSampler::new(schedule, self.clone(), ts)
    }

    /// Builds the sampler over a custom, strictly decreasing list of 0-based timesteps
    /// (`num_inference_steps` and the spacing are ignored).
    ///
    /// # Errors
    /// As [`DdpmSamplerConfig::init`], plus an empty, unsorted or out-of-range list.
    pub fn init_with_timesteps(
        &self,
        schedule: &NoiseSchedule,
        timesteps: &[i64],
    ) -> Result<DdpmSampler, SamplerError> {
        let ts = custom_timesteps(timesteps, schedule.num_train_timesteps())?;
        DdpmSampler::new(schedule, self.clone(), ts)
    }
}

impl DdpmSampler {
    fn new(
        schedule: &NoiseSchedule,
        config: DdpmSamplerConfig,
        timesteps: Vec<usize>,
    ) -> Result<Self, SamplerError> {
        config.x0_processing.validate()?;
        let steps = timesteps
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                // Consecutive steps use the schedule's tables (β_t itself, no cancellation);
                // strided steps the β' recomputed over the skipped steps.
                let prev = timesteps.get(i + 1).copied();
                StepCoefs {
                    reverse: schedule.reverse_step(t, prev),
                    add_noise: prev.is_some(),
                }
            })
            .collect();
        Ok(Self {
            config,
            timesteps,
            steps,
        })
    }

    /// The settings this sampler was built with.
    pub fn config(&self) -> &DdpmSamplerConfig {
        &self.config
    }
}

impl<B: Backend> Sampler<B> for DdpmSampler {
    fn name(&self) -> &'static str {
        "DDPM"
    }

    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn needs_noise(&self, t: usize) -> bool {
        self.steps[step_index(&self.timesteps, t, "DDPM")].add_noise
    }

    fn model_channel_factor(&self) -> usize {
        if self.config.variance_type.is_learned() {
            2
        } else {
            1
        }
    }

    /// [`p_mean_variance`]: x̂₀ from the model output (clipped or thresholded),
    /// μ̃ = coef1 · x̂₀ + coef2 · x_t and log σ_t²; then x_prev = μ̃ + σ_t · z except at the last
    /// step.
    ///
    /// # Panics
    /// As [`Sampler::step`]: unknown `t`, mismatched shapes (with a learned variance the model
    /// output has 2·C channels: prediction, then variance), missing noise.
    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        t: usize,
        x_t: Tensor<B, 4>,
        noise: Option<Tensor<B, 4>>,
    ) -> StepOutput<B> {
        let factor = <Self as Sampler<B>>::model_channel_factor(self);
        check_shapes(&model_output, &x_t, noise.as_ref(), factor);
        let s = &self.steps[step_index(&self.timesteps, t, "DDPM")];
        let p = p_mean_variance(
            &ReverseCoefficients::<B, 4>::from_host(&s.reverse),
            self.config.prediction_type,
            self.config.variance_type,
            model_output,
            x_t,
            |x_0| self.config.x0_processing.apply(x_0),
        );
        let prev_sample = if s.add_noise {
            let z = noise.expect("the DDPM step at this t adds noise but `noise` is None");
            p.mean + z * p.log_variance.mul_scalar(0.5).exp()
        } else {
            p.mean
        };
        StepOutput {
            prev_sample,
            pred_x0: p.pred_x0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn strided_steps_look_up_the_previous_timestep_in_the_list() {
        let schedule = NoiseSchedule::paper();
        let sampler = DdpmSamplerConfig::new()
            .init_with_timesteps(&schedule, &[999, 600, 10])
            .unwrap();
        assert_eq!(Sampler::<B>::timesteps(&sampler), &[999, 600, 10]);
        let ab = schedule.alpha_bar();
        let beta = |i: usize| sampler.steps[i].reverse.posterior.beta;
        assert!((beta(0) - (1.0 - ab[999] / ab[600])).abs() < 1e-15);
        assert!((beta(1) - (1.0 - ab[600] / ab[10])).abs() < 1e-15);
        assert!((beta(2) - (1.0 - ab[10])).abs() < 1e-15);
        assert!(Sampler::<B>::needs_noise(&sampler, 600));
        assert!(!Sampler::<B>::needs_noise(&sampler, 10));
    }

    #[test]
    fn too_many_steps_is_an_error() {
        let e = DdpmSamplerConfig::new()
            .with_num_inference_steps(Some(1001))
            .init(&NoiseSchedule::paper())
            .unwrap_err();
        assert!(e.to_string().contains("num_inference_steps is 1001"), "{e}");
    }

    #[test]
    fn learned_range_interpolates_between_the_bounds() {
        let device = Default::default();
        let schedule = NoiseSchedule::paper();
        let mut sampler = DdpmSamplerConfig::new()
            .with_variance_type(VarianceType::LearnedRange)
            .with_x0_processing(X0ProcessingConfig::none())
            .init(&schedule)
            .unwrap();
        let x = Tensor::<B, 4>::zeros([1, 1, 2, 2], &device);
        let z = Tensor::<B, 4>::ones([1, 1, 2, 2], &device);
        // v = 1 → σ² = β_t; v = −1 → σ² = β̃_t. ε = 0 and x_t = 0 → mean 0, output = σ.
        for (v, var) in [
            (1.0, schedule.betas()[500]),
            (-1.0, schedule.posterior_variance()[500]),
        ] {
            let out = Tensor::cat(
                vec![
                    Tensor::zeros([1, 1, 2, 2], &device),
                    Tensor::full([1, 1, 2, 2], v, &device),
                ],
                1,
            );
            let prev = sampler
                .step(out, 500, x.clone(), Some(z.clone()))
                .prev_sample;
            let got = prev.into_data().to_vec::<f32>().unwrap()[0] as f64;
            assert!(
                (got - var.sqrt()).abs() < 1e-6,
                "{v}: {got} vs {}",
                var.sqrt()
            );
        }
    }

    #[test]
    #[should_panic(
        expected = "model_output has shape [1, 1, 2, 2] but x_t has shape [1, 1, 2, 2]; expected [1, 2, 2, 2]"
    )]
    fn learned_variance_needs_twice_the_channels() {
        let device = Default::default();
        let mut sampler = DdpmSamplerConfig::new()
            .with_variance_type(VarianceType::Learned)
            .init(&NoiseSchedule::paper())
            .unwrap();
        let x = Tensor::<B, 4>::zeros([1, 1, 2, 2], &device);
        sampler.step(x.clone(), 999, x.clone(), Some(x));
    }

    #[test]
    #[should_panic(expected = "timestep 5 is not one of this DDPM sampler's timesteps")]
    fn unknown_timestep_panics() {
        let device = Default::default();
        let mut sampler = DdpmSamplerConfig::new()
            .with_num_inference_steps(Some(10))
            .init(&NoiseSchedule::paper())
            .unwrap();
        let x = Tensor::<B, 4>::zeros([1, 1, 2, 2], &device);
        sampler.step(x.clone(), 5, x.clone(), Some(x));
    }
}
