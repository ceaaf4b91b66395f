//! The training configuration: the paper's recipe by default (Ho et al. 2020, Appendix B).

use burn::config::Config;
use ddpm_loss::LossWeighting;
use ddpm_schedule::{NoiseScheduleConfig, PredictionType};
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
    /// Per-timestep loss weight (paper: none, i.e. L_simple of Eq. 14).
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

    /// Checks every setting, naming the field at fault.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`], or the U-Net's/schedule's own validation errors.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.unet.validate()?;
        self.schedule.build()?;
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

    /// Learning rate at optimizer step `step` (0-based): linear warmup to `learning_rate`.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if self.warmup_steps == 0 {
            return self.learning_rate;
        }
        self.learning_rate * ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
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
