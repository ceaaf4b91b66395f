//! The noise predictor ε_θ(x_t, t) of "Denoising Diffusion Probabilistic Models" (Ho, Jain &
//! Abbeel 2020, arXiv:2006.11239v2): the PixelCNN++-style U-Net of Appendix B, written once
//! for every Burn backend, that loads and writes huggingface diffusers `UNet2DModel`
//! checkpoints and reproduces their outputs.
//!
//! - [`UnetConfig`]: hyper-parameters, named like diffusers' `config.json`, with presets
//!   ([`UnetConfig::ddpm_cifar10`], [`UnetConfig::ddpm_256`], [`UnetConfig::mnist`],
//!   [`UnetConfig::tiny`]), validation, and the parameter count (35,746,307 for CIFAR10, equal
//!   to diffusers').
//! - [`Unet`]: `forward(x_t [batch, C, H, W], t [batch]) -> ε̂ [batch, out, H, W]`; trains under
//!   `Autodiff<B>` (the loss of Eq. 14, L_simple = ‖ε − ε_θ(x_t, t)‖², lives in the loss crate);
//!   dropout is active only under an autodiff backend.
//! - Seeded, backend-independent initialisation: [`UnetConfig::init_seeded`] draws every
//!   weight on the host from one seed ([`ParamInit`], ChaCha8; PyTorch's and Burn's default
//!   U(−1/√fan_in, 1/√fan_in)), and dropout masks come from a host seed too
//!   ([`SeededDropout`], [`Unet::set_dropout_seed`]): a seed gives the same model and the same
//!   training step on Flex, wgpu, Vulkan, Metal and CUDA, in any thread.
//! - Reduced precision for inference: [`Unet::with_precision`] ([`Precision::F16`],
//!   [`Precision::Bf16`] on GPU backends); callers keep passing and receiving f32.
//! - Checkpoints: [`Unet::from_diffusers`] (safetensors or PyTorch `.bin`, current and legacy
//!   attention key names), [`Unet::to_diffusers`], and the native [`Unet::save`] /
//!   [`Unet::load`] (burnpack). Module field names equal diffusers' state-dict keys
//!   (`down_blocks.1.attentions.0.to_q`, ...), so loading needs almost no remapping.
//!
//! Architecture (diffusers' `UNet2DModel` with DDPM's block types): sinusoidal embedding of t →
//! MLP; `conv_in`; per level residual blocks (+ self-attention at chosen resolutions) and a
//! stride-2 conv; middle block (residual, attention, residual); mirrored up levels fed with the
//! skip connections, nearest ×2 up-sampling + conv; GroupNorm → SiLU → `conv_out`.
//!
//! # Example
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Distribution, Int, Tensor};
//! use ddpm_unet::UnetConfig;
//!
//! let device = Default::default();
//! let unet = UnetConfig::tiny().init::<Flex>(&device)?;
//! let x_t = Tensor::<Flex, 4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
//! let t = Tensor::<Flex, 1, Int>::from_ints([10, 900], &device);
//! let eps = unet.forward(x_t, t);
//! assert_eq!(eps.dims(), [2, 3, 16, 16]);
//! # Ok::<(), ddpm_unet::UnetError>(())
//! ```
//!
//! Loading google/ddpm-cifar10-32 (downloaded with `huggingface-cli download`):
//!
//! ```no_run
//! # use burn::backend::Flex;
//! use ddpm_unet::Unet;
//! let unet = Unet::<Flex>::from_diffusers("ddpm-cifar10-32", &Default::default())?;
//! println!("{} parameters", unet.config().num_params());
//! # Ok::<(), ddpm_unet::ImportError>(())
//! ```
#![warn(missing_docs)]

mod attention;
mod config;
mod diffusers_config;
mod down;
mod dropout;
mod error;
mod export;
mod finite;
mod import;
mod init;
pub mod kernels;
mod mid;
mod precision;
mod resnet;
mod safetensors_file;
mod time_embedding;
mod unet;
mod up;
mod weight_dtype;

pub use attention::{Attention, AttentionConfig};
pub use config::{BlockType, MAX_PARAMS, PRESET_NAMES, UnetConfig};
pub use diffusers_config::DiffusersUnetConfig;
pub use down::{DownBlock2d, DownBlock2dConfig, Downsample2d, Downsample2dConfig};
pub use dropout::SeededDropout;
pub use error::{ImportError, UnetError};
pub use finite::NonFiniteParam;
pub use import::{
    DIFFUSERS_BIN, DIFFUSERS_CONFIG, DIFFUSERS_SAFETENSORS, ModelFormat, NATIVE_CONFIG,
    NATIVE_WEIGHTS, read_config, read_diffusers_config,
};
pub use init::{DEFAULT_INIT_SEED, ParamInit};
pub use mid::{MidBlock2d, MidBlock2dConfig};
pub use precision::Precision;
pub use resnet::{ResnetBlock2d, ResnetBlock2dConfig};
pub use safetensors_file::check_safetensors_file;
pub use time_embedding::{TimestepEmbedding, TimestepEmbeddingConfig, timestep_embedding};
pub use unet::{Unet, UnetIntermediates};
pub use up::{UpBlock2d, UpBlock2dConfig, Upsample2d, Upsample2dConfig};
