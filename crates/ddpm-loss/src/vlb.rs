//! The variational bound in bits/dim: the prior term L_T and the per-timestep terms L_{t−1}
//! (KL against the posterior) and L_0 (the discretized decoder).
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eqs. 3, 5 and 13; the original code's `_prior_bpd` and
//! `_vb_terms_bpd` (`diffusion_tf/diffusion_utils_2.py`, `improved_diffusion/gaussian_diffusion.py`).
//! Bits/dim = (mean over dimensions of the term in nats) / ln 2.

use burn::config::Config;
use burn::tensor::{ElementConversion, Int, Tensor, backend::Backend};
use ddpm_forward::ForwardProcess;
use ddpm_schedule::{PredictionType, VarianceType};

use crate::gaussian::{NATS_PER_BIT, discretized_gaussian_log_likelihood, mean_flat, normal_kl};
use crate::{LossError, PMeanVariance, Parameterization, p_mean_variance};

/// Configuration of a [`VariationalBound`].
#[derive(Config, Debug)]
pub struct VlbConfig {
    /// What the model predicts. Default: ε (Ho et al. 2020).
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// Σ_θ. Default: fixed small (σ_t² = β̃_t), diffusers' default.
    #[config(default = "VarianceType::FixedSmall")]
    pub variance_type: VarianceType,
    /// Clip x̂₀ to [−1, 1] before forming μ_θ. Default: false, as the original code's training
    /// loss; its likelihood evaluation (`calc_bpd_loop`) clips, see
    /// [`BpdConfig`](crate::BpdConfig).
    #[config(default = false)]
    pub clip_denoised: bool,
}

impl VlbConfig {
    /// Builds the bound on `forward`'s schedule and device.
    pub fn init<B: Backend>(&self, forward: &ForwardProcess<B>) -> VariationalBound<B> {
        VariationalBound {
            forward: forward.clone(),
            parameterization: Parameterization::new(self.prediction_type, self.variance_type),
            clip_denoised: self.clip_denoised,
        }
    }
}

/// The per-timestep terms of the bound for a batch, each `[batch]` in bits/dim.
#[derive(Debug, Clone)]
pub struct VlbTerms<B: Backend, const D: usize> {
    /// KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t)) (Eq. 5's L_{t−1}).
    pub kl: Tensor<B, 1>,
    /// −log p_θ(x₀ | x₁) under the discretized decoder (Eqs. 5, 13's L_0), evaluated at the
    /// sample's own t (meaningful at t = 0).
    pub decoder_nll: Tensor<B, 1>,
    /// The bound's term: `decoder_nll` where t = 0, `kl` elsewhere.
    pub term: Tensor<B, 1>,
    /// The model's reverse step (x̂₀, μ_θ, log σ²).
    pub p: PMeanVariance<B, D>,
}

/// The variational bound of Ho et al. 2020, Eq. 5, term by term, for one model
/// parameterization.
///
/// L = L_T + Σ_{t>1} L_{t−1} + L_0, with L_T = KL(q(x_T | x₀) ‖ N(0, I)),
/// L_{t−1} = KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t)), L_0 = −log p_θ(x₀ | x₁).
///
/// # Example
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{Distribution, Int, Tensor};
/// use ddpm_forward::ForwardProcess;
/// use ddpm_loss::VlbConfig;
/// use ddpm_schedule::NoiseSchedule;
///
/// let device = Default::default();
/// let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &device);
/// let vlb = VlbConfig::new().init(&fp);
/// let x0 = Tensor::<Flex, 4>::random([2, 1, 4, 4], Distribution::Uniform(-1.0, 1.0), &device);
/// let eps = Tensor::<Flex, 4>::random([2, 1, 4, 4], Distribution::Normal(0.0, 1.0), &device);
/// let t = Tensor::<Flex, 1, Int>::from_ints([0, 500], &device);
/// let x_t = fp.q_sample(x0.clone(), eps.clone(), t.clone());
/// // A perfect ε-model: the KL terms are (nearly) zero.
/// let terms = vlb.terms(eps, x0, x_t, t);
/// assert!(terms.kl.into_data().to_vec::<f32>().unwrap()[1] < 1e-3);
/// ```
#[derive(Debug, Clone)]
pub struct VariationalBound<B: Backend> {
    forward: ForwardProcess<B>,
    parameterization: Parameterization,
    clip_denoised: bool,
}

impl<B: Backend> VariationalBound<B> {
    /// The forward process (schedule tables on the device).
    pub fn forward_process(&self) -> &ForwardProcess<B> {
        &self.forward
    }

    /// How model outputs are read.
    pub fn parameterization(&self) -> Parameterization {
        self.parameterization
    }

    /// Whether x̂₀ is clipped to [−1, 1].
    pub fn clip_denoised(&self) -> bool {
        self.clip_denoised
    }

    /// The same bound with x̂₀ clipping switched on or off.
    pub fn with_clip_denoised(mut self, clip_denoised: bool) -> Self {
        self.clip_denoised = clip_denoised;
        self
    }

    /// L_T = KL(q(x_T | x₀) ‖ N(0, I)) in bits/dim, per sample   (Ho et al. 2020, Eq. 5)
    ///
    /// q(x_T | x₀) = N(√ᾱ_T · x₀, (1 − ᾱ_T) I), so per dimension
    /// KL = ½ · (ᾱ_T · x₀² + (1 − ᾱ_T) − 1 − log(1 − ᾱ_T)).
    ///
    /// NOTE: the x₀-independent part −ᾱ_T − log(1 − ᾱ_T) is computed on the host in `f64`
    /// (`ln_1p`): written as `normal_kl` it cancels to ~1e-9 and float32 would lose it.
    ///
    /// # Shapes
    /// `x_0`: `[batch, …]` → `[batch]`.
    pub fn prior_bpd<const D: usize>(&self, x_0: Tensor<B, D>) -> Tensor<B, 1> {
        let schedule = self.forward.schedule();
        let alpha_bar_t = schedule.alpha_bar()[schedule.num_train_timesteps() - 1];
        let variance_part = -alpha_bar_t - (-alpha_bar_t).ln_1p();
        mean_flat(x_0.powi_scalar(2))
            .mul_scalar(alpha_bar_t)
            .add_scalar(variance_part)
            .mul_scalar(0.5 / NATS_PER_BIT)
    }

    /// p_θ(x_{t−1} | x_t) from a model output; see [`p_mean_variance`].
    pub fn p_mean_variance<const D: usize>(
        &self,
        model_output: Tensor<B, D>,
        x_t: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> PMeanVariance<B, D> {
        p_mean_variance(
            &self.forward,
            self.parameterization,
            model_output,
            x_t,
            t,
            self.clip_denoised,
        )
    }

    /// The bound's term at each sample's t, in bits/dim (the original `_vb_terms_bpd`):
    ///
    /// - t > 0 (paper t > 1): L_{t−1} = KL(N(μ̃_t, β̃_t) ‖ N(μ_θ, σ_t²)) with log β̃ clipped
    ///   (Eq. 5, Eq. 8 before dropping the constant);
    /// - t = 0 (paper t = 1): L_0 = −log p_θ(x₀ | x₁), the discretized decoder of Eq. 13 with
    ///   log scale ½ · log σ₁².
    ///
    /// # Shapes
    /// `model_output`: `[batch, C or 2·C, …]`; `x_0`, `x_t`: `[batch, C, …]`; `t`: `[batch]`.
    ///
    /// # Panics
    /// If shapes disagree or the output's channels do not fit the variance type. Data outside
    /// [−1, 1] is not checked here; see [`check_data_range`](crate::check_data_range).
    pub fn terms<const D: usize>(
        &self,
        model_output: Tensor<B, D>,
        x_0: Tensor<B, D>,
        x_t: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> VlbTerms<B, D> {
        assert_eq!(
            x_0.dims(),
            x_t.dims(),
            "vlb terms: x_0 and x_t have different shapes"
        );
        let posterior = self
            .forward
            .q_posterior(x_0.clone(), x_t.clone(), t.clone());
        let p = self.p_mean_variance(model_output, x_t, t.clone());
        let kl = normal_kl(
            posterior.mean,
            posterior.log_variance,
            p.mean.clone(),
            p.log_variance.clone(),
        );
        let kl = mean_flat(kl).div_scalar(NATS_PER_BIT);
        let log_scales = p.log_variance.clone().mul_scalar(0.5);
        let decoder_nll = mean_flat(discretized_gaussian_log_likelihood(
            x_0,
            p.mean.clone(),
            log_scales,
        ))
        .div_scalar(-NATS_PER_BIT);
        let term = kl.clone().mask_where(t.equal_elem(0), decoder_nll.clone());
        VlbTerms {
            kl,
            decoder_nll,
            term,
            p,
        }
    }
}

/// Checks that data lies in [−1, 1], as the discretized decoder (Eq. 13) requires. Reads two
/// scalars back from the device: call it once per batch, not in a hot loop.
///
/// # Errors
/// [`LossError::DataOutOfRange`] with the range found (also for NaN).
pub fn check_data_range<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Result<(), LossError> {
    let min: f64 = x.clone().min().into_scalar().elem();
    let max: f64 = x.clone().max().into_scalar().elem();
    // Allow float rounding of x/127.5 − 1.
    let tol = 1e-6;
    if min >= -1.0 - tol && max <= 1.0 + tol {
        Ok(())
    } else {
        Err(LossError::DataOutOfRange { min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;
    use ddpm_schedule::NoiseSchedule;

    type B = Flex;

    #[test]
    fn data_range_is_checked() {
        let device = Default::default();
        let ok = Tensor::<B, 4>::random([2, 1, 3, 3], Distribution::Uniform(-1.0, 1.0), &device);
        assert!(check_data_range(&ok).is_ok());
        let bad = ok.mul_scalar(255.0).add_scalar(255.0);
        let err = check_data_range(&bad).unwrap_err().to_string();
        assert!(err.contains("[-1, 1]"), "{err}");
    }

    #[test]
    fn perfect_model_has_small_terms_and_prior_is_tiny() {
        let device = Default::default();
        let fp = ForwardProcess::<B>::new(&NoiseSchedule::paper(), &device);
        let vlb = VlbConfig::new().init(&fp);
        let x0 = Tensor::<B, 4>::random([3, 1, 4, 4], Distribution::Uniform(-1.0, 1.0), &device);
        let eps = Tensor::<B, 4>::random([3, 1, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<B, 1, Int>::from_ints([1, 200, 999], &device);
        let x_t = fp.q_sample(x0.clone(), eps.clone(), t.clone());
        let kl = vlb.terms(eps, x0.clone(), x_t, t).term;
        assert!(kl.abs().max().into_scalar() < 1e-3);
        let prior = vlb.prior_bpd(x0).into_data().to_vec::<f32>().unwrap();
        assert!(prior.iter().all(|&p| p > 0.0 && p < 1e-4), "{prior:?}");
    }
}
