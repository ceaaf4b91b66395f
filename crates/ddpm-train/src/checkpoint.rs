//! Run directories and checkpoints.
//!
//! ```text
//! runs/NAME/
//!   train_config.json            the full TrainConfig
//!   metrics.jsonl                one JSON line per logged step
//!   samples/step-00001000.png    preview grids from the EMA weights
//!   samples.png                  the newest preview
//!   checkpoints/step-00001000/   model.bin, ema.bin, optimizer.bin (Burn records, f32),
//!                                unet_config.json, state.json
//! ```
//!
//! A checkpoint is written into a hidden temporary directory and renamed into place, so a
//! crash never leaves a broken newest checkpoint; only complete `step-*` directories are
//! listed.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::Backend;
use ddpm_data::BatchIterState;
use ddpm_unet::{Unet, UnetConfig};
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::{TrainConfig, TrainError};

/// The run's configuration file.
pub const TRAIN_CONFIG_FILE: &str = "train_config.json";
/// The checkpoints folder.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The raw weights' record (without the `.bin` extension Burn adds).
pub(crate) const MODEL_RECORD: &str = "model";
/// The EMA weights' record.
pub(crate) const EMA_RECORD: &str = "ema";
/// The optimizer state's record.
pub(crate) const OPTIMIZER_RECORD: &str = "optimizer";
const STATE_FILE: &str = "state.json";
const UNET_CONFIG_FILE: &str = "unet_config.json";

/// The recorder of every checkpoint file: full f32 precision, so resuming is bit-exact.
pub(crate) fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::new()
}

/// Training progress saved beside the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    /// Where the data iterator stands.
    pub data: BatchIterState,
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

impl std::str::FromStr for Weights {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, TrainError> {
        match s {
            "ema" => Ok(Self::Ema),
            "raw" => Ok(Self::Raw),
            other => Err(TrainError::InvalidConfig {
                field: "weights",
                value: other.to_string(),
                expected: "ema or raw",
            }),
        }
    }
}

/// The directory of the checkpoint at `step`.
pub fn checkpoint_dir(run_dir: &Path, step: usize) -> PathBuf {
    run_dir
        .join(CHECKPOINTS_DIR)
        .join(format!("step-{step:08}"))
}

/// Complete checkpoints of a run, oldest first, as (step, directory).
///
/// # Errors
/// If the checkpoints folder exists but cannot be read.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>, TrainError> {
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
pub fn latest_checkpoint(run_dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    Ok(list_checkpoints(run_dir)?.pop().map(|(_, p)| p))
}

/// Whether `path` is a training run directory or one of its checkpoints.
pub fn is_training_output(path: &Path) -> bool {
    path.join(TRAIN_CONFIG_FILE).is_file() || path.join(STATE_FILE).is_file()
}

pub(crate) fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn record_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes a checkpoint atomically: every file goes to a temporary directory that is renamed
/// to `step-NNNNNNNN` once complete; then all but the newest `keep` checkpoints are removed.
/// `write_records` writes the model/EMA/optimizer records into the directory it is given.
pub(crate) fn write_checkpoint(
    run_dir: &Path,
    state: TrainState,
    unet: &UnetConfig,
    keep: usize,
    write_records: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let final_dir = checkpoint_dir(run_dir, state.step);
    let parent = final_dir.parent().expect("checkpoint dir has a parent");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(
        ".tmp-step-{:08}-{}",
        state.step,
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    write_records(&tmp)?;
    write_json_atomic(&tmp.join(UNET_CONFIG_FILE), unet)?;
    // state.json last: its presence marks a complete checkpoint.
    write_json_atomic(&tmp.join(STATE_FILE), &state)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    let all = list_checkpoints(run_dir)?;
    if all.len() > keep {
        for (_, old) in &all[..all.len() - keep] {
            std::fs::remove_dir_all(old).map_err(io(old))?;
        }
    }
    Ok(final_dir)
}

/// Reads a checkpoint's [`TrainState`].
///
/// # Errors
/// I/O or JSON errors naming the file.
pub fn read_state(checkpoint: &Path) -> Result<TrainState, TrainError> {
    read_json(&checkpoint.join(STATE_FILE))
}

/// Reads a run's [`TrainConfig`].
///
/// # Errors
/// I/O or JSON errors naming the file.
pub fn read_train_config(run_dir: &Path) -> Result<TrainConfig, TrainError> {
    read_json(&run_dir.join(TRAIN_CONFIG_FILE))
}

/// Loads a U-Net from a run directory (its newest checkpoint) or a checkpoint directory, on any
/// backend (the records hold plain f32 data).
///
/// # Errors
/// [`TrainError::NoCheckpoint`] for a run without checkpoints; I/O, JSON and record errors
/// naming the file.
pub fn load_unet<B: Backend>(
    path: &Path,
    weights: Weights,
    device: &B::Device,
) -> Result<Unet<B>, TrainError> {
    let checkpoint = if path.join(STATE_FILE).is_file() {
        path.to_path_buf()
    } else {
        latest_checkpoint(path)?.ok_or_else(|| TrainError::NoCheckpoint {
            dir: path.to_path_buf(),
        })?
    };
    let config: UnetConfig = read_json(&checkpoint.join(UNET_CONFIG_FILE))?;
    let unet = config.init::<B>(device)?;
    let file = checkpoint.join(match weights {
        Weights::Ema => EMA_RECORD,
        Weights::Raw => MODEL_RECORD,
    });
    unet.load_file(&file, &recorder(), device)
        .map_err(|e| record_error(&file.with_extension("bin"), e))
}
