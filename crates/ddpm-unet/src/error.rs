//! Errors of the U-Net crate: an invalid [`UnetConfig`](crate::UnetConfig) ([`UnetError`]) and a
//! failed checkpoint import/export ([`ImportError`]).
//!
//! The model itself follows Ho et al. 2020, "Denoising Diffusion Probabilistic Models",
//! arXiv:2006.11239v2, Appendix B.

use std::path::PathBuf;

use thiserror::Error;

/// A [`UnetConfig`](crate::UnetConfig) that cannot build a working U-Net.
///
/// Returned by [`UnetConfig::validate`](crate::UnetConfig::validate) and
/// [`UnetConfig::init`](crate::UnetConfig::init); each variant names the offending field.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum UnetError {
    /// A size that must be positive is zero.
    #[error("`{field}` is 0; it must be at least 1")]
    Zero {
        /// The config field, e.g. `block_out_channels[1]`.
        field: String,
    },
    /// A list is empty or its length does not match another list's.
    #[error(
        "`{field}` has {len} entries; expected {expected} (one per level of `block_out_channels`)"
    )]
    Length {
        /// The config field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: usize,
    },
    /// A channel count is not a multiple of what it is divided by.
    #[error("`{field}` = {value} is not divisible by `{divisor_field}` = {divisor}")]
    NotDivisible {
        /// The field holding the channel count, e.g. `block_out_channels[2]`.
        field: String,
        /// The channel count.
        value: usize,
        /// The field holding the divisor (`norm_num_groups`, `attention_head_dim`).
        divisor_field: &'static str,
        /// The divisor.
        divisor: usize,
    },
    /// The down-sampling path of `sample_size` does not line up with the up-sampling path.
    #[error(
        "`sample_size` = {sample_size}: level {level} is {size}x{size}, which down-samples to \
         {down}x{down} and up-samples back to {up}x{up}, so the skip connections would not line \
         up; use a size divisible by {multiple}"
    )]
    SampleSize {
        /// The configured sample size.
        sample_size: usize,
        /// The level at which the mismatch happens (0 = full resolution).
        level: usize,
        /// The spatial size at that level.
        size: usize,
        /// The size after the stride-2 down-sampling.
        down: usize,
        /// The size after nearest ×2 up-sampling of `down`.
        up: usize,
        /// A multiple that always works (2^(levels − 1)).
        multiple: usize,
    },
    /// A real-valued field is out of its range.
    #[error("`{field}` = {value}; expected {expected}")]
    OutOfRange {
        /// The config field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// A size beyond what any DDPM U-Net uses: refused before allocating, so an absurd config
    /// fails with a message instead of aborting the process on allocation.
    #[error("`{field}` = {value} exceeds the limit of {max} ({reason})")]
    TooLarge {
        /// The config field, or `parameters` for the total count.
        field: String,
        /// Its value.
        value: usize,
        /// The largest accepted value.
        max: usize,
        /// Why the limit exists, in words.
        reason: &'static str,
    },
    /// A preset name the CLI does not know.
    #[error("unknown U-Net preset `{name}`; expected one of: {known}")]
    UnknownPreset {
        /// The requested name.
        name: String,
        /// The known names, comma separated.
        known: &'static str,
    },
    /// A precision name other than `f32`, `f16` or `bf16`.
    #[error("unknown precision `{name}`; expected f32, f16 or bf16")]
    UnknownPrecision {
        /// The requested name.
        name: String,
    },
    /// The backend cannot run the U-Net in the requested precision on this device.
    #[error("the {backend} backend does not support {precision} on this device; use f32{hint}")]
    UnsupportedPrecision {
        /// The requested precision.
        precision: crate::Precision,
        /// The backend's name (`Backend::name`).
        backend: String,
        /// Where the precision is supported, in words (may be empty).
        hint: &'static str,
    },
}

/// A checkpoint that could not be read, converted or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON config could not be parsed or written.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A config file holds valid JSON that is not an object (e.g. `[]` or `null`): read as
    /// diffusers' defaults it would describe another model.
    #[error("{path}: expected a JSON object of config keys, found {found}")]
    NotAnObject {
        /// The file.
        path: PathBuf,
        /// What the file holds instead ("an array", "null", ...).
        found: &'static str,
    },
    /// A safetensors weights file is shorter than its header says: cut off by an interrupted
    /// download or copy.
    #[error(
        "{path} is truncated: it has {actual} bytes, but its header needs at least {expected} \
         (an interrupted download or copy?)"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The size the header implies (a lower bound when the header itself is cut off).
        expected: u64,
        /// The file's size.
        actual: u64,
    },
    /// A weights file that is not in the safetensors format its name claims.
    #[error("{path} is not a valid safetensors file: {reason}")]
    InvalidSafetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// burn-store could not read a weights file (a damaged or foreign file).
    #[error("cannot read weights {path}: {message}")]
    Read {
        /// The weights file.
        path: PathBuf,
        /// The reader's description.
        message: String,
    },
    /// A weight tensor stored with an integer or boolean dtype: U-Net weights are floating
    /// point (f32, or f16/bf16/f64, converted at load).
    #[error(
        "tensor `{key}` in {path} has dtype {dtype}; U-Net weights must be floating point \
         (F32, F16, BF16 or F64)"
    )]
    UnsupportedDtype {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor, in diffusers naming.
        key: String,
        /// Its dtype as the file names it (`I32`, `BOOL`, ...).
        dtype: String,
    },
    /// A diffusers `config.json` uses a feature this U-Net does not implement.
    #[error("unsupported diffusers config: `{field}` = {value} (supported: {supported})")]
    Unsupported {
        /// The diffusers config key.
        field: &'static str,
        /// Its value, as JSON.
        value: String,
        /// What is supported, in words.
        supported: &'static str,
    },
    /// The config describes a U-Net that cannot work.
    #[error(transparent)]
    InvalidConfig(#[from] UnetError),
    /// A model directory holds no weights file this crate can read.
    #[error(
        "no weights in {dir}: expected diffusion_pytorch_model.safetensors or \
         diffusion_pytorch_model.bin (diffusers), or unet.bpk (native)"
    )]
    NoWeights {
        /// The directory.
        dir: PathBuf,
    },
    /// A path is neither a diffusers model directory nor a native checkpoint.
    #[error(
        "{path} is not a diffusers model directory (config.json) nor a native checkpoint (unet_config.json)"
    )]
    UnknownFormat {
        /// The path.
        path: PathBuf,
    },
    /// The checkpoint has no tensor for a parameter of the model.
    #[error("checkpoint {path} has no tensor `{key}` (and {more} more missing)")]
    MissingKey {
        /// The checkpoint.
        path: PathBuf,
        /// The first missing key, in diffusers naming.
        key: String,
        /// How many other keys are missing.
        more: usize,
    },
    /// The checkpoint has a tensor the model does not know.
    #[error("checkpoint {path} has unexpected tensor `{key}` (and {more} more unexpected)")]
    UnexpectedKey {
        /// The checkpoint.
        path: PathBuf,
        /// The first unexpected key, in diffusers naming.
        key: String,
        /// How many other keys are unexpected.
        more: usize,
    },
    /// A tensor's shape differs from the parameter's.
    #[error("tensor `{key}` in {path} has shape {found:?}; the model expects {expected:?}")]
    ShapeMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The key, in diffusers naming.
        key: String,
        /// The parameter's shape (PyTorch layout for diffusers files).
        expected: Vec<usize>,
        /// The tensor's shape in the file.
        found: Vec<usize>,
    },
    /// A tensor could not be converted (dtype, corrupt data).
    #[error("tensor `{key}` in {path}: {message}")]
    Tensor {
        /// The checkpoint.
        path: PathBuf,
        /// The key.
        key: String,
        /// burn-store's description.
        message: String,
    },
    /// A weight tensor holds NaN or ±inf: every output of the model would be non-finite.
    #[error(
        "tensor `{key}` in {path} holds non-finite values (NaN or ±inf) at {count} of {len} \
         positions, the first at flat index {first}: the checkpoint is damaged, or was saved \
         after training diverged"
    )]
    NonFiniteWeight {
        /// The checkpoint.
        path: PathBuf,
        /// The first non-finite tensor, in diffusers naming.
        key: String,
        /// How many of its values are not finite.
        count: usize,
        /// How many values it has.
        len: usize,
        /// The flat (row-major) index of the first non-finite value.
        first: usize,
    },
    /// burn-store's safetensors reader or writer failed.
    #[error("safetensors store: {0}")]
    Safetensors(#[from] burn_store::SafetensorsStoreError),
    /// burn-store's PyTorch reader failed.
    #[cfg(feature = "pytorch")]
    #[error("PyTorch store: {0}")]
    Pytorch(#[from] burn_store::PytorchStoreError),
    /// A PyTorch pickle (`.bin`) was given to a build without the `pytorch` feature.
    #[error(
        "{path}: reading PyTorch .bin weights needs ddpm-unet's `pytorch` feature (`ddpm` \
         feature `pytorch`, on in the `ddpm` CLI); or convert the file to safetensors"
    )]
    PytorchDisabled {
        /// The `.bin` file.
        path: PathBuf,
    },
    /// burn-store's Burnpack reader or writer failed.
    #[error("burnpack store: {0}")]
    Burnpack(#[from] burn_store::BurnpackError),
    /// A file could not be written (atomically: the previous file is intact).
    #[error(transparent)]
    Write(#[from] ddpm_io::WriteError),
}
