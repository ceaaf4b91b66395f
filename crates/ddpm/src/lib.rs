//! Denoising Diffusion Probabilistic Models (Ho, Jain & Abbeel 2020, arXiv:2006.11239) on Burn.
//!
//! This facade re-exports the workspace's crates under short names and gathers the everyday
//! types in [`prelude`]:
//!
//! - [`schedule`] (`ddpm-schedule`): β schedules and every derived table in f64, inference
//!   timestep spacing, diffusers' `scheduler_config.json`.
//! - [`forward`] (`ddpm-forward`): q(x_t | x₀) (Eq. 4), the posterior (Eqs. 6–7) and the
//!   ε ↔ x̂₀ ↔ v conversions on any Burn backend.
//! - [`unet`] (`ddpm-unet`): the DDPM U-Net ε_θ(x_t, t) with diffusers checkpoints in and out.
//! - [`loss`] (`ddpm-loss`): L_simple (Eq. 14) with weightings, the variational bound terms
//!   (Eqs. 5, 8, 13) in bits/dim, the hybrid loss, training-timestep distributions, and the bits/dim evaluator.
//! - [`sampler`] (`ddpm-sampler`): DDPM ancestral (Algorithm 2), DDIM, DPM-Solver++(2M), with
//!   any model through the [`sampler::Denoiser`] trait (closures included).
//! - [`data`] (`ddpm-data`): image folders, MNIST/Fashion-MNIST, CIFAR-10; seeded, resumable
//!   batches in [−1, 1].
//! - [`train`] (`ddpm-train`): the paper's training recipe with EMA, atomic checkpoints and
//!   bit-exact resume.
//! - [`pipeline`] (`ddpm-pipeline`): sampling in a few lines — [`pipeline::Pipeline`] loads a
//!   diffusers, native or training-run directory with its noise schedule; samples become
//!   images, grids and files (written atomically).
//!
//! Library code is generic over `B: burn::tensor::backend::Backend`; pick a backend (Flex, wgpu,
//! CUDA) in your binary. [`burn`] itself is re-exported, so a user needs no Burn dependency of
//! their own.
//!
//! # Cargo features
//!
//! | feature | what it enables | what it costs |
//! |---|---|---|
//! | `flex` (default) | Burn's pure-Rust CPU backend and ddpm-unet's fast kernels | burn-flex, gemm, rayon |
//! | `wgpu`, `vulkan`, `metal` | Burn's wgpu backend (any adapter / one API) | wgpu, cubecl |
//! | `cuda` | Burn's CUDA backend (NVRTC at run time, no toolkit to build) | cubecl-cuda |
//! | `autodiff` | `burn::backend::Autodiff` for your own training loops | burn-autodiff |
//! | `train` (default) | [`train`]: the paper's recipe, EMA, checkpoints, resume; implies `data`, `autodiff` | burn-optim, PNG encoder |
//! | `pipeline` (default) | [`pipeline`]: `Pipeline`, model directories, images and files | PNG/JPEG encoders (pure Rust) |
//! | `data` (default) | [`data`]: image folders, MNIST, CIFAR-10 | PNG/JPEG decoders, flate2 |
//! | `pytorch` | reading diffusers' PyTorch `.bin` weights | zip with zstd: a C build (`cc`) |
//!
//! A sampling-only embedder: `ddpm = { version = "0.1", default-features = false, features =
//! ["flex", "pipeline"] }` (or `["wgpu", "pipeline"]`, ...) builds no C code, no trainer and no
//! image decoders; without `pipeline`, no image codecs at all.
//!
//! # Example: sample from a model directory
//! ```no_run
//! use ddpm::burn::backend::Flex;
//! use ddpm::prelude::*;
//!
//! let device = Default::default();
//! let pipe = Pipeline::<Flex>::from_dir("ddpm-cifar10-32", &device)?; // or a run / checkpoint
//! let samples = pipe.sampler(SamplerKind::Ddim).steps(50).seed(0).sample(4)?;
//! samples.save_grid("samples.png")?;
//! # Ok::<(), ddpm::pipeline::PipelineError>(())
//! ```
//!
//! # Example: the forward process
//! ```
//! use ddpm::prelude::*;
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor};
//!
//! let device = Default::default();
//! let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &device);
//! let x0 = Tensor::<Flex, 4>::zeros([1, 1, 4, 4], &device);
//! let eps = Tensor::<Flex, 4>::ones([1, 1, 4, 4], &device);
//! let x_t = fp.q_sample(x0, eps, Tensor::<Flex, 1, Int>::from_ints([999], &device));
//! assert!(x_t.mean().into_scalar() > 0.99);
//! ```
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use burn;
#[cfg(feature = "data")]
#[cfg_attr(docsrs, doc(cfg(feature = "data")))]
pub use ddpm_data as data;
#[cfg(feature = "eval")]
#[cfg_attr(docsrs, doc(cfg(feature = "eval")))]
pub use ddpm_eval as eval;
pub use ddpm_forward as forward;
pub use ddpm_loss as loss;
#[cfg(feature = "pipeline")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
pub use ddpm_pipeline as pipeline;
pub use ddpm_sampler as sampler;
pub use ddpm_schedule as schedule;
#[cfg(feature = "train")]
#[cfg_attr(docsrs, doc(cfg(feature = "train")))]
pub use ddpm_train as train;
pub use ddpm_unet as unet;

/// The types most programs need.
pub mod prelude {
    #[cfg(feature = "data")]
    pub use ddpm_data::{BatchIterConfig, DataSpec, Dataset, ImageSize, LoadOptions};
    pub use ddpm_forward::{ForwardProcess, NoiseLevel, Posterior};
    pub use ddpm_loss::{
        BpdConfig, LossWeighting, Objective, SimpleLossConfig, TrainingLossConfig, VlbConfig,
    };
    #[cfg(feature = "pipeline")]
    pub use ddpm_pipeline::{ModelDir, Pipeline, SamplerKind, Samples, Weights};
    pub use ddpm_sampler::{
        DdimSamplerConfig, DdpmSamplerConfig, Denoiser, DpmSolverConfig, NoiseSource, Sampler,
        sample_loop,
    };
    pub use ddpm_schedule::{
        BetaSchedule, NoiseSchedule, NoiseScheduleConfig, PredictionType, SamplingConfig,
        TimestepSpacing, VarianceType, inference_timesteps,
    };
    #[cfg(feature = "train")]
    pub use ddpm_train::{TrainConfig, Trainer};
    pub use ddpm_unet::{Unet, UnetConfig};
}

/// README.md's code blocks, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// This crate's README.md (the crates.io page), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadmeDoctests;
