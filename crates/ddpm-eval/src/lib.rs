//! Sample quality of a DDPM (Ho, Jain & Abbeel 2020, arXiv:2006.11239v2, §4 and Table 1: FID,
//! Inception score) measured in pure Rust.
//!
//! - [`FeatureExtractor`]: images in the model range [−1, 1] → one feature vector per image
//!   (and class logits where the extractor is a classifier). Two ship with the crate:
//!   [`inception`] (pytorch-fid's Inception-v3, 2048-d pool features, from the weights file
//!   pytorch-fid downloads) and [`digits`] (a small classifier for 28×28 grey digits, trained by
//!   this project, weights bundled: "FLD" features and its classifier score).
//! - [`FeatureSet`] → [`FeatureStats`] (mean and covariance in f64) → [`frechet_distance`];
//!   [`kid`] (unbiased kernel inception distance with its standard error) and [`prd`]
//!   (k-NN precision/recall, Kynkäänniemi et al. 2019) on the features themselves.
//! - [`cache`]: reference statistics stored as a safetensors file keyed by data set and
//!   extractor, written atomically.
//!
//! Statistics and metrics (host-side f64, no backend needed):
//! - [`linalg`]: symmetric eigendecomposition (Householder + implicit QL) and matrix products.
//! - [`FeatureStats`], [`StatsAccumulator`]: streaming mean / unbiased covariance (Chan et al.).
//! - [`frechet_distance`]: ‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂) (Heusel et al. 2017).
//! - [`kernel_inception_distance`]: unbiased MMD², cubic polynomial kernel, over random subsets
//!   (Bińkowski et al. 2018).
//! - [`precision_recall`]: k-NN manifold precision/recall (Kynkäänniemi et al. 2019).
//! - [`save_stats`], [`load_stats`], [`cache_file_name`]: the reference-statistics cache file.
#![warn(missing_docs)]

pub mod cache;
pub mod digits;
mod error;
mod extractor;
mod features;
mod hash;
pub mod inception;
pub mod kid;
pub mod linalg;
pub mod prd;
mod quality;
mod score;
mod spec;
mod stats;

pub use cache::{ReferenceStats, cache_file_name, cache_key, load_stats, save_stats};
pub use digits::DigitClassifier;
pub use error::EvalError;
pub use extractor::{ExtractorOutput, FeatureExtractor};
pub use features::FeatureSet;
pub use inception::InceptionV3;
pub use kid::{KidConfig, KidOutput, kernel_inception_distance, kid_with_subsets, mmd2_unbiased};
pub use prd::{PrdConfig, PrecisionRecall, precision_recall};
pub use quality::{
    Extracted, QualityConfig, QualityMetric, QualityReport, cached_reference_stats, compare,
    dataset_tensor, default_cache_dir, extract, quantize, reference_stats,
};
pub use score::{ClassifierScore, DEFAULT_SPLITS, classifier_score};
pub use spec::FeatureSpec;
pub use stats::{FeatureStats, StatsAccumulator, frechet_distance, trace_sqrt_product};
