//! DDIM sampling (Song, Meng & Ermon, "Denoising Diffusion Implicit Models",
//! arXiv:2010.02502v4, Eq. 12 with σ_t(η) of Eq. 16):
//!
//! x_prev = √ᾱ_prev · x̂₀ + √(1 − ᾱ_prev − σ_t²) · ε̂ + σ_t · z,
//! σ_t² = η² · (1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev)  (η² times the posterior variance)
//!
//! (DDIM writes α for our ᾱ.) η = 0 is the deterministic sampler, η = 1 matches DDPM's
//! `fixed_small` marginals.
//!
//! NOTE: diffusers' `DDIMScheduler` takes the previous timestep as `t − T // n` for every
//! spacing, which is not the next entry of its own list for `trailing`/`linspace` when n does
//! not divide T (e.g. T = 1000, n = 3, trailing [999, 666, 332]: it steps 666 → 333 and then
//! 332 → x₀ with ᾱ = ᾱ₃₃₃ ≠ ᾱ₃₃₂ in the x̂₀ of the next step). By default we step to the next
//! entry of the list; [`DdimTimestepMode::DiffusersCompat`] reproduces diffusers exactly.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};
use ddpm_forward::NoiseLevel;
use ddpm_schedule::{
    NoiseSchedule, PosteriorCoefficients, PredictionType, TimestepSpacing, custom_timesteps,
};
use serde::{Deserialize, Serialize};

use crate::sampler::{check_shapes, select_timesteps, step_index};
use crate::{Sampler, SamplerError, StepOutput, X0ProcessingConfig};

/// Which timestep DDIM steps to from `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DdimTimestepMode {
    /// The next entry of the timestep list (x₀, with the final ᾱ, after the last). Correct for
    /// every spacing.
    #[default]
    NextInList,
    /// diffusers' `t − T // n` (final ᾱ when negative), for bit-for-bit agreement with
    /// `DDIMScheduler`. Equal to [`DdimTimestepMode::NextInList`] for `leading` spacing.
    DiffusersCompat,
}

/// Settings of [`DdimSampler`]; defaults are diffusers' `DDIMScheduler` defaults with η = 0.
#[derive(Config, Debug)]
#[doc(alias = "DDIMScheduler")]
pub struct DdimSamplerConfig {
    /// What the model predicts (ε).
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// Clipping / dynamic thresholding of x̂₀ (diffusers: clip to [−1, 1]).
    #[config(default = "X0ProcessingConfig::new()")]
    pub x0_processing: X0ProcessingConfig,
    /// η ≥ 0: 0 deterministic (DDIM), 1 ancestral (DDPM-like); Song et al. Eq. 16.
    #[config(default = 0.0)]
    pub eta: f64,
    /// Number of steps (diffusers' pipelines: 50).
    #[config(default = 50)]
    pub num_inference_steps: usize,
    /// How the steps are picked (diffusers: leading).
    #[config(default = "TimestepSpacing::Leading")]
    pub timestep_spacing: TimestepSpacing,
    /// Offset added to `leading` timesteps (diffusers' `steps_offset`, 0; Stable Diffusion 1).
    #[config(default = 0)]
    pub steps_offset: usize,
    /// ᾱ after the last step: 1 (true, x₀ is clean) or ᾱ of timestep 0 (false).
    #[config(default = true)]
    pub set_alpha_to_one: bool,
    /// Re-derive ε̂ from the clipped x̂₀ (diffusers' `use_clipped_model_output`, false).
    #[config(default = false)]
    pub use_clipped_model_output: bool,
    /// Previous-timestep rule (default: next in list; see the module note).
    #[config(default = "DdimTimestepMode::NextInList")]
    pub timestep_mode: DdimTimestepMode,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct DdimStep {
    pub(crate) alpha_bar: f64,
    pub(crate) alpha_bar_prev: f64,
    /// μ̃'s coefficients of the training chain's step from t (a mean prediction's reading).
    posterior_mean: [f64; 2],
    /// σ_t (Eq. 16).
    sigma: f64,
}

/// DDIM sampler (Song et al. 2021, Eq. 12); also builds its inverse, [`crate::DdimInversion`].
#[derive(Debug, Clone)]
#[doc(alias = "DDIMScheduler")]
pub struct DdimSampler {
    config: DdimSamplerConfig,
    pub(crate) timesteps: Vec<usize>,
    pub(crate) steps: Vec<DdimStep>,
}

impl DdimSamplerConfig {
    /// Builds the sampler for `schedule`.
    ///
    /// # Errors
    /// [`SamplerError::InvalidEta`] for η < 0 or not finite; [`SamplerError::Schedule`] for 0
    /// or more than T steps or an offset past T − 1; [`SamplerError::InvalidParameter`] for a
    /// bad clip range or thresholding ratio.
    pub fn init(&self, schedule: &NoiseSchedule) -> Result<DdimSampler, SamplerError> {
        let ts = select_timesteps(
            schedule,
            Some(self.num_inference_steps),
            self.timestep_spacing,
            self.steps_offset,
        )?;
        DdimSampler::new(schedule, self.clone(), ts)
    }

    /// Builds the sampler over a custom, strictly decreasing list of 0-based timesteps.
    ///
    /// # Errors
    /// As [`DdimSamplerConfig::init`], plus an empty, unsorted or out-of-range list.
    pub fn init_with_timesteps(
        &self,
        schedule: &NoiseSchedule,
        timesteps: &[i64],
    ) -> Result<DdimSampler, SamplerError> {
        let ts = custom_timesteps(timesteps, schedule.num_train_timesteps())?;
        DdimSampler::new(schedule, self.clone(), ts)
    }
}

impl DdimSampler {
    fn new(
        schedule: &NoiseSchedule,
        config: DdimSamplerConfig,
        timesteps: Vec<usize>,
    ) -> Result<Self, SamplerError> {
        if !(config.eta.is_finite() && config.eta >= 0.0) {
            return Err(SamplerError::InvalidEta { eta: config.eta });
        }
        config.x0_processing.validate()?;
        let ab = schedule.alpha_bar();
        let final_alpha_bar = if config.set_alpha_to_one { 1.0 } else { ab[0] };
        let t_total = schedule.num_train_timesteps();
        let ratio = t_total / timesteps.len();
        let steps = timesteps
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let prev = match config.timestep_mode {
                    DdimTimestepMode::NextInList => timesteps.get(i + 1).copied(),
                    DdimTimestepMode::DiffusersCompat => t.checked_sub(ratio),
                };
                let alpha_bar_prev = prev.map_or(final_alpha_bar, |p| ab[p]);
                let posterior = PosteriorCoefficients::new(ab[t], alpha_bar_prev);
                DdimStep {
                    alpha_bar: ab[t],
                    alpha_bar_prev,
                    posterior_mean: schedule.posterior_mean_coefs(t),
                    sigma: config.eta * posterior.variance.max(0.0).sqrt(),
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
    pub fn config(&self) -> &DdimSamplerConfig {
        &self.config
    }
}

impl<B: Backend> Sampler<B> for DdimSampler {
    fn name(&self) -> &'static str {
        "DDIM"
    }

    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn needs_noise(&self, t: usize) -> bool {
        self.steps[step_index(&self.timesteps, t, "DDIM")].sigma > 0.0
    }

    /// x̂₀ and ε̂ from the model output, x̂₀ clipped/thresholded (ε̂ re-derived from it only with
    /// `use_clipped_model_output`), then Eq. 12.
    ///
    /// # Panics
    /// As [`Sampler::step`]: unknown `t`, mismatched shapes, missing noise when η > 0.
    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        t: usize,
        x_t: Tensor<B, 4>,
        noise: Option<Tensor<B, 4>>,
    ) -> StepOutput<B> {
        check_shapes(&model_output, &x_t, noise.as_ref(), 1);
        let s = self.steps[step_index(&self.timesteps, t, "DDIM")];
        let pt = self.config.prediction_type;
        let level =
            NoiseLevel::<B, 4>::from_alpha_bar(s.alpha_bar).with_posterior_mean(s.posterior_mean);
        // diffusers derives ε̂ from the raw prediction, before clipping.
        let eps = level.eps_from_prediction(pt, x_t.clone(), model_output.clone());
        let x_0 = self.config.x0_processing.apply(level.x0_from_prediction(
            pt,
            x_t.clone(),
            model_output,
        ));
        let eps = if self.config.use_clipped_model_output {
            level.eps_from_x0(x_t, x_0.clone())
        } else {
            eps
        };
        let direction = (1.0 - s.alpha_bar_prev - s.sigma * s.sigma).max(0.0).sqrt();
        let mut prev = x_0.clone().mul_scalar(s.alpha_bar_prev.sqrt()) + eps.mul_scalar(direction);
        if s.sigma > 0.0 {
            let z =
                noise.expect("the DDIM step at this t adds noise (eta > 0) but `noise` is None");
            prev = prev + z.mul_scalar(s.sigma);
        }
        StepOutput {
            prev_sample: prev,
            pred_x0: x_0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn negative_eta_is_rejected() {
        let e = DdimSamplerConfig::new()
            .with_eta(-0.5)
            .init(&NoiseSchedule::paper())
            .unwrap_err();
        assert!(matches!(e, SamplerError::InvalidEta { eta } if eta == -0.5));
        assert!(e.to_string().contains("eta is -0.5"), "{e}");
    }

    #[test]
    fn trailing_prev_timestep_next_in_list_vs_diffusers() {
        let schedule = NoiseSchedule::paper();
        let ab = schedule.alpha_bar();
        let config = DdimSamplerConfig::new()
            .with_num_inference_steps(3)
            .with_timestep_spacing(TimestepSpacing::Trailing);
        let ours = config.init(&schedule).unwrap();
        assert_eq!(Sampler::<B>::timesteps(&ours), &[999, 666, 332]);
        assert_eq!(ours.steps[1].alpha_bar_prev, ab[332]);
        let compat = config
            .with_timestep_mode(DdimTimestepMode::DiffusersCompat)
            .init(&schedule)
            .unwrap();
        // diffusers: 666 − 1000 // 3 = 333, not the list's 332.
        assert_eq!(compat.steps[1].alpha_bar_prev, ab[333]);
        assert_eq!(compat.steps[2].alpha_bar_prev, 1.0);
    }

    #[test]
    fn modes_coincide_for_leading() {
        let schedule = NoiseSchedule::paper();
        let config = DdimSamplerConfig::new()
            .with_num_inference_steps(7)
            .with_steps_offset(1);
        let a = config.init(&schedule).unwrap();
        let b = config
            .with_timestep_mode(DdimTimestepMode::DiffusersCompat)
            .init(&schedule)
            .unwrap();
        for (x, y) in a.steps.iter().zip(&b.steps) {
            assert_eq!(x.alpha_bar_prev, y.alpha_bar_prev);
        }
    }

    #[test]
    #[should_panic(expected = "noise has shape [1, 1, 2, 3] but x_t has shape [1, 1, 2, 2]")]
    fn wrong_noise_shape_panics() {
        let device = Default::default();
        let mut sampler = DdimSamplerConfig::new()
            .with_eta(1.0)
            .init(&NoiseSchedule::paper())
            .unwrap();
        let x = Tensor::<B, 4>::zeros([1, 1, 2, 2], &device);
        let z = Tensor::<B, 4>::zeros([1, 1, 2, 3], &device);
        sampler.step(x.clone(), 980, x, Some(z));
    }
}
