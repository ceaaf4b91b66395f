//! [`StartAt`]: run any sampler from an intermediate timestep t instead of from T — the reverse
//! process p_θ(x₀ | x_t) conditioned on a given x_t (Ho et al. 2020, arXiv:2006.11239v2, §4.3:
//! Figs. 7 and 8 start it from x_t ~ q(x_t | x₀) of real images).

use burn::tensor::{Tensor, backend::Backend};

use crate::{Sampler, SamplerError, StepOutput};

/// A sampler whose timestep list is cut to the steps at or below `t`: the steps it takes from
/// there are exactly those the wrapped sampler takes from `t` on in a full run (same
/// coefficients, same next timestep), so a full run that reaches x_t continues as a
/// [`StartAt`] run from that x_t would.
///
/// # Example
/// ```
/// use burn::backend::Flex;
/// use ddpm_sampler::{DdpmSamplerConfig, Sampler, StartAt};
/// use ddpm_schedule::NoiseSchedule;
///
/// let schedule = NoiseSchedule::paper();
/// let ddpm = DdpmSamplerConfig::new().init(&schedule)?;
/// let from_500 = StartAt::new::<Flex>(ddpm, 500)?;
/// assert_eq!(Sampler::<Flex>::timesteps(&from_500).len(), 501); // t = 500, 499, ..., 0
/// # Ok::<(), ddpm_sampler::SamplerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StartAt<S> {
    inner: S,
    /// The wrapped sampler's timesteps from the start on (never empty: it holds the start).
    timesteps: Vec<usize>,
}

impl<S> StartAt<S> {
    /// Cuts `inner`'s timestep list to the steps from `t` on.
    ///
    /// # Errors
    /// [`SamplerError::TimestepNotVisited`] when `t` is not one of `inner`'s timesteps (a
    /// strided DDIM list visits only some t; starting between two of them would apply the
    /// coefficients of another noise level to x_t).
    pub fn new<B: Backend>(inner: S, t: usize) -> Result<Self, SamplerError>
    where
        S: Sampler<B>,
    {
        let all = inner.timesteps();
        let Some(pos) = all.iter().position(|&s| s == t) else {
            let below = all.iter().copied().filter(|&s| s < t).max();
            let above = all.iter().copied().filter(|&s| s > t).min();
            return Err(SamplerError::TimestepNotVisited {
                t,
                sampler: inner.name(),
                below,
                above,
            });
        };
        let timesteps = all[pos..].to_vec();
        Ok(Self { inner, timesteps })
    }

    /// The timestep the run starts at (the noise level of the x_t it is given).
    pub fn start(&self) -> usize {
        self.timesteps[0]
    }

    /// The wrapped sampler.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<B: Backend, S: Sampler<B>> Sampler<B> for StartAt<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn needs_noise(&self, t: usize) -> bool {
        self.inner.needs_noise(t)
    }

    fn model_channel_factor(&self) -> usize {
        self.inner.model_channel_factor()
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        t: usize,
        x_t: Tensor<B, 4>,
        noise: Option<Tensor<B, 4>>,
    ) -> StepOutput<B> {
        self.inner.step(model_output, t, x_t, noise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DdimSamplerConfig, DdpmSamplerConfig, NoiseSource, sample_loop};
    use burn::backend::Flex;
    use burn::tensor::Int;
    use ddpm_schedule::NoiseSchedule;

    type B = Flex;

    fn model(x: Tensor<B, 4>, t: Tensor<B, 1, Int>) -> Tensor<B, 4> {
        // Depends on t, so a step with the wrong timestep gives a different result.
        let t = t.float().div_scalar(1000.0).reshape([-1, 1, 1, 1]);
        x.mul_scalar(0.3).add(t)
    }

    /// A full run recorded at t, then continued from that x_t by StartAt, equals the full run:
    /// same steps, same noise.
    #[test]
    fn continuing_from_a_recorded_x_t_reproduces_the_full_run() {
        let device = Default::default();
        let schedule = NoiseSchedule::paper();
        let config = DdpmSamplerConfig::new().with_num_inference_steps(Some(20));
        let mut full = config.init(&schedule).unwrap();
        let ts = Sampler::<B>::timesteps(&full).to_vec();
        let x_big_t = NoiseSource::<B>::seeded(1)
            .standard_normal([2, 1, 4, 4], &device)
            .unwrap();
        // Per-step noise drawn once, so both runs can use the same values.
        let z = NoiseSource::<B>::seeded(2)
            .standard_normal([ts.len() * 2, 1, 4, 4], &device)
            .unwrap()
            .reshape([ts.len(), 2, 1, 4, 4]);
        let k = 7;
        let mut at_k = None;
        let mut x = x_big_t;
        for (i, &t) in ts.iter().enumerate() {
            if i == k {
                at_k = Some(x.clone());
            }
            let tt = Tensor::<B, 1, Int>::full([2], t as i64, &device);
            let out = model(x.clone(), tt);
            let noise = Sampler::<B>::needs_noise(&full, t)
                .then(|| z.clone().narrow(0, i, 1).reshape([2, 1, 4, 4]));
            x = full.step(out, t, x, noise).prev_sample;
        }
        let mut from = StartAt::new::<B>(config.init(&schedule).unwrap(), ts[k]).unwrap();
        assert_eq!(Sampler::<B>::timesteps(&from), &ts[k..]);
        let mut replay = NoiseSource::replay(z.narrow(0, k, ts.len() - k));
        let y = sample_loop(&mut from, &model, at_k.unwrap(), &mut replay, |_| {}, None).unwrap();
        let diff: f32 = x.sub(y).abs().max().into_scalar();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn a_timestep_the_sampler_skips_is_refused_naming_its_neighbours() {
        let schedule = NoiseSchedule::paper();
        let ddim = DdimSamplerConfig::new()
            .with_num_inference_steps(10)
            .init(&schedule)
            .unwrap();
        let err = StartAt::new::<B>(ddim, 450).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            SamplerError::TimestepNotVisited { t: 450, .. }
        ));
        // Leading spacing with 10 steps: 900, 800, ..., 0.
        assert!(msg.contains("400") && msg.contains("500"), "{msg}");
    }
}
