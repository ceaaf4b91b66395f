//! Feature vectors on the host, row-major.

use crate::EvalError;

/// `n` feature vectors of dimension `dim`, row-major `f32` (what every extractor returns,
/// copied off the device).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    dim: usize,
    data: Vec<f32>,
}

impl FeatureSet {
    /// Wraps row-major features; `data.len()` must be a multiple of `dim` (> 0) and every value
    /// finite.
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self, EvalError> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(EvalError::BadFile {
                path: Default::default(),
                reason: format!("{} values do not make rows of dimension {dim}", data.len()),
            });
        }
        if let Some(index) = data.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite {
                what: "features".into(),
                index,
            });
        }
        Ok(Self { dim, data })
    }

    /// An empty set of dimension `dim`.
    pub fn empty(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
        }
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of feature vectors.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    /// Whether there are no feature vectors.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All rows, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Appends the rows of `other` (same dimension).
    pub fn extend(&mut self, other: &FeatureSet) -> Result<(), EvalError> {
        if other.dim != self.dim {
            return Err(EvalError::DimensionMismatch {
                left: self.dim,
                right: other.dim,
            });
        }
        self.data.extend_from_slice(&other.data);
        Ok(())
    }
}
