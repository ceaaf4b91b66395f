//! Middle of the U-Net at the lowest resolution: residual block, self-attention, residual block
//! (Ho et al. 2020, arXiv:2006.11239v2, Appendix B). diffusers: `UNetMidBlock2D`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::attention::{Attention, AttentionConfig};
use crate::init::{DEFAULT_INIT_SEED, ParamInit};
use crate::resnet::{ResnetBlock2d, ResnetBlock2dConfig};

/// Configuration of [`MidBlock2d`].
#[derive(Config, Debug)]
pub struct MidBlock2dConfig {
    /// Channels (in = out).
    pub channels: usize,
    /// Width of the time embedding.
    pub temb_channels: usize,
    /// Self-attention between the two residual blocks, with this many heads (diffusers'
    /// `add_attention`); `None`: no attention.
    #[config(default = "None")]
    pub attention_heads: Option<usize>,
    /// GroupNorm groups.
    #[config(default = 32)]
    pub groups: usize,
    /// GroupNorm ε.
    #[config(default = 1e-6)]
    pub eps: f64,
    /// Dropout in the residual blocks.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Output divisor of every sub-block (diffusers' `mid_block_scale_factor`).
    #[config(default = 1.0)]
    pub output_scale_factor: f64,
}

impl MidBlock2dConfig {
    /// Initializes the block from [`DEFAULT_INIT_SEED`] (see [`MidBlock2dConfig::init_with`]).
    ///
    /// # Panics
    ///
    /// If `dropout` is not in [0, 1).
    pub fn init<B: Backend>(&self, device: &B::Device) -> MidBlock2d<B> {
        self.init_with(&mut ParamInit::new(DEFAULT_INIT_SEED), device)
    }

    /// Initializes the block with weights drawn from `init`, in diffusers' module order
    /// (`resnets.0`, `attentions.0`, `resnets.1`; see [`ParamInit`]).
    ///
    /// # Panics
    ///
    /// If `dropout` is not in [0, 1).
    pub fn init_with<B: Backend>(&self, init: &mut ParamInit, device: &B::Device) -> MidBlock2d<B> {
        let c = self.channels;
        let resnet = ResnetBlock2dConfig::new(c, c, self.temb_channels)
            .with_groups(self.groups)
            .with_eps(self.eps)
            .with_dropout(self.dropout)
            .with_output_scale_factor(self.output_scale_factor);
        let first = resnet.init_with(init, device);
        let attentions = self
            .attention_heads
            .map(|heads| {
                AttentionConfig::new(c)
                    .with_heads(heads)
                    .with_groups(self.groups)
                    .with_eps(self.eps)
                    .with_rescale_output_factor(self.output_scale_factor)
                    .init_with(init, device)
            })
            .into_iter()
            .collect();
        let second = resnet.init_with(init, device);
        MidBlock2d {
            resnets: vec![first, second],
            attentions,
        }
    }
}

/// resnets.0 → attentions.0 (when present) → resnets.1.
#[derive(Module, Debug)]
pub struct MidBlock2d<B: Backend> {
    /// The two residual blocks.
    pub resnets: Vec<ResnetBlock2d<B>>,
    /// The self-attention block (empty without attention).
    pub attentions: Vec<Attention<B>>,
}

impl<B: Backend> MidBlock2d<B> {
    /// Applies the block.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, channels, h, w]`, `temb`: `[batch, temb_channels]`
    /// - output: `[batch, channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>, temb: Tensor<B, 2>) -> Tensor<B, 4> {
        let mut h = self.resnets[0].forward(x, temb.clone());
        for attn in &self.attentions {
            h = attn.forward(h);
        }
        for resnet in &self.resnets[1..] {
            h = resnet.forward(h, temb.clone());
        }
        h
    }
}
