//! Sample quality during training: every `eval_every` steps the trainer draws `eval_samples`
//! images from the EMA weights (DDIM, `eval_steps` steps, η = 0, a fixed seed so successive
//! evaluations compare the same noise), scores them with a [`SampleMetric`] (e.g. the FID of
//! `ddpm-eval`'s digit features against the training set), writes the values to
//! `metrics.jsonl` and, with `save_best`, keeps a copy of the checkpoint that scored best as
//! `checkpoints/best-step-N` with a pointer file `best.json` in the run directory.
//!
//! The trainer does not know what the metric measures: any [`SampleMetric`] will do.
//! `ddpm-eval`'s [`QualityMetric`](ddpm_eval::QualityMetric) is one (the Fréchet distance of
//! its features as the primary value, KID, precision/recall and the classifier score beside
//! it); `ddpm train --eval-every` uses it with the bundled digit classifier.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::checkpoint::{CHECKPOINT_TEMP_PREFIX, write_json_atomic};
use crate::error::io;

/// The pointer to the best checkpoint, in the run directory.
pub const BEST_FILE: &str = "best.json";

/// Scores a batch of samples; lower [`MetricValues::primary`] is better.
pub trait SampleMetric<B: Backend> {
    /// Name of the primary value (a `metrics.jsonl` key and the progress line's label), e.g.
    /// `fld` or `fid`.
    fn name(&self) -> String;
    /// Scores `[N, C, H, W]` samples in the model range [−1, 1].
    ///
    /// # Errors
    /// Whatever stops the metric (non-finite features, a shape it cannot take); the trainer
    /// reports it as [`TrainError::Eval`] naming the step.
    fn score(
        &mut self,
        samples: Tensor<B, 4>,
    ) -> Result<MetricValues, Box<dyn std::error::Error + Send + Sync>>;
}

/// What a [`SampleMetric`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValues {
    /// The value `save_best` compares (lower is better).
    pub primary: f64,
    /// Further named values (e.g. KID, classifier score), written beside it.
    pub extra: Vec<(String, f64)>,
}

/// One evaluation of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRecord {
    /// The optimizer step evaluated.
    pub step: usize,
    /// The metric's name.
    pub name: String,
    /// Its values.
    pub values: MetricValues,
    /// Whether this is the best value so far (only tracked with `save_best`).
    pub best: bool,
}

/// `best.json`: which checkpoint scored best, and with what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    /// The step of the checkpoint.
    pub step: usize,
    /// The metric's name.
    pub metric: String,
    /// Its primary value.
    pub value: f64,
    /// The copy, relative to the run directory (`checkpoints/best-step-NNNNNNNN`).
    pub checkpoint: PathBuf,
}

/// Reads `best.json` of a run (`None` when the run has none).
///
/// # Errors
/// I/O and JSON errors naming the file.
pub fn read_best(run_dir: &Path) -> Result<Option<BestCheckpoint>, TrainError> {
    let path = run_dir.join(BEST_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| TrainError::Json { path, source })
}

/// Copies the checkpoint `checkpoint` to `checkpoints/best-step-N` (through a temporary
/// directory, each file synced, then renamed), points `best.json` at it (atomically), and only
/// then removes the previous best copy: a crash at any point leaves a complete best checkpoint
/// and a pointer to it.
pub(crate) fn keep_best(
    run_dir: &Path,
    checkpoint: &Path,
    best: &BestCheckpoint,
) -> Result<(), TrainError> {
    let previous = read_best(run_dir)?;
    let target = run_dir.join(&best.checkpoint);
    let parent = target
        .parent()
        .expect("checkpoints/best-step-N has a parent");
    let tmp = parent.join(format!(
        "{CHECKPOINT_TEMP_PREFIX}best-{:08}-{}",
        best.step,
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let copied = (|| {
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for entry in std::fs::read_dir(checkpoint).map_err(io(checkpoint))? {
            let from = entry.map_err(io(checkpoint))?.path();
            if !from.is_file() {
                continue;
            }
            let to = tmp.join(from.file_name().expect("a file in a directory"));
            std::fs::copy(&from, &to).map_err(io(&to))?;
            std::fs::File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(io(&to))?;
        }
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        std::fs::rename(&tmp, &target).map_err(io(&target))
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    write_json_atomic(&run_dir.join(BEST_FILE), best)?;
    if let Some(old) = previous
        && old.checkpoint != best.checkpoint
    {
        let old_dir = run_dir.join(&old.checkpoint);
        if old_dir.is_dir() {
            std::fs::remove_dir_all(&old_dir).map_err(io(&old_dir))?;
        }
    }
    Ok(())
}

/// `checkpoints/best-step-NNNNNNNN`, relative to the run directory.
pub(crate) fn best_dir_name(step: usize) -> PathBuf {
    Path::new(ddpm_pipeline::layout::CHECKPOINTS_DIR).join(format!("best-step-{step:08}"))
}

impl<B: Backend> SampleMetric<B> for ddpm_eval::QualityMetric<B> {
    fn name(&self) -> String {
        ddpm_eval::QualityMetric::name(self).to_string()
    }

    fn score(
        &mut self,
        samples: Tensor<B, 4>,
    ) -> Result<MetricValues, Box<dyn std::error::Error + Send + Sync>> {
        let report = ddpm_eval::QualityMetric::score(self, samples)?;
        let mut extra = Vec::new();
        if let Some(k) = &report.kid {
            extra.push(("kid".to_string(), k.mean));
            extra.push(("kid_std".to_string(), k.std));
        }
        if let Some(p) = &report.precision_recall {
            extra.push(("precision".to_string(), p.precision));
            extra.push(("recall".to_string(), p.recall));
        }
        if let Some(s) = &report.classifier_score {
            extra.push(("classifier_score".to_string(), s.mean));
        }
        Ok(MetricValues {
            primary: report.frechet_distance,
            extra,
        })
    }
}
