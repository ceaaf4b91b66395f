//! Run directories and checkpoints (the layout and its file names are
//! [`ddpm_pipeline::layout`]'s, which reads them back for sampling).
//!
//! ```text
//! runs/NAME/
//!   train_config.json            the full TrainConfig
//!   scheduler_config.json        the noise schedule and prediction type (diffusers' format)
//!   metrics.jsonl                one JSON line per logged step
//!   samples/step-00001000.png    preview grids from the EMA weights
//!   samples.png                  the newest preview
//!   checkpoints/step-00001000/   model.bin, ema.bin, optimizer.bin (Burn records, f32),
//!                                unet_config.json, scheduler_config.json, state.json
//! ```
//!
//! A checkpoint is written into a hidden temporary directory and renamed into place, so a
//! crash never leaves a broken newest checkpoint; only complete `step-*` directories are
//! listed. Each checkpoint carries the run's `scheduler_config.json`, so it samples with the
//! run's noise schedule on its own.

use std::path::{Path, PathBuf};

use ddpm_data::BatchIterState;
use ddpm_schedule::DiffusersSchedulerConfig;
use ddpm_unet::UnetConfig;
use serde::{Deserialize, Serialize};

pub use ddpm_pipeline::Weights;
use ddpm_pipeline::layout::{CHECKPOINT_UNET_CONFIG, SCHEDULER_CONFIG_FILE, STATE_FILE};
pub use ddpm_pipeline::layout::{
    CHECKPOINTS_DIR, TRAIN_CONFIG_FILE, checkpoint_dir, is_training_output, latest_checkpoint,
    list_checkpoints,
};
pub(crate) use ddpm_pipeline::layout::{
    EMA_RECORD, MODEL_RECORD, OPTIMIZER_RECORD, checkpoint_recorder as recorder,
};

use crate::error::io;
use crate::{TrainConfig, TrainError};

/// Training progress saved beside the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    /// Where the data iterator stands.
    pub data: BatchIterState,
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

/// Writes a checkpoint atomically: every file (the records, `unet_config.json`,
/// `scheduler_config.json`, then `state.json`) goes to a temporary directory that is renamed
/// to `step-NNNNNNNN` once complete; then all but the newest `keep` checkpoints are removed.
/// `write_records` writes the model/EMA/optimizer records into the directory it is given.
pub(crate) fn write_checkpoint(
    run_dir: &Path,
    state: TrainState,
    unet: &UnetConfig,
    scheduler: &DiffusersSchedulerConfig,
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
    write_json_atomic(&tmp.join(CHECKPOINT_UNET_CONFIG), unet)?;
    write_json_atomic(&tmp.join(SCHEDULER_CONFIG_FILE), scheduler)?;
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
/// backend (the records hold plain f32 data). The resolver is [`ddpm_pipeline::ModelDir`].
///
/// # Errors
/// [`TrainError::Pipeline`]: no checkpoint, I/O, JSON and record errors naming the file.
pub fn load_unet<B: burn::tensor::backend::Backend>(
    path: &Path,
    weights: Weights,
    device: &B::Device,
) -> Result<ddpm_unet::Unet<B>, TrainError> {
    Ok(ddpm_pipeline::ModelDir::resolve(path, Some(weights))?.load_unet(device)?)
}
