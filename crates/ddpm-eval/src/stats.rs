//! Feature statistics (mean and covariance in f64) and the Fréchet distance between two Gaussians
//! fitted to them: FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
//! Converge to a Local Nash Equilibrium", arXiv:1706.08500) when the features are
//! Inception-v3 pool features.

use std::thread;

use crate::linalg::{matmul, symmetric_eigen, symmetrize};
use crate::{EvalError, FeatureSet};

/// Rows processed at once by [`StatsAccumulator::add`]: bounds the f64 scratch to
/// `STATS_CHUNK_ROWS · dim` values (4 MiB at dim = 2048).
const STATS_CHUNK_ROWS: usize = 256;

/// Output rows of the cross-product matrix computed together (cache blocking).
const GRAM_BLOCK: usize = 4;

/// Mean and covariance of `count` feature vectors, in f64.
///
/// The covariance is the unbiased sample covariance (divisor n − 1),
/// Σ = 1/(n−1) · Σᵢ (xᵢ − μ)(xᵢ − μ)ᵀ, as numpy's `np.cov(x, rowvar=False)` that pytorch-fid's
/// `calculate_activation_statistics` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Number of feature vectors n.
    pub count: usize,
    /// μ, `[dim]`.
    pub mean: Vec<f64>,
    /// Σ, `[dim, dim]` row-major, symmetric.
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// Statistics of one feature set (a [`StatsAccumulator`] fed once).
    ///
    /// # Errors
    ///
    /// [`EvalError::TooFewSamples`] with fewer than 2 vectors.
    pub fn from_features(features: &FeatureSet) -> Result<Self, EvalError> {
        let mut acc = StatsAccumulator::new(features.dim());
        acc.add(features)?;
        acc.finish()
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Checks that the parts agree (`cov` is dim×dim, count ≥ 2) and every value is finite;
    /// `what` names the statistics in the error (e.g. a file name).
    ///
    /// # Errors
    ///
    /// [`EvalError::BadStats`], [`EvalError::TooFewSamples`] or [`EvalError::NonFinite`].
    pub fn validate(&self, what: &str) -> Result<(), EvalError> {
        let d = self.mean.len();
        if d == 0 {
            return Err(EvalError::BadStats {
                what: what.into(),
                reason: "the mean is empty (dimension 0)".into(),
            });
        }
        if self.cov.len() != d * d {
            return Err(EvalError::BadStats {
                what: what.into(),
                reason: format!(
                    "the covariance has {} values, expected {d}×{d} = {}",
                    self.cov.len(),
                    d * d
                ),
            });
        }
        if self.count < 2 {
            return Err(EvalError::TooFewSamples {
                what: "feature statistics",
                needed: 2,
                got: self.count,
            });
        }
        if let Some(index) = self.mean.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite {
                what: format!("{what}: mean"),
                index,
            });
        }
        if let Some(index) = self.cov.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite {
                what: format!("{what}: covariance"),
                index,
            });
        }
        Ok(())
    }
}

/// Streaming mean/covariance in f64 over batches of features.
///
/// Each batch is centred on its own mean (two passes over the batch, so no catastrophic
/// cancellation of E\[xxᵀ\] − μμᵀ), and batches are combined with the pairwise update of Chan,
/// Golub & LeVeque (1979, "Updating formulae and a pairwise algorithm for computing sample
/// variances"): with δ = μ_B − μ_A, n = n_A + n_B,
/// μ = μ_A + δ·n_B/n and M₂ = M₂_A + M₂_B + δδᵀ·n_A·n_B/n, where M₂ = Σ (x − μ)(x − μ)ᵀ.
/// The O(n·d²) cross-product work is split over threads (`std::thread::scope`).
#[derive(Debug, Clone)]
pub struct StatsAccumulator {
    dim: usize,
    count: usize,
    mean: Vec<f64>,
    /// M₂, upper triangle (i ≤ j) of a dim×dim row-major matrix.
    m2: Vec<f64>,
}

impl StatsAccumulator {
    /// An empty accumulator for features of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            count: 0,
            mean: vec![0.0; dim],
            m2: vec![0.0; dim * dim],
        }
    }

    /// Number of feature vectors added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds every row of `features`.
    ///
    /// # Errors
    ///
    /// [`EvalError::DimensionMismatch`] if `features.dim()` differs from the accumulator's.
    pub fn add(&mut self, features: &FeatureSet) -> Result<(), EvalError> {
        if features.dim() != self.dim {
            return Err(EvalError::DimensionMismatch {
                left: self.dim,
                right: features.dim(),
            });
        }
        let d = self.dim;
        for chunk in features.as_slice().chunks(STATS_CHUNK_ROWS * d.max(1)) {
            let rows = chunk.len() / d;
            if rows == 0 {
                continue;
            }
            // Batch mean, then the centred batch in f64.
            let mut mean_b = vec![0.0; d];
            for row in chunk.chunks(d) {
                for (m, &x) in mean_b.iter_mut().zip(row) {
                    *m += f64::from(x);
                }
            }
            mean_b.iter_mut().for_each(|m| *m /= rows as f64);
            let centred: Vec<f64> = chunk
                .chunks(d)
                .flat_map(|row| row.iter().zip(&mean_b).map(|(&x, &m)| f64::from(x) - m))
                .collect();
            let m2_b = upper_gram(&centred, rows, d);
            // Chan et al. merge.
            let n_a = self.count as f64;
            let n_b = rows as f64;
            let n = n_a + n_b;
            let delta: Vec<f64> = mean_b.iter().zip(&self.mean).map(|(b, a)| b - a).collect();
            let w = n_a * n_b / n;
            for i in 0..d {
                let row = &mut self.m2[i * d..(i + 1) * d];
                let gram = &m2_b[i * d..(i + 1) * d];
                let di = delta[i] * w;
                for j in i..d {
                    row[j] += gram[j] + di * delta[j];
                }
            }
            for (m, dl) in self.mean.iter_mut().zip(&delta) {
                *m += dl * n_b / n;
            }
            self.count += rows;
        }
        Ok(())
    }

    /// Mean and unbiased covariance of everything added.
    ///
    /// # Errors
    ///
    /// [`EvalError::TooFewSamples`] with fewer than 2 vectors (the n − 1 divisor).
    pub fn finish(self) -> Result<FeatureStats, EvalError> {
        if self.count < 2 {
            return Err(EvalError::TooFewSamples {
                what: "feature covariance",
                needed: 2,
                got: self.count,
            });
        }
        let d = self.dim;
        let mut cov = self.m2;
        let scale = 1.0 / (self.count - 1) as f64;
        for i in 0..d {
            for j in i..d {
                let v = cov[i * d + j] * scale;
                cov[i * d + j] = v;
                cov[j * d + i] = v;
            }
        }
        Ok(FeatureStats {
            count: self.count,
            mean: self.mean,
            cov,
        })
    }
}

/// Upper triangle (i ≤ j) of XᵀX for the row-major `rows`×`d` matrix X, as a d×d row-major
/// matrix (lower part zero). Rows of the result are split over threads with equal triangle work.
fn upper_gram(x: &[f64], rows: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    let work = rows * d * d / 2;
    let threads = if work < 1 << 21 {
        1
    } else {
        thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(16)
            .min(d)
    };
    // Row boundaries so that each thread gets ≈ 1/threads of Σᵢ (d − i).
    let total = d * (d + 1) / 2;
    let mut bounds = vec![0];
    let mut acc = 0;
    for i in 0..d {
        acc += d - i;
        if acc * threads >= total * bounds.len() && bounds.len() < threads {
            bounds.push(i + 1);
        }
    }
    bounds.push(d);
    bounds.dedup();
    thread::scope(|scope| {
        let mut rest: &mut [f64] = &mut out;
        for w in bounds.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let (mine, tail) = rest.split_at_mut((hi - lo) * d);
            rest = tail;
            let mut task = move || {
                // GRAM_BLOCK output rows at a time, so each sample's tail xs[i0..] is fetched
                // once per block and reused from L1 (entries left of the diagonal within a
                // block are computed too; they are never read).
                for (gi, group) in mine.chunks_mut(GRAM_BLOCK * d).enumerate() {
                    let i0 = lo + gi * GRAM_BLOCK;
                    let g = group.len() / d;
                    for s in 0..rows {
                        let xs = &x[s * d..(s + 1) * d];
                        let tail = &xs[i0..];
                        for r in 0..g {
                            let xi = xs[i0 + r];
                            if xi == 0.0 {
                                continue;
                            }
                            let out_row = &mut group[r * d + i0..(r + 1) * d];
                            for (o, &xj) in out_row.iter_mut().zip(tail) {
                                *o += xi * xj;
                            }
                        }
                    }
                }
            };
            if threads == 1 {
                task();
            } else {
                scope.spawn(task);
            }
        }
    });
    out
}

/// Fréchet distance between the Gaussians N(μ₁, Σ₁) and N(μ₂, Σ₂) (Heusel et al. 2017;
/// Dowson & Landau 1982):
///
/// d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr √(Σ₁Σ₂)
///
/// tr √(Σ₁Σ₂) is computed exactly as Σᵢ √λᵢ over the eigenvalues of the symmetric positive
/// semi-definite matrix √Σ₁·Σ₂·√Σ₁ (similar to Σ₁Σ₂, so the same spectrum), see
/// [`trace_sqrt_product`]: two symmetric eigendecompositions and two matrix products in f64,
/// no iterative matrix square root.
///
/// NOTE: eigenvalues that are rounding noise of exact zeros are treated as 0 (see
/// [`trace_sqrt_product`]) and the final value is clamped at 0 (identical statistics give
/// |d²| ~ 1e−12·tr Σ). pytorch-fid's `calculate_frechet_distance` instead takes
/// `scipy.linalg.sqrtm(Σ₁Σ₂)` (a Schur-based square root of a non-symmetric product), adds
/// 1e−6·I to both covariances when that fails to be finite, and drops a small imaginary part;
/// on well-conditioned inputs both agree to ~1e−9 relative, on singular products sqrtm is the less
/// accurate of the two (see the tests for measured figures).
///
/// # Errors
///
/// [`EvalError::DimensionMismatch`] if the dimensions differ; [`EvalError::TooFewSamples`],
/// [`EvalError::BadStats`] or [`EvalError::NonFinite`] for invalid statistics;
/// [`EvalError::NoConvergence`] if an eigendecomposition fails.
#[doc(alias = "fid")]
#[doc(alias = "calculate_frechet_distance")]
pub fn frechet_distance(s1: &FeatureStats, s2: &FeatureStats) -> Result<f64, EvalError> {
    if s1.dim() != s2.dim() {
        return Err(EvalError::DimensionMismatch {
            left: s1.dim(),
            right: s2.dim(),
        });
    }
    s1.validate("first statistics")?;
    s2.validate("second statistics")?;
    let d = s1.dim();
    let mean_term: f64 = s1
        .mean
        .iter()
        .zip(&s2.mean)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    let trace = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    let tr_sqrt = trace_sqrt_product(&s1.cov, &s2.cov, d)?;
    let fd = mean_term + trace(&s1.cov) + trace(&s2.cov) - 2.0 * tr_sqrt;
    Ok(fd.max(0.0))
}

/// tr √(Σ₁Σ₂) = Σᵢ √λᵢ(√Σ₁Σ₂√Σ₁) for symmetric positive semi-definite d×d Σ₁, Σ₂.
///
/// With Σ₁ = V·Λ·Vᵀ, √Σ₁Σ₂√Σ₁ = V·(Λ^½·Vᵀ·Σ₂·V·Λ^½)·Vᵀ, so the eigenvalues are those of the
/// r×r matrix M = Λ_r^½·V_rᵀ·Σ₂·V_r·Λ_r^½ over the r eigenvectors of Σ₁ whose eigenvalue
/// exceeds d·ε·λ_max(Σ₁) (numpy's `matrix_rank` tolerance).
///
/// NOTE: eigenvalues of Σ₁ or of M at or below that tolerance (r·ε·λ_max(M) for M) are rounding
/// noise of exact zeros (a covariance of n ≤ d vectors has rank n − 1) and are treated as 0,
/// negative ones included: keeping them would add √(noise) ≈ 1e−7 per null direction to the
/// trace, which is what limits pytorch-fid (`sqrtm`) and a plain eigenvalue route to ~1e−8
/// relative accuracy on rank-deficient covariances.
///
/// # Errors
///
/// [`EvalError::NoConvergence`] if an eigendecomposition fails (non-finite input).
///
/// # Panics
///
/// If `cov1` or `cov2` is not d×d (a programmer error).
pub fn trace_sqrt_product(cov1: &[f64], cov2: &[f64], d: usize) -> Result<f64, EvalError> {
    assert!(
        cov1.len() == d * d && cov2.len() == d * d,
        "trace_sqrt_product: covariances are not {d}×{d}"
    );
    let eig1 = symmetric_eigen(cov1, d, true).ok_or(EvalError::NoConvergence {
        what: "eigendecomposition of the first covariance",
    })?;
    let lambda_max = eig1.values.last().copied().unwrap_or(0.0);
    let tolerance = d as f64 * f64::EPSILON * lambda_max;
    // Kept eigenpairs (rows of `vectors_t` are eigenvectors), scaled by √λ: B = Λ_r^½·V_rᵀ.
    let kept: Vec<usize> = (0..d).filter(|&i| eig1.values[i] > tolerance).collect();
    let r = kept.len();
    if r == 0 {
        return Ok(0.0);
    }
    let mut b = Vec::with_capacity(r * d);
    for &i in &kept {
        let root = eig1.values[i].sqrt();
        b.extend(eig1.vectors_t[i * d..(i + 1) * d].iter().map(|v| v * root));
    }
    let mut bt = vec![0.0; d * r];
    for i in 0..r {
        for j in 0..d {
            bt[j * r + i] = b[i * d + j];
        }
    }
    // M = B·Σ₂·Bᵀ (r×r).
    let b_s2 = matmul(&b, cov2, r, d, d);
    let mut m = matmul(&b_s2, &bt, r, d, r);
    symmetrize(&mut m, r);
    let eig = symmetric_eigen(&m, r, false).ok_or(EvalError::NoConvergence {
        what: "eigenvalues of √Σ₁·Σ₂·√Σ₁",
    })?;
    // The same rank tolerance on M: with rank Σ₂ < r, M has exact zero eigenvalues whose
    // rounding noise (≈ ε·‖M‖) would otherwise add √(ε·‖M‖) each.
    let m_max = eig.values.last().copied().unwrap_or(0.0);
    let m_tolerance = r as f64 * f64::EPSILON * m_max;
    Ok(eig
        .values
        .iter()
        .filter(|&&l| l > m_tolerance)
        .map(|&l| l.sqrt())
        .sum())
}
