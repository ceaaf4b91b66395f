//! Sampling a trained DDPM (Ho, Jain & Abbeel 2020, arXiv:2006.11239v2, Algorithm 2) in a few
//! lines: what `ddpm sample` does, as a library.
//!
//! - [`ModelDir`]: the one resolver of model paths — diffusers pipeline and `UNet2DModel`
//!   directories, native checkpoints, `ddpm train` runs and their checkpoints — each with the
//!   noise schedule it was trained with; [`layout`] owns the file names of every layout
//!   (`ddpm-train` writes runs with them).
//! - [`Pipeline`]: a U-Net, its scheduler settings and a device; [`Pipeline::sampler`] /
//!   [`Pipeline::sampling`] start a [`Sampling`] builder (sampler kind, steps, η, seed, batch
//!   size, x_T, replayed noise, progress, x̂₀ previews, cancellation) whose
//!   [`Sampling::sample`] returns [`Samples`]. A seed gives the same samples on every backend
//!   and at every batch size; non-finite values stop the run, naming the step.
//! - [`images`]: samples → 8-bit images (diffusers' scaling), grids, PNG/JPEG files; every file
//!   is written atomically through [`ddpm_io`], so a full disk never leaves a truncated file or
//!   destroys the previous one.
//! - [`tensor_file`]: x_T, per-step noise and raw samples as safetensors files.
//! - [`experiments`]: the paper's progressive generation (Fig. 6), samples sharing a latent
//!   (Fig. 7) and interpolation (Fig. 8); [`Sampling::start_at`] runs any sampler from a given
//!   x_t.
//!
//! # Example
//! ```no_run
//! use burn::backend::Flex;
//! use ddpm_pipeline::{Pipeline, SamplerKind};
//!
//! let device = Default::default();
//! let pipe = Pipeline::<Flex>::from_dir("ddpm-cifar10-32", &device)?; // or a run / checkpoint
//! let samples = pipe.sampler(SamplerKind::Ddim).steps(50).seed(0).sample(4)?;
//! samples.save_grid("samples.png")?; // also .to_images(), .save_each(dir), .tensor()
//! # Ok::<(), ddpm_pipeline::PipelineError>(())
//! ```
#![warn(missing_docs)]

mod error;
pub mod experiments;
pub mod images;
pub mod layout;
mod pipeline;
mod samples;
mod sampling;
pub mod tensor_file;

pub use ddpm_sampler::{SamplerKind, SamplerOverrides};
pub use error::PipelineError;
pub use layout::{ModelDir, ModelLayout, Weights};
pub use pipeline::{Pipeline, SchedulerSource};
pub use samples::{SAMPLES_KEY, Samples};
pub use sampling::{MAX_SAMPLE_VALUES, Plan, Preview, Progress, Sampling, step_noise_seed};
