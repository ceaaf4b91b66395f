//! Spatial self-attention block of the U-Net (Ho et al. 2020, arXiv:2006.11239v2, Appendix B:
//! "self-attention blocks at the 16 × 16 resolution", after PixelCNN++ / SAGAN).
//!
//! diffusers: `Attention` with `residual_connection=True`, a GroupNorm in front, biased q/k/v
//! projections and `to_out.0`; pre-0.14 checkpoints name them `query`, `key`, `value`,
//! `proj_attn` (remapped on import).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::kernels;

use crate::init::{DEFAULT_INIT_SEED, ParamInit};
use crate::resnet::group_norm;

/// Configuration of [`Attention`].
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Channels of the feature map (= width of q, k, v).
    pub channels: usize,
    /// Number of heads; `channels` must be divisible by it.
    #[config(default = 1)]
    pub heads: usize,
    /// GroupNorm groups.
    #[config(default = 32)]
    pub groups: usize,
    /// GroupNorm ε.
    #[config(default = 1e-6)]
    pub eps: f64,
    /// The output (after the residual add) is divided by this (diffusers'
    /// `rescale_output_factor`).
    #[config(default = 1.0)]
    pub rescale_output_factor: f64,
}

impl AttentionConfig {
    /// Initializes the block from [`DEFAULT_INIT_SEED`] (see [`AttentionConfig::init_with`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        self.init_with(&mut ParamInit::new(DEFAULT_INIT_SEED), device)
    }

    /// Initializes the block with weights drawn from `init` (see [`ParamInit`]).
    pub fn init_with<B: Backend>(&self, init: &mut ParamInit, device: &B::Device) -> Attention<B> {
        let c = self.channels;
        Attention {
            group_norm: group_norm(self.groups, c, self.eps, device),
            to_q: init.linear(c, c, device),
            to_k: init.linear(c, c, device),
            to_v: init.linear(c, c, device),
            to_out: init.linear(c, c, device),
            heads: self.heads,
            rescale_output_factor: self.rescale_output_factor,
        }
    }
}

/// Multi-head self-attention over the h·w positions of a feature map, with a residual
/// connection:
///
/// y = GroupNorm(x) as [batch, h·w, C];  q, k, v = y·W_q, y·W_k, y·W_v
/// out = (x + to_out(softmax(q kᵀ / √d) v)) / rescale_output_factor,  d = C / heads
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// GroupNorm in front of the projections.
    pub group_norm: GroupNorm<B>,
    /// Query projection (legacy name `query`).
    pub to_q: Linear<B>,
    /// Key projection (legacy name `key`).
    pub to_k: Linear<B>,
    /// Value projection (legacy name `value`).
    pub to_v: Linear<B>,
    /// Output projection; diffusers' `to_out.0` (legacy name `proj_attn`).
    pub to_out: Linear<B>,
    /// Number of heads.
    pub heads: usize,
    /// Output divisor.
    pub rescale_output_factor: f64,
}

impl<B: Backend> Attention<B> {
    /// Applies the block.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, channels, h, w]`
    /// - output: `[batch, channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        // Channels-first throughout: the projections are 1×1 convolutions of the feature map
        // and the heads are groups of its channels (the same numbers as the [batch, h·w, C]
        // formulation above; on Flex no tensor is transposed).
        let y = kernels::group_norm(&self.group_norm, x.clone(), false);
        let q = kernels::linear_channels_first(&self.to_q, y.clone(), None);
        let k = kernels::linear_channels_first(&self.to_k, y.clone(), None);
        let v = kernels::linear_channels_first(&self.to_v, y, None);
        let o = kernels::attention_channels_first(q, k, v, self.heads);
        let out = kernels::linear_channels_first(&self.to_out, o, Some(x));
        if self.rescale_output_factor == 1.0 {
            out
        } else {
            out / self.rescale_output_factor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    type TestBackend = burn::backend::Flex;

    /// Burn's fused attention equals softmax(q kᵀ/√d) v written out by hand.
    #[test]
    fn matches_explicit_softmax() {
        let device = Default::default();
        let block = AttentionConfig::new(8)
            .with_heads(2)
            .with_groups(2)
            .init::<TestBackend>(&device);
        let x = Tensor::<TestBackend, 4>::random([2, 8, 3, 3], Distribution::Default, &device);
        let got = block.forward(x.clone());

        let [b, c, h, w] = x.dims();
        let n = h * w;
        let y = block
            .group_norm
            .forward(x.clone())
            .reshape([b, c, n])
            .swap_dims(1, 2);
        let split = |t: Tensor<TestBackend, 3>| t.reshape([b, n, 2, 4]).swap_dims(1, 2);
        let q = split(block.to_q.forward(y.clone()));
        let k = split(block.to_k.forward(y.clone()));
        let v = split(block.to_v.forward(y));
        let scores = q.matmul(k.swap_dims(2, 3)) / 2.0; // √4
        let o = burn::tensor::activation::softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, n, c]);
        let want = x + block
            .to_out
            .forward(o)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }
}
