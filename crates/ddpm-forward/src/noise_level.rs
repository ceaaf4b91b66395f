//! One noise level ᾱ and the conversions between ε, x₀, v and x_t at that level.
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eq. 4 and the x₀ ← ε inversion below Eq. 11;
//! v-parameterization from Salimans & Ho 2022 (arXiv:2202.00512, §4). These are the only
//! implementations of these formulas in the workspace: losses and samplers call them.

use burn::tensor::{Tensor, backend::Backend};
use ddpm_schedule::PredictionType;

use crate::Coef;

/// √ᾱ and √(1 − ᾱ) at one noise level, per batch or per sample.
///
/// # Shapes
/// Every tensor argument is `[batch, …]` with `D` dimensions; per-sample coefficients are
/// `[batch, 1, …, 1]`.
#[derive(Debug, Clone)]
pub struct NoiseLevel<B: Backend, const D: usize> {
    /// √ᾱ_t, the signal scale.
    pub sqrt_alpha_bar: Coef<B, D>,
    /// √(1 − ᾱ_t), the noise scale.
    pub sqrt_one_minus_alpha_bar: Coef<B, D>,
}

impl<B: Backend, const D: usize> NoiseLevel<B, D> {
    /// The level ᾱ, the same for the whole batch.
    pub fn from_alpha_bar(alpha_bar: f64) -> Self {
        Self {
            sqrt_alpha_bar: Coef::Scalar(alpha_bar.sqrt()),
            sqrt_one_minus_alpha_bar: Coef::Scalar((1.0 - alpha_bar).sqrt()),
        }
    }

    /// x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε   (Ho et al. 2020, Eq. 4)
    #[doc(alias = "add_noise")]
    pub fn q_sample(&self, x_0: Tensor<B, D>, eps: Tensor<B, D>) -> Tensor<B, D> {
        self.sqrt_alpha_bar.mul(x_0) + self.sqrt_one_minus_alpha_bar.mul(eps)
    }

    /// x̂₀ = (x_t − √(1 − ᾱ_t) · ε) / √ᾱ_t   (Eq. 4 solved for x₀)
    pub fn x0_from_eps(&self, x_t: Tensor<B, D>, eps: Tensor<B, D>) -> Tensor<B, D> {
        self.sqrt_alpha_bar
            .div_into(x_t - self.sqrt_one_minus_alpha_bar.mul(eps))
    }

    /// ε̂ = (x_t − √ᾱ_t · x₀) / √(1 − ᾱ_t)   (Eq. 4 solved for ε)
    pub fn eps_from_x0(&self, x_t: Tensor<B, D>, x_0: Tensor<B, D>) -> Tensor<B, D> {
        self.sqrt_one_minus_alpha_bar
            .div_into(x_t - self.sqrt_alpha_bar.mul(x_0))
    }

    /// v = √ᾱ_t · ε − √(1 − ᾱ_t) · x₀   (Salimans & Ho 2022)
    #[doc(alias = "get_velocity")]
    pub fn velocity(&self, x_0: Tensor<B, D>, eps: Tensor<B, D>) -> Tensor<B, D> {
        self.sqrt_alpha_bar.mul(eps) - self.sqrt_one_minus_alpha_bar.mul(x_0)
    }

    /// x̂₀ = √ᾱ_t · x_t − √(1 − ᾱ_t) · v
    pub fn x0_from_v(&self, x_t: Tensor<B, D>, v: Tensor<B, D>) -> Tensor<B, D> {
        self.sqrt_alpha_bar.mul(x_t) - self.sqrt_one_minus_alpha_bar.mul(v)
    }

    /// ε̂ = √ᾱ_t · v + √(1 − ᾱ_t) · x_t
    pub fn eps_from_v(&self, x_t: Tensor<B, D>, v: Tensor<B, D>) -> Tensor<B, D> {
        self.sqrt_alpha_bar.mul(v) + self.sqrt_one_minus_alpha_bar.mul(x_t)
    }

    /// x̂₀ implied by a model output of the given parameterization.
    pub fn x0_from_prediction(
        &self,
        prediction_type: PredictionType,
        x_t: Tensor<B, D>,
        model_output: Tensor<B, D>,
    ) -> Tensor<B, D> {
        match prediction_type {
            PredictionType::Epsilon => self.x0_from_eps(x_t, model_output),
            PredictionType::Sample => model_output,
            PredictionType::VPrediction => self.x0_from_v(x_t, model_output),
        }
    }

    /// ε̂ implied by a model output of the given parameterization.
    pub fn eps_from_prediction(
        &self,
        prediction_type: PredictionType,
        x_t: Tensor<B, D>,
        model_output: Tensor<B, D>,
    ) -> Tensor<B, D> {
        match prediction_type {
            PredictionType::Epsilon => model_output,
            PredictionType::Sample => self.eps_from_x0(x_t, model_output),
            PredictionType::VPrediction => self.eps_from_v(x_t, model_output),
        }
    }

    /// The training target of a parameterization: ε, x₀ or v.
    pub fn target(
        &self,
        prediction_type: PredictionType,
        x_0: Tensor<B, D>,
        eps: Tensor<B, D>,
    ) -> Tensor<B, D> {
        match prediction_type {
            PredictionType::Epsilon => eps,
            PredictionType::Sample => x_0,
            PredictionType::VPrediction => self.velocity(x_0, eps),
        }
    }
}
