//! A sampler from a diffusers `scheduler_config.json`: the one place that maps the config's
//! typed settings ([`SamplingConfig`]) and a caller's overrides (sampler kind, steps, η,
//! spacing, diffusers compatibility) to a ready [`Sampler`].
//!
//! Every setting of the config is honoured by the sampler it applies to: T and β, prediction
//! type, variance type (DDPM; DDIM and DPM-Solver++ drop a learned variance's channels, as
//! diffusers' DPM-Solver does), x̂₀ clipping and dynamic thresholding, timestep spacing,
//! `steps_offset`, `set_alpha_to_one` (DDIM), and DPM-Solver++'s `solver_order`,
//! `solver_type`, `lower_order_final`, `euler_at_final`, `final_sigmas_type` and
//! `lambda_min_clipped`. An override that does not apply to the chosen sampler is an error.
//!
//! NOTE: `clip_sample` is a DDPM/DDIM setting. diffusers' `DPMSolverMultistepScheduler` has no
//! such option, so DPM-Solver++ never clips x̂₀ here either, whatever the config's class (use
//! `thresholding`); dynamic thresholding is honoured.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Tensor, backend::Backend};
use ddpm_forward::split_model_output;
use ddpm_schedule::{SamplingConfig, SchedulerClass, TimestepSpacing, VarianceType};
use serde::{Deserialize, Serialize};

use crate::{
    DdimSamplerConfig, DdimTimestepMode, DdpmSamplerConfig, DpmSolverConfig, DpmSolverTimesteps,
    Sampler, SamplerError, StepOutput, X0ProcessingConfig,
};

/// Which reverse-process sampler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SamplerKind {
    /// DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): `"ddpm"`.
    #[doc(alias = "DDPMScheduler")]
    Ddpm,
    /// DDIM (Song et al. 2021), η from the overrides (default 0): `"ddim"`.
    #[doc(alias = "DDIMScheduler")]
    Ddim,
    /// DPM-Solver++ (Lu et al. 2022), first or second order: `"dpm-solver++"`.
    #[doc(alias = "DPMSolverMultistepScheduler")]
    DpmSolver,
}

impl SamplerKind {
    /// Every kind, in the order of this enum.
    pub const ALL: [SamplerKind; 3] = [Self::Ddpm, Self::Ddim, Self::DpmSolver];

    /// The sampler a diffusers scheduler class stands for.
    pub fn for_class(class: SchedulerClass) -> Self {
        match class {
            SchedulerClass::Ddpm => Self::Ddpm,
            SchedulerClass::Ddim => Self::Ddim,
            SchedulerClass::DpmSolverMultistep => Self::DpmSolver,
        }
    }

    /// The name [`FromStr`] accepts and [`fmt::Display`] writes: `"ddpm"`, `"ddim"`,
    /// `"dpm-solver++"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddpm => "ddpm",
            Self::Ddim => "ddim",
            Self::DpmSolver => "dpm-solver++",
        }
    }

    /// Steps taken when neither the caller nor the config says: all T for DDPM (Algorithm 2),
    /// 50 for DDIM, 20 for DPM-Solver++ (the papers' usual settings).
    pub fn default_steps(self) -> Option<usize> {
        match self {
            Self::Ddpm => None,
            Self::Ddim => Some(50),
            Self::DpmSolver => Some(20),
        }
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SamplerKind {
    type Err = SamplerError;

    /// Parses `"ddpm"`, `"ddim"` or `"dpm-solver++"` (also `"dpm-solver"`, `"dpmsolver++"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ddpm" => Ok(Self::Ddpm),
            "ddim" => Ok(Self::Ddim),
            "dpm-solver++" | "dpm-solver" | "dpmsolver++" => Ok(Self::DpmSolver),
            other => Err(SamplerError::UnknownSamplerKind {
                value: other.to_string(),
            }),
        }
    }
}

/// What a caller changes on top of a `scheduler_config.json`; `None` keeps the config's value
/// (or the sampler's default). Build with [`SamplerOverrides::new`] and the `with_*` methods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplerOverrides {
    /// The sampler; default: the config's class (`DDPMScheduler` → DDPM, ...).
    pub kind: Option<SamplerKind>,
    /// Number of steps; default [`SamplerKind::default_steps`].
    pub num_inference_steps: Option<usize>,
    /// DDIM's η (DDIM only; default 0).
    pub eta: Option<f64>,
    /// Timestep spacing; default: the config's (DPM-Solver++ from a DDPM/DDIM config: trailing).
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Follow diffusers where its rule differs from ours: DDIM steps to `t − T // n`
    /// ([`DdimTimestepMode::DiffusersCompat`]); DPM-Solver++ builds diffusers'
    /// `DPMSolverMultistepScheduler` timesteps ([`DpmSolverTimesteps::Diffusers`]).
    /// Default: DDIM no; DPM-Solver++ yes for a `DPMSolverMultistepScheduler` config, else no
    /// (then it uses the DDPM/DDIM lists, [`DpmSolverTimesteps::InferenceTimesteps`]).
    /// `Some(true)` with DDPM is an error (DDPM has no such mode).
    pub diffusers_compat: Option<bool>,
}

impl SamplerOverrides {
    /// No overrides: everything from the config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use this sampler.
    pub fn with_kind(mut self, kind: SamplerKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Take `steps` steps.
    pub fn with_num_inference_steps(mut self, steps: usize) -> Self {
        self.num_inference_steps = Some(steps);
        self
    }

    /// DDIM's η.
    pub fn with_eta(mut self, eta: f64) -> Self {
        self.eta = Some(eta);
        self
    }

    /// Pick the timesteps with `spacing`.
    pub fn with_timestep_spacing(mut self, spacing: TimestepSpacing) -> Self {
        self.timestep_spacing = Some(spacing);
        self
    }

    /// Follow diffusers' timestep rules (see the field).
    pub fn with_diffusers_compat(mut self, on: bool) -> Self {
        self.diffusers_compat = Some(on);
        self
    }
}

/// Builds the sampler a diffusers `scheduler_config.json` asks for, with `overrides` on top,
/// and returns it with the kind chosen.
///
/// # Errors
/// [`SamplerError::OverrideNotApplicable`] naming the override (`eta` for a sampler other
/// than DDIM, `diffusers_compat` with DDPM); [`SamplerError::Schedule`] for an invalid
/// schedule or timestep selection (0 or more than T steps, a `steps_offset` past T − 1);
/// every error of the sampler's own `init` (η < 0, a bad clip range, ...).
///
/// # Example
/// ```
/// use burn::backend::Flex;
/// use ddpm_sampler::{SamplerKind, SamplerOverrides, sampler_from_config};
/// use ddpm_schedule::SamplingConfig;
///
/// let config = SamplingConfig::from_json_str(
///     r#"{"_class_name": "DDIMScheduler", "prediction_type": "v_prediction", "steps_offset": 1}"#,
/// )?
/// .config;
/// let overrides = SamplerOverrides::new().with_num_inference_steps(10);
/// let (kind, sampler) = sampler_from_config::<Flex>(&config, &overrides)?;
/// assert_eq!(kind, SamplerKind::Ddim);
/// assert_eq!(sampler.timesteps()[..2], [901, 801]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sampler_from_config<B: Backend>(
    config: &SamplingConfig,
    overrides: &SamplerOverrides,
) -> Result<(SamplerKind, Box<dyn Sampler<B>>), SamplerError> {
    let kind = overrides
        .kind
        .unwrap_or_else(|| SamplerKind::for_class(config.class));
    if overrides.eta.is_some() && kind != SamplerKind::Ddim {
        return Err(not_applicable(
            "eta",
            kind,
            "η is DDIM's (use the ddim sampler)",
        ));
    }
    if overrides.diffusers_compat == Some(true) && kind == SamplerKind::Ddpm {
        return Err(not_applicable(
            "diffusers_compat",
            kind,
            "DDPM has no diffusers-compatibility mode (use ddim or dpm-solver++)",
        ));
    }
    let schedule = config.schedule.build()?;
    let steps = overrides.num_inference_steps.or(kind.default_steps());
    let x0 = X0ProcessingConfig {
        clip_sample: config.clip_sample,
        clip_sample_range: config.clip_sample_range,
        thresholding: config.thresholding,
        dynamic_thresholding_ratio: config.dynamic_thresholding_ratio,
        sample_max_value: config.sample_max_value,
    };
    let spacing = overrides
        .timestep_spacing
        .unwrap_or(config.timestep_spacing);
    let learned_variance = config.variance_type.is_learned();
    let sampler: Box<dyn Sampler<B>> = match kind {
        SamplerKind::Ddpm => Box::new(
            DdpmSamplerConfig::new()
                .with_prediction_type(config.prediction_type)
                .with_variance_type(config.variance_type)
                .with_x0_processing(x0)
                .with_num_inference_steps(steps)
                .with_timestep_spacing(spacing)
                .with_steps_offset(config.steps_offset)
                .init(&schedule)?,
        ),
        SamplerKind::Ddim => drop_variance_channels(
            DdimSamplerConfig::new()
                .with_prediction_type(config.prediction_type)
                .with_x0_processing(x0)
                .with_eta(overrides.eta.unwrap_or(0.0))
                .with_num_inference_steps(steps.unwrap_or(50))
                .with_timestep_spacing(spacing)
                .with_steps_offset(config.steps_offset)
                .with_set_alpha_to_one(config.set_alpha_to_one)
                .with_timestep_mode(if overrides.diffusers_compat == Some(true) {
                    DdimTimestepMode::DiffusersCompat
                } else {
                    DdimTimestepMode::NextInList
                })
                .init(&schedule)?,
            learned_variance,
        ),
        SamplerKind::DpmSolver => {
            let from_dpm_config = config.class == SchedulerClass::DpmSolverMultistep;
            // A DDPM/DDIM config's spacing is meant for those samplers: the solver keeps its
            // own (trailing) unless asked.
            let spacing = match (overrides.timestep_spacing, from_dpm_config) {
                (Some(s), _) => s,
                (None, true) => config.timestep_spacing,
                (None, false) => TimestepSpacing::Trailing,
            };
            let rule = if overrides.diffusers_compat.unwrap_or(from_dpm_config) {
                DpmSolverTimesteps::Diffusers
            } else {
                DpmSolverTimesteps::InferenceTimesteps
            };
            drop_variance_channels(
                DpmSolverConfig::new()
                    .with_prediction_type(config.prediction_type)
                    .with_x0_processing(x0.with_clip_sample(false))
                    .with_num_inference_steps(steps.unwrap_or(20))
                    .with_timestep_spacing(spacing)
                    .with_steps_offset(config.steps_offset)
                    .with_timestep_rule(rule)
                    .with_solver_order(config.solver_order)
                    .with_solver_type(config.solver_type)
                    .with_lower_order_final(config.lower_order_final)
                    .with_euler_at_final(config.euler_at_final)
                    .with_final_sigmas_type(config.final_sigmas_type)
                    .with_lambda_min_clipped(config.lambda_min_clipped)
                    .init::<B>(&schedule)?,
                learned_variance,
            )
        }
    };
    Ok((kind, sampler))
}

fn not_applicable(name: &'static str, kind: SamplerKind, reason: &'static str) -> SamplerError {
    SamplerError::OverrideNotApplicable {
        name,
        sampler: kind.name(),
        reason,
    }
}

fn drop_variance_channels<B: Backend, S: Sampler<B> + 'static>(
    sampler: S,
    learned_variance: bool,
) -> Box<dyn Sampler<B>> {
    if learned_variance {
        Box::new(DropVarianceChannels(sampler))
    } else {
        Box::new(sampler)
    }
}

/// A sampler that needs no variance, driven by a model with a learned variance (2·C output
/// channels): passes only the first C channels (the prediction) on, as diffusers'
/// `DPMSolverMultistepScheduler` does.
#[derive(Debug)]
struct DropVarianceChannels<S>(S);

impl<B: Backend, S: Sampler<B>> Sampler<B> for DropVarianceChannels<S> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn timesteps(&self) -> &[usize] {
        self.0.timesteps()
    }

    fn needs_noise(&self, t: usize) -> bool {
        self.0.needs_noise(t)
    }

    fn model_channel_factor(&self) -> usize {
        2
    }

    fn reset(&mut self) {
        self.0.reset();
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        t: usize,
        x_t: Tensor<B, 4>,
        noise: Option<Tensor<B, 4>>,
    ) -> StepOutput<B> {
        crate::sampler::check_shapes(&model_output, &x_t, noise.as_ref(), 2);
        let (prediction, _) =
            split_model_output(VarianceType::Learned, model_output, x_t.dims()[1]);
        self.0.step(prediction, t, x_t, noise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use ddpm_schedule::PredictionType;

    type B = Flex;

    fn config(json: &str) -> SamplingConfig {
        SamplingConfig::from_json_str(json).unwrap().config
    }

    fn build(
        config: &SamplingConfig,
        overrides: &SamplerOverrides,
    ) -> Result<(SamplerKind, Box<dyn Sampler<B>>), SamplerError> {
        sampler_from_config::<B>(config, overrides)
    }

    fn build_err(config: &SamplingConfig, overrides: &SamplerOverrides) -> SamplerError {
        match build(config, overrides) {
            Err(e) => e,
            Ok((kind, _)) => panic!("built a {kind} sampler; expected an error"),
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in SamplerKind::ALL {
            assert_eq!(kind.to_string().parse::<SamplerKind>().unwrap(), kind);
        }
        assert_eq!(SamplerKind::DpmSolver.to_string(), "dpm-solver++");
        let e = "euler".parse::<SamplerKind>().unwrap_err();
        assert!(e.to_string().contains("\"euler\""), "{e}");
    }

    #[test]
    fn the_class_picks_the_sampler_and_its_default_steps() {
        for (class, kind, steps) in [
            ("DDPMScheduler", SamplerKind::Ddpm, 1000),
            ("DDIMScheduler", SamplerKind::Ddim, 50),
            ("DPMSolverMultistepScheduler", SamplerKind::DpmSolver, 20),
        ] {
            let c = config(&format!(r#"{{"_class_name": "{class}"}}"#));
            let (k, sampler) = build(&c, &SamplerOverrides::new()).unwrap();
            assert_eq!(k, kind);
            assert_eq!(sampler.timesteps().len(), steps, "{class}");
        }
    }

    #[test]
    fn overrides_that_do_not_apply_are_errors_naming_them() {
        let ddpm = SamplingConfig::default();
        let e = build_err(&ddpm, &SamplerOverrides::new().with_eta(0.5));
        assert!(
            matches!(
                e,
                SamplerError::OverrideNotApplicable {
                    name: "eta",
                    sampler: "ddpm",
                    ..
                }
            ),
            "{e}"
        );
        let e = build_err(
            &ddpm,
            &SamplerOverrides::new()
                .with_kind(SamplerKind::DpmSolver)
                .with_eta(0.0),
        );
        assert!(
            e.to_string()
                .starts_with("eta does not apply to the dpm-solver++"),
            "{e}"
        );
        let e = build_err(&ddpm, &SamplerOverrides::new().with_diffusers_compat(true));
        assert!(
            e.to_string()
                .starts_with("diffusers_compat does not apply to the ddpm"),
            "{e}"
        );
        // `false` asks for what DDPM does anyway.
        assert!(build(&ddpm, &SamplerOverrides::new().with_diffusers_compat(false)).is_ok());
        // The sampler's own checks still run.
        let e = build_err(
            &ddpm,
            &SamplerOverrides::new()
                .with_kind(SamplerKind::Ddim)
                .with_eta(-1.0),
        );
        assert!(matches!(e, SamplerError::InvalidEta { .. }), "{e}");
    }

    #[test]
    fn config_keys_and_overrides_are_honoured() {
        let ddim = config(
            r#"{"_class_name": "DDIMScheduler", "timestep_spacing": "trailing",
                "num_train_timesteps": 1000}"#,
        );
        let overrides = SamplerOverrides::new().with_num_inference_steps(3);
        let (_, s) = build(&ddim, &overrides).unwrap();
        assert_eq!(s.timesteps(), [999, 666, 332]);
        let (_, s) = build(
            &ddim,
            &overrides
                .clone()
                .with_timestep_spacing(TimestepSpacing::Leading),
        )
        .unwrap();
        assert_eq!(s.timesteps(), [666, 333, 0]);
        let (_, s) = build(&ddim, &overrides.clone().with_eta(1.0)).unwrap();
        assert!(s.needs_noise(666));

        // DPM-Solver++: diffusers' timesteps for its own config, ours when asked.
        let dpm = config(r#"{"_class_name": "DPMSolverMultistepScheduler"}"#);
        let five = SamplerOverrides::new().with_num_inference_steps(5);
        let (_, s) = build(&dpm, &five).unwrap();
        assert_eq!(s.timesteps(), [999, 799, 599, 400, 200]);
        let (_, s) = build(&dpm, &five.clone().with_diffusers_compat(false)).unwrap();
        assert_eq!(s.timesteps(), [999, 749, 500, 250, 0]);
        // From a DDPM config: trailing, the same list under both rules.
        let (_, s) = build(
            &SamplingConfig::default(),
            &five.clone().with_kind(SamplerKind::DpmSolver),
        )
        .unwrap();
        assert_eq!(s.timesteps(), [999, 799, 599, 399, 199]);
    }

    #[test]
    fn a_learned_variance_doubles_the_channels_of_every_sampler() {
        let c = SamplingConfig {
            variance_type: VarianceType::LearnedRange,
            prediction_type: PredictionType::Epsilon,
            ..Default::default()
        };
        for kind in SamplerKind::ALL {
            let (_, mut s) = build(
                &c,
                &SamplerOverrides::new()
                    .with_kind(kind)
                    .with_num_inference_steps(4),
            )
            .unwrap();
            assert_eq!(s.model_channel_factor(), 2, "{kind}");
            // DDIM and DPM-Solver++ read the first C channels and ignore the rest.
            if kind != SamplerKind::Ddpm {
                let device = Default::default();
                let x = Tensor::<B, 4>::ones([1, 1, 2, 2], &device);
                let out = Tensor::cat(vec![x.clone(), x.clone().mul_scalar(f32::NAN)], 1);
                let t = s.timesteps()[0];
                let prev = s.step(out, t, x, None).prev_sample;
                assert!(prev.into_data().to_vec::<f32>().unwrap()[0].is_finite());
            }
        }
    }
}
