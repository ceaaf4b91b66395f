//! Where models live on disk, and the one resolver every command and library user goes
//! through ([`ModelDir::resolve`]).
//!
//! Five layouts are recognised, each with the noise schedule it was trained with:
//!
//! ```text
//! diffusers pipeline        model_index.json, unet/ (a UNet2DModel dir), scheduler/scheduler_config.json
//! diffusers UNet2DModel     config.json + diffusion_pytorch_model.safetensors (or .bin)
//!                           [+ scheduler_config.json, or ../scheduler/scheduler_config.json]
//! native checkpoint         unet_config.json + unet.bpk (`ddpm convert --to burn`)
//!                           [+ scheduler_config.json, or ../scheduler/scheduler_config.json]
//! `ddpm train` run          train_config.json, scheduler_config.json, metrics.jsonl,
//!                           samples/step-NNNNNNNN.png, samples.png (previews),
//!                           checkpoints/step-NNNNNNNN/ (the newest is used)
//! training checkpoint       state.json, unet_config.json, scheduler_config.json,
//!                           model.bin (raw weights), ema.bin (EMA), optimizer.bin
//! ```
//!
//! This module owns the file names of the training layouts too: `ddpm-train` writes run
//! directories and checkpoints with these names, the pipeline reads them, and neither crate
//! depends on the other for it. A checkpoint directory carries its own `scheduler_config.json`,
//! so it samples with the schedule of its run even when copied elsewhere; checkpoints written
//! before that fall back to the run directory's file.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::Backend;
use ddpm_schedule::{LoadedSamplingConfig, SamplingConfig};
use ddpm_unet::{DIFFUSERS_CONFIG, NATIVE_CONFIG, Unet, UnetConfig};

use crate::PipelineError;
use crate::error::io;

/// A diffusers pipeline's index of components.
pub const MODEL_INDEX_FILE: &str = "model_index.json";
/// The U-Net folder of a diffusers pipeline.
pub const PIPELINE_UNET_DIR: &str = "unet";
/// The scheduler folder of a diffusers pipeline.
pub const PIPELINE_SCHEDULER_DIR: &str = "scheduler";
/// diffusers' scheduler settings (noise schedule, prediction type, sampler defaults); also in
/// every run and checkpoint directory.
pub const SCHEDULER_CONFIG_FILE: &str = "scheduler_config.json";
/// A training run's full configuration.
pub const TRAIN_CONFIG_FILE: &str = "train_config.json";
/// A training run's checkpoints folder.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Marks a complete training checkpoint (written last): the step and data position.
pub const STATE_FILE: &str = "state.json";
/// A training checkpoint's U-Net config (the same file name as a native checkpoint's).
pub const CHECKPOINT_UNET_CONFIG: &str = NATIVE_CONFIG;
/// A training checkpoint's raw weights (Burn record; the recorder adds `.bin`).
pub const MODEL_RECORD: &str = "model";
/// A training checkpoint's EMA weights (Burn record; the recorder adds `.bin`).
pub const EMA_RECORD: &str = "ema";
/// A training checkpoint's optimizer state (Burn record; the recorder adds `.bin`).
pub const OPTIMIZER_RECORD: &str = "optimizer";
/// A run's preview grids, one per preview step (`samples/step-NNNNNNNN.png`).
pub const PREVIEWS_DIR: &str = "samples";
/// A run's newest preview grid.
pub const LATEST_PREVIEW_FILE: &str = "samples.png";

/// The recorder of every training checkpoint record: full f32 precision, so resuming is
/// bit-exact and any backend can read the weights.
pub fn checkpoint_recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::new()
}

/// The directory of a run's checkpoint at `step`.
pub fn checkpoint_dir(run_dir: &Path, step: usize) -> PathBuf {
    run_dir
        .join(CHECKPOINTS_DIR)
        .join(format!("step-{step:08}"))
}

/// The preview grid of a run at `step`.
pub fn preview_path(run_dir: &Path, step: usize) -> PathBuf {
    run_dir
        .join(PREVIEWS_DIR)
        .join(format!("step-{step:08}.png"))
}

/// Complete checkpoints of a run (those with a [`STATE_FILE`]), oldest first, as
/// (step, directory).
///
/// # Errors
/// [`PipelineError::Io`] if the checkpoints folder exists but cannot be read.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>, PipelineError> {
    let dir = run_dir.join(CHECKPOINTS_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok())
            && entry.path().join(STATE_FILE).is_file()
        {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint of a run.
///
/// # Errors
/// As [`list_checkpoints`].
pub fn latest_checkpoint(run_dir: &Path) -> Result<Option<PathBuf>, PipelineError> {
    Ok(list_checkpoints(run_dir)?.pop().map(|(_, p)| p))
}

/// Whether `path` is a training run directory or one of its checkpoints.
pub fn is_training_output(path: &Path) -> bool {
    path.join(TRAIN_CONFIG_FILE).is_file() || path.join(STATE_FILE).is_file()
}

/// Which weights of a training checkpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// The exponential moving average (what the paper samples from).
    #[default]
    Ema,
    /// The raw optimizer weights.
    Raw,
}

impl Weights {
    /// The name used on the command line and in messages: `ema` or `raw`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ema => "ema",
            Self::Raw => "raw",
        }
    }

    /// The checkpoint record holding these weights.
    pub fn record(self) -> &'static str {
        match self {
            Self::Ema => EMA_RECORD,
            Self::Raw => MODEL_RECORD,
        }
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Weights {
    type Err = PipelineError;
    fn from_str(s: &str) -> Result<Self, PipelineError> {
        match s {
            "ema" => Ok(Self::Ema),
            "raw" => Ok(Self::Raw),
            other => Err(PipelineError::InvalidArgument {
                name: "weights",
                value: other.to_string(),
                expected: "ema or raw",
            }),
        }
    }
}

/// The kind of model directory [`ModelDir::resolve`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelLayout {
    /// A diffusers pipeline directory (`model_index.json`, `unet/`, `scheduler/`).
    DiffusersPipeline,
    /// A diffusers `UNet2DModel` directory (`config.json` + weights).
    DiffusersUnet,
    /// A native checkpoint directory (`unet_config.json` + `unet.bpk`).
    Native,
    /// A `ddpm train` run directory (its newest checkpoint is used).
    TrainingRun,
    /// One checkpoint directory of a `ddpm train` run.
    TrainingCheckpoint,
}

impl ModelLayout {
    /// A short description for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::DiffusersPipeline => "diffusers pipeline directory",
            Self::DiffusersUnet => "diffusers UNet2DModel directory",
            Self::Native => "native checkpoint directory",
            Self::TrainingRun => "training run directory",
            Self::TrainingCheckpoint => "training checkpoint directory",
        }
    }

    /// Whether the layout is a training run or checkpoint (raw and EMA weights to choose from).
    pub fn is_training(self) -> bool {
        matches!(self, Self::TrainingRun | Self::TrainingCheckpoint)
    }
}

/// A model directory, resolved: where the U-Net's files are, which weights to read and where its
/// noise schedule comes from.
///
/// # Example
/// ```no_run
/// use ddpm_pipeline::{ModelDir, ModelLayout};
/// let model = ModelDir::resolve("runs/mnist", None)?;
/// assert_eq!(model.layout(), ModelLayout::TrainingRun);
/// println!("weights from {}", model.unet_dir().display());
/// # Ok::<(), ddpm_pipeline::PipelineError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    path: PathBuf,
    layout: ModelLayout,
    unet_dir: PathBuf,
    weights: Option<Weights>,
    scheduler_config: Option<PathBuf>,
}

impl ModelDir {
    /// Finds the model at `path`: any layout of the [module docs](self) (a file stands for its
    /// directory). `weights` picks a training checkpoint's raw or EMA weights (`None`: EMA).
    ///
    /// # Errors
    /// [`PipelineError::NoModel`] when `path` holds none of the layouts;
    /// [`PipelineError::WeightsNotApplicable`] when `weights` is given for a directory that has
    /// only one set of weights; [`PipelineError::NoCheckpoint`] for a run without checkpoints;
    /// [`PipelineError::MissingSchedulerConfig`] for a training checkpoint whose schedule is
    /// nowhere to be found; [`PipelineError::UnsupportedPipeline`] for a diffusers pipeline whose
    /// `unet` is not a `UNet2DModel`.
    pub fn resolve(
        path: impl AsRef<Path>,
        weights: Option<Weights>,
    ) -> Result<Self, PipelineError> {
        let given = path.as_ref().to_path_buf();
        let dir = if given.is_file() {
            given
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        } else {
            given.clone()
        };
        if !dir.is_dir() {
            return Err(PipelineError::NoModel {
                path: given,
                reason: "no such directory",
            });
        }
        let resolved = if dir.join(STATE_FILE).is_file() {
            Self::training(given, ModelLayout::TrainingCheckpoint, dir.clone(), weights)?
        } else if dir.join(TRAIN_CONFIG_FILE).is_file() {
            let checkpoint = latest_checkpoint(&dir)?
                .ok_or_else(|| PipelineError::NoCheckpoint { dir: dir.clone() })?;
            Self::training(given, ModelLayout::TrainingRun, checkpoint, weights)?
        } else if dir.join(MODEL_INDEX_FILE).is_file() || is_unnamed_pipeline(&dir) {
            check_model_index(&dir)?;
            let unet_dir = dir.join(PIPELINE_UNET_DIR);
            if !unet_dir.is_dir() {
                return Err(PipelineError::NoModel {
                    path: given,
                    reason: "a diffusers pipeline directory without a unet/ folder",
                });
            }
            Self {
                layout: ModelLayout::DiffusersPipeline,
                scheduler_config: first_file([dir
                    .join(PIPELINE_SCHEDULER_DIR)
                    .join(SCHEDULER_CONFIG_FILE)]),
                unet_dir,
                weights: None,
                path: given,
            }
        } else {
            let layout = if dir.join(NATIVE_CONFIG).is_file() {
                ModelLayout::Native
            } else if dir.join(DIFFUSERS_CONFIG).is_file() {
                ModelLayout::DiffusersUnet
            } else {
                return Err(PipelineError::NoModel {
                    path: given,
                    reason: "no config.json (diffusers), unet_config.json (native), \
                             model_index.json (diffusers pipeline), train_config.json \
                             (training run) or state.json (training checkpoint)",
                });
            };
            Self {
                layout,
                scheduler_config: first_file([
                    dir.join(SCHEDULER_CONFIG_FILE),
                    dir.join("..")
                        .join(PIPELINE_SCHEDULER_DIR)
                        .join(SCHEDULER_CONFIG_FILE),
                ]),
                unet_dir: dir,
                weights: None,
                path: given,
            }
        };
        if let (Some(w), false) = (weights, resolved.layout.is_training()) {
            return Err(PipelineError::WeightsNotApplicable {
                path: resolved.path,
                layout: resolved.layout,
                weights: w,
            });
        }
        Ok(resolved)
    }

    /// A training run's checkpoint: its own `scheduler_config.json`, else (checkpoints written
    /// before checkpoints carried one) the run directory's.
    fn training(
        path: PathBuf,
        layout: ModelLayout,
        checkpoint: PathBuf,
        weights: Option<Weights>,
    ) -> Result<Self, PipelineError> {
        let run_dir = checkpoint
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == CHECKPOINTS_DIR))
            .and_then(Path::parent)
            .filter(|run| run.join(TRAIN_CONFIG_FILE).is_file());
        let mut candidates = vec![checkpoint.join(SCHEDULER_CONFIG_FILE)];
        candidates.extend(run_dir.map(|run| run.join(SCHEDULER_CONFIG_FILE)));
        let scheduler_config = first_file(candidates);
        if scheduler_config.is_none() {
            return Err(PipelineError::MissingSchedulerConfig { dir: checkpoint });
        }
        Ok(Self {
            path,
            layout,
            unet_dir: checkpoint,
            weights: Some(weights.unwrap_or_default()),
            scheduler_config,
        })
    }

    /// The path as given to [`ModelDir::resolve`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout found.
    pub fn layout(&self) -> ModelLayout {
        self.layout
    }

    /// The directory holding the U-Net's config and weights (a pipeline's `unet/`, a run's
    /// newest checkpoint).
    pub fn unet_dir(&self) -> &Path {
        &self.unet_dir
    }

    /// The weights read from a training checkpoint (`None` for other layouts).
    pub fn weights(&self) -> Option<Weights> {
        self.weights
    }

    /// The `scheduler_config.json` that goes with the model, if there is one (always for
    /// training layouts).
    pub fn scheduler_config_path(&self) -> Option<&Path> {
        self.scheduler_config.as_deref()
    }

    /// Reads the model's scheduler settings ([`ModelDir::scheduler_config_path`]); `None` when
    /// the directory has none.
    ///
    /// # Errors
    /// [`PipelineError::Schedule`] naming the file and key.
    pub fn load_scheduler_config(&self) -> Result<Option<LoadedSamplingConfig>, PipelineError> {
        self.scheduler_config
            .as_ref()
            .map(|p| SamplingConfig::load(p).map_err(PipelineError::from))
            .transpose()
    }

    /// The U-Net's configuration, without loading weights.
    ///
    /// # Errors
    /// I/O, JSON and validation errors naming the file.
    pub fn unet_config(&self) -> Result<UnetConfig, PipelineError> {
        Ok(ddpm_unet::read_config(&self.unet_dir)?)
    }

    /// Loads the U-Net onto `device`.
    ///
    /// # Errors
    /// Import errors (missing, unexpected or mis-shaped tensors, naming the key and file) and
    /// [`PipelineError::Record`] for an unreadable training checkpoint record.
    pub fn load_unet<B: Backend>(&self, device: &B::Device) -> Result<Unet<B>, PipelineError> {
        match self.weights {
            Some(weights) => {
                let config = self.unet_config()?;
                let file = self.unet_dir.join(weights.record());
                config
                    .init::<B>(device)?
                    .load_file(&file, &checkpoint_recorder(), device)
                    .map_err(|e| PipelineError::Record {
                        path: file.with_extension("bin"),
                        message: e.to_string(),
                    })
            }
            None => Ok(Unet::load_any(&self.unet_dir, device)?),
        }
    }
}

impl std::fmt::Display for ModelDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.layout.describe(), self.path.display())?;
        if self.layout == ModelLayout::TrainingRun {
            write!(f, " (checkpoint {})", self.unet_dir.display())?;
        }
        if let Some(w) = self.weights {
            write!(f, ", {w} weights")?;
        }
        Ok(())
    }
}

/// A folder with `unet/` and `scheduler/` but no `model_index.json` (a pipeline saved by hand).
fn is_unnamed_pipeline(dir: &Path) -> bool {
    !dir.join(DIFFUSERS_CONFIG).is_file()
        && !dir.join(NATIVE_CONFIG).is_file()
        && dir.join(PIPELINE_UNET_DIR).is_dir()
}

/// A `model_index.json`, if present, must name a `UNet2DModel` as its `unet`.
fn check_model_index(dir: &Path) -> Result<(), PipelineError> {
    let file = dir.join(MODEL_INDEX_FILE);
    if !file.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&file).map_err(io(&file))?;
    let index: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| PipelineError::Json {
            path: file.clone(),
            source,
        })?;
    let class = index
        .get(PIPELINE_UNET_DIR)
        .and_then(|v| v.as_array())
        .and_then(|a| a.get(1))
        .and_then(|c| c.as_str());
    match class {
        Some("UNet2DModel") => Ok(()),
        found => Err(PipelineError::UnsupportedPipeline {
            path: file,
            found: found.unwrap_or("no `unet` entry").to_string(),
        }),
    }
}

fn first_file(candidates: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    candidates.into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ddpm-pipeline-layout-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "{}").unwrap();
    }

    #[test]
    fn every_layout_is_recognised_with_its_schedule() {
        let root = scratch("all");
        // diffusers pipeline
        let pipe = root.join("pipe");
        std::fs::create_dir_all(&pipe).unwrap();
        std::fs::write(
            pipe.join(MODEL_INDEX_FILE),
            r#"{"unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}"#,
        )
        .unwrap();
        touch(&pipe.join("unet").join(DIFFUSERS_CONFIG));
        touch(&pipe.join("scheduler").join(SCHEDULER_CONFIG_FILE));
        let m = ModelDir::resolve(&pipe, None).unwrap();
        assert_eq!(m.layout(), ModelLayout::DiffusersPipeline);
        assert_eq!(m.unet_dir(), pipe.join("unet"));
        assert_eq!(
            m.scheduler_config_path().unwrap(),
            pipe.join("scheduler").join(SCHEDULER_CONFIG_FILE)
        );
        // its unet/ alone finds the sibling scheduler/
        let m = ModelDir::resolve(pipe.join("unet"), None).unwrap();
        assert_eq!(m.layout(), ModelLayout::DiffusersUnet);
        assert!(
            m.scheduler_config_path()
                .unwrap()
                .ends_with("scheduler/scheduler_config.json")
        );

        // training run with two checkpoints: the newest one, its own schedule
        let run = root.join("run");
        touch(&run.join(TRAIN_CONFIG_FILE));
        touch(&run.join(SCHEDULER_CONFIG_FILE));
        for step in [5, 10] {
            touch(&checkpoint_dir(&run, step).join(STATE_FILE));
        }
        touch(&checkpoint_dir(&run, 10).join(SCHEDULER_CONFIG_FILE));
        let m = ModelDir::resolve(&run, None).unwrap();
        assert_eq!(m.layout(), ModelLayout::TrainingRun);
        assert_eq!(m.unet_dir(), checkpoint_dir(&run, 10));
        assert_eq!(m.weights(), Some(Weights::Ema));
        assert_eq!(
            m.scheduler_config_path().unwrap(),
            checkpoint_dir(&run, 10).join(SCHEDULER_CONFIG_FILE)
        );
        // an older checkpoint without its own file falls back to the run's
        let m = ModelDir::resolve(checkpoint_dir(&run, 5), Some(Weights::Raw)).unwrap();
        assert_eq!(m.layout(), ModelLayout::TrainingCheckpoint);
        assert_eq!(m.weights(), Some(Weights::Raw));
        assert_eq!(
            m.scheduler_config_path().unwrap(),
            run.join(SCHEDULER_CONFIG_FILE)
        );
        // ... but copied out of its run it has no schedule: an error, not the paper's default
        let lone = root.join("lone");
        touch(&lone.join(STATE_FILE));
        let e = ModelDir::resolve(&lone, None).unwrap_err();
        assert!(
            matches!(e, PipelineError::MissingSchedulerConfig { .. }),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn bad_directories_are_named() {
        let root = scratch("bad");
        let e = ModelDir::resolve(root.join("missing"), None).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = ModelDir::resolve(&root, None).unwrap_err();
        assert!(e.to_string().contains("config.json"), "{e}");
        // --weights on a directory with one set of weights
        let unet = root.join("unet_only");
        touch(&unet.join(DIFFUSERS_CONFIG));
        let e = ModelDir::resolve(&unet, Some(Weights::Raw)).unwrap_err();
        assert!(
            matches!(e, PipelineError::WeightsNotApplicable { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("raw"), "{e}");
        // a run without checkpoints
        let run = root.join("run");
        touch(&run.join(TRAIN_CONFIG_FILE));
        assert!(matches!(
            ModelDir::resolve(&run, None),
            Err(PipelineError::NoCheckpoint { .. })
        ));
        // a conditional pipeline
        let sd = root.join("sd");
        std::fs::create_dir_all(sd.join("unet")).unwrap();
        std::fs::write(
            sd.join(MODEL_INDEX_FILE),
            r#"{"unet": ["diffusers", "UNet2DConditionModel"]}"#,
        )
        .unwrap();
        let e = ModelDir::resolve(&sd, None).unwrap_err();
        assert!(e.to_string().contains("UNet2DConditionModel"), "{e}");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn weights_parse_and_print() {
        assert_eq!("raw".parse::<Weights>().unwrap(), Weights::Raw);
        assert_eq!(Weights::Ema.to_string(), "ema");
        assert!("best".parse::<Weights>().is_err());
    }
}
