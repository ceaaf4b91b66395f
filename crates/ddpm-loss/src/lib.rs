//! Training objectives and likelihood evaluation for Denoising Diffusion Probabilistic Models,
//! on any Burn backend.
//!
//! Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239v2):
//!
//! - [`SimpleLoss`]: L_simple (Eq. 14) for ε, x₀, v and μ̃ targets, with [`LossWeighting`]
//!   none, min-SNR-γ (Hang et al. 2023, arXiv:2303.09556) or the true bound's weight (Eq. 12).
//! - [`TrainingLoss`]: a training step's loss for any [`Objective`] — L_simple, the true bound
//!   (Eq. 5, per sample) or the hybrid — with any prediction and variance type: the rows of the
//!   paper's Table 2.
//! - [`VariationalBound`]: the bound of Eqs. 3 and 5 in bits/dim: the prior L_T, the KL terms
//!   L_{t−1} against the posterior (Eqs. 6–7, log β̃ clipped) and the discretized decoder L_0
//!   (Eq. 13), built from [`normal_kl`], [`approx_standard_normal_cdf`] and
//!   [`discretized_gaussian_log_likelihood`]; model outputs are read by [`p_mean_variance`]
//!   for any [`Parameterization`], learned variances included (Nichol & Dhariwal 2021,
//!   arXiv:2102.09672, Eq. 15).
//! - [`HybridLoss`]: L_simple + λ · L_vlb with a stop-gradient on the mean (Nichol & Dhariwal
//!   2021, Eq. 16).
//! - [`UniformTimesteps`] and [`LossSecondMomentTimesteps`]: training-timestep distributions
//!   ([`TimestepDistribution`]; Nichol & Dhariwal 2021, Eq. 17), seeded by the caller's RNG.
//! - [`BpdEvaluator`]: bits/dim of data (the original `calc_bpd_loop`) over all T timesteps or
//!   an unbiased stratified subsample, with per-term breakdown.
//!   [`BpdOutput::rate_distortion`] reads the rate–distortion curve of progressive coding off
//!   it (§4.3, Fig. 5, Table 4).
//!
//! Timesteps are 0-based as in diffusers and `ddpm-forward`: index t is the paper's t + 1. The
//! ε ↔ x₀ ↔ v conversions and the posterior come from [`ddpm_forward`]; nothing here
//! re-derives them. Losses take model outputs (or a model closure), never a network type.
//!
//! # Example
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Distribution, Tensor};
//! use ddpm_forward::ForwardProcess;
//! use ddpm_loss::{SimpleLossConfig, TimestepDistribution, UniformTimesteps};
//! use ddpm_schedule::NoiseSchedule;
//! use rand::SeedableRng;
//!
//! let device = Default::default();
//! let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &device);
//! let loss = SimpleLossConfig::new().init(&fp)?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let draw = UniformTimesteps::new(1000)?.draw(4, &mut rng);
//! let x0 = Tensor::<Flex, 4>::random([4, 1, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
//! let eps = Tensor::<Flex, 4>::random([4, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
//! let model = |x_t: Tensor<Flex, 4>, _t| x_t.mul_scalar(0.5); // stands in for a U-Net
//! let per_sample = loss.forward_with(model, x0, eps, draw.timesteps_tensor(&device));
//! let l = per_sample.mean().into_scalar();
//! assert!(l.is_finite() && l > 0.0);
//! # Ok::<(), ddpm_loss::LossError>(())
//! ```
#![warn(missing_docs)]

mod bpd;
mod error;
mod gaussian;
mod hybrid;
mod model_output;
mod objective;
mod rate_distortion;
mod simple;
mod timestep_distribution;
mod vlb;

pub use bpd::{BpdConfig, BpdEvaluator, BpdOutput, BpdTerm, BpdTimesteps};
pub use error::LossError;
pub use gaussian::{
    BIN_HALF_WIDTH, EDGE_THRESHOLD, MIN_PROB, NATS_PER_BIT, approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood, mean_flat, normal_kl,
};
pub use hybrid::{HybridLoss, HybridLossConfig, HybridLossOutput};
pub use model_output::{PMeanVariance, Parameterization, p_mean_variance};
pub use objective::{Objective, TrainingLoss, TrainingLossConfig};
pub use rate_distortion::RateDistortionPoint;
pub use simple::{LossWeighting, SimpleLoss, SimpleLossConfig};
pub use timestep_distribution::{
    LossSecondMomentTimesteps, TimestepDistribution, TimestepDraw, UniformTimesteps,
};
pub use vlb::{VariationalBound, VlbConfig, VlbTerms, check_data_range};
