//! The model a sampler drives: anything that maps (x_t, t) to a prediction.
//!
//! The sampler crate knows nothing of the network (diffusers' split of model, scheduler and
//! pipeline): a U-Net, a closure, or a test oracle all implement [`Denoiser`].

use burn::tensor::{Int, Tensor, backend::Backend};

/// A denoising model: ε̂ (or x̂₀, or v, per the sampler's `PredictionType`) from x_t and t.
///
/// Implemented for every `Fn(Tensor<B, 4>, Tensor<B, 1, Int>) -> Tensor<B, 4>`, so a closure
/// wrapping a network (`|x, t| unet.forward(x, t)`) or a test oracle plugs in directly.
///
/// # Shapes
/// - `x_t`: `[batch, C, H, W]`
/// - `t`: `[batch]`, 0-based timesteps (diffusers' convention; the paper's t − 1)
/// - output: `[batch, C, H, W]`, or `[batch, 2·C, H, W]` for a learned variance
pub trait Denoiser<B: Backend> {
    /// The model's prediction at (x_t, t).
    fn predict(&self, x_t: Tensor<B, 4>, t: Tensor<B, 1, Int>) -> Tensor<B, 4>;
}

impl<B, F> Denoiser<B> for F
where
    B: Backend,
    F: Fn(Tensor<B, 4>, Tensor<B, 1, Int>) -> Tensor<B, 4>,
{
    fn predict(&self, x_t: Tensor<B, 4>, t: Tensor<B, 1, Int>) -> Tensor<B, 4> {
        self(x_t, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn closures_are_denoisers() {
        let device = Default::default();
        let model = |x: Tensor<Flex, 4>, _t: Tensor<Flex, 1, Int>| x.mul_scalar(2.0);
        let x = Tensor::<Flex, 4>::ones([1, 1, 2, 2], &device);
        let t = Tensor::<Flex, 1, Int>::from_ints([3], &device);
        let out = Denoiser::predict(&model, x, t);
        assert_eq!(out.sum().into_scalar(), 8.0);
    }
}
