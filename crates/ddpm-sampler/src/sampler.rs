//! The interface every sampler implements: which timesteps it visits and one reverse step.
//!
//! A sampler precomputes its per-step coefficients in `f64` on the host from the
//! [`ddpm_schedule::NoiseSchedule`] when it is built, so a step never reads from the device.

use burn::tensor::{Tensor, backend::Backend};
use ddpm_schedule::{NoiseSchedule, TimestepSpacing, inference_timesteps};

use crate::SamplerError;

/// The result of one reverse step.
#[derive(Debug, Clone)]
pub struct StepOutput<B: Backend> {
    /// x_{prev}: the sample at the next (less noisy) timestep of the list, or x₀ after the last
    /// step (diffusers' `prev_sample`).
    pub prev_sample: Tensor<B, 4>,
    /// x̂₀ predicted at this step, after clipping/thresholding (diffusers'
    /// `pred_original_sample`); useful as a preview.
    pub pred_x0: Tensor<B, 4>,
}

/// A reverse-process sampler: DDPM ancestral, DDIM, DPM-Solver++, or your own.
///
/// Timesteps are 0-based (diffusers' convention): `t = 0` is the paper's t = 1. The
/// [`crate::sample_loop`] calls [`Sampler::reset`], then for each `t` of
/// [`Sampler::timesteps`] in order: the model, then [`Sampler::step`].
pub trait Sampler<B: Backend> {
    /// A short name for messages (`"DDPM"`, `"DDIM"`, ...).
    fn name(&self) -> &'static str;

    /// The timesteps visited, in order (strictly decreasing when sampling).
    fn timesteps(&self) -> &[usize];

    /// Whether the step at `t` adds fresh noise, and so needs `noise` in [`Sampler::step`].
    ///
    /// # Panics
    /// If `t` is not one of [`Sampler::timesteps`].
    fn needs_noise(&self, t: usize) -> bool;

    /// How many channels the model outputs per channel of x_t: 2 with a learned variance,
    /// otherwise 1.
    fn model_channel_factor(&self) -> usize {
        1
    }

    /// Forgets any history kept between steps (DPM-Solver++'s previous x̂₀). Stateless
    /// samplers do nothing.
    fn reset(&mut self) {}

    /// One reverse step from x_t at timestep `t` to the next timestep of the list.
    ///
    /// # Shapes
    /// - `model_output`: `[batch, k·C, H, W]` with k = [`Sampler::model_channel_factor`]
    /// - `x_t`, `noise`, outputs: `[batch, C, H, W]`
    ///
    /// # Panics
    /// If `t` is not one of [`Sampler::timesteps`], if the shapes disagree, or if the step
    /// needs noise ([`Sampler::needs_noise`]) and `noise` is `None`.
    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        t: usize,
        x_t: Tensor<B, 4>,
        noise: Option<Tensor<B, 4>>,
    ) -> StepOutput<B>;
}

/// A boxed sampler is a sampler (what [`crate::sampler_from_config`] returns can be wrapped,
/// e.g. in [`crate::StartAt`]).
impl<B: Backend, S: Sampler<B> + ?Sized> Sampler<B> for Box<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn timesteps(&self) -> &[usize] {
        (**self).timesteps()
    }

    fn needs_noise(&self, t: usize) -> bool {
        (**self).needs_noise(t)
    }

    fn model_channel_factor(&self) -> usize {
        (**self).model_channel_factor()
    }

    fn reset(&mut self) {
        (**self).reset();
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        t: usize,
        x_t: Tensor<B, 4>,
        noise: Option<Tensor<B, 4>>,
    ) -> StepOutput<B> {
        (**self).step(model_output, t, x_t, noise)
    }
}

/// The timesteps to visit: all T (`None`) or `n` picked with `spacing` and `steps_offset`.
///
/// # Errors
/// [`SamplerError::Schedule`] for n = 0, n > T, or an offset that pushes a timestep to ≥ T.
pub(crate) fn select_timesteps(
    schedule: &NoiseSchedule,
    num_inference_steps: Option<usize>,
    spacing: TimestepSpacing,
    steps_offset: usize,
) -> Result<Vec<usize>, SamplerError> {
    let t_total = schedule.num_train_timesteps();
    Ok(match num_inference_steps {
        None => (0..t_total).rev().collect(),
        Some(n) => inference_timesteps(t_total, n, spacing, steps_offset)?,
    })
}

/// Position of `t` in a sampler's list.
///
/// # Panics
/// If `t` is not in the list (a programmer error: the loop passes the sampler's own timesteps).
pub(crate) fn step_index(timesteps: &[usize], t: usize, sampler: &str) -> usize {
    timesteps
        .iter()
        .position(|&s| s == t)
        .unwrap_or_else(|| panic!("timestep {t} is not one of this {sampler} sampler's timesteps"))
}

/// # Panics
/// If `model_output` is not `[b, k·C, H, W]` for `x_t` = `[b, C, H, W]`, or `noise` (when
/// given) is not shaped like `x_t`.
pub(crate) fn check_shapes<B: Backend>(
    model_output: &Tensor<B, 4>,
    x_t: &Tensor<B, 4>,
    noise: Option<&Tensor<B, 4>>,
    factor: usize,
) {
    let (m, x) = (model_output.dims(), x_t.dims());
    let expected = [x[0], x[1] * factor, x[2], x[3]];
    assert!(
        m == expected,
        "model_output has shape {m:?} but x_t has shape {x:?}; expected {expected:?}"
    );
    if let Some(n) = noise {
        assert!(
            n.dims() == x,
            "noise has shape {:?} but x_t has shape {x:?}",
            n.dims()
        );
    }
}
