//! What a training step minimises: L_simple, the true variational bound, or the hybrid of the
//! two, for any prediction and variance type — the objectives of Ho et al. 2020, Table 2.
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eqs. 5, 8, 12–14 and Table 2; the hybrid objective from
//! Nichol & Dhariwal 2021 (arXiv:2102.09672v1), Eq. 16.

use burn::config::Config;
use burn::tensor::{Int, Tensor, backend::Backend};
use ddpm_forward::ForwardProcess;
use ddpm_schedule::{PredictionType, VarianceType};
use serde::{Deserialize, Serialize};

use crate::{
    HybridLoss, HybridLossConfig, LossError, LossWeighting, Parameterization, SimpleLoss,
    SimpleLossConfig, VariationalBound, VlbConfig,
};

/// The training objective (Ho et al. 2020, Table 2's "objective" column).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// L_simple (Eq. 14): the mean squared error of the prediction against its target (ε, x₀,
    /// v or μ̃), weighted per timestep by a [`LossWeighting`] (none: L_simple itself). With a
    /// μ̃ prediction this is Table 2's ‖μ̃ − μ̃_θ‖²; the original code's `loss_type = 'mse'`.
    /// Needs a fixed variance (the variance channels would get no gradient).
    #[default]
    Simple,
    /// The true variational bound (Eq. 5): each sample's own term in bits/dim, L_{t−1} = the KL
    /// of Eq. 8 with its constant for t > 1 and L_0 = the discretized decoder (Eq. 13) for
    /// t = 1; the original code's `loss_type = 'kl'`. Trains a learned Σ_θ with the mean
    /// (Table 2's "learned diagonal Σ" rows).
    Bound,
    /// L_simple + λ · T · L_t with the mean's gradient stopped in L_t (Nichol & Dhariwal 2021,
    /// Eq. 16): the bound trains only Σ_θ. Needs a learned variance.
    Hybrid {
        /// λ (Nichol & Dhariwal: 0.001).
        lambda: f64,
    },
}

impl Objective {
    /// The names [`Objective::from_str`](std::str::FromStr) accepts.
    pub const NAMES: &'static [&'static str] = &["simple", "bound", "hybrid"];

    /// The objective's name: `simple`, `bound` or `hybrid`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Bound => "bound",
            Self::Hybrid { .. } => "hybrid",
        }
    }
}

impl std::str::FromStr for Objective {
    type Err = LossError;

    /// `simple` (alias `mse`), `bound` (aliases `kl`, `vlb`), `hybrid` (λ = 0.001) or
    /// `hybrid:λ`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || LossError::UnknownName {
            field: "objective",
            value: s.to_string(),
            expected: "simple (mse), bound (kl), hybrid or hybrid:LAMBDA",
        };
        match s {
            "simple" | "mse" => Ok(Self::Simple),
            "bound" | "kl" | "vlb" => Ok(Self::Bound),
            "hybrid" => Ok(Self::Hybrid { lambda: 0.001 }),
            _ => match s.strip_prefix("hybrid:") {
                Some(l) => {
                    let lambda = l.parse().map_err(|_| unknown())?;
                    Ok(Self::Hybrid { lambda })
                }
                None => Err(unknown()),
            },
        }
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hybrid { lambda } => write!(f, "hybrid:{lambda}"),
            other => f.write_str(other.name()),
        }
    }
}

/// Configuration of a [`TrainingLoss`].
#[derive(Config, Debug)]
pub struct TrainingLossConfig {
    /// What is minimised. Default: L_simple.
    #[config(default = "Objective::Simple")]
    pub objective: Objective,
    /// What the model predicts. Default: ε.
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// Σ_θ: fixed (the model outputs C channels) or learned (2·C). Default: fixed small.
    #[config(default = "VarianceType::FixedSmall")]
    pub variance_type: VarianceType,
    /// L_simple's per-timestep weight (the simple objective only). Default: none.
    #[config(default = "LossWeighting::None")]
    pub weighting: LossWeighting,
}

impl TrainingLossConfig {
    /// Checks that the settings go together, without building anything.
    ///
    /// # Errors
    /// [`LossError::VarianceType`] for the simple objective with a learned variance or the
    /// hybrid one with a fixed variance; [`LossError::Unsupported`] for a weighting with the
    /// bound or hybrid objective; [`LossError::InvalidParameter`] for a bad γ or λ.
    pub fn validate(&self) -> Result<(), LossError> {
        if self.objective != Objective::Simple && self.weighting != LossWeighting::None {
            return Err(LossError::Unsupported {
                what: "a loss weighting with the bound or hybrid objective",
                reason: "the weighting applies to the simple objective only (the bound weighs \
                         its terms itself)",
            });
        }
        match self.objective {
            Objective::Simple if self.variance_type.is_learned() => Err(LossError::VarianceType {
                what: "the simple objective",
                expected: "fixed_small or fixed_large (a learned variance needs the bound or \
                           hybrid objective)",
                actual: self.variance_type.diffusers_name(),
            }),
            Objective::Simple | Objective::Bound => Ok(()),
            Objective::Hybrid { lambda } => HybridLossConfig::new()
                .with_lambda(lambda)
                .with_variance_type(self.variance_type)
                .check(),
        }?;
        if let LossWeighting::MinSnr { gamma } = self.weighting {
            SimpleLossConfig::check_gamma(gamma)?;
        }
        Ok(())
    }

    /// Checks the settings ([`TrainingLossConfig::validate`]) and builds the loss on
    /// `forward`'s schedule and device.
    ///
    /// # Errors
    /// As [`TrainingLossConfig::validate`].
    pub fn init<B: Backend>(
        &self,
        forward: &ForwardProcess<B>,
    ) -> Result<TrainingLoss<B>, LossError> {
        self.validate()?;
        let inner = match self.objective {
            Objective::Simple => Inner::Simple(
                SimpleLossConfig::new()
                    .with_prediction_type(self.prediction_type)
                    .with_weighting(self.weighting)
                    .with_variance_type(self.variance_type)
                    .init(forward)?,
            ),
            Objective::Bound => Inner::Bound(
                VlbConfig::new()
                    .with_prediction_type(self.prediction_type)
                    .with_variance_type(self.variance_type)
                    .with_clip_denoised(false)
                    .init(forward),
            ),
            Objective::Hybrid { lambda } => Inner::Hybrid(Box::new(
                HybridLossConfig::new()
                    .with_lambda(lambda)
                    .with_prediction_type(self.prediction_type)
                    .with_variance_type(self.variance_type)
                    .init(forward)?,
            )),
        };
        Ok(TrainingLoss {
            parameterization: Parameterization::new(self.prediction_type, self.variance_type),
            objective: self.objective,
            inner,
        })
    }
}

#[derive(Debug, Clone)]
enum Inner<B: Backend> {
    Simple(SimpleLoss<B>),
    Bound(VariationalBound<B>),
    Hybrid(Box<HybridLoss<B>>),
}

/// The per-sample training loss of an [`Objective`]: draws x_t from q(x_t | x₀) (Eq. 4), calls
/// the model once and returns one loss per sample (Ho et al. 2020, Algorithm 1's gradient
/// step; the training loss is their mean).
///
/// # Example
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{Distribution, Int, Tensor};
/// use ddpm_forward::ForwardProcess;
/// use ddpm_loss::{Objective, TrainingLossConfig};
/// use ddpm_schedule::{NoiseSchedule, PredictionType, VarianceType};
///
/// let device = Default::default();
/// let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &device);
/// // Table 2's "μ̃ prediction, L, learned diagonal Σ": 2·C output channels.
/// let loss = TrainingLossConfig::new()
///     .with_objective(Objective::Bound)
///     .with_prediction_type(PredictionType::Mean)
///     .with_variance_type(VarianceType::Learned)
///     .init(&fp)?;
/// assert_eq!(loss.parameterization().output_channels(1), 2);
/// let x0 = Tensor::<Flex, 4>::random([2, 1, 4, 4], Distribution::Uniform(-1.0, 1.0), &device);
/// let eps = Tensor::<Flex, 4>::random([2, 1, 4, 4], Distribution::Normal(0.0, 1.0), &device);
/// let t = Tensor::<Flex, 1, Int>::from_ints([0, 500], &device);
/// // Stands in for a U-Net: x_t as the mean, log σ² = 0.
/// let model = |x_t: Tensor<Flex, 4>, _t| Tensor::cat(vec![x_t.clone(), x_t.zeros_like()], 1);
/// let per_sample = loss.forward_with(model, x0, eps, t);
/// assert_eq!(per_sample.dims(), [2]);
/// # Ok::<(), ddpm_loss::LossError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TrainingLoss<B: Backend> {
    parameterization: Parameterization,
    objective: Objective,
    inner: Inner<B>,
}

impl<B: Backend> TrainingLoss<B> {
    /// The objective.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// How the model's outputs are read (prediction and variance type; C or 2·C channels).
    pub fn parameterization(&self) -> Parameterization {
        self.parameterization
    }

    /// The loss per sample for a model output at x_t = q_sample(x₀, t, ε).
    ///
    /// # Shapes
    /// `model_output`: `[batch, C or 2·C, …]`; `x_0`, `x_t`, `eps`: `[batch, C, …]`;
    /// `t`: `[batch]` (0-based) → `[batch]`.
    ///
    /// # Panics
    /// If the output's channels do not fit the variance type or shapes disagree.
    pub fn forward<const D: usize>(
        &self,
        model_output: Tensor<B, D>,
        x_0: Tensor<B, D>,
        x_t: Tensor<B, D>,
        eps: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        match &self.inner {
            Inner::Simple(simple) => simple.forward(model_output, x_0, eps, t),
            Inner::Bound(vlb) => vlb.terms(model_output, x_0, x_t, t).term,
            Inner::Hybrid(hybrid) => hybrid.forward(model_output, x_0, x_t, eps, t).loss,
        }
    }

    /// Draws x_t = q_sample(x₀, t, ε), runs `model(x_t, t)` and returns
    /// [`TrainingLoss::forward`].
    pub fn forward_with<const D: usize, F>(
        &self,
        model: F,
        x_0: Tensor<B, D>,
        eps: Tensor<B, D>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1>
    where
        F: FnOnce(Tensor<B, D>, Tensor<B, 1, Int>) -> Tensor<B, D>,
    {
        let forward = match &self.inner {
            Inner::Simple(simple) => simple.forward_process(),
            Inner::Bound(vlb) => vlb.forward_process(),
            Inner::Hybrid(hybrid) => hybrid.forward_process(),
        };
        let x_t = forward.q_sample(x_0.clone(), eps.clone(), t.clone());
        let out = model(x_t.clone(), t.clone());
        self.forward(out, x_0, x_t, eps, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;
    use ddpm_schedule::NoiseSchedule;

    type B = Flex;

    fn host(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn names_round_trip() {
        for o in [
            Objective::Simple,
            Objective::Bound,
            Objective::Hybrid { lambda: 0.001 },
        ] {
            assert_eq!(o.to_string().parse::<Objective>().unwrap(), o);
        }
        assert_eq!("kl".parse::<Objective>().unwrap(), Objective::Bound);
        assert_eq!("mse".parse::<Objective>().unwrap(), Objective::Simple);
        let e = "l2".parse::<Objective>().unwrap_err().to_string();
        assert!(e.contains("objective") && e.contains("bound"), "{e}");
        let json = serde_json::to_string(&Objective::Hybrid { lambda: 0.5 }).unwrap();
        assert_eq!(json, r#"{"hybrid":{"lambda":0.5}}"#);
        assert_eq!(
            serde_json::to_string(&Objective::Bound).unwrap(),
            r#""bound""#
        );
    }

    #[test]
    fn settings_that_do_not_go_together_are_rejected() {
        let device = Default::default();
        let fp = ForwardProcess::<B>::new(&NoiseSchedule::paper(), &device);
        let e = TrainingLossConfig::new()
            .with_variance_type(VarianceType::Learned)
            .init(&fp)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("simple objective") && e.contains("learned"),
            "{e}"
        );
        let e = TrainingLossConfig::new()
            .with_objective(Objective::Bound)
            .with_weighting(LossWeighting::min_snr())
            .init(&fp)
            .unwrap_err()
            .to_string();
        assert!(e.contains("weighting"), "{e}");
        let e = TrainingLossConfig::new()
            .with_objective(Objective::Hybrid { lambda: 0.001 })
            .init(&fp)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hybrid"), "{e}");
    }

    /// Each objective is the loss it names: the bound objective is the bound's term (decoder at
    /// t = 0, KL elsewhere); the simple one with a μ̃ target is ‖μ̃ − μ̃_θ‖² per dimension.
    #[test]
    fn objectives_are_the_losses_they_name() {
        let device = Default::default();
        let fp = ForwardProcess::<B>::new(&NoiseSchedule::paper(), &device);
        let shape = [3, 1, 4, 4];
        let x0 = Tensor::<B, 4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let eps = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<B, 1, Int>::from_ints([0, 10, 900], &device);
        let out = Tensor::<B, 4>::random([3, 2, 4, 4], Distribution::Normal(0.0, 0.5), &device);
        let model = |_x: Tensor<B, 4>, _t| out.clone();

        let bound = TrainingLossConfig::new()
            .with_objective(Objective::Bound)
            .with_prediction_type(PredictionType::Mean)
            .with_variance_type(VarianceType::Learned)
            .init(&fp)
            .unwrap();
        let got = host(bound.forward_with(model, x0.clone(), eps.clone(), t.clone()));
        let x_t = fp.q_sample(x0.clone(), eps.clone(), t.clone());
        let terms = VlbConfig::new()
            .with_prediction_type(PredictionType::Mean)
            .with_variance_type(VarianceType::Learned)
            .init(&fp)
            .terms(out.clone(), x0.clone(), x_t.clone(), t.clone());
        let (kl, dec) = (host(terms.kl), host(terms.decoder_nll));
        assert_eq!(got, vec![dec[0], kl[1], kl[2]]);

        let mean_out = out.clone().narrow(1, 0, 1);
        let simple = TrainingLossConfig::new()
            .with_prediction_type(PredictionType::Mean)
            .with_variance_type(VarianceType::FixedLarge)
            .init(&fp)
            .unwrap();
        let got = host(simple.forward(mean_out.clone(), x0.clone(), x_t.clone(), eps, t.clone()));
        let target = fp.noise_level::<4>(t).mean_from_x0(x_t, x0);
        let expected = host(
            (target - mean_out)
                .powi_scalar(2)
                .reshape([3, 16])
                .mean_dim(1)
                .reshape([3]),
        );
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-6 * e.max(1.0), "{g} vs {e}");
        }
    }
}
