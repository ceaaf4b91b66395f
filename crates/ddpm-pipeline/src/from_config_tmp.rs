//! TEMPORARY: moved from the CLI's `build_sampler` until `ddpm-sampler`'s `from_config` lands
//! (branch `sampler`); replaced by it on merge.

use burn::tensor::backend::Backend;
use ddpm_sampler::{
    DdimSamplerConfig, DdimTimestepMode, DdpmSamplerConfig, DpmSolverConfig, Sampler,
    SamplerError, X0ProcessingConfig,
};
use ddpm_schedule::{NoiseSchedule, SchedulerClass, SamplingConfig, TimestepSpacing};

/// The sampler kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// DDPM.
    Ddpm,
    /// DDIM.
    Ddim,
    /// DPM-Solver++.
    DpmSolver,
}

/// Overrides.
#[derive(Debug, Clone, Default)]
pub struct SamplerOverrides {
    /// Kind.
    pub kind: Option<SamplerKind>,
    /// Steps.
    pub num_inference_steps: Option<usize>,
    /// Eta.
    pub eta: Option<f64>,
    /// Spacing.
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Compat.
    pub diffusers_compat: bool,
}

/// Builds the sampler.
pub fn build_sampler<B: Backend>(
    config: &SamplingConfig,
    o: &SamplerOverrides,
) -> Result<(SamplerKind, Box<dyn Sampler<B>>), crate::PipelineError> {
    let schedule: NoiseSchedule = config.schedule.build()?;
    let kind = o.kind.unwrap_or(match config.class {
        SchedulerClass::Ddpm => SamplerKind::Ddpm,
        SchedulerClass::Ddim => SamplerKind::Ddim,
        SchedulerClass::DpmSolverMultistep => SamplerKind::DpmSolver,
    });
    if let (Some(eta), false) = (o.eta, kind == SamplerKind::Ddim) {
        return Err(SamplerError::InvalidParameter {
            field: "eta",
            value: eta,
            expected: "no eta: it applies to the DDIM sampler only",
        }
        .into());
    }
    let x0 = X0ProcessingConfig {
        clip_sample: config.clip_sample,
        clip_sample_range: config.clip_sample_range,
        thresholding: config.thresholding,
        dynamic_thresholding_ratio: config.dynamic_thresholding_ratio,
        sample_max_value: config.sample_max_value,
    };
    let spacing = o.timestep_spacing.unwrap_or(config.timestep_spacing);
    let sampler: Box<dyn Sampler<B>> = match kind {
        SamplerKind::Ddpm => Box::new(
            DdpmSamplerConfig::new()
                .with_prediction_type(config.prediction_type)
                .with_variance_type(config.variance_type)
                .with_x0_processing(x0)
                .with_num_inference_steps(o.num_inference_steps)
                .with_timestep_spacing(spacing)
                .with_steps_offset(config.steps_offset)
                .init(&schedule)?,
        ),
        SamplerKind::Ddim => Box::new(
            DdimSamplerConfig::new()
                .with_prediction_type(config.prediction_type)
                .with_x0_processing(x0)
                .with_eta(o.eta.unwrap_or(0.0))
                .with_num_inference_steps(o.num_inference_steps.unwrap_or(50))
                .with_timestep_spacing(spacing)
                .with_steps_offset(config.steps_offset)
                .with_set_alpha_to_one(config.set_alpha_to_one)
                .with_timestep_mode(if o.diffusers_compat {
                    DdimTimestepMode::DiffusersCompat
                } else {
                    DdimTimestepMode::NextInList
                })
                .init(&schedule)?,
        ),
        SamplerKind::DpmSolver => {
            let from_dpm_config = config.class == SchedulerClass::DpmSolverMultistep;
            let spacing = match (o.timestep_spacing, from_dpm_config) {
                (Some(s), _) => s,
                (None, true) => config.timestep_spacing,
                (None, false) => TimestepSpacing::Trailing,
            };
            Box::new(
                DpmSolverConfig::new()
                    .with_prediction_type(config.prediction_type)
                    .with_x0_processing(x0.with_clip_sample(false))
                    .with_num_inference_steps(o.num_inference_steps.unwrap_or(20))
                    .with_timestep_spacing(spacing)
                    .with_steps_offset(config.steps_offset)
                    .with_solver_order(config.solver_order)
                    .with_solver_type(config.solver_type)
                    .init::<B>(&schedule)?,
            )
        }
    };
    Ok((kind, sampler))
}

impl std::str::FromStr for SamplerKind {
    type Err = crate::PipelineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ddpm" => Ok(Self::Ddpm),
            "ddim" => Ok(Self::Ddim),
            "dpm-solver++" => Ok(Self::DpmSolver),
            other => Err(crate::PipelineError::InvalidArgument {
                name: "sampler",
                value: other.into(),
                expected: "ddpm, ddim or dpm-solver++",
            }),
        }
    }
}
