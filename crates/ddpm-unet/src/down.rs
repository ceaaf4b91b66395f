//! Down-sampling half of the U-Net (Ho et al. 2020, arXiv:2006.11239v2, Appendix B): per level,
//! residual blocks (each optionally followed by self-attention), then a stride-2 conv.
//!
//! diffusers: `DownBlock2D` / `AttnDownBlock2D` and `Downsample2D` (`downsamplers.0.conv`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::kernels;

use crate::attention::{Attention, AttentionConfig};
use crate::resnet::{ResnetBlock2d, ResnetBlock2dConfig};

/// Configuration of [`Downsample2d`].
#[derive(Config, Debug)]
pub struct Downsample2dConfig {
    /// Channels (in = out).
    pub channels: usize,
    /// `0`: pad right/bottom by one, as TF's "SAME" (DDPM); `p > 0`: pad p on every side.
    #[config(default = 0)]
    pub padding: usize,
}

impl Downsample2dConfig {
    /// Initializes the conv.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Downsample2d<B> {
        let p = self.padding;
        let padding = if p == 0 {
            // (top, left, bottom, right)
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        } else {
            PaddingConfig2d::Explicit(p, p, p, p)
        };
        Downsample2d {
            conv: Conv2dConfig::new([self.channels, self.channels], [3, 3])
                .with_stride([2, 2])
                .with_padding(padding)
                .init(device),
        }
    }
}

/// Halves the resolution with a 3×3 conv of stride 2.
#[derive(Module, Debug)]
pub struct Downsample2d<B: Backend> {
    /// The stride-2 conv, padding included.
    pub conv: Conv2d<B>,
}

impl<B: Backend> Downsample2d<B> {
    /// Applies the conv.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, channels, h, w]`
    /// - output: `[batch, channels, ⌈h/2⌉, ⌈w/2⌉]` (for even sizes: h/2, w/2)
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        kernels::conv2d(&self.conv, x)
    }
}

/// Configuration of [`DownBlock2d`].
#[derive(Config, Debug)]
pub struct DownBlock2dConfig {
    /// (in, out) channels of each residual block.
    pub resnet_channels: Vec<(usize, usize)>,
    /// Width of the time embedding.
    pub temb_channels: usize,
    /// Self-attention after each residual block, with this many heads; `None`: no attention.
    #[config(default = "None")]
    pub attention_heads: Option<usize>,
    /// Whether the level ends with a [`Downsample2d`] (all but the last level).
    pub add_downsample: bool,
    /// Padding of the down-sampling conv.
    #[config(default = 0)]
    pub downsample_padding: usize,
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

impl DownBlock2dConfig {
    /// Initializes the level.
    pub fn init<B: Backend>(&self, device: &B::Device) -> DownBlock2d<B> {
        let out = self.resnet_channels.last().map_or(0, |&(_, o)| o);
        DownBlock2d {
            resnets: self
                .resnet_channels
                .iter()
                .map(|&(i, o)| {
                    ResnetBlock2dConfig::new(i, o, self.temb_channels)
                        .with_groups(self.groups)
                        .with_eps(self.eps)
                        .with_dropout(self.dropout)
                        .init(device)
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
                            .init(device)
                    })
                    .collect(),
                None => Vec::new(),
            },
            downsamplers: if self.add_downsample {
                vec![
                    Downsample2dConfig::new(out)
                        .with_padding(self.downsample_padding)
                        .init(device),
                ]
            } else {
                Vec::new()
            },
        }
    }
}

/// One down level: `resnets[j]` (then `attentions[j]` when present) for each j, then the
/// optional down-sampler.
#[derive(Module, Debug)]
pub struct DownBlock2d<B: Backend> {
    /// Residual blocks.
    pub resnets: Vec<ResnetBlock2d<B>>,
    /// Self-attention after each residual block (empty for a plain level).
    pub attentions: Vec<Attention<B>>,
    /// The down-sampler (empty for the last level).
    pub downsamplers: Vec<Downsample2d<B>>,
}

impl<B: Backend> DownBlock2d<B> {
    /// Applies the level and pushes every intermediate state onto `skips` (one per residual
    /// block, plus the down-sampled output), as diffusers' `res_hidden_states`.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, in, h, w]`, `temb`: `[batch, temb_channels]`
    /// - output: `[batch, out, h/2, w/2]` (`[batch, out, h, w]` for the last level)
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        temb: Tensor<B, 2>,
        skips: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let mut h = x;
        for (j, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, temb.clone());
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(h);
            }
            skips.push(h.clone());
        }
        for down in &self.downsamplers {
            h = down.forward(h);
            skips.push(h.clone());
        }
        h
    }
}
