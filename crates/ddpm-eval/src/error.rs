//! Errors of the evaluation crate: each names the file, tensor or setting at fault.

use std::path::PathBuf;

use thiserror::Error;

/// Why features could not be computed, statistics compared or a file read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Two feature sets (or statistics) of different dimensions were compared.
    #[error("feature dimensions differ: {left} vs {right}")]
    DimensionMismatch {
        /// Dimension of the first operand.
        left: usize,
        /// Dimension of the second operand.
        right: usize,
    },
    /// Too few feature vectors for the statistic asked for.
    #[error("{what} needs at least {needed} feature vectors, got {got}")]
    TooFewSamples {
        /// The statistic.
        what: &'static str,
        /// The minimum.
        needed: usize,
        /// The number given.
        got: usize,
    },
    /// A feature vector or statistic holds NaN or ±inf.
    #[error("{what} holds a non-finite value (at index {index})")]
    NonFinite {
        /// The tensor or statistic.
        what: String,
        /// The first offending flat index.
        index: usize,
    },
    /// Images of a shape the extractor cannot take.
    #[error("{extractor}: cannot take images of shape {shape:?} ({reason})")]
    BadImages {
        /// The extractor's id.
        extractor: String,
        /// The shape given ([N, C, H, W]).
        shape: [usize; 4],
        /// What is expected.
        reason: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] ddpm_io::WriteError),
    /// A weights or statistics file with wrong or missing contents.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key or tensor.
        reason: String,
    },
    /// Statistics whose parts disagree (a covariance that is not dim×dim, an empty mean).
    #[error("{what}: {reason}")]
    BadStats {
        /// The statistics (e.g. "first statistics" or a file name).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A metric's setting is out of range (zero KID subsets, k = 0 neighbours, an index past
    /// the end of a feature set).
    #[error("{setting} = {value}: {reason}")]
    BadSetting {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is expected.
        reason: String,
    },
    /// An iterative linear-algebra routine did not converge.
    #[error("{what} did not converge")]
    NoConvergence {
        /// The computation.
        what: &'static str,
    },
    /// A weights file whose tensors do not fit the model: a tensor missing, unexpected,
    /// mis-shaped, of another dtype, non-finite, or a negative BatchNorm variance.
    #[error("{path}: tensor `{tensor}` {reason}")]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// The state-dict name of the tensor at fault.
        tensor: String,
        /// What is wrong with it.
        reason: String,
    },
    /// burn-store's PyTorch reader could not read a `.pth` file.
    #[cfg(feature = "pytorch")]
    #[error("{path}: cannot read the PyTorch file: {source}")]
    Pytorch {
        /// The file.
        path: PathBuf,
        /// burn-store's error.
        source: burn_store::pytorch::PytorchError,
    },
    /// An argument or setting outside its domain (a zero batch size, labels that do not match
    /// the images, logits that do not make rows).
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The argument or setting.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
