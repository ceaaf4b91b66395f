//! Run directories and checkpoints (the layout and its file names are
//! [`ddpm_pipeline::layout`]'s, which reads them back for sampling).
//!
//! ```text
//! runs/NAME/
//!   train_config.json            the full TrainConfig
//!   scheduler_config.json        the noise schedule and prediction type (diffusers' format)
//!   metrics.jsonl                one JSON line per logged step and per resume
//!   samples/step-00001000.png    preview grids from the EMA weights
//!   samples.png                  the newest preview
//!   checkpoints/step-00001000/   model.bin, ema.bin, optimizer.bin (Burn records, f32),
//!                                checksums.json (length and hash of each record),
//!                                unet_config.json, scheduler_config.json, state.json
//!   checkpoints/damaged-step-N/  a checkpoint `--resume` found damaged and moved aside
//! ```
//!
//! A checkpoint is written into a hidden temporary directory (`.tmp-step-N-<pid>`) and renamed
//! into place, so a crash never leaves a broken newest checkpoint; only complete `step-*`
//! directories are listed. The temporary directory of a killed write is removed when the next
//! run or resume starts ([`remove_stale_temp_checkpoints`]). Each checkpoint carries the run's
//! `scheduler_config.json`, so it samples with the run's noise schedule on its own. A file
//! damaged later (truncated by a full disk or a copy, bit rot) is caught by its checksum before
//! it is decoded, and resuming falls back to the newest intact checkpoint.

use std::path::{Path, PathBuf};

use ddpm_data::BatchIterState;
use ddpm_io::DirLock;
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
use crate::fingerprint::{hash_file, hex_u64};
use crate::{DataFingerprint, TrainConfig, TrainError};

/// The run's log: one JSON line per logged step, and one `{"event": "resume", ...}` line per
/// resume.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// A checkpoint's list of its record files with their lengths and hashes (written before
/// `state.json`; checkpoints written before it existed have none and are not verified).
pub const CHECKSUMS_FILE: &str = "checksums.json";

/// The hidden directory a checkpoint is written into before it is renamed to `step-N`:
/// `.tmp-step-NNNNNNNN-<pid>` inside `checkpoints/`.
pub const CHECKPOINT_TEMP_PREFIX: &str = ".tmp-step-";

/// What a damaged checkpoint is renamed to by a resume that skipped it:
/// `checkpoints/damaged-step-NNNNNNNN` (no longer listed as a checkpoint, kept for inspection).
pub const DAMAGED_PREFIX: &str = "damaged-";

/// Training progress saved beside the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    /// Where the data iterator stands.
    pub data: BatchIterState,
    /// The training data the run was given (absent in checkpoints written before it was
    /// saved; such a checkpoint resumes with any data of the right shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<DataFingerprint>,
}

/// The path of a Burn record file in `dir` (the recorder adds `.bin` to the record's name).
pub(crate) fn record_path(dir: &Path, record: &str) -> PathBuf {
    dir.join(format!("{record}.bin"))
}

/// Length and hash of one checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileDigest {
    bytes: u64,
    #[serde(with = "hex_u64")]
    hash: u64,
}

/// A checkpoint that cannot be resumed from: which file is at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedCheckpoint {
    /// The checkpoint directory (`checkpoints/step-N`).
    pub checkpoint: PathBuf,
    /// The damaged (or missing) file in it.
    pub file: PathBuf,
    /// What is wrong with it, e.g. "truncated: 1024 of 52736 bytes".
    pub reason: String,
    /// Where it was moved when the resume went on from an older checkpoint (`None` while
    /// nothing was moved, e.g. when no intact checkpoint was found).
    pub moved_to: Option<PathBuf>,
}

impl std::fmt::Display for DamagedCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)?;
        if let Some(to) = &self.moved_to {
            write!(f, " (checkpoint moved to {})", to.display())?;
        }
        Ok(())
    }
}

pub(crate) fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    // Temp file in the same directory, flushed and synced before the rename.
    ddpm_io::write_atomic(path, text + "\n")?;
    Ok(())
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
        "{CHECKPOINT_TEMP_PREFIX}{:08}-{}",
        state.step,
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let written = (|| {
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        write_records(&tmp)?;
        write_checksums(&tmp)?;
        write_json_atomic(&tmp.join(CHECKPOINT_UNET_CONFIG), unet)?;
        write_json_atomic(&tmp.join(SCHEDULER_CONFIG_FILE), scheduler)?;
        // state.json last: its presence marks a complete checkpoint.
        write_json_atomic(&tmp.join(STATE_FILE), &state)?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))
    })();
    if let Err(e) = written {
        // A failed write (full disk, ...) leaves no temporary directory behind; the error
        // returned is the write's, which is what the user needs to see.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let all = list_checkpoints(run_dir)?;
    if all.len() > keep {
        for (_, old) in &all[..all.len() - keep] {
            std::fs::remove_dir_all(old).map_err(io(old))?;
        }
    }
    Ok(final_dir)
}

/// Writes `checksums.json` listing every file now in `dir` (the records).
fn write_checksums(dir: &Path) -> Result<(), TrainError> {
    let mut digests = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_file() {
            let (bytes, hash) = hash_file(&path).map_err(io(&path))?;
            let name = path.file_name().expect("a file in a directory");
            digests.insert(
                name.to_string_lossy().into_owned(),
                FileDigest { bytes, hash },
            );
        }
    }
    write_json_atomic(&dir.join(CHECKSUMS_FILE), &digests)
}

/// Checks every file listed in a checkpoint's `checksums.json` (length, then hash) before any
/// of them is decoded. A checkpoint without the file (written by an older version) passes.
pub(crate) fn verify_checksums(checkpoint: &Path) -> Result<(), DamagedCheckpoint> {
    let damaged = |file: PathBuf, reason: String| DamagedCheckpoint {
        checkpoint: checkpoint.to_path_buf(),
        file,
        reason,
        moved_to: None,
    };
    let list = checkpoint.join(CHECKSUMS_FILE);
    if !list.exists() {
        return Ok(());
    }
    let digests: std::collections::BTreeMap<String, FileDigest> =
        read_json(&list).map_err(|e| damaged(list.clone(), unreadable(&e)))?;
    for (name, want) in digests {
        let path = checkpoint.join(&name);
        let (bytes, hash) = hash_file(&path).map_err(|e| {
            let reason = if e.kind() == std::io::ErrorKind::NotFound {
                "missing".to_string()
            } else {
                format!("cannot be read: {e}")
            };
            damaged(path.clone(), reason)
        })?;
        if bytes < want.bytes {
            return Err(damaged(
                path,
                format!("truncated: {bytes} of {} bytes", want.bytes),
            ));
        }
        if bytes != want.bytes {
            return Err(damaged(
                path,
                format!("{bytes} bytes where {} were written", want.bytes),
            ));
        }
        if hash != want.hash {
            return Err(damaged(
                path,
                format!(
                    "damaged: its content hash is {hash:016x}, {:016x} was written",
                    want.hash
                ),
            ));
        }
    }
    Ok(())
}

/// A short reason for an unreadable file: the I/O or JSON error without the path (the
/// [`DamagedCheckpoint`] names the file), or Burn's decoder message without its hint about
/// format changes since Burn 0.14, which misleads for a file that is merely truncated.
pub(crate) fn unreadable(e: &TrainError) -> String {
    match e {
        TrainError::Io { source, .. } => format!("cannot be read: {source}"),
        TrainError::Json { source, .. } => {
            format!("not valid JSON (damaged or truncated): {source}")
        }
        TrainError::Record { message, .. } => {
            // Burn nests the decoder's error in several Debug forms (escaped quotes and
            // newlines) and appends a hint that the record format changed since Burn 0.14.0,
            // which misleads for a file that is merely cut short.
            if ["UnexpectedEof", "UnexpectedEnd"]
                .iter()
                .any(|m| message.contains(m))
            {
                return "truncated: the file ends before the data it announces".into();
            }
            let cut = message
                .find("The internal data format")
                .unwrap_or(message.len());
            let plain = message[..cut]
                .replace("\\n", " ")
                .replace(['\\', '"', '\n'], " ");
            let short: String = plain
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(300)
                .collect();
            format!("cannot be decoded (damaged): {short}")
        }
        other => other.to_string(),
    }
}

/// Removes the temporary directories (`checkpoints/.tmp-step-N-<pid>`) that checkpoint writes
/// of other processes left behind (a run killed while writing a checkpoint), and the
/// temporary files of killed atomic writes in the run directory (`.<name>.tmp-<pid>-<n>`,
/// e.g. of `train_config.json`), and returns them.
/// Holding the run directory's lock proves that no other process is writing a checkpoint
/// there, so every one of them is stale, whatever its process id (a pid may have been reused
/// by an unrelated process since); this process's own are kept.
///
/// # Errors
/// I/O errors naming the directory that could not be listed or removed.
pub fn remove_stale_temp_checkpoints(
    run_dir: &Path,
    _held: &DirLock,
) -> Result<Vec<PathBuf>, TrainError> {
    let mut removed = Vec::new();
    // The trainer takes the lock before writing anything, so no write of this process is
    // under way either.
    if run_dir.is_dir() {
        for entry in std::fs::read_dir(run_dir).map_err(io(run_dir))? {
            let entry = entry.map_err(io(run_dir))?;
            let path = entry.path();
            if path.is_file() && ddpm_io::is_temp_name(&entry.file_name()) {
                std::fs::remove_file(&path).map_err(io(&path))?;
                removed.push(path);
            }
        }
    }
    let dir = run_dir.join(CHECKPOINTS_DIR);
    if !dir.is_dir() {
        removed.sort();
        return Ok(removed);
    }
    let own = std::process::id().to_string();
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(CHECKPOINT_TEMP_PREFIX) else {
            continue;
        };
        if rest.rsplit('-').next() == Some(own.as_str()) {
            continue;
        }
        let path = entry.path();
        std::fs::remove_dir_all(&path).map_err(io(&path))?;
        removed.push(path);
    }
    removed.sort();
    Ok(removed)
}

/// Moves a damaged checkpoint `checkpoints/step-N` aside to `checkpoints/damaged-step-N`
/// (`damaged-step-N-2`, ... if taken), so it is no longer listed, never counted among the
/// checkpoints kept, and can be inspected or deleted by hand.
pub(crate) fn move_aside(checkpoint: &Path) -> Result<PathBuf, TrainError> {
    let parent = checkpoint.parent().expect("checkpoint dir has a parent");
    let name = checkpoint
        .file_name()
        .expect("checkpoint dir has a name")
        .to_string_lossy();
    let mut to = parent.join(format!("{DAMAGED_PREFIX}{name}"));
    let mut n = 2;
    while to.exists() {
        to = parent.join(format!("{DAMAGED_PREFIX}{name}-{n}"));
        n += 1;
    }
    std::fs::rename(checkpoint, &to).map_err(io(&to))?;
    Ok(to)
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
    TrainConfig::read(&run_dir.join(TRAIN_CONFIG_FILE))
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
