//! [`Pipeline`]: a U-Net with the scheduler settings it was trained with, on a device — the
//! unconditional image pipeline of diffusers (`DDPMPipeline`), with the sampler chosen per run.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use ddpm_schedule::SamplingConfig;
use ddpm_unet::Unet;

use crate::{ModelDir, PipelineError, SamplerKind, Sampling};

/// Where a pipeline's scheduler settings came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedulerSource {
    /// A `scheduler_config.json`.
    File(PathBuf),
    /// No file: the paper's settings ([`SamplingConfig::default`]: T = 1000, linear β, ε,
    /// DDPM).
    Defaults,
    /// Given in code ([`Pipeline::new`], [`Pipeline::with_scheduler_config`]).
    Given,
}

impl std::fmt::Display for SchedulerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Defaults => f.write_str("the paper's defaults"),
            Self::Given => f.write_str("given in code"),
        }
    }
}

/// A U-Net, its scheduler settings and a device: everything a sampling run needs.
///
/// # Example
/// ```no_run
/// use burn::backend::Flex;
/// use ddpm_pipeline::{Pipeline, SamplerKind};
///
/// let pipe = Pipeline::<Flex>::from_dir("ddpm-cifar10-32", &Default::default())?;
/// let samples = pipe.sampler(SamplerKind::Ddim).steps(50).seed(0).sample(4)?;
/// samples.save_grid("samples.png")?;
/// # Ok::<(), ddpm_pipeline::PipelineError>(())
/// ```
#[derive(Debug)]
pub struct Pipeline<B: Backend> {
    unet: Unet<B>,
    config: SamplingConfig,
    source: SchedulerSource,
    ignored_keys: Vec<String>,
    model: Option<ModelDir>,
    device: B::Device,
}

impl<B: Backend> Pipeline<B> {
    /// Loads the model at `path` — a diffusers pipeline or `UNet2DModel` directory, a native
    /// checkpoint, a `ddpm train` run (its newest checkpoint, EMA weights) or one of its
    /// checkpoints ([`ModelDir::resolve`]) — with the scheduler settings stored with it.
    ///
    /// # Errors
    /// As [`ModelDir::resolve`] and [`Pipeline::load`].
    pub fn from_dir(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, PipelineError> {
        Self::load(&ModelDir::resolve(path, None)?, device)
    }

    /// Loads a resolved model directory: its U-Net and its `scheduler_config.json` (the paper's
    /// settings when it has none).
    ///
    /// # Errors
    /// Import errors naming the file and key; scheduler config errors naming the key.
    pub fn load(model: &ModelDir, device: &B::Device) -> Result<Self, PipelineError> {
        let loaded = model.load_scheduler_config()?;
        let unet = model.load_unet::<B>(device)?;
        let (config, source, ignored_keys) = match loaded {
            Some(l) => (
                l.config,
                SchedulerSource::File(
                    model
                        .scheduler_config_path()
                        .expect("loaded from a path")
                        .to_path_buf(),
                ),
                l.ignored_keys,
            ),
            None => (
                SamplingConfig::default(),
                SchedulerSource::Defaults,
                Vec::new(),
            ),
        };
        Ok(Self {
            unet,
            config,
            source,
            ignored_keys,
            model: Some(model.clone()),
            device: device.clone(),
        })
    }

    /// A pipeline from parts: a U-Net already in memory (e.g. a trainer's EMA weights) and its
    /// scheduler settings.
    pub fn new(unet: Unet<B>, config: SamplingConfig, device: &B::Device) -> Self {
        Self {
            unet,
            config,
            source: SchedulerSource::Given,
            ignored_keys: Vec::new(),
            model: None,
            device: device.clone(),
        }
    }

    /// Runs the U-Net in `precision` (f16/bf16 weights on GPU backends; samples, x_t and the
    /// noise stay f32): [`Unet::with_precision`].
    ///
    /// # Errors
    /// [`PipelineError::Unet`] when the backend cannot compute in `precision` on this device.
    pub fn with_precision(
        mut self,
        precision: ddpm_unet::Precision,
    ) -> Result<Self, PipelineError> {
        self.unet = self.unet.with_precision(precision)?;
        Ok(self)
    }

    /// Replaces the scheduler settings.
    pub fn with_scheduler_config(mut self, config: SamplingConfig) -> Self {
        self.config = config;
        self.source = SchedulerSource::Given;
        self.ignored_keys.clear();
        self
    }

    /// Replaces the scheduler settings with those of a `scheduler_config.json` (or a directory
    /// holding one, or `scheduler/scheduler_config.json`).
    ///
    /// # Errors
    /// [`PipelineError::Schedule`] naming the file and key.
    pub fn with_scheduler_config_file(
        mut self,
        path: impl AsRef<Path>,
    ) -> Result<Self, PipelineError> {
        let loaded = SamplingConfig::load(path.as_ref())?;
        self.config = loaded.config;
        self.source = SchedulerSource::File(path.as_ref().to_path_buf());
        self.ignored_keys = loaded.ignored_keys;
        Ok(self)
    }

    /// The U-Net.
    pub fn unet(&self) -> &Unet<B> {
        &self.unet
    }

    /// The scheduler settings samplers are built from.
    pub fn scheduler_config(&self) -> &SamplingConfig {
        &self.config
    }

    /// Where [`Pipeline::scheduler_config`] came from.
    pub fn scheduler_source(&self) -> &SchedulerSource {
        &self.source
    }

    /// Keys of the scheduler config file that this library does not use (reported, never
    /// silently dropped: print them, as `ddpm sample` does).
    pub fn ignored_keys(&self) -> &[String] {
        &self.ignored_keys
    }

    /// The model directory the pipeline was loaded from (`None` for [`Pipeline::new`]).
    pub fn model_dir(&self) -> Option<&ModelDir> {
        self.model.as_ref()
    }

    /// The device the U-Net lives on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// `[C, H, W]` of one sample.
    pub fn sample_shape(&self) -> [usize; 3] {
        let c = self.unet.config();
        [c.in_channels, c.sample_size, c.sample_size]
    }

    /// A sampling run with the sampler the scheduler config names (`_class_name`:
    /// DDPMScheduler → DDPM, DDIMScheduler → DDIM, DPMSolverMultistepScheduler →
    /// DPM-Solver++).
    pub fn sampling(&self) -> Sampling<'_, B> {
        Sampling::new(self)
    }

    /// A sampling run with sampler `kind` (the config's other settings still apply).
    pub fn sampler(&self, kind: SamplerKind) -> Sampling<'_, B> {
        Sampling::new(self).kind(kind)
    }
}
