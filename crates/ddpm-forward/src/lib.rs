//! The DDPM forward process on any Burn backend.
//!
//! Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239v2):
//! q(x_t | x₀) (Eq. 4), the posterior q(x_{t−1} | x_t, x₀) (Eqs. 6–7), and the conversions
//! between the ε, x₀ and v parameterizations; and [`p_mean_variance`], the reverse step
//! p_θ(x_{t−1} | x_t) a model output implies (every prediction and variance type), which both
//! the DDPM sampler and the variational bound call. [`ForwardProcess`] uploads a
//! [`ddpm_schedule::NoiseSchedule`] once per device and works with one timestep per sample
//! (training, likelihood); [`NoiseLevel`] holds one level for a whole batch (samplers).
//! Timesteps are 0-based as in diffusers: index `i` is the paper's t = i + 1.
//!
//! # Example
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Distribution, Int, Tensor};
//! use ddpm_forward::ForwardProcess;
//! use ddpm_schedule::NoiseSchedule;
//!
//! let device = Default::default();
//! let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &device);
//! let x0 = Tensor::<Flex, 4>::random([4, 3, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
//! let eps = Tensor::<Flex, 4>::random([4, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
//! let t = Tensor::<Flex, 1, Int>::from_ints([0, 10, 500, 999], &device);
//! let x_t = fp.q_sample(x0.clone(), eps.clone(), t.clone());
//! let x0_hat = fp.predict_x0_from_eps(x_t, eps, t);
//! assert!((x0_hat - x0).abs().max().into_scalar() < 1e-2);
//! ```
#![warn(missing_docs)]

mod coef;
mod forward_process;
mod noise_level;
mod p_mean_variance;

pub use coef::Coef;
pub use forward_process::{ForwardProcess, Posterior, Table};
pub use noise_level::NoiseLevel;
pub use p_mean_variance::{
    PMeanVariance, ReverseCoefficients, p_mean_variance, posterior_mean, split_model_output,
};
