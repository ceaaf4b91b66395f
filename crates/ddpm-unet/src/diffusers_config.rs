//! Adapter between diffusers' `UNet2DModel` `config.json` and [`UnetConfig`] (the DDPM U-Net of
//! Ho et al. 2020, arXiv:2006.11239v2, as published by google/ddpm-*).
//!
//! [`DiffusersUnetConfig`] mirrors the JSON (diffusers' keys and defaults); `TryFrom` rejects any
//! feature the Burn U-Net does not implement instead of ignoring it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{BlockType, ImportError, UnetConfig};

fn default_sample_size() -> Option<usize> {
    None
}
fn three() -> usize {
    3
}
fn default_true() -> bool {
    true
}
fn one_f() -> f64 {
    1.0
}
fn default_down() -> Vec<String> {
    [
        "DownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
    ]
    .map(String::from)
    .to_vec()
}
fn default_up() -> Vec<String> {
    [
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
    ]
    .map(String::from)
    .to_vec()
}
fn default_channels() -> Vec<usize> {
    vec![224, 448, 672, 896]
}
fn two() -> usize {
    2
}
fn default_attention_head_dim() -> Option<usize> {
    Some(8)
}
fn default_groups() -> usize {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn silu() -> String {
    "silu".into()
}
fn positional() -> String {
    "positional".into()
}
fn conv() -> String {
    "conv".into()
}
fn default_shift() -> String {
    "default".into()
}
fn default_mid() -> Option<String> {
    Some("UNetMidBlock2D".into())
}
fn class_name() -> String {
    "UNet2DModel".into()
}

/// diffusers' `UNet2DModel` `config.json`, with diffusers' defaults for absent keys.
///
/// Unknown keys are ignored on read only when they are null/false/absent-equivalent; every key
/// that changes the architecture is checked by `TryFrom<&DiffusersUnetConfig> for UnetConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusersUnetConfig {
    /// Always `"UNet2DModel"`.
    #[serde(rename = "_class_name", default = "class_name")]
    pub class_name: String,
    /// diffusers version that wrote the file.
    #[serde(
        rename = "_diffusers_version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub diffusers_version: Option<String>,
    /// Image size.
    #[serde(default = "default_sample_size")]
    pub sample_size: Option<usize>,
    /// Input channels.
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Output channels.
    #[serde(default = "three")]
    pub out_channels: usize,
    /// `2·sample − 1` before the network.
    #[serde(default)]
    pub center_input_sample: bool,
    /// `"positional"` only.
    #[serde(default = "positional")]
    pub time_embedding_type: String,
    /// Time MLP width (`null` = 4 · `block_out_channels[0]`).
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    /// Embedding frequency shift.
    #[serde(default)]
    pub freq_shift: f64,
    /// [cos, sin] order.
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    /// Down block names.
    #[serde(default = "default_down")]
    pub down_block_types: Vec<String>,
    /// `"UNetMidBlock2D"` (or null for none, unsupported).
    #[serde(default = "default_mid")]
    pub mid_block_type: Option<String>,
    /// Up block names.
    #[serde(default = "default_up")]
    pub up_block_types: Vec<String>,
    /// Channels per level.
    #[serde(default = "default_channels")]
    pub block_out_channels: Vec<usize>,
    /// Residual blocks per down level.
    #[serde(default = "two")]
    pub layers_per_block: usize,
    /// Divisor of the middle block's outputs.
    #[serde(default = "one_f")]
    pub mid_block_scale_factor: f64,
    /// Down-sampling conv padding.
    #[serde(default = "one_usize")]
    pub downsample_padding: usize,
    /// `"conv"` only.
    #[serde(default = "conv")]
    pub downsample_type: String,
    /// `"conv"` only.
    #[serde(default = "conv")]
    pub upsample_type: String,
    /// Residual-block dropout.
    #[serde(default)]
    pub dropout: f64,
    /// `"silu"` only.
    #[serde(default = "silu")]
    pub act_fn: String,
    /// Channels per head (`null` = one head of full width).
    ///
    /// NOTE: an absent key means diffusers' default of 8 channels per head, not one head;
    /// google/ddpm-* configs write `null` explicitly.
    #[serde(default = "default_attention_head_dim")]
    pub attention_head_dim: Option<usize>,
    /// GroupNorm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Groups of the middle attention's norm (`null` = `norm_num_groups`).
    #[serde(default)]
    pub attn_norm_num_groups: Option<usize>,
    /// GroupNorm ε.
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// `"default"` only.
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
    /// Middle-block attention.
    #[serde(default = "default_true")]
    pub add_attention: bool,
    /// Class conditioning (unsupported unless null).
    #[serde(default)]
    pub class_embed_type: Option<Value>,
    /// Class conditioning (unsupported unless null).
    #[serde(default)]
    pub num_class_embeds: Option<Value>,
    /// Informational only.
    #[serde(default)]
    pub num_train_timesteps: Option<Value>,
}

fn one_usize() -> usize {
    1
}

fn unsupported(field: &'static str, value: impl Serialize, supported: &'static str) -> ImportError {
    ImportError::Unsupported {
        field,
        value: serde_json::to_string(&value).unwrap_or_default(),
        supported,
    }
}

fn block_type(name: &str, field: &'static str, up: bool) -> Result<BlockType, ImportError> {
    match (name, up) {
        ("DownBlock2D", false) | ("UpBlock2D", true) => Ok(BlockType::Plain),
        ("AttnDownBlock2D", false) | ("AttnUpBlock2D", true) => Ok(BlockType::Attention),
        _ => Err(unsupported(
            field,
            name,
            if up {
                "UpBlock2D, AttnUpBlock2D"
            } else {
                "DownBlock2D, AttnDownBlock2D"
            },
        )),
    }
}

impl TryFrom<&DiffusersUnetConfig> for UnetConfig {
    type Error = ImportError;

    /// Converts, then validates.
    fn try_from(d: &DiffusersUnetConfig) -> Result<Self, ImportError> {
        let check = |field: &'static str, value: &str, want: &'static str| {
            if value == want {
                Ok(())
            } else {
                Err(unsupported(field, value, want))
            }
        };
        check("_class_name", &d.class_name, "UNet2DModel")?;
        check("time_embedding_type", &d.time_embedding_type, "positional")?;
        check("act_fn", &d.act_fn, "silu")?;
        check("downsample_type", &d.downsample_type, "conv")?;
        check("upsample_type", &d.upsample_type, "conv")?;
        check(
            "resnet_time_scale_shift",
            &d.resnet_time_scale_shift,
            "default",
        )?;
        match d.mid_block_type.as_deref() {
            Some("UNetMidBlock2D") => {}
            other => return Err(unsupported("mid_block_type", other, "UNetMidBlock2D")),
        }
        for (field, v) in [
            ("class_embed_type", &d.class_embed_type),
            ("num_class_embeds", &d.num_class_embeds),
        ] {
            if v.as_ref().is_some_and(|v| !v.is_null()) {
                return Err(unsupported(field, v, "null"));
            }
        }
        if let Some(g) = d.attn_norm_num_groups
            && g != d.norm_num_groups
        {
            return Err(unsupported(
                "attn_norm_num_groups",
                g,
                "null or equal to norm_num_groups",
            ));
        }
        let down = d
            .down_block_types
            .iter()
            .map(|n| block_type(n, "down_block_types", false))
            .collect::<Result<Vec<_>, _>>()?;
        let up = d
            .up_block_types
            .iter()
            .map(|n| block_type(n, "up_block_types", true))
            .collect::<Result<Vec<_>, _>>()?;
        let config = UnetConfig::new()
            .with_sample_size(d.sample_size.unwrap_or(32))
            .with_in_channels(d.in_channels)
            .with_out_channels(d.out_channels)
            .with_block_out_channels(d.block_out_channels.clone())
            .with_down_block_types(down)
            .with_up_block_types(up)
            .with_layers_per_block(d.layers_per_block)
            .with_norm_num_groups(d.norm_num_groups)
            .with_norm_eps(d.norm_eps)
            .with_dropout(d.dropout)
            .with_flip_sin_to_cos(d.flip_sin_to_cos)
            .with_freq_shift(d.freq_shift)
            .with_time_embedding_dim(d.time_embedding_dim)
            .with_attention_head_dim(d.attention_head_dim)
            .with_downsample_padding(d.downsample_padding)
            .with_mid_block_scale_factor(d.mid_block_scale_factor)
            .with_mid_block_attention(d.add_attention)
            .with_center_input_sample(d.center_input_sample);
        config.validate()?;
        Ok(config)
    }
}

impl From<&UnetConfig> for DiffusersUnetConfig {
    /// The `config.json` diffusers' `UNet2DModel.from_pretrained` reads back as the same model.
    fn from(c: &UnetConfig) -> Self {
        let down = |b: &BlockType| match b {
            BlockType::Plain => "DownBlock2D".to_string(),
            BlockType::Attention => "AttnDownBlock2D".to_string(),
        };
        let up = |b: &BlockType| match b {
            BlockType::Plain => "UpBlock2D".to_string(),
            BlockType::Attention => "AttnUpBlock2D".to_string(),
        };
        Self {
            class_name: class_name(),
            diffusers_version: None,
            sample_size: Some(c.sample_size),
            in_channels: c.in_channels,
            out_channels: c.out_channels,
            center_input_sample: c.center_input_sample,
            time_embedding_type: positional(),
            time_embedding_dim: c.time_embedding_dim,
            freq_shift: c.freq_shift,
            flip_sin_to_cos: c.flip_sin_to_cos,
            down_block_types: c.down_block_types.iter().map(down).collect(),
            mid_block_type: default_mid(),
            up_block_types: c.up_block_types.iter().map(up).collect(),
            block_out_channels: c.block_out_channels.clone(),
            layers_per_block: c.layers_per_block,
            mid_block_scale_factor: c.mid_block_scale_factor,
            downsample_padding: c.downsample_padding,
            downsample_type: conv(),
            upsample_type: conv(),
            dropout: c.dropout,
            act_fn: silu(),
            attention_head_dim: c.attention_head_dim,
            norm_num_groups: c.norm_num_groups,
            attn_norm_num_groups: None,
            norm_eps: c.norm_eps,
            resnet_time_scale_shift: default_shift(),
            add_attention: c.mid_block_attention,
            class_embed_type: None,
            num_class_embeds: None,
            num_train_timesteps: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// google/ddpm-cifar10-32's config.json, as published on the Hub (older diffusers keys).
    const CIFAR10_JSON: &str = r#"{
        "_class_name": "UNet2DModel", "_diffusers_version": "0.1.1",
        "act_fn": "silu", "attention_head_dim": null,
        "block_out_channels": [128, 256, 256, 256], "center_input_sample": false,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1,
        "in_channels": 3, "layers_per_block": 2, "mid_block_scale_factor": 1,
        "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_size": 32,
        "time_embedding_type": "positional",
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
    }"#;

    #[test]
    fn cifar10_hub_config_is_the_preset() {
        let d: DiffusersUnetConfig = serde_json::from_str(CIFAR10_JSON).unwrap();
        let config = UnetConfig::try_from(&d).unwrap();
        // Only dropout differs: the paper's 0.1 vs diffusers' default 0.
        assert_eq!(config, UnetConfig::ddpm_cifar10().with_dropout(0.0));
    }

    #[test]
    fn round_trip_through_diffusers_json() {
        let config = UnetConfig::mnist().with_attention_head_dim(Some(16));
        let json = serde_json::to_string(&DiffusersUnetConfig::from(&config)).unwrap();
        let back: DiffusersUnetConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(UnetConfig::try_from(&back).unwrap(), config);
    }

    #[test]
    fn unsupported_features_are_errors() {
        let mut d: DiffusersUnetConfig = serde_json::from_str(CIFAR10_JSON).unwrap();
        d.down_block_types[1] = "CrossAttnDownBlock2D".into();
        let err = UnetConfig::try_from(&d).unwrap_err().to_string();
        assert!(
            err.contains("down_block_types") && err.contains("CrossAttnDownBlock2D"),
            "{err}"
        );

        let mut d: DiffusersUnetConfig = serde_json::from_str(CIFAR10_JSON).unwrap();
        d.resnet_time_scale_shift = "scale_shift".into();
        let err = UnetConfig::try_from(&d).unwrap_err().to_string();
        assert!(err.contains("resnet_time_scale_shift"), "{err}");

        let mut d: DiffusersUnetConfig = serde_json::from_str(CIFAR10_JSON).unwrap();
        d.norm_num_groups = 48;
        let err = UnetConfig::try_from(&d).unwrap_err().to_string();
        assert!(err.contains("norm_num_groups"), "{err}");
    }
}
