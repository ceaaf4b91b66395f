//! The U-Net's wide residual block with timestep conditioning (Ho et al. 2020,
//! arXiv:2006.11239v2, Appendix B: "two convolutional residual blocks per resolution level",
//! "the diffusion time t is specified by adding the Transformer sinusoidal position embedding
//! into each residual block"). diffusers: `ResnetBlock2D` with `time_embedding_norm="default"`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

use crate::dropout::SeededDropout;
use crate::init::{DEFAULT_INIT_SEED, ParamInit};
use crate::kernels;

/// Configuration of [`ResnetBlock2d`].
#[derive(Config, Debug)]
pub struct ResnetBlock2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Width of the time embedding.
    pub temb_channels: usize,
    /// GroupNorm groups.
    #[config(default = 32)]
    pub groups: usize,
    /// GroupNorm ε.
    #[config(default = 1e-6)]
    pub eps: f64,
    /// Dropout before the second conv (training only).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// The output is divided by this (diffusers' `output_scale_factor`).
    #[config(default = 1.0)]
    pub output_scale_factor: f64,
}

/// 3×3 convolution with padding 1, as every U-Net conv but the down-sampling one.
pub(crate) fn conv3x3<B: Backend>(
    cin: usize,
    cout: usize,
    init: &mut ParamInit,
    device: &B::Device,
) -> Conv2d<B> {
    let config =
        Conv2dConfig::new([cin, cout], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
    init.conv2d(&config, device)
}

/// GroupNorm with affine parameters.
pub(crate) fn group_norm<B: Backend>(
    groups: usize,
    channels: usize,
    eps: f64,
    device: &B::Device,
) -> GroupNorm<B> {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(eps)
        .init(device)
}

impl ResnetBlock2dConfig {
    /// Initializes the block from [`DEFAULT_INIT_SEED`] (see [`ResnetBlock2dConfig::init_with`]).
    ///
    /// # Panics
    ///
    /// If `dropout` is not in [0, 1).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResnetBlock2d<B> {
        self.init_with(&mut ParamInit::new(DEFAULT_INIT_SEED), device)
    }

    /// Initializes the block with weights drawn from `init` (PyTorch's and Burn's default
    /// distributions, see [`ParamInit`]; import weights to reproduce a checkpoint), and seeds
    /// its dropout from it.
    ///
    /// # Panics
    ///
    /// If `dropout` is not in [0, 1).
    pub fn init_with<B: Backend>(
        &self,
        init: &mut ParamInit,
        device: &B::Device,
    ) -> ResnetBlock2d<B> {
        let (cin, cout) = (self.in_channels, self.out_channels);
        ResnetBlock2d {
            norm1: group_norm(self.groups, cin, self.eps, device),
            conv1: conv3x3(cin, cout, init, device),
            time_emb_proj: init.linear(self.temb_channels, cout, device),
            norm2: group_norm(self.groups, cout, self.eps, device),
            dropout: SeededDropout::new(self.dropout, init.next_seed()),
            conv2: conv3x3(cout, cout, init, device),
            conv_shortcut: (cin != cout)
                .then(|| init.conv2d(&Conv2dConfig::new([cin, cout], [1, 1]), device)),
            output_scale_factor: self.output_scale_factor,
        }
    }
}

/// Residual block with timestep conditioning:
///
/// h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(temb))
/// h = conv2(dropout(SiLU(norm2(h))))
/// out = (shortcut(x) + h) / output_scale_factor
///
/// where `shortcut` is a 1×1 conv when the channel count changes, else the identity.
#[derive(Module, Debug)]
pub struct ResnetBlock2d<B: Backend> {
    /// First GroupNorm, over the input channels.
    pub norm1: GroupNorm<B>,
    /// First 3×3 conv.
    pub conv1: Conv2d<B>,
    /// Projection of the time embedding to the output channels.
    pub time_emb_proj: Linear<B>,
    /// Second GroupNorm.
    pub norm2: GroupNorm<B>,
    /// Dropout before `conv2` (masks from a host seed, see [`SeededDropout`]).
    pub dropout: SeededDropout,
    /// Second 3×3 conv.
    pub conv2: Conv2d<B>,
    /// 1×1 conv on the skip path when in ≠ out channels.
    pub conv_shortcut: Option<Conv2d<B>>,
    /// Output divisor.
    pub output_scale_factor: f64,
}

impl<B: Backend> ResnetBlock2d<B> {
    /// Applies the block.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, in_channels, h, w]`
    /// - `temb`: `[batch, temb_channels]`
    /// - output: `[batch, out_channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>, temb: Tensor<B, 2>) -> Tensor<B, 4> {
        // The time embedding and the skip connection are added in the convolutions' output
        // passes (`kernels::conv2d_shifted`, `kernels::conv2d_residual`).
        let t = self.time_emb_proj.forward(silu(temb));
        let h = kernels::group_norm(&self.norm1, x.clone(), true);
        let h = kernels::conv2d_shifted(&self.conv1, h, t);
        let h = kernels::group_norm(&self.norm2, h, true);
        let skip = match &self.conv_shortcut {
            Some(conv) => kernels::conv2d(conv, x),
            None => x,
        };
        let out = kernels::conv2d_residual(&self.conv2, self.dropout.forward(h), skip);
        if self.output_scale_factor == 1.0 {
            out
        } else {
            out / self.output_scale_factor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestBackend = burn::backend::Flex;

    #[test]
    fn shapes_and_shortcut() {
        let device = Default::default();
        let block = ResnetBlock2dConfig::new(8, 16, 32)
            .with_groups(4)
            .init::<TestBackend>(&device);
        assert!(block.conv_shortcut.is_some());
        let x = Tensor::<TestBackend, 4>::ones([2, 8, 4, 4], &device);
        let temb = Tensor::<TestBackend, 2>::ones([2, 32], &device);
        assert_eq!(block.forward(x, temb).dims(), [2, 16, 4, 4]);

        let same = ResnetBlock2dConfig::new(8, 8, 32)
            .with_groups(4)
            .init::<TestBackend>(&device);
        assert!(same.conv_shortcut.is_none());
    }
}
