//! [`Sampling`]: one sampling run of a [`Pipeline`], configured with a builder — sampler
//! kind, steps, η, seed, batch size, given x_T or replayed noise, progress, previews of x̂₀,
//! cancellation — and run by [`Sampling::sample`] (Ho et al. 2020, arXiv:2006.11239v2,
//! Algorithm 2; DDIM and DPM-Solver++ through the same loop).
//!
//! Randomness and batching: x_T for all N samples is drawn first from a host RNG seeded with
//! the seed (so x_T does not depend on the batch size, and equals what
//! `NoiseSource::seeded(seed).standard_normal([N, C, H, W])` gives), and the fresh noise of
//! stochastic steps (DDPM, DDIM with η > 0) comes from one host RNG per sample, seeded from
//! (seed, sample index) ([`step_noise_seed`]). So a sample is the same whatever the batch
//! size, on every backend.
//!
//! Every input is checked before the first model call (settings, shapes, finite x_T and
//! noise); during the run the model output and the sample are checked at each step, and the
//! run stops at the first step that produces NaN or ±inf, naming it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{ElementConversion, Int, Tensor, backend::Backend};
use ddpm_sampler::{NoiseSource, SampleError, Sampler, StartAt, sample_loop, sampler_from_config};
use ddpm_schedule::TimestepSpacing;

use crate::experiments::{Progressive, progressive_steps};
use crate::{Pipeline, PipelineError, SamplerKind, SamplerOverrides, Samples};

/// The most values (N·C·H·W) one sampling run draws: 2³⁰, 4 GiB of f32 for x_T (and as much
/// again for the samples). More is refused by [`Sampling::plan`] before anything is allocated.
pub const MAX_SAMPLE_VALUES: usize = 1 << 30;

/// Where one step of a sampling run stands (given to [`Sampling::on_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// 0-based index of the batch.
    pub batch: usize,
    /// Number of batches.
    pub num_batches: usize,
    /// The batch's first sample.
    pub first_sample: usize,
    /// One past the batch's last sample.
    pub end_sample: usize,
    /// 0-based index of the step just taken.
    pub step: usize,
    /// Steps per batch.
    pub num_steps: usize,
    /// The step's timestep (0-based, diffusers' convention).
    pub t: usize,
}

impl Progress {
    /// Steps done over the whole run, out of [`Progress::total_steps`].
    pub fn steps_done(&self) -> usize {
        self.batch * self.num_steps + self.step + 1
    }

    /// Steps of the whole run (batches × steps).
    pub fn total_steps(&self) -> usize {
        self.num_batches * self.num_steps
    }
}

/// x̂₀ at one step (given to [`Sampling::previews`]): what the final samples of the batch
/// look like from there; turn it into images with [`crate::images::to_images`].
#[derive(Debug)]
pub struct Preview<'a, B: Backend> {
    /// Where the run stands.
    pub progress: Progress,
    /// x̂₀ of the batch's samples, `[batch, C, H, W]`, after clipping/thresholding.
    pub pred_x0: &'a Tensor<B, 4>,
}

/// What a sampling run will do, checked ([`Sampling::plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The sampler chosen.
    pub kind: SamplerKind,
    /// Its name for messages (`"DDIM"`, ...).
    pub sampler_name: &'static str,
    /// The timesteps visited, in order.
    pub timesteps: Vec<usize>,
    /// `[N, C, H, W]` of the samples.
    pub shape: [usize; 4],
    /// Samples per model call.
    pub batch_size: usize,
}

impl Plan {
    /// Steps per batch.
    pub fn num_steps(&self) -> usize {
        self.timesteps.len()
    }

    /// Number of batches.
    pub fn num_batches(&self) -> usize {
        self.shape[0].div_ceil(self.batch_size)
    }
}

type ProgressFn<'a> = Box<dyn FnMut(&Progress) + 'a>;
type PreviewFn<'a, B> = Box<dyn FnMut(Preview<'_, B>) + 'a>;

/// A sampling run of a [`Pipeline`], built with [`Pipeline::sampling`] or
/// [`Pipeline::sampler`]; unset knobs take the scheduler config's values (diffusers' defaults
/// for its class).
pub struct Sampling<'a, B: Backend> {
    pipe: &'a Pipeline<B>,
    overrides: SamplerOverrides,
    seed: u64,
    batch_size: Option<usize>,
    init_noise: Option<Tensor<B, 4>>,
    noise_replay: Option<Tensor<B, 5>>,
    on_progress: Option<ProgressFn<'a>>,
    previews: Option<(usize, PreviewFn<'a, B>)>,
    cancel: Option<&'a AtomicBool>,
    start_at: Option<usize>,
    same_step_noise: bool,
}

impl<B: Backend> std::fmt::Debug for Sampling<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampling")
            .field("overrides", &self.overrides)
            .field("seed", &self.seed)
            .field("batch_size", &self.batch_size)
            .field("init_noise", &self.init_noise.as_ref().map(Tensor::dims))
            .field(
                "noise_replay",
                &self.noise_replay.as_ref().map(Tensor::dims),
            )
            .field("start_at", &self.start_at)
            .field("same_step_noise", &self.same_step_noise)
            .finish_non_exhaustive()
    }
}

/// The seed of sample `index`'s step-noise stream in a run seeded with `seed` (SplitMix64 of
/// the two), for [`NoiseSource::per_sample`].
pub fn step_noise_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How many values of `x` are not finite, and the first one's flat index.
fn non_finite<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<(usize, usize)> {
    let bad = x.clone().is_finite().bool_not();
    let count: i64 = bad.clone().int().sum().into_scalar().elem();
    if count == 0 {
        return None;
    }
    let first: i64 = bad
        .flatten::<1>(0, D - 1)
        .int()
        .argmax(0)
        .into_scalar()
        .elem();
    Some((count as usize, first as usize))
}

/// Fails with [`PipelineError::NonFiniteInput`] if `x` holds NaN or ±inf.
pub(crate) fn check_finite_input<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    what: &'static str,
) -> Result<(), PipelineError> {
    match non_finite(x) {
        None => Ok(()),
        Some((count, first)) => Err(PipelineError::NonFiniteInput {
            what,
            count,
            len: x.shape().num_elements(),
            first,
        }),
    }
}

impl<'a, B: Backend> Sampling<'a, B> {
    pub(crate) fn new(pipe: &'a Pipeline<B>) -> Self {
        Self {
            pipe,
            overrides: SamplerOverrides::default(),
            seed: 0,
            batch_size: None,
            init_noise: None,
            noise_replay: None,
            on_progress: None,
            previews: None,
            cancel: None,
            start_at: None,
            same_step_noise: false,
        }
    }

    /// The sampler (default: the one the scheduler config's `_class_name` names).
    pub fn kind(mut self, kind: SamplerKind) -> Self {
        self.overrides.kind = Some(kind);
        self
    }

    /// Number of sampling steps (default: all T for DDPM, 50 for DDIM, 20 for DPM-Solver++).
    pub fn steps(mut self, steps: usize) -> Self {
        self.overrides.num_inference_steps = Some(steps);
        self
    }

    /// DDIM's η (0: deterministic, the default; 1: DDPM-like). DDIM only.
    pub fn eta(mut self, eta: f64) -> Self {
        self.overrides.eta = Some(eta);
        self
    }

    /// Timestep spacing (default: the config's).
    pub fn timestep_spacing(mut self, spacing: TimestepSpacing) -> Self {
        self.overrides.timestep_spacing = Some(spacing);
        self
    }

    /// Follow diffusers' timestep rules where they differ from ours (see
    /// [`SamplerOverrides::diffusers_compat`]); an error with DDPM.
    pub fn diffusers_compat(mut self, on: bool) -> Self {
        self.overrides.diffusers_compat = Some(on);
        self
    }

    /// All sampler overrides at once (e.g. parsed from a command line).
    pub fn overrides(mut self, overrides: SamplerOverrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Seed of the host RNG (default 0): the same seed gives the same samples on every backend
    /// and at every batch size.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Samples per model call (default: all at once). Does not change the results.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// x_T, `[N, C, H, W]` for N samples, instead of drawing it from the seed.
    pub fn init_noise(mut self, x_t: Tensor<B, 4>) -> Self {
        self.init_noise = Some(x_t);
        self
    }

    /// The fresh noise of every step, `[steps, N, C, H, W]` (e.g. diffusers' recorded
    /// `variance_noise`, zeros where a step draws none), replacing the RNG inside the loop.
    pub fn noise_replay(mut self, noise: Tensor<B, 5>) -> Self {
        self.noise_replay = Some(noise);
        self
    }

    /// Called after every step of every batch.
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Called with x̂₀ every `every` steps of each batch and at its last step.
    pub fn previews(mut self, every: usize, f: impl FnMut(Preview<'_, B>) + 'a) -> Self {
        self.previews = Some((every.max(1), Box::new(f)));
        self
    }

    /// Starts the reverse process at timestep `t` (0-based) from the x_t given with
    /// [`Sampling::init_noise`] instead of from x_T: p_θ(x₀ | x_t), as in the paper's Figs. 7
    /// and 8 (Ho et al. 2020, §4.3), where x_t comes from q(x_t | x₀) of real images
    /// (`ddpm_forward::ForwardProcess::q_sample`). The run takes exactly the steps a full run
    /// takes from `t` on ([`StartAt`]); `t` must be one of the sampler's timesteps (all of
    /// 0..T for DDPM).
    pub fn start_at(mut self, t: usize) -> Self {
        self.start_at = Some(t);
        self
    }

    /// Gives every sample the fresh step noise of sample 0 (default: each sample its own
    /// stream, [`step_noise_seed`]). With the same x_t for all samples this makes them
    /// identical; with different x_t it fixes the noise across them, as the paper's
    /// interpolations (Fig. 8: "we fixed the noise for different values of λ").
    pub fn same_step_noise(mut self, on: bool) -> Self {
        self.same_step_noise = on;
        self
    }

    /// Stops the run (with [`PipelineError::Cancelled`]) before the next step once `flag` is
    /// set, e.g. from another thread or a Ctrl-C handler.
    pub fn cancel(mut self, flag: &'a AtomicBool) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Builds the sampler and checks every setting and input for `n` samples, without calling
    /// the model.
    ///
    /// # Errors
    /// [`PipelineError::InvalidArgument`] for n = 0 or a batch size of 0;
    /// [`PipelineError::TooManySamples`] beyond [`MAX_SAMPLE_VALUES`]; sampler errors
    /// naming the setting (steps > T, η < 0, η with a sampler other than DDIM...);
    /// [`PipelineError::OutputChannels`] when the U-Net does not fit the variance type;
    /// [`PipelineError::InputShape`] for x_T or replayed noise of the wrong shape.
    pub fn plan(&self, n: usize) -> Result<Plan, PipelineError> {
        self.build(n).map(|(plan, _)| plan)
    }

    fn build(&self, n: usize) -> Result<(Plan, Box<dyn Sampler<B>>), PipelineError> {
        if n == 0 {
            return Err(PipelineError::InvalidArgument {
                name: "number of samples",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        let batch_size = self.batch_size.unwrap_or(n);
        if batch_size == 0 {
            return Err(PipelineError::InvalidArgument {
                name: "batch size",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        let config = self.pipe.scheduler_config();
        let (kind, sampler) = sampler_from_config::<B>(config, &self.overrides)?;
        let sampler: Box<dyn Sampler<B>> = match self.start_at {
            None => sampler,
            Some(t) => {
                if self.init_noise.is_none() {
                    return Err(PipelineError::InvalidArgument {
                        name: "start timestep",
                        value: t.to_string(),
                        expected: "an x_t to start from, given with init_noise (x_t at t from \
                                   q(x_t | x_0); N(0, I) is x_T's distribution only)",
                    });
                }
                Box::new(StartAt::new::<B>(sampler, t)?)
            }
        };
        let [c, h, w] = self.pipe.sample_shape();
        let factor = sampler.model_channel_factor();
        let out = self.pipe.unet().config().out_channels;
        if out != c * factor {
            return Err(PipelineError::OutputChannels {
                found: out,
                channels: c,
                expected: c * factor,
                sampler: sampler.name(),
                variance_type: config.variance_type.diffusers_name(),
            });
        }
        // In u128: n is any usize, and C·H·W is bounded by the U-Net config's limits (< 2⁶⁴).
        let values = [n, c, h, w].iter().map(|&d| d as u128).product::<u128>();
        if values > MAX_SAMPLE_VALUES as u128 {
            return Err(PipelineError::TooManySamples {
                n,
                sample_shape: [c, h, w],
                values,
                max: MAX_SAMPLE_VALUES,
                max_samples: MAX_SAMPLE_VALUES / (c * h * w).max(1),
            });
        }
        let shape = [n, c, h, w];
        let timesteps = sampler.timesteps().to_vec();
        if let Some(x) = &self.init_noise
            && x.dims() != shape
        {
            return Err(PipelineError::InputShape {
                what: if self.start_at.is_some() {
                    "the start x_t (init noise)"
                } else {
                    "init noise (x_T)"
                },
                found: x.dims().to_vec(),
                expected: shape.to_vec(),
                meaning: "[num_samples, C, H, W] of the model",
            });
        }
        if let Some(z) = &self.noise_replay {
            let expected = vec![timesteps.len(), n, c, h, w];
            if z.dims().to_vec() != expected {
                return Err(PipelineError::InputShape {
                    what: "replayed step noise",
                    found: z.dims().to_vec(),
                    expected,
                    meaning: "[steps, num_samples, C, H, W]",
                });
            }
        }
        let plan = Plan {
            kind,
            sampler_name: sampler.name(),
            timesteps,
            shape,
            batch_size: batch_size.min(n),
        };
        Ok((plan, sampler))
    }

    /// Draws `n` samples and records x̂₀ of all of them at `k` steps spread evenly over the
    /// run, the first and the last included ([`progressive_steps`]): the paper's progressive
    /// generation (Ho et al. 2020, Fig. 6), from the same loop as [`Sampling::sample`] (the
    /// samples are identical). Previews set with [`Sampling::previews`] still run.
    ///
    /// # Errors
    /// As [`Sampling::sample`]; [`PipelineError::InvalidArgument`] unless 1 ≤ k ≤ the number
    /// of steps.
    pub fn sample_progressive(
        mut self,
        n: usize,
        k: usize,
    ) -> Result<Progressive<B>, PipelineError> {
        let plan = self.plan(n)?;
        let num_steps = plan.num_steps();
        let steps = progressive_steps(num_steps, k)?;
        let frames = std::rc::Rc::new(std::cell::RefCell::new(vec![Vec::new(); k]));
        let record = std::rc::Rc::clone(&frames);
        let wanted = steps.clone();
        let mut user = self.previews.take();
        self.previews = Some((
            1,
            Box::new(move |p: Preview<'_, B>| {
                if let Some(col) = wanted.iter().position(|&s| s == p.progress.step) {
                    record.borrow_mut()[col].push(p.pred_x0.clone());
                }
                if let Some((every, f)) = user.as_mut() {
                    let done = p.progress.step + 1;
                    if done.is_multiple_of(*every) || done == num_steps {
                        f(p);
                    }
                }
            }),
        ));
        let samples = self.sample(n)?;
        let frames = std::mem::take(&mut *frames.borrow_mut());
        Ok(Progressive {
            timesteps: steps.iter().map(|&s| plan.timesteps[s]).collect(),
            steps,
            pred_x0: frames.into_iter().map(|b| Tensor::cat(b, 0)).collect(),
            samples,
        })
    }

    /// Draws `n` samples.
    ///
    /// # Errors
    /// As [`Sampling::plan`]; [`PipelineError::NonFiniteInput`] for x_T or replayed noise with
    /// NaN/inf values; [`PipelineError::NonFiniteSamples`] naming the step at which the model
    /// output or the sample went non-finite; [`PipelineError::Cancelled`].
    pub fn sample(mut self, n: usize) -> Result<Samples<B>, PipelineError> {
        let (plan, mut sampler) = self.build(n)?;
        let device = self.pipe.device().clone();
        let x_big_t = match self.init_noise.take() {
            Some(x) => {
                check_finite_input(&x, "init noise (x_T)")?;
                x
            }
            None => NoiseSource::<B>::seeded(self.seed).standard_normal(plan.shape, &device)?,
        };
        if let Some(z) = &self.noise_replay {
            check_finite_input(z, "replayed step noise")?;
        }
        let pipe = self.pipe;
        let unet = pipe.unet();
        let num_steps = plan.num_steps();
        let mut outputs = Vec::with_capacity(plan.num_batches());
        for batch in 0..plan.num_batches() {
            let start = batch * plan.batch_size;
            let b = plan.batch_size.min(n - start);
            if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(PipelineError::Cancelled {
                    step: 1,
                    num_steps,
                    first_sample: start,
                    end_sample: start + b,
                });
            }
            let mut noise = match &self.noise_replay {
                Some(z) => NoiseSource::replay(z.clone().narrow(1, start, b)),
                None if self.same_step_noise => {
                    NoiseSource::per_sample(vec![step_noise_seed(self.seed, 0); b])
                }
                None => NoiseSource::per_sample(
                    (start..start + b).map(|i| step_noise_seed(self.seed, i)),
                ),
            };
            let progress = |step: usize, t: usize| Progress {
                batch,
                num_batches: plan.num_batches(),
                first_sample: start,
                end_sample: start + b,
                step,
                num_steps,
                t,
            };
            // The model and the sample are checked at every step; the first non-finite one
            // stops the loop through `stop` (as does the caller's flag).
            let stop = AtomicBool::new(false);
            let step = Cell::new(0usize);
            let failure: Cell<Option<(&'static str, usize)>> = Cell::new(None);
            let timesteps = &plan.timesteps;
            let model = |x: Tensor<B, 4>, t: Tensor<B, 1, Int>| {
                let k = step.get();
                if k > 0 && failure.get().is_none() && non_finite(&x).is_some() {
                    failure.set(Some(("sample", k - 1)));
                    stop.store(true, Ordering::Relaxed);
                }
                let out = unet.forward(x, t);
                if failure.get().is_none() && non_finite(&out).is_some() {
                    failure.set(Some(("model output", k)));
                    stop.store(true, Ordering::Relaxed);
                }
                out
            };
            let cancel = self.cancel;
            let (on_progress, previews) = (&mut self.on_progress, &mut self.previews);
            let x_t = x_big_t.clone().narrow(0, start, b);
            let result = sample_loop(
                sampler.as_mut(),
                &model,
                x_t,
                &mut noise,
                |p| {
                    let pr = progress(p.step, p.t);
                    step.set(p.step + 1);
                    if let Some(f) = on_progress.as_mut() {
                        f(&pr);
                    }
                    if let Some((every, f)) = previews.as_mut()
                        && ((p.step + 1).is_multiple_of(*every) || p.step + 1 == num_steps)
                    {
                        f(Preview {
                            progress: pr,
                            pred_x0: p.pred_x0,
                        });
                    }
                    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                        stop.store(true, Ordering::Relaxed);
                    }
                },
                Some(&stop),
            );
            let nonfinite = |what: &'static str, k: usize| PipelineError::NonFiniteSamples {
                step: k + 1,
                num_steps,
                t: timesteps[k],
                what,
                first_sample: start,
                end_sample: start + b,
            };
            if let Some((what, k)) = failure.get() {
                return Err(nonfinite(what, k));
            }
            let x0 = match result {
                Ok(x0) => x0,
                Err(SampleError::Cancelled { step, .. }) => {
                    return Err(PipelineError::Cancelled {
                        step: step + 1,
                        num_steps,
                        first_sample: start,
                        end_sample: start + b,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            if non_finite(&x0).is_some() {
                return Err(nonfinite("sample", num_steps - 1));
            }
            outputs.push(x0);
        }
        Ok(Samples::new(Tensor::cat(outputs, 0)))
    }
}
