//! Resuming a run: which settings may change, which checkpoint to continue from, and what was
//! found on the way ([`ResumeReport`]).
//!
//! A resumed run is the run it continues: the settings that shape its training steps (batch
//! size, learning rate and warmup, seed, EMA, data, model, schedule, loss, ...) are the saved
//! ones, and asking for another value is an error naming the setting and both values
//! ([`TrainError::ResumeMismatch`]). Only [`HONOURED_ON_RESUME`] — the total step count and
//! how often to checkpoint, preview, log and evaluate — may change; the new values are written to the
//! run's `train_config.json` and listed in a `{"event": "resume", ...}` line of
//! `metrics.jsonl`. The data must have the fingerprint saved in the checkpoint
//! ([`TrainError::DatasetChanged`]), and the step count may not be below the checkpoint's
//! ([`TrainError::StepsBehindCheckpoint`]).
//!
//! The checkpoint resumed from is the newest intact one: a checkpoint with a missing,
//! truncated or undecodable file is skipped, named in the report and moved aside to
//! `checkpoints/damaged-step-N` (see [`crate::checkpoint`]).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use ddpm_pipeline::layout::STATE_FILE;
use ddpm_unet::Unet;
use serde_json::Value;

use crate::checkpoint::{
    DamagedCheckpoint, EMA_RECORD, MODEL_RECORD, OPTIMIZER_RECORD, TRAIN_CONFIG_FILE, TrainState,
    read_state, record_error, record_path, recorder, unreadable, verify_checksums,
};
use crate::error::io;
use crate::trainer::OptimRecord;
use crate::{TrainConfig, TrainError};

/// The settings (`train_config.json` keys) a resumed run may change: the total step count and
/// the checkpoint, preview and logging cadence. None of them changes a training step.
pub const HONOURED_ON_RESUME: &[&str] = &[
    "steps",
    "checkpoint_every",
    "keep_checkpoints",
    "sample_every",
    "num_preview_samples",
    "preview_steps",
    "log_every",
    "eval_every",
    "eval_samples",
    "eval_steps",
    "eval_batch_size",
    "save_best",
];

/// A setting a resume changed (one of [`HONOURED_ON_RESUME`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedSetting {
    /// The `train_config.json` key.
    pub setting: String,
    /// The run's value before (JSON).
    pub saved: String,
    /// The value from now on (JSON).
    pub now: String,
}

impl std::fmt::Display for ChangedSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.setting, self.saved, self.now)
    }
}

/// What [`Trainer::resume`](crate::Trainer::resume) found and did, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResumeReport {
    /// The checkpoint the run continues from.
    pub checkpoint: PathBuf,
    /// Its step.
    pub step: usize,
    /// Settings changed (and written to `train_config.json`).
    pub changed: Vec<ChangedSetting>,
    /// Newer checkpoints that were damaged, newest first, each moved aside.
    pub damaged: Vec<DamagedCheckpoint>,
}

/// Compares the settings asked for with the run's: the honoured ones that differ are
/// returned, any other difference is [`TrainError::ResumeMismatch`].
pub(crate) fn diff_settings(
    run_dir: &Path,
    saved: &TrainConfig,
    requested: &TrainConfig,
) -> Result<Vec<ChangedSetting>, TrainError> {
    let config_file = run_dir.join(TRAIN_CONFIG_FILE);
    let json = |c: &TrainConfig| {
        serde_json::to_value(c).map_err(|source| TrainError::Json {
            path: config_file.clone(),
            source,
        })
    };
    let (saved_v, requested_v) = (json(saved)?, json(requested)?);
    let (Value::Object(a), Value::Object(b)) = (&saved_v, &requested_v) else {
        unreachable!("a TrainConfig serializes to a JSON object");
    };
    let mut changed = Vec::new();
    for (key, va) in a {
        let vb = b.get(key).unwrap_or(&Value::Null);
        if va == vb {
            continue;
        }
        if HONOURED_ON_RESUME.contains(&key.as_str()) {
            changed.push(ChangedSetting {
                setting: key.clone(),
                saved: va.to_string(),
                now: vb.to_string(),
            });
        } else {
            let (setting, saved, requested) = first_difference(key.clone(), va, vb);
            return Err(TrainError::ResumeMismatch {
                setting,
                saved,
                requested,
                config_file,
            });
        }
    }
    Ok(changed)
}

/// The innermost differing value of two JSON values: its dotted path and both values.
fn first_difference(path: String, a: &Value, b: &Value) -> (String, String, String) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, vx) in x {
                let vy = y.get(key).unwrap_or(&Value::Null);
                if vx != vy {
                    return first_difference(format!("{path}.{key}"), vx, vy);
                }
            }
            for (key, vy) in y {
                if !x.contains_key(key) {
                    return first_difference(format!("{path}.{key}"), &Value::Null, vy);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            // Name the whole array of numbers (e.g. block_out_channels [32, 64]); descend into
            // arrays of objects.
            if let Some(i) = (0..x.len()).find(|&i| x[i] != y[i])
                && x[i].is_object()
            {
                return first_difference(format!("{path}.{i}"), &x[i], &y[i]);
            }
        }
        _ => {}
    }
    (path, a.to_string(), b.to_string())
}

/// Appends the `{"event": "resume", ...}` line to `metrics.jsonl`.
pub(crate) fn log_resume(metrics: &Path, report: &ResumeReport) -> Result<(), TrainError> {
    use std::io::Write;
    let changed: serde_json::Map<String, Value> = report
        .changed
        .iter()
        .map(|c| {
            let parse = |s: &str| serde_json::from_str(s).unwrap_or(Value::String(s.into()));
            (
                c.setting.clone(),
                serde_json::json!({ "saved": parse(&c.saved), "now": parse(&c.now) }),
            )
        })
        .collect();
    let damaged: Vec<Value> = report
        .damaged
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": d.file.display().to_string(),
                "reason": d.reason,
                "moved_to": d.moved_to.as_ref().map(|p| p.display().to_string()),
            })
        })
        .collect();
    let line = serde_json::json!({
        "event": "resume",
        "step": report.step,
        "checkpoint": report.checkpoint.display().to_string(),
        "changed": changed,
        "damaged_checkpoints": damaged,
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(metrics)
        .map_err(io(metrics))?;
    writeln!(f, "{line}").map_err(io(metrics))
}

/// A checkpoint read back in full.
pub(crate) struct Loaded<B: AutodiffBackend> {
    pub(crate) state: TrainState,
    pub(crate) model: Unet<B>,
    pub(crate) ema: Unet<B::InnerBackend>,
    pub(crate) optim: OptimRecord<B>,
}

/// Reads a checkpoint in full: `Ok(Err(..))` names its first damaged file (unparsable
/// `state.json`, a record whose length or hash differs from `checksums.json`, one that
/// cannot be decoded, or non-finite weights); `Err` is a problem of the config.
pub(crate) fn load_checkpoint<B: AutodiffBackend>(
    config: &TrainConfig,
    ckpt: &Path,
    device: &B::Device,
) -> Result<Result<Loaded<B>, DamagedCheckpoint>, TrainError> {
    let damaged = |file: PathBuf, reason: String| {
        Ok(Err(DamagedCheckpoint {
            checkpoint: ckpt.to_path_buf(),
            file,
            reason,
            moved_to: None,
        }))
    };
    let state = match read_state(ckpt) {
        Ok(state) => state,
        Err(e) => return damaged(ckpt.join(STATE_FILE), unreadable(&e)),
    };
    if let Err(d) = verify_checksums(ckpt) {
        return Ok(Err(d));
    }
    let rec = recorder();
    let model_path = record_path(ckpt, MODEL_RECORD);
    let model = match config
        .unet
        .init::<B>(device)?
        .load_file(&model_path, &rec, device)
    {
        Ok(m) => m,
        Err(e) => {
            return damaged(
                model_path.clone(),
                unreadable(&record_error(&model_path, e)),
            );
        }
    };
    let ema_path = record_path(ckpt, EMA_RECORD);
    let ema = match config
        .unet
        .init::<B::InnerBackend>(device)?
        .load_file(&ema_path, &rec, device)
    {
        Ok(m) => m,
        Err(e) => return damaged(ema_path.clone(), unreadable(&record_error(&ema_path, e))),
    };
    let optim_path = record_path(ckpt, OPTIMIZER_RECORD);
    let optim: OptimRecord<B> = match Recorder::<B>::load(&rec, optim_path.clone(), device) {
        Ok(r) => r,
        Err(e) => {
            return damaged(
                optim_path.clone(),
                unreadable(&record_error(&optim_path, e)),
            );
        }
    };
    let non_finite = [
        (&model_path, model.find_non_finite()),
        (&ema_path, ema.find_non_finite()),
    ];
    for (path, found) in non_finite {
        if let Some(p) = found {
            return damaged(
                path.clone(),
                format!(
                    "holds non-finite weights (tensor `{}`: {} of {})",
                    p.key, p.count, p.len
                ),
            );
        }
    }
    Ok(Ok(Loaded {
        state,
        model,
        ema,
        optim,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_unet::UnetConfig;

    #[test]
    fn honoured_changes_are_listed_and_others_refused_by_name() {
        let dir = Path::new("runs/x");
        let saved = TrainConfig::new(UnetConfig::tiny()).with_steps(10);
        let changed = diff_settings(
            dir,
            &saved,
            &saved.clone().with_steps(20).with_checkpoint_every(5),
        )
        .unwrap();
        let mut shown: Vec<_> = changed.iter().map(|c| c.to_string()).collect();
        shown.sort();
        assert_eq!(shown, ["checkpoint_every: 5000 -> 5", "steps: 10 -> 20"]);

        let err = diff_settings(dir, &saved, &saved.clone().with_learning_rate(1e-3)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("learning_rate = 0.001"), "{msg}");
        assert!(msg.contains("learning_rate = 0.0002"), "{msg}");
        assert!(msg.contains("train_config.json"), "{msg}");

        let mut other = saved.clone();
        other.unet = UnetConfig::mnist();
        let err = diff_settings(dir, &saved, &other).unwrap_err();
        match err {
            TrainError::ResumeMismatch { setting, .. } => {
                assert!(setting.starts_with("unet."), "{setting}")
            }
            e => panic!("expected ResumeMismatch, got {e}"),
        }
    }
}
