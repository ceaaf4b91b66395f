//! The training configuration: the paper's recipe by default (Ho et al. 2020, Appendix B).

use burn::config::Config;
use ddpm_loss::{LossWeighting, Objective, Parameterization, TrainingLossConfig};
use ddpm_schedule::{NoiseScheduleConfig, PredictionType, VarianceType};
use ddpm_unet::UnetConfig;

use crate::TrainError;

/// EMA decay rule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum EmaWarmup {
    /// A constant decay (the paper: 0.9999).
    None,
    /// diffusers' warmup: decay_k = min(decay, (1 + k) / (10 + k)) at step k, so that a short
    /// run's EMA is not dominated by the random initialisation.
    Diffusers,
}

/// How the learning rate moves after its linear warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LrSchedule {
    /// Constant at `learning_rate` (the paper).
    Constant,
    /// Half a cosine from `learning_rate` at the end of the warmup down towards 0 at the run's
    /// last step (Loshchilov & Hutter 2017; diffusers' `get_cosine_schedule_with_warmup`).
    Cosine,
    /// A straight line from `learning_rate` at the end of the warmup down towards 0 at the
    /// run's last step.
    Linear,
}

impl LrSchedule {
    /// The names [`LrSchedule::from_str`](std::str::FromStr) accepts.
    pub const NAMES: &'static [&'static str] = &["constant", "cosine", "linear"];
}

impl std::str::FromStr for LrSchedule {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "constant" => Ok(Self::Constant),
            "cosine" => Ok(Self::Cosine),
            "linear" => Ok(Self::Linear),
            _ => Err(TrainError::InvalidConfig {
                field: "lr_schedule",
                value: s.to_string(),
                expected: "constant, cosine or linear",
            }),
        }
    }
}

/// Everything a training run needs; saved as `train_config.json` in the run directory.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// The noise predictor.
    pub unet: UnetConfig,
    /// T and β (paper: 1000, linear 1e-4..0.02).
    #[config(default = "NoiseScheduleConfig::default()")]
    pub schedule: NoiseScheduleConfig,
    /// What the model predicts (paper: ε).
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// Σ_θ of the reverse process (§3.2): fixed small (β̃_t) or large (β_t), or learned (the
    /// U-Net then outputs 2·C channels; see [`TrainConfig::fit_output_channels`]). Saved in the
    /// run's `scheduler_config.json`, so samplers use it. Default: fixed small (diffusers').
    #[config(default = "VarianceType::FixedSmall")]
    pub variance_type: VarianceType,
    /// What a step minimises (paper: L_simple; Table 2 compares the true bound).
    #[config(default = "Objective::Simple")]
    pub objective: Objective,
    /// Per-timestep loss weight of the simple objective (paper: none, i.e. L_simple of
    /// Eq. 14).
    #[config(default = "LossWeighting::None")]
    pub loss_weighting: LossWeighting,
    /// Total optimizer steps (paper: 800k for CIFAR10).
    #[config(default = 800_000)]
    pub steps: usize,
    /// Images per optimizer step (paper: 128 for CIFAR10).
    #[config(default = 128)]
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step (`batch_size` must divide by it).
    #[config(default = 1)]
    pub grad_accumulation: usize,
    /// Adam learning rate (paper: 2e-4 for CIFAR10, 2e-5 at 256×256).
    #[config(default = 2e-4)]
    pub learning_rate: f64,
    /// Linear warmup steps of the learning rate (paper: 5000).
    #[config(default = 5000)]
    pub warmup_steps: usize,
    /// What the learning rate does after the warmup (paper: constant). A decaying schedule
    /// decays over `steps`, so a resume that raises `steps` stretches the rest of it.
    #[config(default = "LrSchedule::Constant")]
    pub lr_schedule: LrSchedule,
    /// Adam β₁ (TensorFlow default, as the paper's code).
    #[config(default = 0.9)]
    pub adam_beta1: f32,
    /// Adam β₂.
    #[config(default = 0.999)]
    pub adam_beta2: f32,
    /// Adam ε (TensorFlow's 1e-8; Burn's default differs).
    #[config(default = 1e-8)]
    pub adam_epsilon: f32,
    /// Clip the global gradient norm to this value (paper: 1.0); `None` disables it.
    #[config(default = "Some(1.0)")]
    pub grad_clip_norm: Option<f64>,
    /// EMA decay of the weights (paper: 0.9999).
    #[config(default = 0.9999)]
    pub ema_decay: f64,
    /// EMA decay rule.
    #[config(default = "EmaWarmup::None")]
    pub ema_warmup: EmaWarmup,
    /// Random horizontal flips (paper: on for CIFAR10; off for digits).
    #[config(default = false)]
    pub random_flip: bool,
    /// Seed of every random choice of the run (data order, t, ε, dropout, previews).
    #[config(default = 0)]
    pub seed: u64,
    /// Write a checkpoint every N steps (and always at the end).
    #[config(default = 5000)]
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (oldest removed first).
    #[config(default = 3)]
    pub keep_checkpoints: usize,
    /// Write a preview grid from the EMA weights every N steps (0: only at the end).
    #[config(default = 5000)]
    pub sample_every: usize,
    /// Images in a preview grid.
    #[config(default = 16)]
    pub num_preview_samples: usize,
    /// DDIM steps for preview grids.
    #[config(default = 50)]
    pub preview_steps: usize,
    /// Log every N steps.
    #[config(default = 100)]
    pub log_every: usize,
    /// Score samples of the EMA weights with the trainer's sample metric every N steps (and at
    /// the end); 0: never.
    #[config(default = 0)]
    pub eval_every: usize,
    /// Samples drawn for each evaluation.
    #[config(default = 1000)]
    pub eval_samples: usize,
    /// DDIM steps of each evaluation's sampling (η = 0).
    #[config(default = 25)]
    pub eval_steps: usize,
    /// Images per model call when sampling for an evaluation (does not change the samples).
    #[config(default = 250)]
    pub eval_batch_size: usize,
    /// Keep a copy of the checkpoint with the best (lowest) metric as
    /// `checkpoints/best-step-N`, named in `best.json`; a checkpoint is written at every
    /// evaluation then.
    #[config(default = false)]
    pub save_best: bool,
}

impl TrainConfig {
    /// The paper's recipe for a given U-Net, with a run-specific step count.
    pub fn paper(unet: UnetConfig) -> Self {
        Self::new(unet)
    }

    /// Reads a `train_config.json` (the file a run saves, or one for `--config`). Settings
    /// missing from the file take their defaults, so a file written before a setting existed
    /// keeps meaning what it meant (every setting added later defaults to the behaviour runs had
    /// before it: a constant learning rate, no evaluations, ...); the `unet` key is required.
    ///
    /// # Errors
    /// [`TrainError::Io`] when the file cannot be read, [`TrainError::Json`] (naming the file and
    /// the key) when it is not a training config.
    pub fn read(path: &std::path::Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
        Self::from_json_str(&text).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// [`TrainConfig::read`] from a string.
    ///
    /// # Errors
    /// A [`serde_json::Error`] naming the key when the text is not a training config.
    pub fn from_json_str(text: &str) -> Result<Self, serde_json::Error> {
        use serde::de::Error as _;
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        let map = value
            .as_object_mut()
            .ok_or_else(|| serde_json::Error::custom("a training config is a JSON object"))?;
        let unet = map
            .get("unet")
            .ok_or_else(|| serde_json::Error::missing_field("unet"))?;
        let unet: UnetConfig = serde_json::from_value(unet.clone())
            .map_err(|e| serde_json::Error::custom(format!("unet: {e}")))?;
        if let serde_json::Value::Object(defaults) = serde_json::to_value(Self::new(unet))? {
            for (key, default) in defaults {
                map.entry(key).or_insert(default);
            }
        }
        serde_json::from_value(value)
    }

    /// The loss these settings train with (objective, prediction and variance type, weighting).
    pub fn loss_config(&self) -> TrainingLossConfig {
        TrainingLossConfig::new()
            .with_objective(self.objective)
            .with_prediction_type(self.prediction_type)
            .with_variance_type(self.variance_type)
            .with_weighting(self.loss_weighting)
    }

    /// How the model's outputs are read: prediction and variance type.
    pub fn parameterization(&self) -> Parameterization {
        Parameterization::new(self.prediction_type, self.variance_type)
    }

    /// Sets the U-Net's output channels to what the variance type needs: C for a fixed
    /// variance, 2·C (prediction, then variance) for a learned one.
    pub fn fit_output_channels(&mut self) {
        self.unet.out_channels = self
            .parameterization()
            .output_channels(self.unet.in_channels);
    }

    /// Checks every setting, naming the field at fault.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`], or the U-Net's/schedule's/loss's own validation errors.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.unet.validate()?;
        self.schedule.build()?;
        self.loss_config().validate()?;
        let out_channels = self
            .parameterization()
            .output_channels(self.unet.in_channels);
        if self.unet.out_channels != out_channels {
            return Err(TrainError::InvalidConfig {
                field: "unet.out_channels",
                value: self.unet.out_channels.to_string(),
                expected: if self.variance_type.is_learned() {
                    "2 x in_channels for a learned variance (prediction, then variance)"
                } else {
                    "in_channels for a fixed variance"
                },
            });
        }
        let bad = |field, value: String, expected| {
            Err(TrainError::InvalidConfig {
                field,
                value,
                expected,
            })
        };
        if self.steps == 0 {
            return bad("steps", "0".into(), "at least 1");
        }
        if self.batch_size == 0 || self.grad_accumulation == 0 {
            return bad("batch_size", self.batch_size.to_string(), "at least 1");
        }
        if !self.batch_size.is_multiple_of(self.grad_accumulation) {
            return bad(
                "grad_accumulation",
                self.grad_accumulation.to_string(),
                "a divisor of batch_size",
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", self.learning_rate.to_string(), "> 0");
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("ema_decay", self.ema_decay.to_string(), "0 <= decay < 1");
        }
        if let Some(c) = self.grad_clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad("grad_clip_norm", c.to_string(), "> 0 (or null to disable)");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every", "0".into(), "at least 1");
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints", "0".into(), "at least 1");
        }
        if self.preview_steps == 0 || self.preview_steps > self.schedule.num_train_timesteps {
            return bad(
                "preview_steps",
                self.preview_steps.to_string(),
                "1..=num_train_timesteps",
            );
        }
        if self.eval_every > 0 {
            if self.eval_steps == 0 || self.eval_steps > self.schedule.num_train_timesteps {
                return bad(
                    "eval_steps",
                    self.eval_steps.to_string(),
                    "1..=num_train_timesteps",
                );
            }
            if self.eval_samples < 2 {
                return bad("eval_samples", self.eval_samples.to_string(), "at least 2");
            }
            if self.eval_batch_size == 0 {
                return bad("eval_batch_size", "0".into(), "at least 1");
            }
        }
        if self.save_best && self.eval_every == 0 {
            return bad(
                "save_best",
                "true".into(),
                "eval_every > 0 (the metric it keeps the best of)",
            );
        }
        Ok(())
    }

    /// Learning rate at optimizer step `step` (0-based): a linear warmup to `learning_rate`
    /// over `warmup_steps` (step k gets (k + 1)/warmup of it), then [`LrSchedule`]: for the
    /// decaying ones, with progress p = (k − warmup)/(steps − warmup) ∈ [0, 1), cosine gives
    /// lr·(1 + cos πp)/2 and linear lr·(1 − p), so the first step after the warmup has the full
    /// rate and the last one a small positive rate.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1);
        let p = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let factor = match self.lr_schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
            LrSchedule::Linear => 1.0 - p,
        };
        self.learning_rate * factor
    }

    /// EMA decay at optimizer step `step` (0-based).
    pub fn ema_decay_at(&self, step: usize) -> f64 {
        match self.ema_warmup {
            EmaWarmup::None => self.ema_decay,
            EmaWarmup::Diffusers => self
                .ema_decay
                .min((1.0 + step as f64) / (10.0 + step as f64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(steps: usize, warmup: usize, schedule: LrSchedule) -> TrainConfig {
        TrainConfig::new(UnetConfig::tiny())
            .with_steps(steps)
            .with_learning_rate(2e-3)
            .with_warmup_steps(warmup)
            .with_lr_schedule(schedule)
    }

    #[test]
    fn warmup_then_constant() {
        let c = config(100, 10, LrSchedule::Constant);
        assert_eq!(c.learning_rate_at(0), 2e-4);
        assert!((c.learning_rate_at(4) - 1e-3).abs() < 1e-18);
        assert_eq!(c.learning_rate_at(9), 2e-3);
        assert_eq!(c.learning_rate_at(10), 2e-3);
        assert_eq!(c.learning_rate_at(99), 2e-3);
        let no_warmup = config(100, 0, LrSchedule::Constant);
        assert_eq!(no_warmup.learning_rate_at(0), 2e-3);
    }

    #[test]
    fn cosine_and_linear_decay_over_the_run() {
        // 10 warmup steps, then 90 decaying ones: step 10 has the full rate, step 55 is halfway
        // (p = 45/90), the last step (99) has p = 89/90.
        let cos = config(100, 10, LrSchedule::Cosine);
        let lin = config(100, 10, LrSchedule::Linear);
        for c in [&cos, &lin] {
            assert_eq!(c.learning_rate_at(9), 2e-3);
            assert_eq!(c.learning_rate_at(10), 2e-3);
            assert!((c.learning_rate_at(55) - 1e-3).abs() < 1e-15);
        }
        let p: f64 = 89.0 / 90.0;
        let last_cos = 2e-3 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
        assert!((cos.learning_rate_at(99) - last_cos).abs() < 1e-18);
        assert!(cos.learning_rate_at(99) > 0.0);
        assert!((lin.learning_rate_at(99) - 2e-3 / 90.0).abs() < 1e-15);
        // A quarter of the way: cos(π/4)-shaped for cosine, 3/4 for linear.
        let quarter = config(90, 10, LrSchedule::Cosine); // span 80: step 30 is p = 0.25
        let expected = 2e-3 * 0.5 * (1.0 + (std::f64::consts::FRAC_PI_4).cos());
        assert!((quarter.learning_rate_at(30) - expected).abs() < 1e-15);
        // Decreasing after the warmup.
        for k in 10..99 {
            assert!(cos.learning_rate_at(k + 1) < cos.learning_rate_at(k), "{k}");
            assert!(lin.learning_rate_at(k + 1) < lin.learning_rate_at(k), "{k}");
        }
        // Steps past the run's end (a shorter --steps) stay at 0, never negative.
        assert_eq!(cos.learning_rate_at(500), 0.0);
        assert_eq!(lin.learning_rate_at(500), 0.0);
        // A warmup as long as the run never decays.
        let all_warmup = config(10, 10, LrSchedule::Cosine);
        assert_eq!(all_warmup.learning_rate_at(9), 2e-3);
    }

    #[test]
    fn schedule_names_parse_and_old_configs_default_to_constant() {
        for (name, s) in LrSchedule::NAMES.iter().zip([
            LrSchedule::Constant,
            LrSchedule::Cosine,
            LrSchedule::Linear,
        ]) {
            assert_eq!(name.parse::<LrSchedule>().unwrap(), s);
        }
        let err = "step".parse::<LrSchedule>().unwrap_err().to_string();
        assert!(err.contains("lr_schedule") && err.contains("step"), "{err}");
        // A train_config.json written before the field existed.
        let mut json = serde_json::to_value(config(100, 10, LrSchedule::Cosine)).unwrap();
        assert_eq!(json["lr_schedule"], "Cosine");
        let full = TrainConfig::from_json_str(&json.to_string()).unwrap();
        assert_eq!(full.lr_schedule, LrSchedule::Cosine);
        for key in ["lr_schedule", "eval_every", "save_best"] {
            json.as_object_mut().unwrap().remove(key);
        }
        let old = TrainConfig::from_json_str(&json.to_string()).unwrap();
        assert_eq!(old.lr_schedule, LrSchedule::Constant);
        assert_eq!((old.eval_every, old.save_best), (0, false));
        assert_eq!((old.steps, old.learning_rate), (100, 2e-3));
        // The U-Net is required, and a wrong type is named.
        json.as_object_mut().unwrap().remove("unet");
        let err = TrainConfig::from_json_str(&json.to_string()).unwrap_err();
        assert!(err.to_string().contains("unet"), "{err}");
        let err = TrainConfig::from_json_str(r#"{"unet": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unet"), "{err}");
        let bad = config(100, 10, LrSchedule::Cosine);
        let mut json = serde_json::to_value(bad).unwrap();
        json["lr_schedule"] = "Step".into();
        let err = TrainConfig::from_json_str(&json.to_string()).unwrap_err();
        assert!(err.to_string().contains("Step"), "{err}");
    }
}
