//! diffusers' `scheduler_config.json`, read into typed settings.
//!
//! [`DiffusersSchedulerConfig`] mirrors the JSON (every key optional); [`SamplingConfig`] is the
//! typed result, with each absent key taking diffusers' default *for the config's class*
//! (`_class_name`), so a diffusers model directory samples the same way in both libraries.
//! An unknown value is an error; an unknown key is ignored and reported.
//!
//! Python's `json` writes ±∞ and NaN as the bare tokens `Infinity`, `-Infinity` and `NaN`, which
//! are not JSON; diffusers saves every `DPMSolverMultistepScheduler` config with
//! `"lambda_min_clipped": -Infinity`. They are accepted where a key may hold them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{
    BetaSchedule, NoiseScheduleConfig, PredictionType, ScheduleError, TimestepSpacing, VarianceType,
};

/// The diffusers scheduler class a config was written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SchedulerClass {
    /// `DDPMScheduler`: ancestral sampling (Ho et al. 2020, Algorithm 2).
    #[default]
    #[doc(alias = "DDPMScheduler")]
    Ddpm,
    /// `DDIMScheduler` (Song et al. 2021).
    #[doc(alias = "DDIMScheduler")]
    Ddim,
    /// `DPMSolverMultistepScheduler` (Lu et al. 2022).
    #[doc(alias = "DPMSolverMultistepScheduler")]
    DpmSolverMultistep,
}

impl SchedulerClass {
    /// diffusers' `_class_name`.
    pub fn diffusers_name(self) -> &'static str {
        match self {
            Self::Ddpm => "DDPMScheduler",
            Self::Ddim => "DDIMScheduler",
            Self::DpmSolverMultistep => "DPMSolverMultistepScheduler",
        }
    }

    fn parse(name: &str) -> Result<Self, ScheduleError> {
        match name {
            "DDPMScheduler" => Ok(Self::Ddpm),
            "DDIMScheduler" => Ok(Self::Ddim),
            "DPMSolverMultistepScheduler" => Ok(Self::DpmSolverMultistep),
            other => Err(ScheduleError::UnknownValue {
                field: "_class_name",
                value: other.to_string(),
                expected: "DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler",
            }),
        }
    }
}

/// DPM-Solver's second-order update rule (diffusers `solver_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverType {
    /// The midpoint rule (diffusers' default).
    #[default]
    Midpoint,
    /// Heun's rule.
    Heun,
}

/// Where DPM-Solver's last step lands (diffusers `final_sigmas_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    /// σ = 0: the last step returns x̂₀ (diffusers' default).
    #[default]
    Zero,
    /// σ of timestep 0 (ᾱ₀'s level): the last step is a regular solver step.
    SigmaMin,
}

impl FinalSigmasType {
    /// diffusers' name: `"zero"` or `"sigma_min"`.
    pub fn diffusers_name(self) -> &'static str {
        match self {
            Self::Zero => "zero",
            Self::SigmaMin => "sigma_min",
        }
    }
}

/// A `scheduler_config.json` exactly as diffusers writes it: every key optional (the serde
/// adapter; [`SamplingConfig::from_diffusers`] turns it into typed settings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DiffusersSchedulerConfig {
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(rename = "_diffusers_version", skip_serializing_if = "Option::is_none")]
    pub diffusers_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_train_timesteps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_end: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_sample: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_sample_range: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholding: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_thresholding_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_max_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_offset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_betas_zero_snr: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_alpha_to_one: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solver_order: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solver_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_order_final: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub euler_at_final: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_sigmas_type: Option<String>,
    /// A number, or `-Infinity` (no clipping; what diffusers saves by default).
    #[serde(
        default,
        deserialize_with = "number_or_non_finite",
        skip_serializing_if = "Option::is_none"
    )]
    pub lambda_min_clipped: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_karras_sigmas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_exponential_sigmas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_beta_sigmas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_lu_lambdas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_flow_sigmas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_dynamic_shifting: Option<bool>,
    /// Read only with `use_flow_sigmas` / `use_dynamic_shifting`, which are rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_shift: Option<f64>,
    /// Read only with `use_dynamic_shifting`, which is rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_shift_type: Option<String>,
    /// Every key this library does not read (reported, never an error).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// How to sample from a model, typed: the noise schedule plus how a sampler interprets and
/// post-processes the model output (what a diffusers `scheduler_config.json` means). Defaults
/// are the paper's (DDPM, ε, fixed_small, clip to [−1, 1]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[doc(alias = "scheduler_config")]
pub struct SamplingConfig {
    /// Which diffusers scheduler the settings came from; picks the default sampler.
    pub class: SchedulerClass,
    /// T and β.
    pub schedule: NoiseScheduleConfig,
    /// What the model predicts (paper: ε).
    pub prediction_type: PredictionType,
    /// Reverse-process variance for DDPM sampling (diffusers default: fixed_small).
    pub variance_type: VarianceType,
    /// Clip x̂₀ to ±`clip_sample_range` (original code and diffusers: true).
    pub clip_sample: bool,
    /// Clip range (1.0 for data in [−1, 1]).
    pub clip_sample_range: f64,
    /// Imagen's dynamic thresholding of x̂₀ (Saharia et al. 2022); default false.
    pub thresholding: bool,
    /// Percentile for dynamic thresholding (0.995).
    pub dynamic_thresholding_ratio: f64,
    /// Upper bound on the dynamic threshold (1.0).
    pub sample_max_value: f64,
    /// Inference timestep spacing (DDPM/DDIM: leading; DPM-Solver: linspace).
    pub timestep_spacing: TimestepSpacing,
    /// Offset added to `leading` timesteps (0; Stable Diffusion uses 1).
    pub steps_offset: usize,
    /// DDIM: use ᾱ = 1 for the step after the last (true) instead of ᾱ₀.
    pub set_alpha_to_one: bool,
    /// DPM-Solver order (2).
    pub solver_order: usize,
    /// DPM-Solver second-order rule (midpoint).
    pub solver_type: SolverType,
    /// DPM-Solver: first order at the last step when there are fewer than 15 steps (true).
    pub lower_order_final: bool,
    /// DPM-Solver: first order at the last step, always (false).
    #[serde(default)]
    pub euler_at_final: bool,
    /// DPM-Solver: where the last step lands (σ = 0).
    #[serde(default)]
    pub final_sigmas_type: FinalSigmasType,
    /// DPM-Solver: skip the timesteps whose λ = log(α/σ) is below this (`None`: no clipping,
    /// diffusers' −∞).
    #[serde(default)]
    pub lambda_min_clipped: Option<f64>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self::class_defaults(SchedulerClass::Ddpm)
    }
}

/// A parsed config and the keys of the file that were ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSamplingConfig {
    /// The typed settings.
    pub config: SamplingConfig,
    /// Keys present in the file that this library does not use, sorted.
    pub ignored_keys: Vec<String>,
}

impl SamplingConfig {
    /// diffusers' defaults for `class` (the values its `__init__` uses for absent keys).
    pub fn class_defaults(class: SchedulerClass) -> Self {
        Self {
            class,
            schedule: NoiseScheduleConfig::default(),
            prediction_type: PredictionType::Epsilon,
            variance_type: VarianceType::FixedSmall,
            clip_sample: class != SchedulerClass::DpmSolverMultistep,
            clip_sample_range: 1.0,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            timestep_spacing: if class == SchedulerClass::DpmSolverMultistep {
                TimestepSpacing::Linspace
            } else {
                TimestepSpacing::Leading
            },
            steps_offset: 0,
            set_alpha_to_one: true,
            solver_order: 2,
            solver_type: SolverType::Midpoint,
            lower_order_final: true,
            euler_at_final: false,
            final_sigmas_type: FinalSigmasType::Zero,
            lambda_min_clipped: None,
        }
    }

    /// Reads `scheduler_config.json`, or `scheduler/scheduler_config.json` /
    /// `scheduler_config.json` inside a directory.
    ///
    /// # Errors
    /// [`ScheduleError::Io`]/[`ScheduleError::Json`] naming the file, or a validation error
    /// naming the key.
    pub fn load(path: impl AsRef<Path>) -> Result<LoadedSamplingConfig, ScheduleError> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            let nested = path.join("scheduler").join("scheduler_config.json");
            path = if nested.is_file() {
                nested
            } else {
                path.join("scheduler_config.json")
            };
        }
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ScheduleError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_json_str_named(&text, &shown)
    }

    /// Parses the JSON text of a `scheduler_config.json`.
    ///
    /// # Errors
    /// As [`SamplingConfig::from_diffusers`], or [`ScheduleError::Json`].
    pub fn from_json_str(text: &str) -> Result<LoadedSamplingConfig, ScheduleError> {
        Self::from_json_str_named(text, "<string>")
    }

    fn from_json_str_named(text: &str, path: &str) -> Result<LoadedSamplingConfig, ScheduleError> {
        let raw: DiffusersSchedulerConfig =
            serde_json::from_str(&quote_non_finite(text)).map_err(|source| {
                ScheduleError::Json {
                    path: path.to_string(),
                    source,
                }
            })?;
        Self::from_diffusers(&raw)
    }

    /// Converts diffusers' raw config, filling absent keys with the class's defaults.
    ///
    /// # Errors
    /// [`ScheduleError::UnknownValue`] for a value we do not implement (naming the key), and
    /// every schedule validation error (the schedule is built once to check it).
    pub fn from_diffusers(
        raw: &DiffusersSchedulerConfig,
    ) -> Result<LoadedSamplingConfig, ScheduleError> {
        let class = match &raw.class_name {
            Some(name) => SchedulerClass::parse(name)?,
            None => SchedulerClass::Ddpm,
        };
        let mut c = Self::class_defaults(class);
        let t = raw.num_train_timesteps.unwrap_or(1000);
        let beta_start = raw.beta_start.unwrap_or(1e-4);
        let beta_end = raw.beta_end.unwrap_or(0.02);
        let beta_schedule = match &raw.trained_betas {
            Some(betas) => BetaSchedule::Custom {
                betas: betas.clone(),
            },
            None => BetaSchedule::from_diffusers_name(
                raw.beta_schedule.as_deref().unwrap_or("linear"),
                beta_start,
                beta_end,
            )?,
        };
        c.schedule = NoiseScheduleConfig {
            num_train_timesteps: t,
            beta_schedule,
            rescale_betas_zero_snr: raw.rescale_betas_zero_snr.unwrap_or(false),
        };
        c.schedule.build()?;
        if let Some(p) = &raw.prediction_type {
            c.prediction_type = p.parse()?;
        }
        if let Some(v) = &raw.variance_type {
            c.variance_type = v.parse()?;
        }
        if let Some(v) = raw.clip_sample {
            c.clip_sample = v;
        }
        if let Some(v) = raw.clip_sample_range {
            c.clip_sample_range = positive("clip_sample_range", v)?;
        }
        if let Some(v) = raw.thresholding {
            c.thresholding = v;
        }
        if let Some(v) = raw.dynamic_thresholding_ratio {
            if !(v > 0.0 && v <= 1.0) {
                return Err(ScheduleError::InvalidParameter {
                    field: "dynamic_thresholding_ratio",
                    value: v,
                    expected: "0 < ratio <= 1",
                });
            }
            c.dynamic_thresholding_ratio = v;
        }
        if let Some(v) = raw.sample_max_value {
            c.sample_max_value = positive("sample_max_value", v)?;
        }
        if let Some(v) = &raw.timestep_spacing {
            c.timestep_spacing = v.parse()?;
        }
        if let Some(v) = raw.steps_offset {
            c.steps_offset = v;
        }
        if let Some(v) = raw.set_alpha_to_one {
            c.set_alpha_to_one = v;
        }
        if let Some(v) = raw.solver_order {
            if !(1..=2).contains(&v) {
                return Err(unknown("solver_order", v.to_string(), "1, 2"));
            }
            c.solver_order = v;
        }
        if let Some(v) = &raw.algorithm_type
            && v != "dpmsolver++"
        {
            return Err(unknown("algorithm_type", v.clone(), "dpmsolver++"));
        }
        if let Some(v) = &raw.solver_type {
            c.solver_type = match v.as_str() {
                "midpoint" => SolverType::Midpoint,
                "heun" => SolverType::Heun,
                other => return Err(unknown("solver_type", other.to_string(), "midpoint, heun")),
            };
        }
        if let Some(v) = raw.lower_order_final {
            c.lower_order_final = v;
        }
        if let Some(v) = raw.euler_at_final {
            c.euler_at_final = v;
        }
        if let Some(v) = &raw.final_sigmas_type {
            c.final_sigmas_type = match v.as_str() {
                "zero" => FinalSigmasType::Zero,
                "sigma_min" => FinalSigmasType::SigmaMin,
                other => {
                    return Err(unknown(
                        "final_sigmas_type",
                        other.to_string(),
                        "zero, sigma_min",
                    ));
                }
            };
        }
        c.lambda_min_clipped = match raw.lambda_min_clipped {
            None => None,
            Some(v) if v == f64::NEG_INFINITY => None,
            Some(v) if v.is_finite() => Some(v),
            Some(v) => {
                return Err(ScheduleError::InvalidParameter {
                    field: "lambda_min_clipped",
                    value: v,
                    expected: "a finite number or -Infinity (no clipping)",
                });
            }
        };
        for (key, value) in [
            ("use_karras_sigmas", raw.use_karras_sigmas),
            ("use_exponential_sigmas", raw.use_exponential_sigmas),
            ("use_beta_sigmas", raw.use_beta_sigmas),
            ("use_lu_lambdas", raw.use_lu_lambdas),
            ("use_flow_sigmas", raw.use_flow_sigmas),
            ("use_dynamic_shifting", raw.use_dynamic_shifting),
        ] {
            if value == Some(true) {
                return Err(unknown(key, "true".into(), "false"));
            }
        }
        let mut ignored_keys: Vec<String> = raw.other.keys().cloned().collect();
        if class == SchedulerClass::DpmSolverMultistep {
            // Not parameters of DPMSolverMultistepScheduler (diffusers ignores them too): the
            // solver never clips x̂₀ here.
            for (key, present) in [
                ("clip_sample", raw.clip_sample.is_some()),
                ("clip_sample_range", raw.clip_sample_range.is_some()),
            ] {
                if present {
                    ignored_keys.push(key.to_string());
                }
            }
            ignored_keys.sort();
        }
        Ok(LoadedSamplingConfig {
            config: c,
            ignored_keys,
        })
    }

    /// The diffusers JSON form of these settings (all keys written, `_class_name` from
    /// [`SamplingConfig::class`]).
    pub fn to_diffusers(&self) -> DiffusersSchedulerConfig {
        let (beta_start, beta_end) = self.schedule.beta_schedule.range();
        let trained_betas = match &self.schedule.beta_schedule {
            BetaSchedule::Custom { betas } => Some(betas.clone()),
            _ => None,
        };
        let is_dpm = self.class == SchedulerClass::DpmSolverMultistep;
        DiffusersSchedulerConfig {
            class_name: Some(self.class.diffusers_name().into()),
            num_train_timesteps: Some(self.schedule.num_train_timesteps),
            beta_start: Some(beta_start),
            beta_end: Some(beta_end),
            beta_schedule: Some(
                self.schedule
                    .beta_schedule
                    .diffusers_name()
                    .replace("trained_betas", "linear"),
            ),
            trained_betas,
            prediction_type: Some(self.prediction_type.diffusers_name().into()),
            variance_type: (self.class == SchedulerClass::Ddpm)
                .then(|| self.variance_type.diffusers_name().into()),
            clip_sample: (!is_dpm).then_some(self.clip_sample),
            clip_sample_range: (!is_dpm).then_some(self.clip_sample_range),
            thresholding: Some(self.thresholding),
            dynamic_thresholding_ratio: Some(self.dynamic_thresholding_ratio),
            sample_max_value: Some(self.sample_max_value),
            timestep_spacing: Some(self.timestep_spacing.diffusers_name().into()),
            steps_offset: Some(self.steps_offset),
            rescale_betas_zero_snr: Some(self.schedule.rescale_betas_zero_snr),
            set_alpha_to_one: (self.class == SchedulerClass::Ddim).then_some(self.set_alpha_to_one),
            solver_order: is_dpm.then_some(self.solver_order),
            algorithm_type: is_dpm.then(|| "dpmsolver++".into()),
            solver_type: is_dpm.then(|| {
                match self.solver_type {
                    SolverType::Midpoint => "midpoint",
                    SolverType::Heun => "heun",
                }
                .into()
            }),
            lower_order_final: is_dpm.then_some(self.lower_order_final),
            euler_at_final: is_dpm.then_some(self.euler_at_final),
            final_sigmas_type: is_dpm.then(|| self.final_sigmas_type.diffusers_name().into()),
            lambda_min_clipped: if is_dpm {
                self.lambda_min_clipped
            } else {
                None
            },
            ..Default::default()
        }
    }
}

/// Quotes the bare `Infinity`, `-Infinity` and `NaN` tokens Python's `json` writes outside
/// strings, so that serde can read the text (as strings, which [`number_or_non_finite`] turns
/// back into numbers).
fn quote_non_finite(text: &str) -> Cow<'_, str> {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    if !TOKENS.iter().any(|t| text.contains(t)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string && let Some(token) = TOKENS.iter().find(|t| rest.starts_with(**t)) {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// A number, `null`, or one of the strings `"-Infinity"`, `"Infinity"`, `"NaN"`.
fn number_or_non_finite<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => match s.as_str() {
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "NaN" => Ok(Some(f64::NAN)),
            other => Err(D::Error::custom(format!(
                "expected a number or -Infinity, found {other:?}"
            ))),
        },
        Some(other) => Err(D::Error::custom(format!(
            "expected a number or -Infinity, found {other}"
        ))),
    }
}

fn unknown(field: &'static str, value: String, expected: &'static str) -> ScheduleError {
    ScheduleError::UnknownValue {
        field,
        value,
        expected,
    }
}

fn positive(field: &'static str, v: f64) -> Result<f64, ScheduleError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ScheduleError::InvalidParameter {
            field,
            value: v,
            expected: "a finite value > 0",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_ddpm_cifar10_config() {
        let json = r#"{
          "_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1",
          "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
          "clip_sample": true, "num_train_timesteps": 1000, "trained_betas": null,
          "variance_type": "fixed_small", "tensor_format": "pt"
        }"#;
        let loaded = SamplingConfig::from_json_str(json).unwrap();
        assert_eq!(loaded.config, SamplingConfig::default());
        assert_eq!(loaded.ignored_keys, vec!["tensor_format".to_string()]);
    }

    #[test]
    fn class_defaults_apply() {
        let loaded =
            SamplingConfig::from_json_str(r#"{"_class_name": "DPMSolverMultistepScheduler"}"#)
                .unwrap();
        assert_eq!(loaded.config.timestep_spacing, TimestepSpacing::Linspace);
        assert!(!loaded.config.clip_sample);
        let ddim = SamplingConfig::from_json_str(
            r#"{"_class_name": "DDIMScheduler", "steps_offset": 1, "set_alpha_to_one": false,
                "prediction_type": "v_prediction", "timestep_spacing": "trailing"}"#,
        )
        .unwrap()
        .config;
        assert_eq!(ddim.class, SchedulerClass::Ddim);
        assert_eq!(ddim.steps_offset, 1);
        assert!(!ddim.set_alpha_to_one);
        assert_eq!(ddim.prediction_type, PredictionType::VPrediction);
        assert_eq!(ddim.timestep_spacing, TimestepSpacing::Trailing);
    }

    #[test]
    fn unknown_values_are_errors_naming_the_key() {
        for (json, key) in [
            (r#"{"beta_schedule": "quadratic"}"#, "beta_schedule"),
            (r#"{"prediction_type": "score"}"#, "prediction_type"),
            (r#"{"variance_type": "big"}"#, "variance_type"),
            (r#"{"timestep_spacing": "middle"}"#, "timestep_spacing"),
            (
                r#"{"_class_name": "EulerDiscreteScheduler"}"#,
                "_class_name",
            ),
            (r#"{"beta_start": -1.0}"#, "beta_start"),
            (r#"{"num_train_timesteps": 0}"#, "num_train_timesteps"),
            (
                r#"{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2]}"#,
                "trained_betas",
            ),
        ] {
            let err = SamplingConfig::from_json_str(json).unwrap_err().to_string();
            assert!(err.contains(key), "{json}: {err}");
        }
        let err = SamplingConfig::from_json_str("{\"clip_sample\": 3}").unwrap_err();
        assert!(matches!(err, ScheduleError::Json { .. }), "{err}");
    }

    #[test]
    fn diffusers_dpm_solver_config_with_python_infinity() {
        // As diffusers 0.42.1's `save_config` writes it (abridged).
        let json = r#"{
          "_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.42.1",
          "algorithm_type": "dpmsolver++", "euler_at_final": false, "final_sigmas_type": "sigma_min",
          "flow_shift": 1.0, "lambda_min_clipped": -Infinity, "lower_order_final": false,
          "solver_type": "heun", "time_shift_type": "exponential", "timestep_spacing": "linspace",
          "use_beta_sigmas": false, "use_dynamic_shifting": false, "use_exponential_sigmas": false,
          "use_flow_sigmas": false, "use_karras_sigmas": false, "use_lu_lambdas": false,
          "variance_type": null, "note": "NaN and -Infinity inside a \"string\" stay"
        }"#;
        let loaded = SamplingConfig::from_json_str(json).unwrap();
        let c = &loaded.config;
        assert_eq!(c.lambda_min_clipped, None);
        assert_eq!(c.final_sigmas_type, FinalSigmasType::SigmaMin);
        assert!(!c.lower_order_final);
        assert_eq!(c.solver_type, SolverType::Heun);
        assert_eq!(loaded.ignored_keys, ["note"]);
        let clipped = SamplingConfig::from_json_str(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -5.1,
                "clip_sample": true}"#,
        )
        .unwrap();
        assert_eq!(clipped.config.lambda_min_clipped, Some(-5.1));
        assert_eq!(clipped.ignored_keys, ["clip_sample"]);
        for (json, key) in [
            (r#"{"lambda_min_clipped": NaN}"#, "lambda_min_clipped"),
            (r#"{"lambda_min_clipped": Infinity}"#, "lambda_min_clipped"),
            (r#"{"final_sigmas_type": "huge"}"#, "final_sigmas_type"),
            (r#"{"use_flow_sigmas": true}"#, "use_flow_sigmas"),
            (r#"{"use_lu_lambdas": true}"#, "use_lu_lambdas"),
        ] {
            let err = SamplingConfig::from_json_str(json).unwrap_err().to_string();
            assert!(err.contains(key), "{json}: {err}");
        }
    }

    #[test]
    fn diffusers_round_trip() {
        for class in [
            SchedulerClass::Ddpm,
            SchedulerClass::Ddim,
            SchedulerClass::DpmSolverMultistep,
        ] {
            let mut c = SamplingConfig::class_defaults(class);
            c.schedule = NoiseScheduleConfig::cosine(500);
            c.prediction_type = PredictionType::Sample;
            if class == SchedulerClass::DpmSolverMultistep {
                c.final_sigmas_type = FinalSigmasType::SigmaMin;
                c.lambda_min_clipped = Some(-5.1);
                c.euler_at_final = true;
            }
            let json = serde_json::to_string(&c.to_diffusers()).unwrap();
            let back = SamplingConfig::from_json_str(&json).unwrap();
            assert_eq!(back.config, c, "{json}");
            assert!(back.ignored_keys.is_empty());
        }
    }
}
