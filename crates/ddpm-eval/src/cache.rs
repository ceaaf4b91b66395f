//! Reference statistics cached as a safetensors file, keyed by data set and feature extractor.
//!
//! Layout (format `ddpm-eval-reference-stats`, version 1):
//! - tensors `mean` (F64 `[d]`), `cov` (F64 `[d, d]`) and optionally `features` (F32 `[m, d]`,
//!   a fixed-seed subset of the reference features, for [`crate::kernel_inception_distance`]
//!   and [`crate::precision_recall`]);
//! - metadata `format`, `format_version`, `extractor_id`, `dataset_key`, `count` (the number
//!   of feature vectors behind `mean`/`cov`) and `dim`.
//!
//! A loader refuses a file of another format or version, of another extractor or data set, with
//! wrong shapes or with non-finite values: a stale cache is never silently reused.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{EvalError, FeatureSet, FeatureStats};

/// Value of the `format` metadata key.
pub const STATS_FORMAT: &str = "ddpm-eval-reference-stats";
/// Value of the `format_version` metadata key written by this version of the crate.
pub const STATS_FORMAT_VERSION: u32 = 1;

/// Statistics of a reference data set under one feature extractor.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceStats {
    /// The extractor's [`crate::FeatureExtractor::id`].
    pub extractor_id: String,
    /// Identifies the data set and split (e.g. `mnist-train`, or a path with its size).
    pub dataset_key: String,
    /// Mean and covariance of all reference features.
    pub stats: FeatureStats,
    /// A fixed-seed subset of the reference features (see [`crate::prd::subsample`]), for KID
    /// and precision/recall; `None` if only FID is needed.
    pub features: Option<FeatureSet>,
}

/// A deterministic 64-bit key of (data set, extractor, format version): FNV-1a (Fowler, Noll &
/// Vo) over the UTF-8 bytes, fields separated by a 0 byte. Not cryptographic; it names files.
pub fn cache_key(dataset_key: &str, extractor_id: &str) -> u64 {
    let version = STATS_FORMAT_VERSION.to_string();
    let parts = [STATS_FORMAT, version.as_str(), dataset_key, extractor_id];
    let bytes = parts.join("\0");
    crate::hash::fnv1a(crate::hash::FNV_OFFSET, bytes.as_bytes())
}

/// Default cache file name for (data set, extractor):
/// `ref-<data set>-<extractor>-<key as 16 hex digits>.safetensors`, where the two names are
/// reduced to `[A-Za-z0-9._-]` (other characters become `_`) and cut to 40 characters; the hash
/// of the full strings ([`cache_key`]) keeps distinct keys apart. The full keys are in the
/// file's metadata and checked by [`load_stats`].
pub fn cache_file_name(dataset_key: &str, extractor_id: &str) -> String {
    let slug = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect()
    };
    format!(
        "ref-{}-{}-{:016x}.safetensors",
        slug(dataset_key),
        slug(extractor_id),
        cache_key(dataset_key, extractor_id)
    )
}

/// Writes `reference` to `path` (atomically, through [`ddpm_io::write_atomic`]).
///
/// # Errors
///
/// [`EvalError::BadStats`], [`EvalError::TooFewSamples`] or [`EvalError::NonFinite`] for
/// statistics that [`FeatureStats::validate`] refuses; [`EvalError::DimensionMismatch`] if the
/// features' dimension differs from the statistics'; [`EvalError::BadFile`] if serialisation
/// fails; [`EvalError::Write`] if writing fails.
pub fn save_stats(path: impl AsRef<Path>, reference: &ReferenceStats) -> Result<(), EvalError> {
    let path = path.as_ref();
    let stats = &reference.stats;
    stats.validate(&format!("{} (being written)", path.display()))?;
    let d = stats.dim();
    if let Some(f) = &reference.features
        && f.dim() != d
    {
        return Err(EvalError::DimensionMismatch {
            left: d,
            right: f.dim(),
        });
    }
    let mean_bytes: Vec<u8> = stats.mean.iter().flat_map(|v| v.to_le_bytes()).collect();
    let cov_bytes: Vec<u8> = stats.cov.iter().flat_map(|v| v.to_le_bytes()).collect();
    let feature_bytes: Option<(usize, Vec<u8>)> = reference.features.as_ref().map(|f| {
        (
            f.len(),
            f.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    });
    let bad = |e: safetensors::SafeTensorError| EvalError::BadFile {
        path: path.to_path_buf(),
        reason: format!("cannot serialise the statistics: {e}"),
    };
    let mut tensors = vec![
        (
            "mean".to_string(),
            TensorView::new(Dtype::F64, vec![d], &mean_bytes).map_err(bad)?,
        ),
        (
            "cov".to_string(),
            TensorView::new(Dtype::F64, vec![d, d], &cov_bytes).map_err(bad)?,
        ),
    ];
    if let Some((m, bytes)) = &feature_bytes {
        tensors.push((
            "features".to_string(),
            TensorView::new(Dtype::F32, vec![*m, d], bytes).map_err(bad)?,
        ));
    }
    let metadata: HashMap<String, String> = [
        ("format", STATS_FORMAT.to_string()),
        ("format_version", STATS_FORMAT_VERSION.to_string()),
        ("extractor_id", reference.extractor_id.clone()),
        ("dataset_key", reference.dataset_key.clone()),
        ("count", stats.count.to_string()),
        ("dim", d.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(bad)?;
    ddpm_io::write_atomic(path, bytes)?;
    Ok(())
}

/// Reads reference statistics written by [`save_stats`], checking that they were computed by
/// extractor `expected_extractor_id` on data set `expected_dataset_key`.
///
/// # Errors
///
/// [`EvalError::Read`] if the file cannot be read; [`EvalError::BadFile`] naming the file and
/// the metadata key or tensor at fault if it is not a safetensors file, not of format
/// [`STATS_FORMAT`] version [`STATS_FORMAT_VERSION`], of another extractor or data set, has a
/// missing tensor, a wrong dtype or shape, a bad `count`, or a non-finite value.
pub fn load_stats(
    path: impl AsRef<Path>,
    expected_extractor_id: &str,
    expected_dataset_key: &str,
) -> Result<ReferenceStats, EvalError> {
    let path = path.as_ref();
    let bad = |reason: String| EvalError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |key: &str| -> Result<&String, EvalError> {
        meta.get(key).ok_or_else(|| {
            bad(format!(
                "metadata key `{key}` is missing: not a {STATS_FORMAT} file"
            ))
        })
    };
    let format = get("format")?;
    if format != STATS_FORMAT {
        return Err(bad(format!(
            "metadata `format` is `{format}`, expected `{STATS_FORMAT}`"
        )));
    }
    let version = get("format_version")?;
    if version != &STATS_FORMAT_VERSION.to_string() {
        return Err(bad(format!(
            "metadata `format_version` is `{version}`, this build reads version \
             {STATS_FORMAT_VERSION}; recompute the statistics"
        )));
    }
    let extractor_id = get("extractor_id")?;
    if extractor_id != expected_extractor_id {
        return Err(bad(format!(
            "metadata `extractor_id` is `{extractor_id}`, expected `{expected_extractor_id}`: \
             the statistics were computed with another feature extractor"
        )));
    }
    let dataset_key = get("dataset_key")?;
    if dataset_key != expected_dataset_key {
        return Err(bad(format!(
            "metadata `dataset_key` is `{dataset_key}`, expected `{expected_dataset_key}`: \
             the statistics belong to another data set"
        )));
    }
    let count_text = get("count")?;
    let count: usize = count_text.parse().ok().filter(|&c| c >= 2).ok_or_else(|| {
        bad(format!(
            "metadata `count` is `{count_text}`, expected an integer ≥ 2"
        ))
    })?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    for name in tensors.names() {
        if !matches!(name, "mean" | "cov" | "features") {
            return Err(bad(format!(
                "unexpected tensor `{name}` (expected `mean`, `cov`, `features`)"
            )));
        }
    }
    let tensor = |name: &str, dtype: Dtype| -> Result<TensorView<'_>, EvalError> {
        let t = tensors
            .tensor(name)
            .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
        if t.dtype() != dtype {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}, expected {dtype:?}",
                t.dtype()
            )));
        }
        Ok(t)
    };
    let mean_t = tensor("mean", Dtype::F64)?;
    let [d] = mean_t.shape() else {
        return Err(bad(format!(
            "tensor `mean` has shape {:?}, expected [d]",
            mean_t.shape()
        )));
    };
    let d = *d;
    if d == 0 {
        return Err(bad("tensor `mean` is empty".into()));
    }
    let dim_text = get("dim")?;
    if dim_text != &d.to_string() {
        return Err(bad(format!(
            "metadata `dim` is `{dim_text}` but tensor `mean` has {d} values"
        )));
    }
    let cov_t = tensor("cov", Dtype::F64)?;
    if cov_t.shape() != [d, d] {
        return Err(bad(format!(
            "tensor `cov` has shape {:?}, expected [{d}, {d}] (mean has {d} values)",
            cov_t.shape()
        )));
    }
    let decode_f64 = |t: &TensorView<'_>| -> Vec<f64> {
        t.data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8 bytes")))
            .collect()
    };
    let finite = |name: &str, values: &[f64]| -> Result<(), EvalError> {
        match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(bad(format!(
                "tensor `{name}` holds a non-finite value at flat index {i}"
            ))),
            None => Ok(()),
        }
    };
    let mean = decode_f64(&mean_t);
    finite("mean", &mean)?;
    let cov = decode_f64(&cov_t);
    finite("cov", &cov)?;
    let features = if tensors.names().contains(&"features") {
        let t = tensor("features", Dtype::F32)?;
        let &[m, fd] = t.shape() else {
            return Err(bad(format!(
                "tensor `features` has shape {:?}, expected [m, {d}]",
                t.shape()
            )));
        };
        if fd != d {
            return Err(bad(format!(
                "tensor `features` has shape [{m}, {fd}], expected [m, {d}] (mean has {d} values)"
            )));
        }
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4 bytes")))
            .collect();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor `features` holds a non-finite value at flat index {i}"
            )));
        }
        Some(FeatureSet::new(d, values).map_err(|e| bad(format!("tensor `features`: {e}")))?)
    } else {
        None
    };
    Ok(ReferenceStats {
        extractor_id: extractor_id.clone(),
        dataset_key: dataset_key.clone(),
        stats: FeatureStats { count, mean, cov },
        features,
    })
}
