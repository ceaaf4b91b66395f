//! Errors of the loss and likelihood code: bad data, mismatched shapes, a model output that does
//! not fit the variance type, an invalid option.

use thiserror::Error;

/// Why a loss or a bits/dim evaluation was rejected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LossError {
    /// Data outside [−1, 1]: the discretized decoder of Eq. 13 assumes 8-bit data scaled to
    /// [−1, 1].
    #[error(
        "data lies in [{min}, {max}]; the discretized decoder (Ho et al. 2020, Eq. 13) needs \
         images scaled to [-1, 1] (x/127.5 - 1)"
    )]
    DataOutOfRange {
        /// Smallest value seen.
        min: f64,
        /// Largest value seen.
        max: f64,
    },
    /// Two tensors that must have the same shape do not.
    #[error("{what}: shape {actual:?} does not match the expected {expected:?}")]
    ShapeMismatch {
        /// Which tensor.
        what: &'static str,
        /// Its shape.
        actual: Vec<usize>,
        /// The shape it should have.
        expected: Vec<usize>,
    },
    /// The model's output channels do not fit the variance type (C for fixed variances, 2·C for
    /// learned ones).
    #[error(
        "the model outputs {out_channels} channels for {data_channels}-channel data, but variance \
         type {variance_type} needs {expected}"
    )]
    OutputChannels {
        /// Channels of the model output.
        out_channels: usize,
        /// Channels of the data.
        data_channels: usize,
        /// The variance type's name (diffusers' spelling).
        variance_type: &'static str,
        /// The channel count that would fit.
        expected: usize,
    },
    /// A loss that needs a learned variance was given a fixed one, or the reverse.
    #[error("{what} needs variance type {expected}, got {actual}")]
    VarianceType {
        /// Which loss or option.
        what: &'static str,
        /// What it needs.
        expected: &'static str,
        /// What it got.
        actual: &'static str,
    },
    /// Options that do not go together (e.g. a loss weighting with the bound objective).
    #[error("{what}: {reason}")]
    Unsupported {
        /// The combination.
        what: &'static str,
        /// Why, and what would work.
        reason: &'static str,
    },
    /// A name that is not one of the accepted values.
    #[error("{field} {value:?} is unknown; expected one of {expected}")]
    UnknownName {
        /// The option.
        field: &'static str,
        /// The name given.
        value: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// A numeric option outside its range.
    #[error("{field} is {value}; expected {expected}")]
    InvalidParameter {
        /// The option's name.
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A timestep ≥ T.
    #[error("timestep {t} is out of range; expected 0 <= t < T = {num_timesteps}")]
    TimestepOutOfRange {
        /// The offending timestep (0-based).
        t: usize,
        /// T.
        num_timesteps: usize,
    },
    /// A loss value that is not finite was reported to a loss-aware sampler.
    #[error("loss at t = {t} is {value}; expected a finite number")]
    NonFiniteLoss {
        /// The timestep (0-based).
        t: usize,
        /// The value.
        value: f64,
    },
}
