//! The DDPM noise predictor ε_θ(x_t, t): a PixelCNN++-style U-Net of wide residual blocks with
//! GroupNorm, SiLU, self-attention at chosen resolutions and a sinusoidal timestep embedding
//! (Ho et al. 2020, arXiv:2006.11239v2, §4 and Appendix B). Trained with
//! L_simple = E‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² (Eq. 14).
//!
//! Module and field names equal diffusers' `UNet2DModel` state-dict keys.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

use crate::kernels;
use burn::tensor::{Int, Tensor};

use crate::UnetError;
use crate::config::UnetConfig;
use crate::down::{DownBlock2d, DownBlock2dConfig};
use crate::mid::{MidBlock2d, MidBlock2dConfig};
use crate::resnet::{conv3x3, group_norm};
use crate::time_embedding::{TimestepEmbedding, TimestepEmbeddingConfig, timestep_embedding};
use crate::up::{UpBlock2d, UpBlock2dConfig};

impl UnetConfig {
    /// Validates the config and initializes a U-Net with random weights (Burn's default
    /// Kaiming-uniform initializers, GroupNorm γ = 1, β = 0).
    ///
    /// # Errors
    ///
    /// The [`UnetError`] of [`UnetConfig::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Unet<B>, UnetError> {
        self.validate()?;
        let levels = self.num_levels();
        let c0 = self.block_out_channels[0];
        let temb = self.time_embed_dim();
        let heads = |use_attn: bool, c: usize| use_attn.then(|| self.attention_heads(c));
        let down_blocks = (0..levels)
            .map(|level| {
                let out = self.block_out_channels[level];
                DownBlock2dConfig::new(self.down_resnet_channels(level), temb, level + 1 < levels)
                    .with_attention_heads(heads(self.down_block_types[level].has_attention(), out))
                    .with_downsample_padding(self.downsample_padding)
                    .with_groups(self.norm_num_groups)
                    .with_eps(self.norm_eps)
                    .with_dropout(self.dropout)
                    .init(device)
            })
            .collect();
        let c_mid = self.block_out_channels[levels - 1];
        let mid_block = MidBlock2dConfig::new(c_mid, temb)
            .with_attention_heads(heads(self.mid_block_attention, c_mid))
            .with_groups(self.norm_num_groups)
            .with_eps(self.norm_eps)
            .with_dropout(self.dropout)
            .with_output_scale_factor(self.mid_block_scale_factor)
            .init(device);
        let up_blocks = (0..levels)
            .map(|level| {
                let out = self.block_out_channels[levels - 1 - level];
                UpBlock2dConfig::new(self.up_resnet_channels(level), temb, level + 1 < levels)
                    .with_attention_heads(heads(self.up_block_types[level].has_attention(), out))
                    .with_groups(self.norm_num_groups)
                    .with_eps(self.norm_eps)
                    .with_dropout(self.dropout)
                    .init(device)
            })
            .collect();
        Ok(Unet {
            time_embedding: TimestepEmbeddingConfig::new(c0, temb).init(device),
            conv_in: conv3x3(self.in_channels, c0, device),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(self.norm_num_groups, c0, self.norm_eps, device),
            conv_out: conv3x3(c0, self.out_channels, device),
            config: self.clone(),
        })
    }
}

/// The DDPM U-Net ε_θ(x_t, t), built by [`UnetConfig::init`] or imported with
/// [`Unet::from_diffusers`](crate::Unet::from_diffusers).
#[derive(Module, Debug)]
#[doc(alias = "UNet2DModel")]
pub struct Unet<B: Backend> {
    /// MLP on the sinusoidal embedding of t.
    pub time_embedding: TimestepEmbedding<B>,
    /// 3×3 conv from the image channels to `block_out_channels[0]`.
    pub conv_in: Conv2d<B>,
    /// Down levels, full resolution first.
    pub down_blocks: Vec<DownBlock2d<B>>,
    /// The middle block.
    pub mid_block: MidBlock2d<B>,
    /// Up levels, lowest resolution first.
    pub up_blocks: Vec<UpBlock2d<B>>,
    /// Final GroupNorm.
    pub conv_norm_out: GroupNorm<B>,
    /// 3×3 conv to `out_channels`.
    pub conv_out: Conv2d<B>,
    /// The (validated) config the model was built from; read it with [`Unet::config`].
    config: UnetConfig,
}

/// The activations diffusers' forward hooks see, for block-by-block parity checks.
///
/// Names follow diffusers' module names; `down_blocks[i]` / `up_blocks[i]` are the hidden states
/// the block returns, `conv_norm_out` is before the SiLU.
#[derive(Debug, Clone)]
pub struct UnetIntermediates<B: Backend> {
    /// Sinusoidal embedding of t, `[batch, block_out_channels[0]]`.
    pub time_proj: Tensor<B, 2>,
    /// Output of the time MLP, `[batch, time_embed_dim]`.
    pub time_embedding: Tensor<B, 2>,
    /// Output of `conv_in`.
    pub conv_in: Tensor<B, 4>,
    /// Output of each down level.
    pub down_blocks: Vec<Tensor<B, 4>>,
    /// Output of the middle block.
    pub mid_block: Tensor<B, 4>,
    /// Output of each up level.
    pub up_blocks: Vec<Tensor<B, 4>>,
    /// Output of `conv_norm_out` (before SiLU).
    pub conv_norm_out: Tensor<B, 4>,
    /// Output of `conv_out`, the model output.
    pub conv_out: Tensor<B, 4>,
}

/// Activations recorded by [`Unet::forward_with_intermediates`].
struct Recorded<B: Backend> {
    embeddings: Vec<Tensor<B, 2>>,
    maps: Vec<Tensor<B, 4>>,
}

impl<B: Backend> Default for Recorded<B> {
    fn default() -> Self {
        Self {
            embeddings: Vec::new(),
            maps: Vec::new(),
        }
    }
}

impl<B: Backend> Unet<B> {
    /// The validated config the model was built from (read-only: the module's shapes depend
    /// on it).
    pub fn config(&self) -> &UnetConfig {
        &self.config
    }

    /// Predicts the noise ε_θ(x_t, t) (or, with `out_channels` = 2·C, the noise and the
    /// variance interpolation of Nichol & Dhariwal 2021).
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, in_channels, h, w]`, with h and w sizes the U-Net can down- and
    ///   up-sample back (e.g. divisible by 2^(levels − 1))
    /// - `t`: `[batch]`, one integer timestep per sample (0-based, as diffusers)
    /// - output: `[batch, out_channels, h, w]`
    ///
    /// # Panics
    ///
    /// If `x` has the wrong channel count or a spatial size whose skip connections would not
    /// line up, or if `t` does not hold one timestep per sample. The message names the
    /// expected and the actual shapes.
    pub fn forward(&self, x: Tensor<B, 4>, t: Tensor<B, 1, Int>) -> Tensor<B, 4> {
        self.run(x, t, None)
    }

    /// [`Unet::forward`] that also returns every block's output.
    ///
    /// # Shapes
    ///
    /// As [`Unet::forward`].
    ///
    /// # Panics
    ///
    /// As [`Unet::forward`].
    pub fn forward_with_intermediates(
        &self,
        x: Tensor<B, 4>,
        t: Tensor<B, 1, Int>,
    ) -> UnetIntermediates<B> {
        let mut rec = Recorded::default();
        let out = self.run(x, t, Some(&mut rec));
        let levels = self.down_blocks.len();
        let mut maps = rec.maps.into_iter();
        let mut next = || maps.next().expect("recorded activation");
        let conv_in = next();
        let down_blocks = (0..levels).map(|_| next()).collect();
        let mid_block = next();
        let up_blocks = (0..levels).map(|_| next()).collect();
        let conv_norm_out = next();
        let [time_proj, time_embedding]: [Tensor<B, 2>; 2] =
            rec.embeddings.try_into().expect("two embeddings");
        UnetIntermediates {
            time_proj,
            time_embedding,
            conv_in,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out: out,
        }
    }

    /// Panics with a message naming the expected and actual shapes.
    fn check_shapes(&self, x: &Tensor<B, 4>, t: &Tensor<B, 1, Int>) {
        let [batch, channels, h, w] = x.dims();
        let c = self.config.in_channels;
        let multiple = 1usize << (self.down_blocks.len() - 1).min(31);
        let fits = |s: usize| self.config.level_sizes(s).is_ok();
        if channels != c || !fits(h) || !fits(w) {
            panic!(
                "Unet::forward: expected x of shape [batch, {c}, h, w] with h and w divisible \
                 by {multiple} (e.g. [{batch}, {c}, {s}, {s}]), got {:?}",
                [batch, channels, h, w],
                s = self.config.sample_size,
            );
        }
        let [nt] = t.dims();
        if nt != batch {
            panic!(
                "Unet::forward: expected timesteps of shape [{batch}] (one per sample of x \
                 {:?}), got [{nt}]",
                [batch, channels, h, w]
            );
        }
    }

    /// The forward pass; records the activations in diffusers' order when asked.
    fn run(
        &self,
        x: Tensor<B, 4>,
        t: Tensor<B, 1, Int>,
        mut record: Option<&mut Recorded<B>>,
    ) -> Tensor<B, 4> {
        self.check_shapes(&x, &t);
        let mut rec2 = |v: &Tensor<B, 2>| {
            if let Some(r) = record.as_deref_mut() {
                r.embeddings.push(v.clone());
            }
        };
        let config = &self.config;
        let c0 = config.block_out_channels[0];
        let x = if config.center_input_sample {
            x * 2.0 - 1.0
        } else {
            x
        };
        let t_emb = timestep_embedding(t, c0, config.flip_sin_to_cos, config.freq_shift);
        rec2(&t_emb);
        let emb = self.time_embedding.forward(t_emb);
        rec2(&emb);
        let mut rec4 = |v: &Tensor<B, 4>| {
            if let Some(r) = record.as_deref_mut() {
                r.maps.push(v.clone());
            }
        };
        let mut h = kernels::conv2d(&self.conv_in, x);
        rec4(&h);
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            h = block.forward(h, emb.clone(), &mut skips);
            rec4(&h);
        }
        h = self.mid_block.forward(h, emb.clone());
        rec4(&h);
        for block in &self.up_blocks {
            h = block.forward(h, emb.clone(), &mut skips);
            rec4(&h);
        }
        // Not fused with the SiLU: diffusers' hooks record `conv_norm_out`'s own output.
        let h = kernels::group_norm(&self.conv_norm_out, h, false);
        rec4(&h);
        kernels::conv2d(&self.conv_out, silu(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UnetConfig;

    type TestBackend = burn::backend::Flex;

    #[test]
    fn module_count_equals_config_count() {
        let device = Default::default();
        for config in [UnetConfig::tiny(), UnetConfig::mnist()] {
            let unet = config.init::<TestBackend>(&device).unwrap();
            assert_eq!(unet.num_params(), config.num_params());
            let counts = config.param_counts();
            for (i, block) in unet.down_blocks.iter().enumerate() {
                let want = counts
                    .iter()
                    .find(|(n, _)| *n == format!("down_blocks.{i}"));
                assert_eq!(Some(block.num_params()), want.map(|p| p.1));
            }
        }
    }

    #[test]
    fn output_shape() {
        let device = Default::default();
        let unet = UnetConfig::tiny().init::<TestBackend>(&device).unwrap();
        let x = Tensor::<TestBackend, 4>::zeros([2, 3, 16, 16], &device);
        let t = Tensor::<TestBackend, 1, Int>::from_ints([1, 999], &device);
        assert_eq!(unet.forward(x, t).dims(), [2, 3, 16, 16]);
        // Other sizes work as long as they halve cleanly.
        let x = Tensor::<TestBackend, 4>::zeros([1, 3, 8, 12], &device);
        let t = Tensor::<TestBackend, 1, Int>::from_ints([5], &device);
        assert_eq!(unet.forward(x, t).dims(), [1, 3, 8, 12]);
    }

    #[test]
    #[should_panic(expected = "expected x of shape [batch, 3, h, w] with h and w divisible by 2")]
    fn wrong_channels_panics() {
        let device = Default::default();
        let unet = UnetConfig::tiny().init::<TestBackend>(&device).unwrap();
        let x = Tensor::<TestBackend, 4>::zeros([1, 1, 16, 16], &device);
        let t = Tensor::<TestBackend, 1, Int>::from_ints([5], &device);
        unet.forward(x, t);
    }

    #[test]
    #[should_panic(expected = "got [1, 3, 15, 16]")]
    fn odd_size_panics() {
        let device = Default::default();
        let unet = UnetConfig::tiny().init::<TestBackend>(&device).unwrap();
        let x = Tensor::<TestBackend, 4>::zeros([1, 3, 15, 16], &device);
        let t = Tensor::<TestBackend, 1, Int>::from_ints([5], &device);
        unet.forward(x, t);
    }

    #[test]
    #[should_panic(expected = "expected timesteps of shape [2]")]
    fn wrong_timesteps_panics() {
        let device = Default::default();
        let unet = UnetConfig::tiny().init::<TestBackend>(&device).unwrap();
        let x = Tensor::<TestBackend, 4>::zeros([2, 3, 16, 16], &device);
        let t = Tensor::<TestBackend, 1, Int>::from_ints([5], &device);
        unet.forward(x, t);
    }

    #[test]
    fn invalid_config_is_an_error_at_init() {
        let device = Default::default();
        let err = UnetConfig::tiny()
            .with_block_out_channels(vec![30, 64])
            .init::<TestBackend>(&device)
            .unwrap_err();
        assert!(
            err.to_string().contains("`block_out_channels[0]` = 30"),
            "{err}"
        );
    }
}
