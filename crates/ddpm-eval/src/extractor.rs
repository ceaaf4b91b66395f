//! The feature-extractor interface every metric is computed through.

use burn::tensor::{Tensor, backend::Backend};

use crate::EvalError;

/// What an extractor computes for a batch of images.
#[derive(Debug, Clone)]
pub struct ExtractorOutput<B: Backend> {
    /// `[N, dim]` features (Inception's 2048-d pool, the digit classifier's penultimate layer).
    pub features: Tensor<B, 2>,
    /// `[N, classes]` class logits, for extractors that are classifiers (the classifier score,
    /// the Inception-score analogue); `None` otherwise.
    pub logits: Option<Tensor<B, 2>>,
}

/// Images → features. Input: `[N, C, H, W]` in the model range [−1, 1] (what samplers return
/// and `ddpm_data` batches hold), C = 1 or 3, any size; each extractor converts channels,
/// resizes and normalises as its reference implementation does.
pub trait FeatureExtractor<B: Backend> {
    /// A stable identifier, part of every cache key: it changes when the weights or the
    /// preprocessing change (e.g. `digits-mnist-v1`, `inception-pytorch-fid-<hash>`).
    fn id(&self) -> String;
    /// Feature dimension.
    fn dim(&self) -> usize;
    /// Features (and logits) of a batch.
    fn extract(&self, images: Tensor<B, 4>) -> Result<ExtractorOutput<B>, EvalError>;
}
