//! Errors of the pipeline crate: each names the file, setting or sampling step at fault.

use std::path::PathBuf;

use thiserror::Error;

use crate::{ModelLayout, Weights};

/// Why a model could not be found or loaded, a sampling run could not start or finish, or an
/// output could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The path holds no model directory this crate knows.
    #[error("{path}: not a model directory ({reason})")]
    NoModel {
        /// The path given.
        path: PathBuf,
        /// What was looked for.
        reason: &'static str,
    },
    /// A training run directory without a complete checkpoint.
    #[error("{dir}: training run without a complete checkpoint (no checkpoints/step-*/state.json)")]
    NoCheckpoint {
        /// The run directory.
        dir: PathBuf,
    },
    /// A choice of raw/EMA weights for a directory that has only one set of weights.
    #[error(
        "--weights {weights} applies to training runs and checkpoints only; {path} is a {}",
        layout.describe()
    )]
    WeightsNotApplicable {
        /// The model path.
        path: PathBuf,
        /// What it is.
        layout: ModelLayout,
        /// The weights asked for.
        weights: Weights,
    },
    /// A training checkpoint whose noise schedule cannot be found (sampling it with another
    /// schedule would silently give wrong images).
    #[error(
        "{dir}: training checkpoint without scheduler_config.json (and not inside its run \
         directory); give the run's scheduler config explicitly"
    )]
    MissingSchedulerConfig {
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// A diffusers pipeline whose U-Net is not an unconditional `UNet2DModel`.
    #[error(
        "{path}: the pipeline's unet is {found}; only UNet2DModel (unconditional DDPM) is supported"
    )]
    UnsupportedPipeline {
        /// The `model_index.json`.
        path: PathBuf,
        /// The class found there.
        found: String,
    },
    /// A setting out of range.
    #[error("{name} is {value}; expected {expected}")]
    InvalidArgument {
        /// The setting (builder method / command-line option).
        name: &'static str,
        /// Its value, printed.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// More samples than fit in memory at once: refused before anything is allocated.
    #[error(
        "{n} samples of shape {sample_shape:?} are {values} values, beyond the limit of {max} \
         (4 GiB of f32); draw at most {max_samples} per run"
    )]
    TooManySamples {
        /// The number of samples asked for.
        n: usize,
        /// `[C, H, W]` of one sample.
        sample_shape: [usize; 3],
        /// n·C·H·W.
        values: u128,
        /// The limit ([`crate::MAX_SAMPLE_VALUES`]).
        max: usize,
        /// How many samples of this shape fit under the limit.
        max_samples: usize,
    },
    /// The U-Net's output channels do not fit the sampler's variance type.
    #[error(
        "the U-Net outputs {found} channels for {channels} input channels, but the {sampler} \
         sampler with this scheduler config needs {expected} (variance_type {variance_type})"
    )]
    OutputChannels {
        /// The U-Net's `out_channels`.
        found: usize,
        /// The U-Net's `in_channels`.
        channels: usize,
        /// What the sampler needs.
        expected: usize,
        /// The sampler.
        sampler: &'static str,
        /// The config's variance type (diffusers' name).
        variance_type: &'static str,
    },
    /// A tensor given as input (x_T, per-step noise) has the wrong shape.
    #[error("{what} has shape {found:?}; expected {expected:?} ({meaning})")]
    InputShape {
        /// Which input.
        what: &'static str,
        /// The shape given.
        found: Vec<usize>,
        /// The shape needed.
        expected: Vec<usize>,
        /// What the dimensions mean.
        meaning: &'static str,
    },
    /// A tensor given as input holds NaN or infinite values.
    #[error(
        "{what} holds non-finite values (NaN or ±inf) at {count} of {len} positions, the first at flat index {first}"
    )]
    NonFiniteInput {
        /// Which input.
        what: &'static str,
        /// How many values are not finite.
        count: usize,
        /// How many values there are.
        len: usize,
        /// The first such value's flat index.
        first: usize,
    },
    /// Sampling produced NaN or infinite values.
    #[error(
        "sampling went non-finite at step {step} of {num_steps} (t = {t}) for samples \
         {first_sample}..{end_sample}: the {what} holds NaN or ±inf values (an unstable model \
         or unsuitable scheduler settings)"
    )]
    NonFiniteSamples {
        /// The 1-based step at which it happened.
        step: usize,
        /// The sampler's number of steps.
        num_steps: usize,
        /// The step's timestep.
        t: usize,
        /// What went non-finite: "model output" or "sample".
        what: &'static str,
        /// The first sample of the batch.
        first_sample: usize,
        /// One past the last sample of the batch.
        end_sample: usize,
    },
    /// The cancellation flag was raised.
    #[error(
        "sampling cancelled before step {step} of {num_steps} of the batch of samples {first_sample}..{end_sample}"
    )]
    Cancelled {
        /// The 1-based step that was not run.
        step: usize,
        /// The sampler's number of steps.
        num_steps: usize,
        /// The first sample of the batch.
        first_sample: usize,
        /// One past the last sample of the batch.
        end_sample: usize,
    },
    /// Samples with a channel count that has no image form.
    #[error(
        "cannot make images of {channels}-channel samples (1 = gray or 3 = RGB); save the tensor instead"
    )]
    ImageChannels {
        /// The channel count.
        channels: usize,
    },
    /// An image file name whose extension names no format this crate writes.
    #[error("{path}: unknown image format {extension:?}; use .png, .jpg or .jpeg")]
    ImageFormat {
        /// The file.
        path: PathBuf,
        /// Its extension ("" when it has none).
        extension: String,
    },
    /// An image could not be encoded.
    #[error("{path}: encoding the image failed: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A safetensors file could not be read or holds the wrong tensors.
    #[error("{path}: {message}")]
    TensorFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or a directory created.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause (names the line).
        #[source]
        source: serde_json::Error,
    },
    /// Burn's recorder could not read a training checkpoint record.
    #[error("{path}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Burn's message.
        message: String,
    },
    /// A file could not be written (the previous file under its name is intact).
    #[error(transparent)]
    Write(#[from] ddpm_io::WriteError),
    /// The U-Net could not be loaded.
    #[error(transparent)]
    Import(#[from] ddpm_unet::ImportError),
    /// An invalid U-Net config.
    #[error(transparent)]
    Unet(#[from] ddpm_unet::UnetError),
    /// An invalid scheduler config or noise schedule.
    #[error(transparent)]
    Schedule(#[from] ddpm_schedule::ScheduleError),
    /// The sampler could not be built from the config and overrides.
    #[error(transparent)]
    Sampler(#[from] ddpm_sampler::SamplerError),
    /// The sampling loop could not start (e.g. replayed noise of the wrong shape).
    #[error(transparent)]
    Sample(#[from] ddpm_sampler::SampleError),
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PipelineError {
    let path = path.into();
    move |source| PipelineError::Io { path, source }
}
