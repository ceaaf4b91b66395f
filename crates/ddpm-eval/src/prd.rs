//! Improved precision and recall (Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved
//! Precision and Recall Metric for Assessing Generative Models", arXiv:1904.06991, §2):
//! each set's manifold is the union of balls around its points with radius the distance to the
//! k-th nearest neighbour within the set.

use std::thread;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{EvalError, FeatureSet};

/// Settings of [`precision_recall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrdConfig {
    /// Neighbourhood size k (default 3, the value the paper recommends).
    pub k: usize,
    /// Each set larger than this is replaced by a seeded random subset of this size, since the
    /// metric costs O(n²·d) (default `Some(10_000)`: a cap chosen here to keep an evaluation to
    /// minutes on a CPU; NVlabs' implementation uses every sample it is given). `None`: use all.
    pub max_samples: Option<usize>,
    /// Seed of the subsampling (default 0).
    pub seed: u64,
}

impl Default for PrdConfig {
    fn default() -> Self {
        Self {
            k: 3,
            max_samples: Some(10_000),
            seed: 0,
        }
    }
}

impl PrdConfig {
    /// Sets [`PrdConfig::k`].
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Sets [`PrdConfig::max_samples`].
    pub fn with_max_samples(mut self, max_samples: Option<usize>) -> Self {
        self.max_samples = max_samples;
        self
    }

    /// Sets [`PrdConfig::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// Precision and recall of a generated set against a real one.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionRecall {
    /// Fraction of generated samples inside the real manifold (precision).
    pub precision: f64,
    /// Fraction of real samples inside the generated manifold (recall).
    pub recall: f64,
    /// Number of real samples used (after subsampling).
    pub real_used: usize,
    /// Number of generated samples used (after subsampling).
    pub generated_used: usize,
}

/// Up to `max` rows of `features` drawn without replacement with a `StdRng` (ChaCha12 in
/// rand 0.10) seeded by `seed`, kept in their original order; all rows (a copy) if there are no
/// more than `max`.
pub fn subsample(features: &FeatureSet, max: usize, seed: u64) -> FeatureSet {
    if features.len() <= max {
        return features.clone();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut idx = rand::seq::index::sample(&mut rng, features.len(), max).into_vec();
    idx.sort_unstable();
    let data: Vec<f32> = idx
        .iter()
        .flat_map(|&i| features.row(i).iter().copied())
        .collect();
    FeatureSet::new(features.dim(), data).expect("rows of a valid FeatureSet stay valid")
}

/// Squared k-NN radii: for each row i, the squared Euclidean distance to its k-th nearest
/// neighbour among the other rows (the point itself excluded; duplicates count as neighbours at
/// distance 0), computed in f64. Same as NVlabs' `ManifoldEstimator`, which takes the k-th
/// entry of each sorted distance row including the zero self-distance.
///
/// # Errors
///
/// [`EvalError::BadSetting`] if k = 0; [`EvalError::TooFewSamples`] if the set has ≤ k rows.
pub fn knn_radii_squared(set: &FeatureSet, k: usize) -> Result<Vec<f64>, EvalError> {
    if k == 0 {
        return Err(EvalError::BadSetting {
            setting: "precision/recall k",
            value: "0".into(),
            reason: "at least one neighbour is needed".into(),
        });
    }
    if set.len() <= k {
        return Err(EvalError::TooFewSamples {
            what: "k-NN radii (k + 1 needed)",
            needed: k + 1,
            got: set.len(),
        });
    }
    let n = set.len();
    let mut radii = vec![0.0; n];
    parallel_blocks(&mut radii, |i0, out| {
        // Per row of the block, the k smallest distances so far, ascending.
        let mut best = vec![f64::INFINITY; k * out.len()];
        for j in 0..n {
            let xj = set.row(j);
            for (r, best) in best.chunks_mut(k).enumerate() {
                let i = i0 + r;
                if j == i {
                    continue;
                }
                let dist = squared_distance(set.row(i), xj);
                if dist < best[k - 1] {
                    let mut p = k - 1;
                    while p > 0 && best[p - 1] > dist {
                        best[p] = best[p - 1];
                        p -= 1;
                    }
                    best[p] = dist;
                }
            }
        }
        for (o, best) in out.iter_mut().zip(best.chunks(k)) {
            *o = best[k - 1];
        }
    });
    Ok(radii)
}

/// Fraction of `queries` rows inside the manifold of `reference` (rows with squared radii
/// `radii_sq`): a query q counts if ‖q − r‖² ≤ radius²(r) for at least one reference row r
/// (Kynkäänniemi et al. 2019, §2; `≤` as in NVlabs' implementation).
///
/// # Errors
///
/// [`EvalError::DimensionMismatch`]; [`EvalError::BadSetting`] if `radii_sq` does not have one
/// radius per reference row; [`EvalError::TooFewSamples`] if `queries` is empty.
pub fn manifold_coverage(
    queries: &FeatureSet,
    reference: &FeatureSet,
    radii_sq: &[f64],
) -> Result<f64, EvalError> {
    if queries.dim() != reference.dim() {
        return Err(EvalError::DimensionMismatch {
            left: queries.dim(),
            right: reference.dim(),
        });
    }
    if radii_sq.len() != reference.len() {
        return Err(EvalError::BadSetting {
            setting: "manifold radii",
            value: radii_sq.len().to_string(),
            reason: format!("expected one per reference vector ({})", reference.len()),
        });
    }
    if queries.is_empty() {
        return Err(EvalError::TooFewSamples {
            what: "manifold coverage",
            needed: 1,
            got: 0,
        });
    }
    let mut inside = vec![0.0; queries.len()];
    parallel_blocks(&mut inside, |i0, out| {
        let mut open = out.len();
        for (j, &radius) in radii_sq.iter().enumerate() {
            if open == 0 {
                break;
            }
            let rj = reference.row(j);
            for (r, o) in out.iter_mut().enumerate() {
                if *o == 0.0 && squared_distance(queries.row(i0 + r), rj) <= radius {
                    *o = 1.0;
                    open -= 1;
                }
            }
        }
    });
    Ok(inside.iter().sum::<f64>() / queries.len() as f64)
}

/// Improved precision and recall of `generated` against `real` (Kynkäänniemi et al. 2019, §2):
/// precision = |{g : g ∈ manifold(real)}| / |generated|, recall = |{r : r ∈ manifold(generated)}|
/// / |real|, with k-NN manifolds ([`knn_radii_squared`], [`manifold_coverage`]); each set is first
/// capped at `config.max_samples` rows by [`subsample`] (seeds `config.seed` and
/// `config.seed + 1`).
///
/// # Errors
///
/// [`EvalError::DimensionMismatch`]; [`EvalError::BadSetting`] if k = 0 or the cap is ≤ k;
/// [`EvalError::TooFewSamples`] if a set has ≤ k vectors.
#[doc(alias = "improved_precision_recall")]
pub fn precision_recall(
    real: &FeatureSet,
    generated: &FeatureSet,
    config: &PrdConfig,
) -> Result<PrecisionRecall, EvalError> {
    if real.dim() != generated.dim() {
        return Err(EvalError::DimensionMismatch {
            left: real.dim(),
            right: generated.dim(),
        });
    }
    if let Some(max) = config.max_samples
        && max <= config.k
    {
        return Err(EvalError::BadSetting {
            setting: "precision/recall max_samples",
            value: max.to_string(),
            reason: format!("must exceed k = {}", config.k),
        });
    }
    let cap = config.max_samples.unwrap_or(usize::MAX);
    let real = subsample(real, cap, config.seed);
    let generated = subsample(generated, cap, config.seed.wrapping_add(1));
    let real_radii = knn_radii_squared(&real, config.k)?;
    let generated_radii = knn_radii_squared(&generated, config.k)?;
    Ok(PrecisionRecall {
        precision: manifold_coverage(&generated, &real, &real_radii)?,
        recall: manifold_coverage(&real, &generated, &generated_radii)?,
        real_used: real.len(),
        generated_used: generated.len(),
    })
}

/// ‖a − b‖² in f64, with eight independent partial sums so the loop vectorises.
fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            let t = f64::from(x[k]) - f64::from(y[k]);
            acc[k] += t * t;
        }
    }
    let tail: f64 = ar
        .iter()
        .zip(br)
        .map(|(&x, &y)| {
            let t = f64::from(x) - f64::from(y);
            t * t
        })
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// Rows handled together by one pass over the other set (cache blocking: each row of the other
/// set is fetched once per block).
const PRD_BLOCK: usize = 8;

/// Calls `f(i0, out[i0..i0 + PRD_BLOCK])` for each block of rows, spreading the blocks over
/// threads when there are many rows.
fn parallel_blocks(out: &mut [f64], f: impl Fn(usize, &mut [f64]) + Sync) {
    let threads = if out.len() < 64 {
        1
    } else {
        thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(16)
    };
    let blocks = out.len().div_ceil(PRD_BLOCK);
    let per = blocks.div_ceil(threads).max(1) * PRD_BLOCK;
    let f = &f;
    thread::scope(|scope| {
        for (c, chunk) in out.chunks_mut(per).enumerate() {
            scope.spawn(move || {
                for (b, block) in chunk.chunks_mut(PRD_BLOCK).enumerate() {
                    f(c * per + b * PRD_BLOCK, block);
                }
            });
        }
    });
}
