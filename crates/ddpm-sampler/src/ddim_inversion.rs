//! DDIM inversion: the deterministic DDIM update (Song et al. 2021, arXiv:2010.02502v4, Eq. 12
//! with η = 0, read as an ODE step, §4.3) run from x₀ towards x_T, to encode an image into the
//! noise that DDIM sampling maps back to it:
//!
//! x_next = √ᾱ_next · x̂₀ + √(1 − ᾱ_next) · ε̂,  x̂₀, ε̂ from the model output at level ᾱ_cur
//!
//! It visits the [`crate::DdimSampler`]'s timesteps in reverse and uses the same pairs of
//! levels, so each inversion step undoes one sampling step up to the change of the model's
//! output between neighbouring timesteps. As in diffusers' `DDIMInverseScheduler`, the model
//! is evaluated at the target timestep (with x at the current, lower level).
//!
//! NOTE: x̂₀ is neither clipped nor thresholded here (diffusers' inverse scheduler clips by
//! default), since clipping is not invertible.

use burn::tensor::{Tensor, backend::Backend};
use ddpm_forward::NoiseLevel;
use ddpm_schedule::PredictionType;

use crate::sampler::{check_shapes, step_index};
use crate::{DdimSampler, Sampler, SamplerError, StepOutput};

#[derive(Debug, Clone, Copy)]
struct InversionStep {
    alpha_bar_current: f64,
    alpha_bar_next: f64,
}

/// DDIM inversion, x₀ → x_T with η = 0; build it with [`DdimSampler::inversion`].
///
/// Its [`Sampler::timesteps`] increase; each step maps x at the previous level to the level of
/// its timestep; the model is called at that timestep.
#[derive(Debug, Clone)]
#[doc(alias = "DDIMInverseScheduler")]
pub struct DdimInversion {
    prediction_type: PredictionType,
    timesteps: Vec<usize>,
    steps: Vec<InversionStep>,
}

impl DdimSampler {
    /// The inverse of this sampler's deterministic (η = 0) update: same timesteps, reversed.
    ///
    /// # Errors
    /// [`SamplerError::UnsupportedPrediction`] for `sample` prediction with
    /// `set_alpha_to_one = true`: at ᾱ = 1 the first step cannot derive ε̂ from x̂₀; for a
    /// `mean` prediction, whose output is μ̃ of x at its own timestep's level, while inversion
    /// calls the model on x one level below.
    pub fn inversion(&self) -> Result<DdimInversion, SamplerError> {
        let config = self.config();
        if config.prediction_type == PredictionType::Mean {
            return Err(SamplerError::UnsupportedPrediction {
                sampler: "DDIM inversion",
                prediction_type: PredictionType::Mean,
                reason: "is not supported (the model would be read at a level its input is not \
                         at); train an epsilon, sample or v_prediction model to invert",
            });
        }
        if config.prediction_type == PredictionType::Sample && config.set_alpha_to_one {
            return Err(SamplerError::UnsupportedPrediction {
                sampler: "DDIM inversion",
                prediction_type: PredictionType::Sample,
                reason: "needs set_alpha_to_one = false (ε̂ is undefined at ᾱ = 1)",
            });
        }
        let timesteps = self.timesteps.iter().rev().copied().collect();
        let steps = self
            .steps
            .iter()
            .rev()
            .map(|s| InversionStep {
                alpha_bar_current: s.alpha_bar_prev,
                alpha_bar_next: s.alpha_bar,
            })
            .collect();
        Ok(DdimInversion {
            prediction_type: config.prediction_type,
            timesteps,
            steps,
        })
    }
}

impl<B: Backend> Sampler<B> for DdimInversion {
    fn name(&self) -> &'static str {
        "DDIM inversion"
    }

    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn needs_noise(&self, _t: usize) -> bool {
        false
    }

    /// One step up: x̂₀, ε̂ at the current level, then x_next = √ᾱ_next · x̂₀ + √(1 − ᾱ_next) · ε̂.
    /// `prev_sample` is the noisier x_next; `noise` is ignored.
    ///
    /// # Panics
    /// As [`Sampler::step`]: unknown `t`, mismatched shapes.
    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        t: usize,
        x_t: Tensor<B, 4>,
        _noise: Option<Tensor<B, 4>>,
    ) -> StepOutput<B> {
        check_shapes(&model_output, &x_t, None, 1);
        let s = self.steps[step_index(&self.timesteps, t, "DDIM inversion")];
        let current = NoiseLevel::<B, 4>::from_alpha_bar(s.alpha_bar_current);
        let pt = self.prediction_type;
        let eps = current.eps_from_prediction(pt, x_t.clone(), model_output.clone());
        let x_0 = current.x0_from_prediction(pt, x_t, model_output);
        let next = NoiseLevel::<B, 4>::from_alpha_bar(s.alpha_bar_next).q_sample(x_0.clone(), eps);
        StepOutput {
            prev_sample: next,
            pred_x0: x_0,
        }
    }
}
