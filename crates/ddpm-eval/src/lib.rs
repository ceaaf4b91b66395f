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
#![warn(missing_docs)]

pub mod digits;
mod error;
mod extractor;
mod features;
mod score;

pub use error::EvalError;
pub use extractor::{ExtractorOutput, FeatureExtractor};
pub use features::FeatureSet;
pub use score::{ClassifierScore, DEFAULT_SPLITS, classifier_score};
