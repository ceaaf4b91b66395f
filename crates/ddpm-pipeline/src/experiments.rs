//! The paper's sampling experiments as library calls (Ho, Jain & Abbeel 2020,
//! arXiv:2006.11239v2, §4.3 and Appendix D):
//!
//! - **Progressive generation (Fig. 6):** x̂₀ predicted along the reverse chain at K timesteps —
//!   [`Sampling::sample_progressive`], recorded from the same sampling loop (its x̂₀ previews),
//!   not a second code path.
//! - **Samples sharing a latent (Fig. 7):** x_t ~ q(x_t | x₀) of one real image at several t,
//!   and several draws of p_θ(x₀ | x_t) from each — [`shared_latent`]. Large t keep only coarse
//!   attributes; small t keep the image.
//! - **Interpolation (Fig. 8):** two images encoded to x_t with the same ε, mixed
//!   x̄_t = (1 − λ) x_t + λ x′_t, decoded with the reverse process with the fresh noise of every
//!   step **fixed across λ** ("we fixed the noise for different values of λ") —
//!   [`interpolate`].
//!
//! Each returns its tensors and a figure ([`Progressive::grid`], ...). The sampler is whatever
//! the `configure` closure (or the [`Sampling`] builder) sets up; the paper uses ancestral DDPM
//! sampling with all T steps. A deterministic sampler (DDIM with η = 0) makes every draw from
//! the same x_t identical, which is right but not the figure.

use std::path::Path;

use burn::tensor::{Tensor, backend::Backend};
use ddpm_forward::NoiseLevel;
use ddpm_sampler::NoiseSource;
use image::DynamicImage;

use crate::{Pipeline, PipelineError, Samples, Sampling, images};

/// The steps (0-based indices into a run's timestep list of `num_steps`) that a progressive
/// figure with `k` columns shows: spread evenly from the first step to the last, both
/// included (k = 1: the last step only).
///
/// # Errors
/// [`PipelineError::InvalidArgument`] unless 1 ≤ k ≤ `num_steps`.
pub fn progressive_steps(num_steps: usize, k: usize) -> Result<Vec<usize>, PipelineError> {
    if k == 0 || k > num_steps {
        return Err(PipelineError::InvalidArgument {
            name: "progressive columns (K)",
            value: k.to_string(),
            expected: "between 1 and the number of sampling steps",
        });
    }
    if k == 1 {
        return Ok(vec![num_steps - 1]);
    }
    // j·(n − 1)/(k − 1), rounded to the nearest step; distinct since the spacing is ≥ 1.
    let (n1, k1) = (num_steps - 1, k - 1);
    Ok((0..k).map(|j| (2 * j * n1 + k1) / (2 * k1)).collect())
}

/// A progressive generation (Fig. 6): the samples and x̂₀ at K steps of the run that drew
/// them ([`Sampling::sample_progressive`]).
#[derive(Debug, Clone)]
pub struct Progressive<B: Backend> {
    pub(crate) steps: Vec<usize>,
    pub(crate) timesteps: Vec<usize>,
    pub(crate) pred_x0: Vec<Tensor<B, 4>>,
    pub(crate) samples: Samples<B>,
}

impl<B: Backend> Progressive<B> {
    /// The 0-based step index of each column.
    pub fn steps(&self) -> &[usize] {
        &self.steps
    }

    /// The timestep (0-based: the paper's t − 1) of each column.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// x̂₀ of all samples at each column's step, `[N, C, H, W]` each, after the sampler's
    /// clipping/thresholding.
    pub fn pred_x0(&self) -> &[Tensor<B, 4>] {
        &self.pred_x0
    }

    /// The final samples (the same as [`Sampling::sample`] gives with these settings).
    pub fn samples(&self) -> &Samples<B> {
        &self.samples
    }

    /// The figure: one row per sample, one column per recorded step (large t on the left).
    ///
    /// # Errors
    /// [`PipelineError::ImageChannels`] for channel counts other than 1 or 3.
    pub fn grid(&self) -> Result<DynamicImage, PipelineError> {
        let columns = self
            .pred_x0
            .iter()
            .map(|x| images::to_images(x.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.samples.len();
        let cells: Vec<DynamicImage> = (0..n)
            .flat_map(|i| columns.iter().map(move |col| col[i].clone()))
            .collect();
        Ok(images::grid_with_columns(&cells, columns.len()))
    }

    /// Writes [`Progressive::grid`] to `path` (PNG or JPEG by extension), atomically.
    ///
    /// # Errors
    /// As [`Progressive::grid`] and [`images::save_image`].
    pub fn save_grid(&self, path: impl AsRef<Path>) -> Result<(), PipelineError> {
        images::ImageFileFormat::from_path(path.as_ref())?;
        images::save_image(&self.grid()?, path)
    }
}

/// Samples that share a latent x_t (Fig. 7), for each t: [`shared_latent`].
#[derive(Debug, Clone)]
pub struct SharedLatent<B: Backend> {
    x0: Tensor<B, 4>,
    timesteps: Vec<usize>,
    x_t: Vec<Tensor<B, 4>>,
    samples: Vec<Samples<B>>,
}

impl<B: Backend> SharedLatent<B> {
    /// The real image, `[1, C, H, W]`.
    pub fn x0(&self) -> &Tensor<B, 4> {
        &self.x0
    }

    /// The timesteps (0-based), one row each.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// x_t of the image at each timestep, `[1, C, H, W]` each.
    pub fn x_t(&self) -> &[Tensor<B, 4>] {
        &self.x_t
    }

    /// The draws from p_θ(x₀ | x_t) at each timestep.
    pub fn samples(&self) -> &[Samples<B>] {
        &self.samples
    }

    /// The figure: one row per timestep — the image x₀, its x_t (clamped to [−1, 1] for
    /// display), then the samples.
    ///
    /// # Errors
    /// [`PipelineError::ImageChannels`] for channel counts other than 1 or 3.
    pub fn grid(&self) -> Result<DynamicImage, PipelineError> {
        let x0 = images::to_images(self.x0.clone())?.remove(0);
        let mut cells = Vec::new();
        let mut cols = 0;
        for (x_t, samples) in self.x_t.iter().zip(&self.samples) {
            let row_start = cells.len();
            cells.push(x0.clone());
            cells.extend(images::to_images(x_t.clone())?);
            cells.extend(samples.to_images()?);
            cols = cells.len() - row_start;
        }
        Ok(images::grid_with_columns(&cells, cols))
    }

    /// Writes [`SharedLatent::grid`] to `path` (PNG or JPEG by extension), atomically.
    ///
    /// # Errors
    /// As [`SharedLatent::grid`] and [`images::save_image`].
    pub fn save_grid(&self, path: impl AsRef<Path>) -> Result<(), PipelineError> {
        images::ImageFileFormat::from_path(path.as_ref())?;
        images::save_image(&self.grid()?, path)
    }
}

/// An interpolation between two images in x_t (Fig. 8): [`interpolate`].
#[derive(Debug, Clone)]
pub struct Interpolation<B: Backend> {
    t: usize,
    lambdas: Vec<f64>,
    x0_a: Tensor<B, 4>,
    x0_b: Tensor<B, 4>,
    x_t: Tensor<B, 4>,
    samples: Samples<B>,
}

impl<B: Backend> Interpolation<B> {
    /// The timestep (0-based) the images were encoded to.
    pub fn t(&self) -> usize {
        self.t
    }

    /// The mixing weights λ, one sample each.
    pub fn lambdas(&self) -> &[f64] {
        &self.lambdas
    }

    /// The two images, `[1, C, H, W]` each.
    pub fn images(&self) -> (&Tensor<B, 4>, &Tensor<B, 4>) {
        (&self.x0_a, &self.x0_b)
    }

    /// The mixed latents x̄_t, `[L, C, H, W]`, one per λ.
    pub fn x_t(&self) -> &Tensor<B, 4> {
        &self.x_t
    }

    /// The decoded x̄₀, one per λ (λ = 0 and 1 are the two images' reconstructions).
    pub fn samples(&self) -> &Samples<B> {
        &self.samples
    }

    /// The figure: one row — image A, the decoded x̄₀ for each λ, image B.
    ///
    /// # Errors
    /// [`PipelineError::ImageChannels`] for channel counts other than 1 or 3.
    pub fn grid(&self) -> Result<DynamicImage, PipelineError> {
        let mut cells = images::to_images(self.x0_a.clone())?;
        cells.extend(self.samples.to_images()?);
        cells.extend(images::to_images(self.x0_b.clone())?);
        let cols = cells.len();
        Ok(images::grid_with_columns(&cells, cols))
    }

    /// Writes [`Interpolation::grid`] to `path` (PNG or JPEG by extension), atomically.
    ///
    /// # Errors
    /// As [`Interpolation::grid`] and [`images::save_image`].
    pub fn save_grid(&self, path: impl AsRef<Path>) -> Result<(), PipelineError> {
        images::ImageFileFormat::from_path(path.as_ref())?;
        images::save_image(&self.grid()?, path)
    }
}

/// `n` mixing weights spread evenly over [0, 1], both ends included (`n` ≥ 2).
///
/// # Errors
/// [`PipelineError::InvalidArgument`] for n < 2.
pub fn even_lambdas(n: usize) -> Result<Vec<f64>, PipelineError> {
    if n < 2 {
        return Err(PipelineError::InvalidArgument {
            name: "number of λ values",
            value: n.to_string(),
            expected: "at least 2 (λ = 0 and λ = 1)",
        });
    }
    Ok((0..n).map(|i| i as f64 / (n - 1) as f64).collect())
}

/// Checks that `x0` is one image of the pipeline's shape, finite.
fn check_image<B: Backend>(
    pipe: &Pipeline<B>,
    x0: &Tensor<B, 4>,
    what: &'static str,
) -> Result<(), PipelineError> {
    let [c, h, w] = pipe.sample_shape();
    if x0.dims() != [1, c, h, w] {
        return Err(PipelineError::InputShape {
            what,
            found: x0.dims().to_vec(),
            expected: vec![1, c, h, w],
            meaning: "[1, C, H, W] of the model, values in [-1, 1]",
        });
    }
    crate::sampling::check_finite_input(x0, what)
}

/// Checks that every `t` is a training timestep of the pipeline's schedule; returns the noise
/// level ᾱ_t of each.
fn noise_levels<B: Backend>(
    pipe: &Pipeline<B>,
    timesteps: &[usize],
) -> Result<Vec<NoiseLevel<B, 4>>, PipelineError> {
    let schedule = pipe.scheduler_config().schedule.build()?;
    let alpha_bar = schedule.alpha_bar();
    timesteps
        .iter()
        .map(|&t| match alpha_bar.get(t) {
            Some(&a) => Ok(NoiseLevel::from_alpha_bar(a)),
            None => Err(PipelineError::InvalidArgument {
                name: "timestep t",
                value: t.to_string(),
                expected: "a 0-based training timestep below T (the schedule's \
                           num_train_timesteps)",
            }),
        })
        .collect()
}

/// Samples sharing a latent (Fig. 7): encodes the image `x0` (`[1, C, H, W]`, in [−1, 1]) to
/// x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε at each of `timesteps` (Eq. 4, one ε drawn from `seed` for
/// all of them), then draws `per_t` samples of p_θ(x₀ | x_t) from each, with the sampling run
/// `configure` sets up (sampler, steps, seed of the step noise, ...; the run's x_t and start
/// are set here).
///
/// # Errors
/// [`PipelineError::InputShape`] / [`PipelineError::NonFiniteInput`] for the image;
/// [`PipelineError::InvalidArgument`] for no timesteps, a timestep ≥ T or `per_t` = 0;
/// a sampler error when a timestep is not one the sampler visits (a strided DDIM list);
/// sampling errors as [`Sampling::sample`].
///
/// # Example
/// ```no_run
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use ddpm_pipeline::{Pipeline, SamplerKind, experiments::shared_latent};
///
/// let pipe = Pipeline::<Flex>::from_dir("runs/mnist", &Default::default())?;
/// let x0 = Tensor::<Flex, 4>::zeros([1, 1, 28, 28], pipe.device()); // a real image here
/// let fig = shared_latent(&pipe, x0, &[999, 749, 499, 249], 4, 0, |s| {
///     s.kind(SamplerKind::Ddpm).seed(1)
/// })?;
/// fig.save_grid("shared.png")?;
/// # Ok::<(), ddpm_pipeline::PipelineError>(())
/// ```
pub fn shared_latent<'p, B: Backend>(
    pipe: &'p Pipeline<B>,
    x0: Tensor<B, 4>,
    timesteps: &[usize],
    per_t: usize,
    seed: u64,
    configure: impl Fn(Sampling<'p, B>) -> Sampling<'p, B>,
) -> Result<SharedLatent<B>, PipelineError> {
    check_image(pipe, &x0, "the image x₀")?;
    if timesteps.is_empty() {
        return Err(PipelineError::InvalidArgument {
            name: "timesteps",
            value: "none".into(),
            expected: "at least one timestep",
        });
    }
    if per_t == 0 {
        return Err(PipelineError::InvalidArgument {
            name: "samples per timestep",
            value: "0".into(),
            expected: "at least 1",
        });
    }
    let levels = noise_levels(pipe, timesteps)?;
    let eps = NoiseSource::<B>::seeded(seed).standard_normal(x0.dims(), pipe.device())?;
    let mut x_t = Vec::with_capacity(timesteps.len());
    let mut samples = Vec::with_capacity(timesteps.len());
    for (&t, level) in timesteps.iter().zip(&levels) {
        let x = level.q_sample(x0.clone(), eps.clone());
        let drawn = configure(pipe.sampling())
            .init_noise(x.clone().repeat_dim(0, per_t))
            .start_at(t)
            .sample(per_t)?;
        x_t.push(x);
        samples.push(drawn);
    }
    Ok(SharedLatent {
        x0,
        timesteps: timesteps.to_vec(),
        x_t,
        samples,
    })
}

/// Interpolation in x_t (Fig. 8): encodes `x0_a` and `x0_b` (`[1, C, H, W]` each, in [−1, 1])
/// to x_t at timestep `t` with the same ε (drawn from `seed`), mixes
/// x̄_t = (1 − λ) x_t + λ x′_t for each λ of `lambdas`, and decodes all of them with the
/// sampling run `configure` sets up, giving every λ the same fresh noise at every step
/// ([`Sampling::same_step_noise`]) so that the decoded images differ only through λ.
///
/// # Errors
/// [`PipelineError::InputShape`] / [`PipelineError::NonFiniteInput`] for the images;
/// [`PipelineError::InvalidArgument`] for no λ, a λ that is not finite or t ≥ T; a sampler
/// error when t is not one the sampler visits; sampling errors as [`Sampling::sample`].
///
/// # Example
/// ```no_run
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use ddpm_pipeline::{Pipeline, SamplerKind, experiments::{even_lambdas, interpolate}};
///
/// let pipe = Pipeline::<Flex>::from_dir("runs/mnist", &Default::default())?;
/// let a = Tensor::<Flex, 4>::zeros([1, 1, 28, 28], pipe.device()); // real images here
/// let b = Tensor::<Flex, 4>::ones([1, 1, 28, 28], pipe.device());
/// let fig = interpolate(&pipe, a, b, 499, &even_lambdas(11)?, 0, |s| {
///     s.kind(SamplerKind::Ddpm).seed(1)
/// })?;
/// fig.save_grid("interpolation.png")?;
/// # Ok::<(), ddpm_pipeline::PipelineError>(())
/// ```
pub fn interpolate<'p, B: Backend>(
    pipe: &'p Pipeline<B>,
    x0_a: Tensor<B, 4>,
    x0_b: Tensor<B, 4>,
    t: usize,
    lambdas: &[f64],
    seed: u64,
    configure: impl Fn(Sampling<'p, B>) -> Sampling<'p, B>,
) -> Result<Interpolation<B>, PipelineError> {
    check_image(pipe, &x0_a, "image A")?;
    check_image(pipe, &x0_b, "image B")?;
    if lambdas.is_empty() {
        return Err(PipelineError::InvalidArgument {
            name: "λ values",
            value: "none".into(),
            expected: "at least one λ",
        });
    }
    if let Some(bad) = lambdas.iter().find(|l| !l.is_finite()) {
        return Err(PipelineError::InvalidArgument {
            name: "λ",
            value: bad.to_string(),
            expected: "a finite number (0 = image A, 1 = image B)",
        });
    }
    let level = noise_levels(pipe, &[t])?.remove(0);
    let eps = NoiseSource::<B>::seeded(seed).standard_normal(x0_a.dims(), pipe.device())?;
    let x_t_a = level.q_sample(x0_a.clone(), eps.clone());
    let x_t_b = level.q_sample(x0_b.clone(), eps);
    let mixed: Vec<Tensor<B, 4>> = lambdas
        .iter()
        .map(|&l| {
            x_t_a
                .clone()
                .mul_scalar(1.0 - l)
                .add(x_t_b.clone().mul_scalar(l))
        })
        .collect();
    let x_t = Tensor::cat(mixed, 0);
    let samples = configure(pipe.sampling())
        .init_noise(x_t.clone())
        .start_at(t)
        .same_step_noise(true)
        .sample(lambdas.len())?;
    Ok(Interpolation {
        t,
        lambdas: lambdas.to_vec(),
        x0_a,
        x0_b,
        x_t,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progressive_steps_span_the_run() {
        assert_eq!(progressive_steps(1000, 1).unwrap(), vec![999]);
        assert_eq!(progressive_steps(1000, 2).unwrap(), vec![0, 999]);
        assert_eq!(progressive_steps(5, 5).unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(progressive_steps(10, 4).unwrap(), vec![0, 3, 6, 9]);
        let s = progressive_steps(1000, 10).unwrap();
        assert_eq!((s[0], s[9], s.len()), (0, 999, 10));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert!(progressive_steps(5, 6).is_err());
        assert!(progressive_steps(5, 0).is_err());
    }

    #[test]
    fn even_lambdas_include_both_ends() {
        assert_eq!(even_lambdas(2).unwrap(), vec![0.0, 1.0]);
        assert_eq!(even_lambdas(5).unwrap(), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!(even_lambdas(1).is_err());
    }
}
