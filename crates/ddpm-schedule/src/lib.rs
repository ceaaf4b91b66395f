//! Noise schedules for Denoising Diffusion Probabilistic Models.
//!
//! Implements the fixed forward-process variances β₁..β_T of Ho, Jain & Abbeel,
//! "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239v2, §2 and §4) and every table
//! derived from them (ᾱ, posterior variance and mean coefficients of Eqs. 6–7, SNR), all in
//! `f64` on the host; plus the β shapes diffusers offers, zero-terminal-SNR rescaling, the
//! inference timestep spacings, and diffusers' `scheduler_config.json`.
//!
//! Tables are indexed 0..T−1 as in diffusers: entry `i` is "timestep i", the paper's t = i + 1.
//! This crate needs no tensor library; `ddpm-forward` uploads the tables to a Burn device.
//!
//! # Example
//! ```
//! use ddpm_schedule::{NoiseSchedule, NoiseScheduleConfig, TimestepSpacing, inference_timesteps};
//!
//! let schedule = NoiseSchedule::new(&NoiseScheduleConfig::default())?; // T = 1000, linear β
//! assert_eq!(schedule.betas()[0], 1e-4);
//! assert!(schedule.alpha_bar()[999] < 5e-5);
//! let ts = inference_timesteps(1000, 50, TimestepSpacing::Leading, 1)?;
//! assert_eq!(&ts[..3], &[981, 961, 941]);
//! # Ok::<(), ddpm_schedule::ScheduleError>(())
//! ```
#![warn(missing_docs)]

mod beta_schedule;
mod diffusers;
mod error;
mod noise_schedule;
mod parameterization;
mod timesteps;

pub use beta_schedule::{
    BetaSchedule, MAX_TRAIN_TIMESTEPS, rescale_zero_terminal_snr, validate_betas,
};
pub use diffusers::{
    DiffusersSchedulerConfig, FinalSigmasType, LoadedSamplingConfig, SamplingConfig,
    SchedulerClass, SolverType,
};
pub use error::ScheduleError;
pub use noise_schedule::{
    NoiseSchedule, NoiseScheduleConfig, PosteriorCoefficients, ReverseStepCoefficients,
    ZERO_SNR_ALPHA_BAR_T,
};
pub use parameterization::{PredictionType, VarianceType};
pub use timesteps::{TimestepSpacing, custom_timesteps, dpm_solver_timesteps, inference_timesteps};
