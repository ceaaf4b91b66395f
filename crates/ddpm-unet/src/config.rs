//! [`UnetConfig`]: the hyper-parameters of the DDPM U-Net (Ho et al. 2020, arXiv:2006.11239v2,
//! Appendix B), laid out like diffusers' `UNet2DModel` config, with the paper's models as
//! presets, validation, and the parameter count computed without allocating a model.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::UnetError;

/// The kind of a U-Net level: residual blocks only, or residual blocks each followed by
/// self-attention.
///
/// diffusers spells these as block-type strings: `DownBlock2D`/`UpBlock2D` are
/// [`BlockType::Plain`], `AttnDownBlock2D`/`AttnUpBlock2D` are [`BlockType::Attention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[doc(alias = "DownBlock2D")]
#[doc(alias = "AttnDownBlock2D")]
pub enum BlockType {
    /// Residual blocks only (`DownBlock2D`, `UpBlock2D`).
    Plain,
    /// Residual blocks each followed by a self-attention block (`AttnDownBlock2D`,
    /// `AttnUpBlock2D`).
    Attention,
}

impl BlockType {
    /// Whether the level has attention.
    pub fn has_attention(self) -> bool {
        self == BlockType::Attention
    }
}

/// Largest accepted channel count (`in_channels`, `out_channels`, `time_embedding_dim`;
/// `block_out_channels` entries get a quarter of it, since the time MLP is 4× the first).
const MAX_CHANNELS: usize = 1 << 16;
/// Largest accepted number of resolution levels.
const MAX_LEVELS: usize = 16;
/// Largest accepted `layers_per_block`.
const MAX_LAYERS_PER_BLOCK: usize = 64;
/// Largest accepted `sample_size`.
const MAX_SAMPLE_SIZE: usize = 1 << 14;
/// Largest accepted parameter count: 4·10⁹ (16 GB in f32; google/ddpm-ema-church-256 has
/// 1.1·10⁸).
pub const MAX_PARAMS: usize = 4_000_000_000;

/// Configuration of the DDPM noise predictor ε_θ(x_t, t).
///
/// Mirrors diffusers' `UNet2DModel` config (see [`DiffusersUnetConfig`](crate::DiffusersUnetConfig)
/// for the JSON adapter). The defaults are the paper's CIFAR10 model
/// ([`UnetConfig::ddpm_cifar10`], 35,746,307 parameters).
///
/// Lists are indexed like diffusers': `down_block_types[i]` is `down_blocks.i` (full resolution
/// first), `up_block_types[i]` is `up_blocks.i` (lowest resolution first).
#[derive(Config, Debug, PartialEq)]
pub struct UnetConfig {
    /// Height = width of the training images; diffusers' `sample_size`. The model runs at any
    /// size whose down- and up-sampling path lines up; this one is validated. Default: 32
    /// (CIFAR10).
    #[config(default = 32)]
    pub sample_size: usize,
    /// Channels of x_t. Default: 3.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of the output: C for ε-prediction, 2·C when the variance is learned
    /// (Nichol & Dhariwal 2021). Default: 3.
    #[config(default = 3)]
    pub out_channels: usize,
    /// Channels of each resolution level. Default: 128·(1, 2, 2, 2) (paper, Appendix B).
    #[config(default = "vec![128, 256, 256, 256]")]
    pub block_out_channels: Vec<usize>,
    /// Kind of each down level (`down_blocks.i`). Default: attention at 16×16 only (paper).
    #[config(
        default = "vec![BlockType::Plain, BlockType::Attention, BlockType::Plain, BlockType::Plain]"
    )]
    pub down_block_types: Vec<BlockType>,
    /// Kind of each up level (`up_blocks.i`, lowest resolution first). Default: attention at
    /// 16×16 only.
    #[config(
        default = "vec![BlockType::Plain, BlockType::Plain, BlockType::Attention, BlockType::Plain]"
    )]
    pub up_block_types: Vec<BlockType>,
    /// Residual blocks per down level (up levels have one more). Default: 2 (paper).
    #[config(default = 2)]
    pub layers_per_block: usize,
    /// Groups of every GroupNorm. Default: 32 (paper: "group normalization").
    #[config(default = 32)]
    pub norm_num_groups: usize,
    /// GroupNorm ε. Default: 1e-6 (the official TF code and google/ddpm-* configs).
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// Dropout probability inside residual blocks, active only under an autodiff backend.
    /// Default: 0.1 (paper, CIFAR10).
    ///
    /// NOTE: google/ddpm-cifar10-32's config.json has no dropout key (diffusers' default 0.0);
    /// dropout has no parameters and no effect at inference, so weights load either way.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Order of the sinusoidal embedding halves: `false` = [sin, cos] (DDPM), `true` =
    /// [cos, sin]. Default: false.
    #[config(default = false)]
    pub flip_sin_to_cos: bool,
    /// Frequency shift s of the embedding, frequencies exp(−ln(10000)·i/(half − s)).
    /// Default: 1 (DDPM's official code).
    #[config(default = 1.0)]
    pub freq_shift: f64,
    /// Width of the time-embedding MLP; `None` = 4 · `block_out_channels[0]`. Default: None.
    #[config(default = "None")]
    pub time_embedding_dim: Option<usize>,
    /// Channels per attention head; `None` = one head as wide as the level. Default: None
    /// (DDPM).
    #[config(default = "None")]
    pub attention_head_dim: Option<usize>,
    /// Padding of the stride-2 down-sampling conv. `0` pads right/bottom by one, as TF's
    /// "SAME" (DDPM); `p > 0` pads p on every side. Default: 0.
    #[config(default = 0)]
    pub downsample_padding: usize,
    /// Output divisor of the middle block's residual and attention blocks. Default: 1.
    #[config(default = 1.0)]
    pub mid_block_scale_factor: f64,
    /// Whether the middle block has self-attention (diffusers' `add_attention`). Default: true.
    #[config(default = true)]
    pub mid_block_attention: bool,
    /// Map the input from [0, 1] to [−1, 1] first (diffusers' `center_input_sample`).
    /// Default: false.
    #[config(default = false)]
    pub center_input_sample: bool,
}

/// Names accepted by [`UnetConfig::preset`].
pub const PRESET_NAMES: &str = "ddpm-cifar10, ddpm-256, mnist, mnist-small, tiny";

impl UnetConfig {
    /// The paper's CIFAR10 model = google/ddpm-cifar10-32: 32×32×3, 128·(1, 2, 2, 2), 2 residual
    /// blocks per level, attention at 16×16, 32 groups, ε 1e-6, dropout 0.1; 35,746,307
    /// parameters.
    pub fn ddpm_cifar10() -> Self {
        Self::new()
    }

    /// The paper's 256×256 model (CelebA-HQ, LSUN; google/ddpm-celebahq-256 and friends):
    /// 128·(1, 1, 2, 2, 4, 4), 2 residual blocks per level, attention at 16×16, dropout 0;
    /// 113,673,219 parameters (the paper's "114M").
    pub fn ddpm_256() -> Self {
        use BlockType::{Attention as A, Plain as P};
        Self::new()
            .with_sample_size(256)
            .with_block_out_channels(vec![128, 128, 256, 256, 512, 512])
            .with_down_block_types(vec![P, P, P, P, A, P])
            .with_up_block_types(vec![P, A, P, P, P, P])
            .with_dropout(0.0)
    }

    /// A small MNIST model (28×28×1, 32·(1, 2, 2), 2 residual blocks per level, attention at
    /// 14×14; 1,623,169 parameters), the configuration of `bench/torch_unet.py`'s `mnist_28`.
    /// Sizes 28 → 14 → 7 and back.
    pub fn mnist() -> Self {
        use BlockType::{Attention as A, Plain as P};
        Self::new()
            .with_sample_size(28)
            .with_in_channels(1)
            .with_out_channels(1)
            .with_block_out_channels(vec![32, 64, 64])
            .with_down_block_types(vec![P, A, P])
            .with_up_block_types(vec![P, A, P])
    }

    /// An MNIST model sized for a CPU (the README's main job): 28×28×1, 16·(1, 2, 4), one
    /// residual block per level, attention only in the middle block (7×7), 8 groups, no
    /// dropout; 636,465 parameters, about a third of [`UnetConfig::mnist`]'s training cost
    /// per image. Sizes 28 → 14 → 7 and back.
    pub fn mnist_small() -> Self {
        use BlockType::Plain as P;
        Self::new()
            .with_sample_size(28)
            .with_in_channels(1)
            .with_out_channels(1)
            .with_block_out_channels(vec![16, 32, 64])
            .with_down_block_types(vec![P, P, P])
            .with_up_block_types(vec![P, P, P])
            .with_layers_per_block(1)
            .with_norm_num_groups(8)
            .with_dropout(0.0)
    }

    /// A tiny model for tests: 16×16×3, (32, 64), one residual block per level, attention at
    /// the second level, 8 groups, no dropout; 702,499 parameters. Same as the `unet_tiny`
    /// fixture.
    pub fn tiny() -> Self {
        use BlockType::{Attention as A, Plain as P};
        Self::new()
            .with_sample_size(16)
            .with_block_out_channels(vec![32, 64])
            .with_down_block_types(vec![P, A])
            .with_up_block_types(vec![A, P])
            .with_layers_per_block(1)
            .with_norm_num_groups(8)
            .with_dropout(0.0)
    }

    /// A preset by its CLI name: `ddpm-cifar10`, `ddpm-256`, `mnist` or `tiny` (underscores
    /// are accepted for dashes).
    ///
    /// # Errors
    ///
    /// [`UnetError::UnknownPreset`] for any other name.
    pub fn preset(name: &str) -> Result<Self, UnetError> {
        match name.replace('_', "-").as_str() {
            "ddpm-cifar10" | "ddpm-cifar10-32" | "cifar10" => Ok(Self::ddpm_cifar10()),
            "ddpm-256" => Ok(Self::ddpm_256()),
            "mnist" => Ok(Self::mnist()),
            "mnist-small" => Ok(Self::mnist_small()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(UnetError::UnknownPreset {
                name: name.to_string(),
                known: PRESET_NAMES,
            }),
        }
    }

    /// Number of resolution levels.
    pub fn num_levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Width of the time embedding (`time_embedding_dim`, else 4 · `block_out_channels[0]`).
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(4 * self.block_out_channels.first().copied().unwrap_or(0))
    }

    /// Attention heads of a level with `channels` channels.
    pub fn attention_heads(&self, channels: usize) -> usize {
        channels / self.attention_head_dim.unwrap_or(channels).max(1)
    }

    /// Spatial size after one down-sampling step (3×3 conv, stride 2), `None` if too small.
    pub fn downsampled_size(&self, size: usize) -> Option<usize> {
        let padded = if self.downsample_padding == 0 {
            size + 1
        } else {
            size + 2 * self.downsample_padding
        };
        (size > 0 && padded >= 3).then(|| (padded - 3) / 2 + 1)
    }

    /// Checks that `size` × `size` inputs line up with the skip connections; on success returns
    /// the size of each level.
    ///
    /// # Errors
    ///
    /// [`UnetError::SampleSize`] naming the level where down- and up-sampling disagree.
    pub fn level_sizes(&self, size: usize) -> Result<Vec<usize>, UnetError> {
        let levels = self.num_levels();
        let mut sizes = vec![size];
        let multiple = 1usize << levels.saturating_sub(1).min(31);
        for level in 0..levels.saturating_sub(1) {
            let cur = sizes[level];
            let down = self.downsampled_size(cur).unwrap_or(0);
            if down == 0 || 2 * down != cur {
                return Err(UnetError::SampleSize {
                    sample_size: size,
                    level,
                    size: cur,
                    down,
                    up: 2 * down,
                    multiple,
                });
            }
            sizes.push(down);
        }
        Ok(sizes)
    }

    /// (input, output) channels of each residual block of down level `level`.
    pub fn down_resnet_channels(&self, level: usize) -> Vec<(usize, usize)> {
        let out = self.block_out_channels[level];
        let first_in = if level == 0 {
            out
        } else {
            self.block_out_channels[level - 1]
        };
        (0..self.layers_per_block)
            .map(|j| (if j == 0 { first_in } else { out }, out))
            .collect()
    }

    /// (input, output) channels of each residual block of up level `level` (`up_blocks.level`),
    /// the input including the concatenated skip connection.
    pub fn up_resnet_channels(&self, level: usize) -> Vec<(usize, usize)> {
        let rev: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let n = rev.len();
        let out = rev[level];
        let prev_out = rev[level.saturating_sub(1)];
        let skip_in = rev[(level + 1).min(n - 1)];
        let layers = self.layers_per_block + 1;
        (0..layers)
            .map(|j| {
                let res_skip = if j == layers - 1 { skip_in } else { out };
                let res_in = if j == 0 { prev_out } else { out };
                (res_in + res_skip, out)
            })
            .collect()
    }

    /// Checks every constraint `init` relies on.
    ///
    /// # Errors
    ///
    /// The first violated constraint, naming the field: zero sizes, list lengths, channels not
    /// divisible by `norm_num_groups` or `attention_head_dim`, ε or dropout out of range, a
    /// `sample_size` whose path would not line up with the skip connections;
    /// [`UnetError::TooLarge`] for sizes no DDPM U-Net uses (more than [`MAX_PARAMS`]
    /// parameters, a channel count above 2¹⁶, ...), checked before anything is allocated.
    pub fn validate(&self) -> Result<(), UnetError> {
        let zero = |field: &str| UnetError::Zero {
            field: field.to_string(),
        };
        let levels = self.num_levels();
        if levels == 0 {
            return Err(UnetError::Length {
                field: "block_out_channels",
                len: 0,
                expected: 1,
            });
        }
        for (field, value) in [
            ("sample_size", self.sample_size),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("layers_per_block", self.layers_per_block),
            ("norm_num_groups", self.norm_num_groups),
        ] {
            if value == 0 {
                return Err(zero(field));
            }
        }
        if self.time_embedding_dim == Some(0) {
            return Err(zero("time_embedding_dim"));
        }
        self.check_sizes()?;
        if self.attention_head_dim == Some(0) {
            return Err(zero("attention_head_dim"));
        }
        for (field, list_len) in [
            ("down_block_types", self.down_block_types.len()),
            ("up_block_types", self.up_block_types.len()),
        ] {
            if list_len != levels {
                return Err(UnetError::Length {
                    field,
                    len: list_len,
                    expected: levels,
                });
            }
        }
        if self.block_out_channels[0] < 2 {
            // The sinusoidal embedding needs half = channels / 2 ≥ 1.
            return Err(zero("block_out_channels[0] / 2"));
        }
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            let field = format!("block_out_channels[{i}]");
            if c == 0 {
                return Err(zero(&field));
            }
            if c % self.norm_num_groups != 0 {
                return Err(UnetError::NotDivisible {
                    field,
                    value: c,
                    divisor_field: "norm_num_groups",
                    divisor: self.norm_num_groups,
                });
            }
            let attn = self.down_block_types[i].has_attention()
                || self.up_block_types[levels - 1 - i].has_attention()
                || (i == levels - 1 && self.mid_block_attention);
            if let (true, Some(d)) = (attn, self.attention_head_dim)
                && c % d != 0
            {
                return Err(UnetError::NotDivisible {
                    field,
                    value: c,
                    divisor_field: "attention_head_dim",
                    divisor: d,
                });
            }
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            return Err(UnetError::OutOfRange {
                field: "norm_eps",
                value: self.norm_eps,
                expected: "a finite value > 0",
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(UnetError::OutOfRange {
                field: "dropout",
                value: self.dropout,
                expected: "0 <= dropout < 1",
            });
        }
        if !(self.mid_block_scale_factor > 0.0 && self.mid_block_scale_factor.is_finite()) {
            return Err(UnetError::OutOfRange {
                field: "mid_block_scale_factor",
                value: self.mid_block_scale_factor,
                expected: "a finite value > 0",
            });
        }
        let half = (self.block_out_channels[0] / 2) as f64;
        if !self.freq_shift.is_finite() || half - self.freq_shift == 0.0 {
            return Err(UnetError::OutOfRange {
                field: "freq_shift",
                value: self.freq_shift,
                expected: "a finite value other than block_out_channels[0] / 2",
            });
        }
        self.level_sizes(self.sample_size)?;
        let params = self.num_params();
        if params > MAX_PARAMS {
            return Err(UnetError::TooLarge {
                field: "parameters".into(),
                value: params,
                max: MAX_PARAMS,
                reason: "16 GB of f32 weights; the largest DDPM U-Nets have ~10^8",
            });
        }
        Ok(())
    }

    /// Refuses sizes no DDPM U-Net uses (before anything multiplies them), so that
    /// [`UnetConfig::num_params`] cannot overflow and an absurd config never reaches the
    /// allocator.
    fn check_sizes(&self) -> Result<(), UnetError> {
        let too_large = |field: String, value: usize, max: usize, reason: &'static str| {
            (value > max).then_some(UnetError::TooLarge {
                field,
                value,
                max,
                reason,
            })
        };
        let channels = "channel counts of DDPM U-Nets are at most a few thousand";
        let mut checks = vec![
            too_large(
                "block_out_channels (levels)".into(),
                self.num_levels(),
                MAX_LEVELS,
                "each level halves the resolution",
            ),
            too_large(
                "sample_size".into(),
                self.sample_size,
                MAX_SAMPLE_SIZE,
                "DDPM models are trained at up to 1024x1024",
            ),
            too_large(
                "layers_per_block".into(),
                self.layers_per_block,
                MAX_LAYERS_PER_BLOCK,
                "DDPM U-Nets use 1 to 3",
            ),
            too_large(
                "in_channels".into(),
                self.in_channels,
                MAX_CHANNELS,
                channels,
            ),
            too_large(
                "out_channels".into(),
                self.out_channels,
                MAX_CHANNELS,
                channels,
            ),
            too_large(
                "time_embedding_dim".into(),
                self.time_embedding_dim.unwrap_or(0),
                MAX_CHANNELS,
                channels,
            ),
        ];
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            checks.push(too_large(
                format!("block_out_channels[{i}]"),
                c,
                MAX_CHANNELS / 4,
                channels,
            ));
        }
        match checks.into_iter().flatten().next() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Number of parameters of each top-level block, in diffusers' names and order:
    /// `time_embedding`, `conv_in`, `down_blocks.i`, `mid_block`, `up_blocks.i`,
    /// `conv_norm_out`, `conv_out`. Computed from the config alone (no allocation); equals
    /// diffusers' count for the same config. Call on a validated config.
    pub fn param_counts(&self) -> Vec<(String, usize)> {
        let conv = |i: usize, o: usize, k: usize| i * o * k * k + o;
        let linear = |i: usize, o: usize| i * o + o;
        let norm = |c: usize| 2 * c;
        let temb = self.time_embed_dim();
        let resnet = |i: usize, o: usize| {
            norm(i)
                + conv(i, o, 3)
                + linear(temb, o)
                + norm(o)
                + conv(o, o, 3)
                + if i != o { conv(i, o, 1) } else { 0 }
        };
        let attn = |c: usize| norm(c) + 4 * linear(c, c);
        let levels = self.num_levels();
        let c0 = self.block_out_channels[0];
        let mut counts = vec![
            (
                "time_embedding".to_string(),
                linear(c0, temb) + linear(temb, temb),
            ),
            ("conv_in".to_string(), conv(self.in_channels, c0, 3)),
        ];
        for level in 0..levels {
            let out = self.block_out_channels[level];
            let mut n = 0;
            for (i, o) in self.down_resnet_channels(level) {
                n += resnet(i, o);
                if self.down_block_types[level].has_attention() {
                    n += attn(o);
                }
            }
            if level + 1 < levels {
                n += conv(out, out, 3);
            }
            counts.push((format!("down_blocks.{level}"), n));
        }
        let c_mid = self.block_out_channels[levels - 1];
        let mid_attn = if self.mid_block_attention {
            attn(c_mid)
        } else {
            0
        };
        counts.push(("mid_block".to_string(), 2 * resnet(c_mid, c_mid) + mid_attn));
        for level in 0..levels {
            let out = self.block_out_channels[levels - 1 - level];
            let mut n = 0;
            for (i, o) in self.up_resnet_channels(level) {
                n += resnet(i, o);
                if self.up_block_types[level].has_attention() {
                    n += attn(o);
                }
            }
            if level + 1 < levels {
                n += conv(out, out, 3);
            }
            counts.push((format!("up_blocks.{level}"), n));
        }
        counts.push(("conv_norm_out".to_string(), norm(c0)));
        counts.push(("conv_out".to_string(), conv(c0, self.out_channels, 3)));
        counts
    }

    /// Total number of parameters (sum of [`UnetConfig::param_counts`]).
    pub fn num_params(&self) -> usize {
        self.param_counts().iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in ["ddpm-cifar10", "ddpm-256", "mnist", "mnist-small", "tiny"] {
            let config = UnetConfig::preset(name).unwrap();
            config.validate().unwrap();
        }
        // As instantiated (`ddpm train` printed the module's own count).
        assert_eq!(
            UnetConfig::preset("mnist-small").unwrap().num_params(),
            636_465
        );
        assert!(matches!(
            UnetConfig::preset("nope"),
            Err(UnetError::UnknownPreset { .. })
        ));
    }

    /// Counts published by diffusers for the same configs (`scripts/pytorch/README.md`, the fixture JSON).
    #[test]
    fn param_counts_equal_diffusers() {
        assert_eq!(UnetConfig::ddpm_cifar10().num_params(), 35_746_307);
        assert_eq!(UnetConfig::mnist().num_params(), 1_623_169);
        assert_eq!(UnetConfig::tiny().num_params(), 702_499);
        // The paper quotes 114M for the 256×256 models.
        assert_eq!(UnetConfig::ddpm_256().num_params(), 113_673_219);
    }

    #[test]
    fn level_sizes_line_up() {
        assert_eq!(UnetConfig::mnist().level_sizes(28).unwrap(), [28, 14, 7]);
        assert_eq!(
            UnetConfig::ddpm_cifar10().level_sizes(32).unwrap(),
            [32, 16, 8, 4]
        );
        let padded = UnetConfig::mnist().with_downsample_padding(1);
        assert_eq!(padded.level_sizes(28).unwrap(), [28, 14, 7]);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let err = UnetConfig::tiny()
            .with_norm_num_groups(7)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("block_out_channels[0]"), "{err}");
        assert!(err.to_string().contains("norm_num_groups"), "{err}");

        let err = UnetConfig::mnist()
            .with_sample_size(30)
            .validate()
            .unwrap_err();
        assert!(
            matches!(
                err,
                UnetError::SampleSize {
                    sample_size: 30,
                    level: 1,
                    size: 15,
                    ..
                }
            ),
            "{err}"
        );

        let err = UnetConfig::tiny()
            .with_block_out_channels(vec![32, 0])
            .validate()
            .unwrap_err();
        assert_eq!(
            err,
            UnetError::Zero {
                field: "block_out_channels[1]".into()
            }
        );

        let err = UnetConfig::tiny()
            .with_in_channels(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("in_channels"), "{err}");

        let err = UnetConfig::tiny()
            .with_up_block_types(vec![BlockType::Plain])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("up_block_types"), "{err}");

        let err = UnetConfig::tiny()
            .with_attention_head_dim(Some(48))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("attention_head_dim"), "{err}");

        let err = UnetConfig::tiny().with_dropout(1.0).validate().unwrap_err();
        assert!(err.to_string().contains("dropout"), "{err}");
    }

    #[test]
    fn config_json_round_trip() {
        let config = UnetConfig::mnist().with_attention_head_dim(Some(16));
        let json = serde_json::to_string(&config).unwrap();
        let back: UnetConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
}
