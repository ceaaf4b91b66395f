//! Down-sampling half of the U-Net (Ho et al. 2020, arXiv:2006.11239v2, Appendix B): per level,
//! residual blocks (each optionally followed by self-attention), then a stride-2 conv.
//!
//! diffusers: `DownBlock2D` / `AttnDownBlock2D` and `Downsample2D` (`downsamplers.0.conv`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

use crate::init::{DEFAULT_INIT_SEED, ParamInit};
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
    /// Initializes the conv from [`DEFAULT_INIT_SEED`] (see [`Downsample2dConfig::init_with`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Downsample2d<B> {
        self.init_with(&mut ParamInit::new(DEFAULT_INIT_SEED), device)
    }

    /// Initializes the conv with weights drawn from `init` (see [`ParamInit`]).
    pub fn init_with<B: Backend>(
        &self,
        init: &mut ParamInit,
        device: &B::Device,
    ) -> Downsample2d<B> {
        let p = self.padding;
        let padding = if p == 0 {
            // (top, left, bottom, right)
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        } else {
            PaddingConfig2d::Explicit(p, p, p, p)
        };
        let config = Conv2dConfig::new([self.channels, self.channels], [3, 3])
            .with_stride([2, 2])
            .with_padding(padding);
        Downsample2d {
            conv: init.conv2d(&config, device),
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
        match self.conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right)
                if x.dtype() != DType::F32 && (top, left) != (bottom, right) =>
            {
                // NOTE: Burn 0.21 pads asymmetrically with a tensor of the device's default
                // type (f32), which breaks an f16/bf16 model (see `Unet::with_precision`): pad
                // with zeros of x's own type here, then convolve without padding.
                let conv = Conv2d {
                    padding: PaddingConfig2d::Valid,
                    ..self.conv.clone()
                };
                kernels::conv2d(&conv, pad_zeros(x, [top, left, bottom, right]))
            }
            _ => kernels::conv2d(&self.conv, x),
        }
    }
}

/// Zero padding of the last two dims by (top, left, bottom, right), in x's float type.
fn pad_zeros<B: Backend>(x: Tensor<B, 4>, [top, left, bottom, right]: [usize; 4]) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let (device, dtype) = (x.device(), x.dtype());
    let zeros = |shape: [usize; 4]| Tensor::<B, 4>::zeros(shape, (&device, dtype));
    let mut cols = Vec::new();
    if left > 0 {
        cols.push(zeros([n, c, h, left]));
    }
    cols.push(x);
    if right > 0 {
        cols.push(zeros([n, c, h, right]));
    }
    let x = Tensor::cat(cols, 3);
    let w = w + left + right;
    let mut rows = Vec::new();
    if top > 0 {
        rows.push(zeros([n, c, top, w]));
    }
    rows.push(x);
    if bottom > 0 {
        rows.push(zeros([n, c, bottom, w]));
    }
    Tensor::cat(rows, 2)
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
    /// Initializes the level from [`DEFAULT_INIT_SEED`] (see [`DownBlock2dConfig::init_with`]).
    ///
    /// # Panics
    ///
    /// If `dropout` is not in [0, 1).
    pub fn init<B: Backend>(&self, device: &B::Device) -> DownBlock2d<B> {
        self.init_with(&mut ParamInit::new(DEFAULT_INIT_SEED), device)
    }

    /// Initializes the level with weights drawn from `init`, in diffusers' module order (see
    /// [`ParamInit`]).
    ///
    /// # Panics
    ///
    /// If `dropout` is not in [0, 1).
    pub fn init_with<B: Backend>(
        &self,
        init: &mut ParamInit,
        device: &B::Device,
    ) -> DownBlock2d<B> {
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
            downsamplers: if self.add_downsample {
                vec![
                    Downsample2dConfig::new(out)
                        .with_padding(self.downsample_padding)
                        .init_with(init, device),
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
