//! A small digit classifier that ships with the crate, for 28 × 28 grey images (MNIST,
//! Fashion-MNIST): the features of its penultimate layer play Inception-v3's role in FID
//! (Heusel et al. 2017, arXiv:1706.08500v6) — a Fréchet distance on them is the "FLD" of this
//! project — and its class probabilities give the classifier score
//! ([`classifier_score`](crate::classifier_score)), the Inception-score analogue (Salimans
//! et al. 2016, arXiv:1606.03498v1, §4), at most 10.
//!
//! - [`DigitClassifier`]: the CNN ([`DigitClassifierConfig`]); it implements
//!   [`FeatureExtractor`](crate::FeatureExtractor): any `[N, C, H, W]` batch in [−1, 1] with
//!   C = 1 or 3 (Rec. 709 luma) and any size (the inverse of `ddpm_data`'s resize, so 32 × 32
//!   MNIST samples score like the 28 × 28 originals; see `preprocess` below) → 128-d features
//!   and 10 logits. Its id is `digits-v1-<hash of the weights>`.
//! - [`DigitClassifier::pretrained`]: the weights bundled with the crate, trained by this
//!   project on the bundled MNIST training set ([`train_digit_classifier`], the `train_digits`
//!   example); [`DigitClassifier::load`] / [`save`](DigitClassifier::save): safetensors files.
//! - [`evaluate_digit_classifier`]: accuracy (and logits) on labelled images;
//!   [`parse_idx_labels`] reads MNIST's label files.
//!
//! # Example
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use ddpm_eval::{FeatureExtractor, digits::DigitClassifier};
//!
//! let device = Default::default();
//! let classifier = DigitClassifier::<Flex>::pretrained(&device)?;
//! let images = Tensor::<Flex, 4>::zeros([2, 1, 32, 32], &device).sub_scalar(1.0); // black
//! let out = classifier.extract(images)?;
//! assert_eq!(out.features.dims(), [2, 128]);
//! assert!(classifier.id().starts_with("digits-v1-"));
//! # Ok::<(), ddpm_eval::EvalError>(())
//! ```

mod model;
mod preprocess;
mod train;
mod weights;

pub use model::{DigitClassifier, DigitClassifierConfig, DigitClassifierOutput};
pub use preprocess::{DIGIT_SIDE, LUMA_709};
pub use train::{
    DigitEvaluation, DigitTrainConfig, DigitTrainReport, DigitTrainStep, IDX_LABELS_MAGIC,
    evaluate_digit_classifier, parse_idx_labels, train_digit_classifier,
    train_digit_classifier_with,
};
pub use weights::DIGITS_FORMAT;
