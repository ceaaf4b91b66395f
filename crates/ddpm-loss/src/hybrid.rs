//! The hybrid objective for models that learn their variance: L_hybrid = L_simple + λ · L_vlb,
//! with L_vlb's gradient stopped through the mean.
//!
//! Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models"
//! (arXiv:2102.09672v1), §3.1 and Eq. 16; `improved_diffusion/gaussian_diffusion.py`
//! (`training_losses` with `learn_sigma` and `rescale_learned_sigmas`).

use burn::config::Config;
use burn::tensor::{Int, Tensor, backend::Backend};
use ddpm_forward::ForwardProcess;
use ddpm_schedule::{PredictionType, VarianceType};

use crate::{
    LossError, Parameterization, SimpleLoss, SimpleLossConfig, VariationalBound, VlbConfig,
};

/// Configuration of [`HybridLoss`].
#[derive(Config, Debug)]
pub struct HybridLossConfig {
    /// λ, the weight of L_vlb (Nichol & Dhariwal 2021: 0.001).
    #[config(default = 0.001)]
    pub lambda: f64,
    /// Target of the first C output channels. Default: ε.
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// How the last C output channels give Σ_θ: learned or learned range. Default: learned
    /// range (Nichol & Dhariwal 2021, Eq. 15).
    #[config(default = "VarianceType::LearnedRange")]
    pub variance_type: VarianceType,
}

impl HybridLossConfig {
    pub(crate) fn check(&self) -> Result<(), LossError> {
        if !self.variance_type.is_learned() {
            return Err(LossError::VarianceType {
                what: "the hybrid loss",
                expected: "learned or learned_range (2·C output channels)",
                actual: self.variance_type.diffusers_name(),
            });
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(LossError::InvalidParameter {
                field: "lambda",
                value: self.lambda,
                expected: "a finite lambda >= 0 (Nichol & Dhariwal: 0.001)",
            });
        }
        Ok(())
    }

    /// Validates the config and builds the loss on `forward`'s schedule and device.
    ///
    /// # Errors
    /// [`LossError::VarianceType`] for a fixed variance type; [`LossError::InvalidParameter`]
    /// for λ < 0 or non-finite.
    pub fn init<B: Backend>(
        &self,
        forward: &ForwardProcess<B>,
    ) -> Result<HybridLoss<B>, LossError> {
        self.check()?;
        let simple = SimpleLossConfig::new()
            .with_prediction_type(self.prediction_type)
            .init(forward)?;
        let vlb = VlbConfig::new()
            .with_prediction_type(self.prediction_type)
            .with_variance_type(self.variance_type)
            .with_clip_denoised(false)
            .init(forward);
        Ok(HybridLoss {
            simple,
            vlb,
            lambda: self.lambda,
        })
    }
}

/// The parts of the hybrid loss, each `[batch]`.
#[derive(Debug, Clone)]
pub struct HybridLossOutput<B: Backend> {
    /// L_simple + λ · T · L_t, the value to minimise (times importance weights, if any).
    pub loss: Tensor<B, 1>,
    /// L_simple on the prediction channels.
    pub simple: Tensor<B, 1>,
    /// L_t in bits/dim with the mean detached (its gradient reaches only the variance channels).
    pub vlb: Tensor<B, 1>,
}

/// L_hybrid = L_simple + λ · L_vlb   (Nichol & Dhariwal 2021, Eq. 16)
///
/// L_vlb = Σ_t L_t is estimated from the sample's own t as T · L_t (unbiased for uniform t;
/// combine with importance weights for other samplers), with L_t in bits/dim
/// ([`VariationalBound::terms`]), so λ = 0.001 and T = 1000 give improved-diffusion's
/// `mse + vb · T/1000`. The VLB term sees the mean channels through a stop-gradient, so it
/// trains only Σ_θ and L_simple alone drives μ_θ.
#[derive(Debug, Clone)]
pub struct HybridLoss<B: Backend> {
    simple: SimpleLoss<B>,
    vlb: VariationalBound<B>,
    lambda: f64,
}

impl<B: Backend> HybridLoss<B> {
    /// The forward process (schedule tables on the device).
    pub fn forward_process(&self) -> &ForwardProcess<B> {
        self.vlb.forward_process()
    }

    /// λ.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// How model outputs are read.
    pub fn parameterization(&self) -> Parameterization {
        self.vlb.parameterization()
    }

    /// The hybrid loss per sample.
    ///
    /// # Shapes
    /// `model_output`: `[batch, 2·C, …]`; `x_0`, `x_t`, `eps`: `[batch, C, …]`; `t`: `[batch]`.
    ///
    /// # Panics
    /// If the model output does not have 2·C channels or shapes disagree.
    pub fn forward<const D: usize>(
        &self,
        model_output: Tensor<B, D>,
        x_0: Tensor<B, D>,
        x_t: Tensor<B, D>,
        eps: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> HybridLossOutput<B> {
        let channels = x_0.dims()[1];
        let (prediction, variance) = self.parameterization().split(model_output, channels);
        let variance = variance.expect("hybrid loss has a learned variance");
        let simple = self
            .simple
            .forward(prediction.clone(), x_0.clone(), eps, t.clone());
        let frozen = Tensor::cat(vec![prediction.detach(), variance], 1);
        let vlb = self.vlb.terms(frozen, x_0, x_t, t).term;
        let num_timesteps = self.vlb.forward_process().num_train_timesteps() as f64;
        let loss = simple.clone() + vlb.clone().mul_scalar(self.lambda * num_timesteps);
        HybridLossOutput { loss, simple, vlb }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;
    use ddpm_schedule::NoiseSchedule;

    type B = Autodiff<Flex>;

    #[test]
    fn fixed_variance_is_rejected() {
        let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &Default::default());
        let err = HybridLossConfig::new()
            .with_variance_type(VarianceType::FixedLarge)
            .init(&fp)
            .unwrap_err();
        assert!(err.to_string().contains("fixed_large"), "{err}");
    }

    #[test]
    fn vlb_gradient_reaches_only_the_variance_channels() {
        let device = Default::default();
        let fp = ForwardProcess::<B>::new(&NoiseSchedule::paper(), &device);
        let loss = HybridLossConfig::new().init(&fp).unwrap();
        let x0 = Tensor::<B, 4>::random([2, 1, 4, 4], Distribution::Uniform(-1.0, 1.0), &device);
        let eps = Tensor::<B, 4>::random([2, 1, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<B, 1, Int>::from_ints([0, 400], &device);
        let x_t = fp.q_sample(x0.clone(), eps.clone(), t.clone());
        let out = Tensor::<B, 4>::random([2, 2, 4, 4], Distribution::Normal(0.0, 0.5), &device)
            .require_grad();
        let parts = loss.forward(out.clone(), x0, x_t, eps, t);
        let grads = parts.vlb.sum().backward();
        let g = out.grad(&grads).expect("output has a gradient");
        let mean_grad = g.clone().narrow(1, 0, 1).abs().max().into_scalar();
        let var_grad = g.narrow(1, 1, 1).abs().max().into_scalar();
        assert_eq!(mean_grad, 0.0, "VLB term must not train the mean");
        assert!(var_grad > 0.0 && var_grad.is_finite());
    }
}
