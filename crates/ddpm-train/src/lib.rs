//! Training Denoising Diffusion Probabilistic Models (Ho, Jain & Abbeel 2020,
//! arXiv:2006.11239v2, Algorithm 1 and Appendix B).
//!
//! [`Trainer`] runs the paper's recipe by default ([`TrainConfig`]): L_simple (Eq. 14), Adam
//! with linear warmup, global gradient-norm clipping at 1 ([`clip_global_norm`]), and an EMA of
//! the weights ([`ema_update`], decay 0.9999) from which previews are sampled. Checkpoints hold
//! the raw and EMA weights, the optimizer state, the step and the data position, are written
//! atomically ([`checkpoint`] module docs give the run directory layout), and a resumed run
//! reproduces an uninterrupted one bit for bit. A resume keeps the settings that shape a
//! training step and the training data (refusing others by name), and continues from the
//! newest intact checkpoint ([`ResumeReport`]).
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use burn::backend::{Autodiff, Flex};
//! use ddpm_data::{DataSpec, ImageSize, LoadOptions};
//! use ddpm_train::{TrainConfig, Trainer};
//! use ddpm_unet::UnetConfig;
//!
//! let data = Arc::new("mnist:data/mnist".parse::<DataSpec>()?.open(&LoadOptions::new(1, ImageSize::square(28)))?);
//! let config = TrainConfig::new(UnetConfig::mnist()).with_steps(2000).with_batch_size(64);
//! let mut trainer = Trainer::<Autodiff<Flex>>::new(config, "runs/mnist", data, &Default::default())?;
//! trainer.run(|event| println!("{event:?}"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod checkpoint;
mod clip;
mod config;
mod ema;
mod error;
pub mod eval;
mod fingerprint;
pub mod optim;
pub mod parallel;
mod resume;
mod trainer;

pub use checkpoint::{
    DamagedCheckpoint, TrainState, Weights, is_training_output, latest_checkpoint, load_unet,
};
pub use clip::{clip_global_norm, global_norm};
pub use config::{EmaWarmup, LrSchedule, TrainConfig};
pub use ema::ema_update;
pub use error::TrainError;
pub use eval::{BestCheckpoint, EvalRecord, MetricValues, SampleMetric, read_best};
pub use fingerprint::DataFingerprint;
pub use resume::{ChangedSetting, HONOURED_ON_RESUME, ResumeReport};
pub use trainer::{InferenceBackend, StepStats, TrainEvent, Trainer};
