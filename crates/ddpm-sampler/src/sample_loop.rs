//! The sampling loop: x_T → x₀ with any [`Sampler`] and [`Denoiser`] (Ho et al. 2020,
//! Algorithm 2's loop), with a progress callback and cooperative cancellation.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Int, Tensor, backend::Backend};

use crate::{Denoiser, NoiseSource, SampleError, Sampler};

/// What the progress callback sees after each step.
#[derive(Debug)]
pub struct StepProgress<'a, B: Backend> {
    /// 0-based index of the step just taken.
    pub step: usize,
    /// Total number of steps.
    pub num_steps: usize,
    /// Its timestep.
    pub t: usize,
    /// x̂₀ predicted at this step (a preview of the final sample).
    pub pred_x0: &'a Tensor<B, 4>,
}

/// Runs `sampler` from `x_t` (usually x_T ~ N(0, I)) through all its timesteps and returns the
/// final sample, exactly as the last step returns it (model space, not clamped).
///
/// Before the first model call it checks that `noise` can serve every step (a replayed noise
/// tensor of the wrong shape or length fails here, before any work). Between steps it reads
/// `cancel` (if given) and stops with [`SampleError::Cancelled`] when it is set; then it calls
/// `on_step`.
///
/// # Shapes
/// `x_t`: `[batch, C, H, W]`; the model must return `[batch, k·C, H, W]`, k =
/// [`Sampler::model_channel_factor`].
///
/// # Errors
/// [`SampleError::NoiseShape`] for replayed noise of the wrong shape,
/// [`SampleError::ModelOutputShape`] if the model returns the wrong shape,
/// [`SampleError::Cancelled`] if cancelled.
///
/// # Example
/// See the crate documentation.
pub fn sample_loop<B, S, M>(
    sampler: &mut S,
    model: &M,
    x_t: Tensor<B, 4>,
    noise: &mut NoiseSource<B>,
    mut on_step: impl FnMut(StepProgress<'_, B>),
    cancel: Option<&AtomicBool>,
) -> Result<Tensor<B, 4>, SampleError>
where
    B: Backend,
    S: Sampler<B> + ?Sized,
    M: Denoiser<B> + ?Sized,
{
    let shape = x_t.dims();
    let device = x_t.device();
    let timesteps = sampler.timesteps().to_vec();
    let num_steps = timesteps.len();
    noise.check(num_steps, shape)?;
    let factor = sampler.model_channel_factor();
    let expected = [shape[0], shape[1] * factor, shape[2], shape[3]];
    sampler.reset();
    let mut x = x_t;
    for (step, &t) in timesteps.iter().enumerate() {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(SampleError::Cancelled { step, t });
        }
        let t_batch = Tensor::<B, 1, Int>::full([shape[0]], t as i64, &device);
        let output = model.predict(x.clone(), t_batch);
        if output.dims() != expected {
            return Err(SampleError::ModelOutputShape {
                t,
                expected: expected.to_vec(),
                found: output.dims().to_vec(),
            });
        }
        let z = if sampler.needs_noise(t) {
            Some(noise.step_noise(step, shape, &device)?)
        } else {
            None
        };
        let out = sampler.step(output, t, x, z);
        on_step(StepProgress {
            step,
            num_steps,
            t,
            pred_x0: &out.pred_x0,
        });
        x = out.prev_sample;
    }
    Ok(x)
}
