//! Errors of the samplers: [`SamplerError`] when a sampler is built from invalid settings,
//! [`SampleError`] when a sampling run cannot start or stops early.

use ddpm_schedule::{PredictionType, ScheduleError, VarianceType};
use thiserror::Error;

/// Why a sampler could not be built (checked once, in `new`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// The timestep selection was rejected by the schedule crate (steps > T, steps = 0,
    /// a `steps_offset` that pushes a timestep past T − 1, a custom list not strictly
    /// decreasing...).
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// DDIM's η was negative or not finite.
    #[error("eta is {eta}; expected a finite eta >= 0 (0 = deterministic DDIM, 1 = DDPM-like)")]
    InvalidEta {
        /// The offending value.
        eta: f64,
    },
    /// A numeric setting outside its range.
    #[error("{field} is {value}; expected {expected}")]
    InvalidParameter {
        /// The setting's name (diffusers' `scheduler_config.json` key where there is one).
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A reverse-process variance this sampler cannot use.
    #[error("{sampler} does not support variance_type {variance_type:?}")]
    UnsupportedVariance {
        /// The sampler.
        sampler: &'static str,
        /// The rejected variance type.
        variance_type: VarianceType,
    },
    /// A combination of settings that has no meaning.
    #[error("{sampler}: prediction_type {prediction_type:?} {reason}")]
    UnsupportedPrediction {
        /// The sampler.
        sampler: &'static str,
        /// The rejected prediction type.
        prediction_type: PredictionType,
        /// Why.
        reason: &'static str,
    },
    /// An override that has no meaning for the chosen sampler (e.g. `eta` for DDPM).
    #[error("{name} does not apply to the {sampler} sampler: {reason}")]
    OverrideNotApplicable {
        /// The override (`eta`, `diffusers_compat`, ...).
        name: &'static str,
        /// The sampler chosen (`"ddpm"`, `"ddim"`, `"dpm-solver++"`).
        sampler: &'static str,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A run asked to start at a timestep the sampler does not visit
    /// ([`crate::StartAt`]).
    #[error(
        "the {sampler} sampler does not visit t = {t} (nearest it visits: {}); start at one \
         of its timesteps, or use all T steps",
        neighbours(*below, *above)
    )]
    TimestepNotVisited {
        /// The timestep asked for.
        t: usize,
        /// The sampler.
        sampler: &'static str,
        /// The nearest timestep below `t` that the sampler visits.
        below: Option<usize>,
        /// The nearest timestep above `t` that the sampler visits.
        above: Option<usize>,
    },
    /// A sampler name that is not one of `ddpm`, `ddim`, `dpm-solver++`.
    #[error("unknown sampler {value:?}; expected one of ddpm, ddim, dpm-solver++")]
    UnknownSamplerKind {
        /// The name given.
        value: String,
    },
}

fn neighbours(below: Option<usize>, above: Option<usize>) -> String {
    match (below, above) {
        (Some(b), Some(a)) => format!("{b} and {a}"),
        (Some(x), None) | (None, Some(x)) => x.to_string(),
        (None, None) => "none".into(),
    }
}

/// Why a sampling run did not start or did not finish.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The cancellation flag was raised; the run stopped before the step at `t`.
    #[error("sampling cancelled before step {step} (t = {t})")]
    Cancelled {
        /// Index of the step that was not run.
        step: usize,
        /// Its timestep.
        t: usize,
    },
    /// Replayed noise whose shape does not match `[steps, batch, C, H, W]`.
    #[error("noise tensor has shape {found:?}; expected {expected:?} (one noise per step)")]
    NoiseShape {
        /// `[num_steps, batch, channels, height, width]`.
        expected: Vec<usize>,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A replay noise source has no x_T to give (pass x_T explicitly).
    #[error("a replayed noise source holds per-step noise only; give x_T explicitly")]
    NoInitialNoise,
    /// The model returned a tensor of the wrong shape.
    #[error("the model returned shape {found:?} at t = {t}; expected {expected:?}")]
    ModelOutputShape {
        /// The timestep.
        t: usize,
        /// `[batch, C·k, H, W]` (k = 2 with learned variance).
        expected: Vec<usize>,
        /// What the model returned.
        found: Vec<usize>,
    },
}
