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
//!
//! Library code is generic over `B: burn::tensor::backend::Backend`; pick a backend (Flex, wgpu,
//! CUDA) in your binary.
//!
//! # Example
//! ```
//! use ddpm::prelude::*;
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor};
//!
//! let device = Default::default();
//! let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &device);
//! let x0 = Tensor::<Flex, 4>::zeros([1, 1, 4, 4], &device);
//! let eps = Tensor::<Flex, 4>::ones([1, 1, 4, 4], &device);
//! let x_t = fp.q_sample(x0, Tensor::<Flex, 1, Int>::from_ints([999], &device), eps);
//! assert!(x_t.mean().into_scalar() > 0.99);
//! ```
#![warn(missing_docs)]

pub use ddpm_data as data;
pub use ddpm_forward as forward;
pub use ddpm_loss as loss;
pub use ddpm_sampler as sampler;
pub use ddpm_schedule as schedule;
pub use ddpm_train as train;
pub use ddpm_unet as unet;

/// The types most programs need.
pub mod prelude {
    pub use ddpm_data::{BatchIterConfig, DataSpec, Dataset, ImageSize, LoadOptions};
    pub use ddpm_forward::{ForwardProcess, NoiseLevel, Posterior};
    pub use ddpm_loss::{BpdConfig, LossWeighting, SimpleLossConfig, VlbConfig};
    pub use ddpm_sampler::{
        DdimSamplerConfig, DdpmSamplerConfig, Denoiser, DpmSolverConfig, NoiseSource, Sampler,
        sample_loop,
    };
    pub use ddpm_schedule::{
        BetaSchedule, NoiseSchedule, NoiseScheduleConfig, PredictionType, SamplingConfig,
        TimestepSpacing, VarianceType, inference_timesteps,
    };
    pub use ddpm_train::{TrainConfig, Trainer, Weights};
    pub use ddpm_unet::{Unet, UnetConfig};
}

/// README.md's code blocks, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
