//! The optimizer: Adam as Burn's `burn::optim::Adam` computes it, through
//! [`ddpm_unet::kernels::adam_update`], which updates a parameter and its moments in one
//! parallel pass on Flex (Burn's `Adam` runs ~13 serial element-wise ops per parameter there).
//!
//! The state is Burn's [`AdamState`], so checkpoints written with Burn's `Adam` load here and
//! the other way round, and the numbers are Burn's bit for bit (`tests/optim.rs`).

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use ddpm_unet::kernels::{AdamStep, adam_update};

/// Adam (Kingma & Ba) without weight decay or AMSGrad, the optimizer of the paper's recipe
/// (Ho et al. 2020, Appendix B: Adam, lr 2e-4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedAdam {
    /// β₁.
    pub beta_1: f32,
    /// β₂.
    pub beta_2: f32,
    /// ε (as in Burn's `Adam`: added to √v̂).
    pub epsilon: f32,
}

impl Default for FusedAdam {
    /// β₁ = 0.9, β₂ = 0.999, ε = 1e-8: the paper's (TensorFlow's) and PyTorch's defaults, and
    /// [`TrainConfig`](crate::TrainConfig)'s.
    fn default() -> Self {
        Self::new(0.9, 0.999, 1e-8)
    }
}

impl FusedAdam {
    /// Adam with these coefficients.
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32) -> Self {
        Self {
            beta_1,
            beta_2,
            epsilon,
        }
    }

    /// The optimizer of module `M`'s parameters (Burn's adaptor: one [`SimpleOptimizer::step`]
    /// per parameter tensor, states kept per parameter id).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> OptimizerAdaptor<Self, M, B> {
        OptimizerAdaptor::from(self)
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Some((s.momentum.moment_1, s.momentum.moment_2)),
            ),
            None => (1, None),
        };
        let step = AdamStep {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            time,
        };
        let (tensor, m, v) = adam_update(step, tensor, grad, moments);
        let state = AdamState::new(AdaptiveMomentumState::new(time, m, v));
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
