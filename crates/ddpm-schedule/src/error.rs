//! Errors raised when a noise schedule, a timestep list or a scheduler config is invalid.

use thiserror::Error;

/// Why a noise schedule, timestep selection or `scheduler_config.json` was rejected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// `num_train_timesteps` (T) was zero.
    #[error("num_train_timesteps is 0; expected T >= 1")]
    ZeroTimesteps,
    /// `num_train_timesteps` (T) beyond [`MAX_TRAIN_TIMESTEPS`](crate::MAX_TRAIN_TIMESTEPS):
    /// refused before any table is allocated.
    #[error(
        "num_train_timesteps is {num_train_timesteps}; at most {max} is supported (diffusion \
         models use T <= 4000; the schedule's tables take ~100 bytes per step)"
    )]
    TooManyTimesteps {
        /// The requested T.
        num_train_timesteps: usize,
        /// The limit.
        max: usize,
    },
    /// A β value outside the open interval (0, 1).
    #[error("beta at index {index} (t = {t}) is {value}; expected 0 < beta < 1", t = index + 1)]
    BetaOutOfRange {
        /// 0-based index into the β table.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A schedule parameter that is not a finite number or is out of its range.
    #[error("{field} is {value}; expected {expected}")]
    InvalidParameter {
        /// Name of the field (as in diffusers' `scheduler_config.json` where there is one).
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// User-supplied β list whose length differs from `num_train_timesteps`.
    #[error("trained_betas has {len} entries but num_train_timesteps is {num_train_timesteps}")]
    BetaLengthMismatch {
        /// Length of the supplied list.
        len: usize,
        /// The configured T.
        num_train_timesteps: usize,
    },
    /// More inference steps than training timesteps, or zero.
    #[error(
        "num_inference_steps is {num_inference_steps}; expected 1 <= steps <= num_train_timesteps ({num_train_timesteps})"
    )]
    InvalidInferenceSteps {
        /// Requested number of sampling steps.
        num_inference_steps: usize,
        /// The schedule's T.
        num_train_timesteps: usize,
    },
    /// A selected timestep is ≥ T (e.g. `leading` spacing with a large `steps_offset`).
    #[error(
        "timestep {timestep} at position {position} is out of range; expected 0 <= t < {num_train_timesteps}"
    )]
    TimestepOutOfRange {
        /// Position in the list.
        position: usize,
        /// The offending timestep.
        timestep: i64,
        /// The schedule's T.
        num_train_timesteps: usize,
    },
    /// A custom timestep list that is empty or not strictly decreasing.
    #[error(
        "custom timesteps must be non-empty and strictly decreasing; position {position} has {timestep} after {previous}"
    )]
    TimestepsNotDecreasing {
        /// Position of the offending entry.
        position: usize,
        /// The entry before it.
        previous: i64,
        /// The offending entry.
        timestep: i64,
    },
    /// An empty custom timestep list.
    #[error("custom timesteps list is empty")]
    EmptyTimesteps,
    /// A string value in a config that this library does not know.
    #[error("unknown value {value:?} for {field}; expected one of {expected}")]
    UnknownValue {
        /// The config key.
        field: &'static str,
        /// The value found.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// A config file that could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A config file that is not valid JSON of the expected shape.
    #[error("cannot parse {path}: {source}")]
    Json {
        /// The file (or `<string>`).
        path: String,
        /// The underlying error, which names the key and line.
        #[source]
        source: serde_json::Error,
    },
}
