//! Coefficients that multiply a batch: one number for the whole batch, or one per sample.

use burn::tensor::{Tensor, backend::Backend};

/// A coefficient broadcast over a `D`-dimensional batch `[batch, …]`.
///
/// Samplers step the whole batch at one timestep and use [`Coef::Scalar`] (an `f64` computed on
/// the host, no device round trip); training and likelihood evaluation draw a timestep per
/// sample and use [`Coef::PerSample`], a `[batch, 1, …, 1]` tensor gathered from the tables.
#[derive(Debug, Clone)]
pub enum Coef<B: Backend, const D: usize> {
    /// The same value for every sample.
    Scalar(f64),
    /// One value per sample, shaped `[batch, 1, …, 1]`.
    PerSample(Tensor<B, D>),
}

impl<B: Backend, const D: usize> Coef<B, D> {
    /// `self · x`.
    pub fn mul(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Scalar(c) => x.mul_scalar(*c),
            Self::PerSample(c) => x * c.clone(),
        }
    }

    /// `x / self`.
    pub fn div_into(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Scalar(c) => x.div_scalar(*c),
            Self::PerSample(c) => x / c.clone(),
        }
    }

    /// The coefficient as a tensor shaped like `[batch, 1, …, 1]` (scalars become `[1, …, 1]`).
    pub fn to_tensor(&self, device: &B::Device) -> Tensor<B, D> {
        match self {
            Self::Scalar(c) => Tensor::<B, D>::ones([1; D], device).mul_scalar(*c),
            Self::PerSample(c) => c.clone(),
        }
    }
}
