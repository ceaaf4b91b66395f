//! From images to a quality report: features of generated samples and of a reference data set
//! through one [`FeatureExtractor`], then the Fréchet distance, KID, precision/recall and (for
//! classifiers) the classifier score.
//!
//! Generated samples are quantized to 8 bits first (diffusers' `(x / 2 + 0.5).clamp(0, 1)`,
//! × 255, rounded), exactly what a PNG written by `ddpm sample` holds, so scoring a tensor and
//! scoring the PNG folder of the same samples give the same numbers.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use ddpm_data::{Dataset, scale_to_model_range};

use crate::{
    ClassifierScore, EvalError, FeatureExtractor, FeatureSet, FeatureSpec, FeatureStats, KidConfig,
    KidOutput, PrdConfig, PrecisionRecall, ReferenceStats, StatsAccumulator, cache_file_name,
    classifier_score, frechet_distance, kernel_inception_distance, load_stats, prd::subsample,
    precision_recall, save_stats,
};

/// Features (and class logits, for classifiers) of a set of images, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// One row per image.
    pub features: FeatureSet,
    /// One row of logits per image, when the extractor is a classifier.
    pub logits: Option<FeatureSet>,
}

/// Which statistics a [`QualityReport`] holds beside the Fréchet distance.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityConfig {
    /// KID (needs reference features; `None`: skipped).
    pub kid: Option<KidConfig>,
    /// Precision and recall (needs reference features; `None`: skipped).
    pub precision_recall: Option<PrdConfig>,
    /// How many reference features (a fixed-seed subset) are kept for KID and precision/recall
    /// (default 10,000).
    pub reference_features: usize,
    /// Splits of the classifier score (default 10, the Inception-score convention).
    pub score_splits: usize,
    /// Images per extractor call (default 250).
    pub batch_size: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            kid: Some(KidConfig::default()),
            precision_recall: Some(PrdConfig::default()),
            reference_features: 10_000,
            score_splits: crate::score::DEFAULT_SPLITS,
            batch_size: 250,
        }
    }
}

impl QualityConfig {
    /// Cheaper settings for evaluation during training (a few seconds per evaluation on a
    /// CPU with the digit classifier): KID over 10 subsets, precision/recall on at most 2,000
    /// vectors per set. Figures for a paper or a README come from the defaults.
    pub fn for_training() -> Self {
        Self {
            kid: Some(KidConfig::default().with_subsets(10)),
            precision_recall: Some(PrdConfig::default().with_max_samples(Some(2_000))),
            ..Self::default()
        }
    }
}

/// What [`compare`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    /// The extractor's id.
    pub extractor_id: String,
    /// The reference data set's key.
    pub dataset_key: String,
    /// Generated images scored.
    pub generated: usize,
    /// Reference images behind the mean and covariance.
    pub reference: usize,
    /// Fréchet distance of the feature statistics (FID with Inception features, "FLD" with
    /// the digit classifier's).
    pub frechet_distance: f64,
    /// Kernel inception distance (unbiased MMD²), mean and spread over subsets.
    pub kid: Option<KidOutput>,
    /// Improved precision and recall.
    pub precision_recall: Option<PrecisionRecall>,
    /// The classifier score of the generated images (classifier extractors only).
    pub classifier_score: Option<ClassifierScore>,
}

impl QualityReport {
    /// The report as a JSON object (what `ddpm eval fid --report` writes).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "extractor": self.extractor_id,
            "dataset": self.dataset_key,
            "generated": self.generated,
            "reference": self.reference,
            "frechet_distance": self.frechet_distance,
        });
        if let Some(k) = &self.kid {
            v["kid"] = serde_json::json!({"mean": k.mean, "std": k.std, "subset_size": k.subset_size,
                "subsets": k.per_subset.len()});
        }
        if let Some(p) = &self.precision_recall {
            v["precision"] = p.precision.into();
            v["recall"] = p.recall.into();
        }
        if let Some(s) = &self.classifier_score {
            v["classifier_score"] =
                serde_json::json!({"mean": s.mean, "std": s.std, "splits": s.splits});
        }
        v
    }
}

/// Model-range images quantized to 8 bits and mapped back to [−1, 1] (what a PNG of them
/// holds).
pub fn quantize<B: Backend>(images: Tensor<B, 4>) -> Tensor<B, 4> {
    images
        .div_scalar(2.0)
        .add_scalar(0.5)
        .clamp(0.0, 1.0)
        .mul_scalar(255.0)
        .round()
        .div_scalar(255.0)
        .mul_scalar(2.0)
        .sub_scalar(1.0)
}

fn to_host<B: Backend>(t: Tensor<B, 2>, what: &str, first: usize) -> Result<FeatureSet, EvalError> {
    let [_, dim] = t.dims();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| EvalError::NonFinite {
            what: format!("{what}: unreadable tensor data ({e:?})"),
            index: 0,
        })?;
    FeatureSet::new(dim, data).map_err(|e| match e {
        EvalError::NonFinite { index, .. } => EvalError::NonFinite {
            what: format!("{what} of image {}", first + index / dim.max(1)),
            index,
        },
        other => other,
    })
}

/// Features of `images` (`[N, C, H, W]`, model range) in batches of `batch_size`.
///
/// # Errors
/// The extractor's errors; [`EvalError::NonFinite`] naming the image whose features or logits
/// are not finite.
pub fn extract<B: Backend>(
    extractor: &dyn FeatureExtractor<B>,
    images: Tensor<B, 4>,
    batch_size: usize,
) -> Result<Extracted, EvalError> {
    let n = images.dims()[0];
    let batch_size = batch_size.max(1);
    let mut features = FeatureSet::empty(extractor.dim());
    let mut logits: Option<FeatureSet> = None;
    let mut start = 0;
    while start < n {
        let end = (start + batch_size).min(n);
        let out = extractor.extract(images.clone().slice(start..end))?;
        features.extend(&to_host(out.features, "features", start)?)?;
        if let Some(l) = out.logits {
            let l = to_host(l, "logits", start)?;
            match &mut logits {
                Some(all) => all.extend(&l)?,
                None => logits = Some(l),
            }
        }
        start = end;
    }
    Ok(Extracted { features, logits })
}

/// Images `start..end` of a data set as a model-range tensor (x = 2 · v / 255 − 1, as
/// training batches).
pub fn dataset_tensor<B: Backend>(
    dataset: &Dataset,
    start: usize,
    end: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let len = dataset.image_len();
    let bytes = &dataset.as_bytes()[start * len..end * len];
    let values: Vec<f32> = bytes.iter().map(|&v| scale_to_model_range(v)).collect();
    let shape = [
        end - start,
        dataset.channels(),
        dataset.height(),
        dataset.width(),
    ];
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Statistics of a reference data set: mean and covariance of the features of its first
/// `limit` images (all with `None`) and a fixed-seed subset of `config.reference_features`
/// features for KID and precision/recall.
///
/// # Errors
/// As [`extract`]; [`EvalError::TooFewSamples`] with fewer than 2 images.
pub fn reference_stats<B: Backend>(
    extractor: &dyn FeatureExtractor<B>,
    dataset: &Dataset,
    dataset_key: &str,
    limit: Option<usize>,
    config: &QualityConfig,
    device: &B::Device,
) -> Result<ReferenceStats, EvalError> {
    let n = limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    let mut acc = StatsAccumulator::new(extractor.dim());
    let mut kept = FeatureSet::empty(extractor.dim());
    let batch = config.batch_size.max(1);
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let images = dataset_tensor::<B>(dataset, start, end, device);
        let out = extract(extractor, images, batch)?;
        acc.add(&out.features)?;
        kept.extend(&out.features)?;
        start = end;
    }
    let stats: FeatureStats = acc.finish()?;
    Ok(ReferenceStats {
        extractor_id: extractor.id(),
        dataset_key: dataset_key.to_string(),
        stats,
        features: Some(subsample(&kept, config.reference_features, 0)),
    })
}

/// [`reference_stats`] through a cache directory: loaded from
/// `cache_dir/`[`cache_file_name`]`(dataset_key, extractor id)` when present (and checked
/// against both keys), else computed and saved there atomically. Returns the statistics and
/// the cache file, and whether it was read from the cache.
///
/// # Errors
/// As [`reference_stats`], [`load_stats`] (a damaged cache file is an error naming it, not
/// silently recomputed) and [`save_stats`].
pub fn cached_reference_stats<B: Backend>(
    cache_dir: &Path,
    extractor: &dyn FeatureExtractor<B>,
    dataset: &Dataset,
    dataset_key: &str,
    limit: Option<usize>,
    config: &QualityConfig,
    device: &B::Device,
) -> Result<(ReferenceStats, PathBuf, bool), EvalError> {
    let id = extractor.id();
    let key = match limit {
        Some(l) if l < dataset.len() => format!("{dataset_key}[:{l}]"),
        _ => dataset_key.to_string(),
    };
    let path = cache_dir.join(cache_file_name(&key, &id));
    if path.is_file() {
        return Ok((load_stats(&path, &id, &key)?, path, true));
    }
    let stats = reference_stats(extractor, dataset, &key, limit, config, device)?;
    std::fs::create_dir_all(cache_dir).map_err(|source| EvalError::Read {
        path: cache_dir.to_path_buf(),
        source,
    })?;
    save_stats(&path, &stats)?;
    Ok((stats, path, false))
}

/// Where reference statistics are cached by default: `$DDPM_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/ddpm`, else `$HOME/.cache/ddpm`, else `.ddpm-cache` in the working
/// directory.
pub fn default_cache_dir() -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("DDPM_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("ddpm")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("ddpm")))
        .unwrap_or_else(|| PathBuf::from(".ddpm-cache"))
}

/// Compares generated features with reference statistics.
///
/// # Errors
/// [`EvalError::DimensionMismatch`] when the features come from another extractor's
/// dimension, [`EvalError::TooFewSamples`] with fewer than 2 generated images, and the
/// statistics' own errors.
pub fn compare(
    generated: &Extracted,
    reference: &ReferenceStats,
    config: &QualityConfig,
) -> Result<QualityReport, EvalError> {
    let stats = FeatureStats::from_features(&generated.features)?;
    let frechet_distance = frechet_distance(&stats, &reference.stats)?;
    let kid = match (&config.kid, &reference.features) {
        (Some(k), Some(real)) => Some(kernel_inception_distance(real, &generated.features, k)?),
        _ => None,
    };
    let precision_recall = match (&config.precision_recall, &reference.features) {
        (Some(p), Some(real)) => Some(precision_recall(real, &generated.features, p)?),
        _ => None,
    };
    let classifier_score = match &generated.logits {
        Some(l) => {
            let splits = config.score_splits.clamp(1, l.len().max(1));
            Some(classifier_score(l.as_slice(), l.dim(), splits)?)
        }
        None => None,
    };
    Ok(QualityReport {
        extractor_id: reference.extractor_id.clone(),
        dataset_key: reference.dataset_key.clone(),
        generated: generated.features.len(),
        reference: reference.stats.count,
        frechet_distance,
        kid,
        precision_recall,
        classifier_score,
    })
}

/// A reusable scorer: an extractor and reference statistics, scoring batches of samples
/// (quantized to 8 bits first); what evaluation during training calls.
pub struct QualityMetric<B: Backend> {
    extractor: Box<dyn FeatureExtractor<B> + Send>,
    reference: ReferenceStats,
    config: QualityConfig,
    name: String,
}

impl<B: Backend> QualityMetric<B> {
    /// A metric named `name` (e.g. `fld`, `fid`) of `extractor` against `reference`.
    ///
    /// # Errors
    /// [`EvalError::BadSetting`] when `reference` was computed with another extractor.
    pub fn new(
        name: impl Into<String>,
        extractor: Box<dyn FeatureExtractor<B> + Send>,
        reference: ReferenceStats,
        config: QualityConfig,
    ) -> Result<Self, EvalError> {
        if reference.extractor_id != extractor.id() {
            return Err(EvalError::BadSetting {
                setting: "reference statistics",
                value: reference.extractor_id.clone(),
                reason: format!("computed with another extractor than {}", extractor.id()),
            });
        }
        Ok(Self {
            extractor,
            reference,
            config,
            name: name.into(),
        })
    }

    /// The metric of `spec`'s extractor against the first `limit` images (all with `None`) of
    /// `dataset`, named [`FeatureSpec::metric_name`]; the reference statistics are read from
    /// or saved to `cache_dir` ([`cached_reference_stats`]).
    ///
    /// # Errors
    /// As [`FeatureSpec::load`] and [`cached_reference_stats`].
    #[allow(clippy::too_many_arguments)]
    pub fn for_dataset(
        spec: &FeatureSpec,
        dataset: &Dataset,
        dataset_key: &str,
        limit: Option<usize>,
        cache_dir: &Path,
        config: QualityConfig,
        device: &B::Device,
    ) -> Result<Self, EvalError> {
        let extractor = spec.load::<B>(device)?;
        let (reference, _, _) = cached_reference_stats(
            cache_dir,
            extractor.as_ref(),
            dataset,
            dataset_key,
            limit,
            &config,
            device,
        )?;
        Self::new(spec.metric_name(), extractor, reference, config)
    }

    /// The reference statistics.
    pub fn reference(&self) -> &ReferenceStats {
        &self.reference
    }

    /// The metric's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Scores `[N, C, H, W]` model-range samples.
    ///
    /// # Errors
    /// As [`extract`] and [`compare`].
    pub fn score(&self, samples: Tensor<B, 4>) -> Result<QualityReport, EvalError> {
        let extracted = extract(
            self.extractor.as_ref(),
            quantize(samples),
            self.config.batch_size,
        )?;
        compare(&extracted, &self.reference, &self.config)
    }
}
