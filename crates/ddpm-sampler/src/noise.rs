//! Where a sampler's randomness comes from: an explicit source the caller owns, never a global
//! RNG.
//!
//! - [`NoiseSource::seeded`]: standard normals drawn on the host with ChaCha8 (a specified,
//!   portable generator) and the Box–Muller transform in `f64`, so the same seed gives the
//!   same samples on every backend and machine.
//! - [`NoiseSource::per_sample`]: one seeded host RNG per sample, so each sample's noise is the
//!   same however the samples are batched.
//! - [`NoiseSource::device`]: the backend's own RNG (`Tensor::random`), fastest on a GPU;
//!   seed it with `B::seed(device, seed)`; reproducible only on the same backend.
//! - [`NoiseSource::replay`]: noise recorded by another implementation (e.g. diffusers'
//!   `variance_noise` at each step), `[steps, batch, C, H, W]`, to match its run exactly.

use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::SampleError;

/// A source of standard normal noise for x_T and for each stochastic step.
#[derive(Debug)]
pub struct NoiseSource<B: Backend> {
    kind: Kind<B>,
}

#[derive(Debug)]
enum Kind<B: Backend> {
    Host(Box<ChaCha8Rng>),
    PerSample(Vec<ChaCha8Rng>),
    Device,
    Replay(Tensor<B, 5>),
}

impl<B: Backend> NoiseSource<B> {
    /// Host RNG seeded with `seed`: identical noise on every backend.
    pub fn seeded(seed: u64) -> Self {
        Self {
            kind: Kind::Host(Box::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }

    /// One host RNG per sample, seeded with `seeds[i]` for sample `i` of every draw: each
    /// sample's noise depends only on its own seed, not on which other samples share its
    /// batch. Every draw must then have `seeds.len()` samples.
    pub fn per_sample(seeds: impl IntoIterator<Item = u64>) -> Self {
        Self {
            kind: Kind::PerSample(seeds.into_iter().map(ChaCha8Rng::seed_from_u64).collect()),
        }
    }

    /// The backend's RNG (seed it with `B::seed(device, seed)` for reproducible runs).
    pub fn device() -> Self {
        Self { kind: Kind::Device }
    }

    /// Replays recorded noise: `step_noise[i]` is used at the `i`-th step of the sampler's
    /// timestep list (diffusers' fixtures store it this way, zeros where no noise is drawn).
    ///
    /// # Shapes
    /// `step_noise`: `[num_steps, batch, C, H, W]`, checked by [`NoiseSource::check`] before
    /// sampling starts.
    pub fn replay(step_noise: Tensor<B, 5>) -> Self {
        Self {
            kind: Kind::Replay(step_noise),
        }
    }

    /// Checks that this source can serve `num_steps` steps of noise shaped `shape`.
    ///
    /// # Errors
    /// [`SampleError::NoiseShape`] when replayed noise is not `[num_steps, ..shape]`.
    pub fn check(&self, num_steps: usize, shape: [usize; 4]) -> Result<(), SampleError> {
        if let Kind::Replay(noise) = &self.kind {
            let expected = vec![num_steps, shape[0], shape[1], shape[2], shape[3]];
            let found = noise.dims().to_vec();
            if found != expected {
                return Err(SampleError::NoiseShape { expected, found });
            }
        }
        Ok(())
    }

    /// A fresh standard normal tensor, e.g. x_T ~ N(0, I).
    ///
    /// # Errors
    /// [`SampleError::NoInitialNoise`] for a replay source (pass x_T explicitly);
    /// [`SampleError::NoiseShape`] for a per-sample source asked for another batch size.
    pub fn standard_normal(
        &mut self,
        shape: [usize; 4],
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, SampleError> {
        match &mut self.kind {
            Kind::Host(rng) => {
                let values = host_normals(rng, shape.iter().product());
                Ok(Tensor::from_data(TensorData::new(values, shape), device))
            }
            Kind::PerSample(rngs) => {
                if rngs.len() != shape[0] {
                    return Err(SampleError::NoiseShape {
                        expected: vec![rngs.len(), shape[1], shape[2], shape[3]],
                        found: shape.to_vec(),
                    });
                }
                let per_sample = shape[1] * shape[2] * shape[3];
                let values = rngs
                    .iter_mut()
                    .flat_map(|rng| host_normals(rng, per_sample))
                    .collect::<Vec<_>>();
                Ok(Tensor::from_data(TensorData::new(values, shape), device))
            }
            Kind::Device => Ok(Tensor::random(
                shape,
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            Kind::Replay(_) => Err(SampleError::NoInitialNoise),
        }
    }

    /// The noise for step `step` (the position in the sampler's timestep list).
    ///
    /// # Errors
    /// [`SampleError::NoiseShape`] when replayed noise has no entry `step` of shape `shape`.
    pub fn step_noise(
        &mut self,
        step: usize,
        shape: [usize; 4],
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, SampleError> {
        match &self.kind {
            Kind::Replay(noise) => {
                let dims = noise.dims();
                if step >= dims[0] || dims[1..] != shape {
                    return Err(SampleError::NoiseShape {
                        expected: vec![step + 1, shape[0], shape[1], shape[2], shape[3]],
                        found: dims.to_vec(),
                    });
                }
                Ok(noise.clone().narrow(0, step, 1).reshape(shape))
            }
            _ => self.standard_normal(shape, device),
        }
    }
}

/// `n` standard normals from the host RNG (Box–Muller in `f64`, then cast).
fn host_normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(n + 1);
    while values.len() < n {
        // u1 ∈ (0, 1] so that ln(u1) is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        values.push((r * c) as f32);
        values.push((r * s) as f32);
    }
    values.truncate(n);
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn seeded_noise_is_reproducible_and_standard_normal() {
        let device = Default::default();
        let shape = [4, 3, 16, 16];
        let a = NoiseSource::<B>::seeded(7)
            .standard_normal(shape, &device)
            .unwrap();
        let b = NoiseSource::<B>::seeded(7)
            .standard_normal(shape, &device)
            .unwrap();
        let c = NoiseSource::<B>::seeded(8)
            .standard_normal(shape, &device)
            .unwrap();
        let (a, b, c) = (
            a.into_data().to_vec::<f32>().unwrap(),
            b.into_data().to_vec::<f32>().unwrap(),
            c.into_data().to_vec::<f32>().unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn per_sample_noise_does_not_depend_on_the_batch() {
        let device = Default::default();
        let shape = [3, 2, 4, 4];
        let all = NoiseSource::<B>::per_sample([10, 11, 12])
            .standard_normal(shape, &device)
            .unwrap();
        let second = NoiseSource::<B>::per_sample([11])
            .standard_normal([1, 2, 4, 4], &device)
            .unwrap();
        assert_eq!(
            all.narrow(0, 1, 1).into_data().to_vec::<f32>().unwrap(),
            second.into_data().to_vec::<f32>().unwrap()
        );
        // Sample i's stream is the host stream seeded with seeds[i].
        let host = NoiseSource::<B>::seeded(11)
            .standard_normal([1, 2, 4, 4], &device)
            .unwrap();
        let again = NoiseSource::<B>::per_sample([11])
            .standard_normal([1, 2, 4, 4], &device)
            .unwrap();
        assert_eq!(host.into_data(), again.into_data());
        let e = NoiseSource::<B>::per_sample([1, 2])
            .standard_normal(shape, &device)
            .unwrap_err();
        assert!(matches!(e, SampleError::NoiseShape { .. }), "{e}");
    }

    #[test]
    fn replay_checks_shape_and_serves_steps() {
        let device = Default::default();
        let noise = Tensor::<B, 5>::from_data(
            TensorData::new(
                (0..12).map(|v| v as f32).collect::<Vec<_>>(),
                [3, 1, 1, 2, 2],
            ),
            &device,
        );
        let mut src = NoiseSource::replay(noise);
        assert!(src.check(3, [1, 1, 2, 2]).is_ok());
        let e = src.check(4, [1, 1, 2, 2]).unwrap_err();
        assert!(e.to_string().contains("[4, 1, 1, 2, 2]"), "{e}");
        assert!(matches!(
            src.check(3, [2, 1, 2, 2]),
            Err(SampleError::NoiseShape { .. })
        ));
        let step1 = src.step_noise(1, [1, 1, 2, 2], &device).unwrap();
        assert_eq!(
            step1.into_data().to_vec::<f32>().unwrap(),
            [4.0, 5.0, 6.0, 7.0]
        );
        assert!(src.step_noise(3, [1, 1, 2, 2], &device).is_err());
        assert!(matches!(
            src.standard_normal([1, 1, 2, 2], &device),
            Err(SampleError::NoInitialNoise)
        ));
    }
}
