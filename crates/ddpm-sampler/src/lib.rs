//! Reverse-process samplers for diffusion models, on any Burn backend and with any model.
//!
//! - [`DdpmSampler`]: ancestral sampling, Ho, Jain & Abbeel 2020 (arXiv:2006.11239v2), Eq. 1,
//!   Eq. 11 and Algorithm 2; variances `fixed_small`, `fixed_large`, `learned`,
//!   `learned_range`; ε / x₀ / v prediction; strided subsequences.
//! - [`DdimSampler`]: Song, Meng & Ermon 2021 (arXiv:2010.02502v4), Eq. 12 with η; and
//!   [`DdimInversion`] (x₀ → x_T, η = 0).
//! - [`DpmSolver`]: DPM-Solver++ (first order or 2M), Lu et al. 2022 (arXiv:2211.01095v2),
//!   Algorithm 2, step for step as diffusers' `DPMSolverMultistepScheduler`.
//! - [`sampler_from_config`]: the sampler a diffusers `scheduler_config.json`
//!   ([`ddpm_schedule::SamplingConfig`]) asks for, with [`SamplerOverrides`] (kind, steps, η,
//!   spacing) on top: every key honoured, nothing copied by hand.
//! - [`StartAt`]: any sampler run from an intermediate x_t (p_θ(x₀ | x_t), the paper's
//!   Figs. 7 and 8).
//! - x̂₀ clipping and dynamic thresholding (Saharia et al. 2022, arXiv:2205.11487v1):
//!   [`X0ProcessingConfig`].
//!
//! A model is anything implementing [`Denoiser`] — closures do — and every sampler implements
//! [`Sampler`]; [`sample_loop`] drives one with a progress callback and cancellation.
//! Randomness enters only through a [`NoiseSource`] the caller owns: a seeded host RNG (same
//! seed, same samples on every backend), the device RNG, or recorded noise to replay another
//! implementation's run. Per-step coefficients are `f64` numbers computed on the host from the
//! [`ddpm_schedule::NoiseSchedule`]; the ε ↔ x̂₀ ↔ v conversions are `ddpm-forward`'s.
//!
//! Timesteps are 0-based as in diffusers: timestep `i` is the paper's t = i + 1.
//!
//! # Example
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor};
//! use ddpm_sampler::{DdimSamplerConfig, NoiseSource, Sampler, sample_loop};
//! use ddpm_schedule::NoiseSchedule;
//!
//! let device = Default::default();
//! let schedule = NoiseSchedule::paper();
//! let mut sampler = DdimSamplerConfig::new().with_num_inference_steps(10).init(&schedule)?;
//! // Any network fits: here a closure standing in for `|x, t| unet.forward(x, t)`.
//! let model = |x: Tensor<Flex, 4>, _t: Tensor<Flex, 1, Int>| x.mul_scalar(0.1);
//! let mut noise = NoiseSource::<Flex>::seeded(42);
//! let x_t = noise.standard_normal([2, 3, 8, 8], &device)?;
//! let x_0 = sample_loop(&mut sampler, &model, x_t, &mut noise, |p| {
//!     println!("step {}/{} (t = {})", p.step + 1, p.num_steps, p.t);
//! }, None)?;
//! assert_eq!(x_0.dims(), [2, 3, 8, 8]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod ddim;
mod ddim_inversion;
mod ddpm;
mod denoiser;
mod dpm_solver;
mod error;
mod from_config;
mod noise;
mod postprocess;
mod sample_loop;
mod sampler;
mod start_at;

pub use ddim::{DdimSampler, DdimSamplerConfig, DdimTimestepMode};
pub use ddim_inversion::DdimInversion;
pub use ddpm::{DdpmSampler, DdpmSamplerConfig};
pub use denoiser::Denoiser;
pub use dpm_solver::{DpmSolver, DpmSolverConfig, DpmSolverTimesteps};
pub use error::{SampleError, SamplerError};
pub use from_config::{SamplerKind, SamplerOverrides, sampler_from_config};
pub use noise::NoiseSource;
pub use postprocess::X0ProcessingConfig;
pub use sample_loop::{StepProgress, sample_loop};
pub use sampler::{Sampler, StepOutput};
pub use start_at::StartAt;
