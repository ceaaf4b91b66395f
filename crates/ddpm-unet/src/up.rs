//! Up-sampling half of the U-Net (Ho et al. 2020, arXiv:2006.11239v2, Appendix B): per level,
//! residual blocks fed with the concatenated skip connections (each optionally followed by
//! self-attention), then nearest-neighbour ×2 up-sampling and a 3×3 conv.
//!
//! diffusers: `UpBlock2D` / `AttnUpBlock2D` and `Upsample2D` (`upsamplers.0.conv`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::init::{DEFAULT_INIT_SEED, ParamInit};
use crate::kernels;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::attention::{Attention, AttentionConfig};
use crate::resnet::{ResnetBlock2d, ResnetBlock2dConfig, conv3x3};

/// Configuration of [`Upsample2d`].
#[derive(Config, Debug)]
pub struct Upsample2dConfig {
    /// Channels (in = out).
    pub channels: usize,
}

impl Upsample2dConfig {
    /// Initializes the conv from [`DEFAULT_INIT_SEED`] (see [`Upsample2dConfig::init_with`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Upsample2d<B> {
        self.init_with(&mut ParamInit::new(DEFAULT_INIT_SEED), device)
    }

    /// Initializes the conv with weights drawn from `init` (see [`ParamInit`]).
    pub fn init_with<B: Backend>(&self, init: &mut ParamInit, device: &B::Device) -> Upsample2d<B> {
        Upsample2d {
            conv: conv3x3(self.channels, self.channels, init, device),
        }
    }
}

/// Doubles the resolution: nearest-neighbour ×2, then a 3×3 conv with padding 1.
#[derive(Module, Debug)]
pub struct Upsample2d<B: Backend> {
    /// The conv after up-sampling.
    pub conv: Conv2d<B>,
}

impl<B: Backend> Upsample2d<B> {
    /// Applies the up-sampling.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, channels, h, w]`
    /// - output: `[batch, channels, 2h, 2w]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let x = interpolate(
            x,
            [2 * h, 2 * w],
            InterpolateOptions::new(InterpolateMode::Nearest),
        );
        kernels::conv2d(&self.conv, x)
    }
}

/// Configuration of [`UpBlock2d`].
#[derive(Config, Debug)]
pub struct UpBlock2dConfig {
    /// (in, out) channels of each residual block, `in` including the skip channels.
    pub resnet_channels: Vec<(usize, usize)>,
    /// Width of the time embedding.
    pub temb_channels: usize,
    /// Self-attention after each residual block, with this many heads; `None`: no attention.
    #[config(default = "None")]
    pub attention_heads: Option<usize>,
    /// Whether the level ends with an [`Upsample2d`] (all but the last level).
    pub add_upsample: bool,
    /// GroupNorm groups.
    #[config(default = 32)]
    pub groups: usize,
    /// GroupNorm ε.
    #[config(default = 1e-6)]
    pub eps: f64,
    /// Dropout in the residual blocks.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl UpBlock2dConfig {
    /// Initializes the level from [`DEFAULT_INIT_SEED`] (see [`UpBlock2dConfig::init_with`]).
    ///
    /// # Panics
    ///
    /// If `dropout` is not in [0, 1).
    pub fn init<B: Backend>(&self, device: &B::Device) -> UpBlock2d<B> {
        self.init_with(&mut ParamInit::new(DEFAULT_INIT_SEED), device)
    }

    /// Initializes the level with weights drawn from `init`, in diffusers' module order (see
    /// [`ParamInit`]).
    ///
    /// # Panics
    ///
    /// If `dropout` is not in [0, 1).
    pub fn init_with<B: Backend>(&self, init: &mut ParamInit, device: &B::Device) -> UpBlock2d<B> {
        let out = self.resnet_channels.last().map_or(0, |&(_, o)| o);
        UpBlock2d {
            resnets: self
                .resnet_channels
                .iter()
                .map(|&(i, o)| {
                    ResnetBlock2dConfig::new(i, o, self.temb_channels)
                        .with_groups(self.groups)
                        .with_eps(self.eps)
                        .with_dropout(self.dropout)
                        .init_with(init, device)
                })
                .collect(),
            attentions: match self.attention_heads {
                Some(heads) => self
                    .resnet_channels
                    .iter()
                    .map(|&(_, o)| {
                        AttentionConfig::new(o)
                            .with_heads(heads)
                            .with_groups(self.groups)
                            .with_eps(self.eps)
                            .init_with(init, device)
                    })
                    .collect(),
                None => Vec::new(),
            },
            upsamplers: if self.add_upsample {
                vec![Upsample2dConfig::new(out).init_with(init, device)]
            } else {
                Vec::new()
            },
        }
    }
}

/// One up level: for each j, concatenate the last skip state onto the channels, `resnets[j]`,
/// then `attentions[j]` when present; then the optional up-sampler.
#[derive(Module, Debug)]
pub struct UpBlock2d<B: Backend> {
    /// Residual blocks (one more than a down level has).
    pub resnets: Vec<ResnetBlock2d<B>>,
    /// Self-attention after each residual block (empty for a plain level).
    pub attentions: Vec<Attention<B>>,
    /// The up-sampler (empty for the last level).
    pub upsamplers: Vec<Upsample2d<B>>,
}

impl<B: Backend> UpBlock2d<B> {
    /// Applies the level, popping one skip state per residual block from the end of `skips`.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, c, h, w]`, `temb`: `[batch, temb_channels]`
    /// - output: `[batch, out, 2h, 2w]` (`[batch, out, h, w]` for the last level)
    ///
    /// # Panics
    ///
    /// If `skips` holds fewer states than there are residual blocks (the [`Unet`](crate::Unet)
    /// always provides them).
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        temb: Tensor<B, 2>,
        skips: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let mut h = x;
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .expect("UpBlock2d::forward: ran out of skip connections");
            h = resnet.forward(kernels::cat_channels(h, skip), temb.clone());
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(h);
            }
        }
        for up in &self.upsamplers {
            h = up.forward(h);
        }
        h
    }
}
