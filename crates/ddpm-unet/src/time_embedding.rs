//! Timestep conditioning of the U-Net: the Transformer sinusoidal embedding of t followed by a
//! two-layer MLP (Ho et al. 2020, arXiv:2006.11239v2, §4 / Appendix B; Vaswani et al. 2017).
//!
//! diffusers: `Timesteps` (`time_proj`, no parameters) and `TimestepEmbedding`
//! (`time_embedding.linear_1`, `time_embedding.linear_2`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::init::{DEFAULT_INIT_SEED, ParamInit};

/// Sinusoidal timestep embedding (diffusers `get_timestep_embedding`, max period 10000).
///
/// With half = ⌊dim/2⌋ and frequencies ω_i = exp(−ln(10000) · i / (half − freq_shift)),
/// i = 0..half: emb(t) = [sin(t·ω), cos(t·ω)] (or [cos, sin] when `flip_sin_to_cos`), padded
/// with one zero column when `dim` is odd.
///
/// The frequencies are computed in f32 on the host exactly as PyTorch does, then
/// t·ω, sin and cos run on the device in the backend's float type.
///
/// # Shapes
///
/// - `timesteps`: `[batch]` (one timestep per sample)
/// - output: `[batch, dim]`
pub fn timestep_embedding<B: Backend>(
    timesteps: Tensor<B, 1, Int>,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Tensor<B, 2> {
    let device = timesteps.device();
    let [batch] = timesteps.dims();
    let half = dim / 2;
    // float32, like torch: exponent = -ln(10000) * arange(half); exponent / (half - shift).
    let scale = -(10000f64.ln()) as f32;
    let denom = (half as f64 - freq_shift) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| ((scale * i as f32) / denom).exp())
        .collect();
    let freqs = Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device);
    let args = timesteps.float().reshape([batch, 1]) * freqs.reshape([1, half]);
    let (sin, cos) = (args.clone().sin(), args.cos());
    let emb = if flip_sin_to_cos {
        Tensor::cat(vec![cos, sin], 1)
    } else {
        Tensor::cat(vec![sin, cos], 1)
    };
    if dim % 2 == 1 {
        emb.pad([(0, 0), (0, 1)], 0.0)
    } else {
        emb
    }
}

/// Configuration of [`TimestepEmbedding`].
#[derive(Config, Debug)]
pub struct TimestepEmbeddingConfig {
    /// Width of the sinusoidal embedding (diffusers: `block_out_channels[0]`).
    pub in_features: usize,
    /// Width of the MLP (diffusers: 4 · `block_out_channels[0]`).
    pub time_embed_dim: usize,
}

impl TimestepEmbeddingConfig {
    /// Initializes the MLP from [`DEFAULT_INIT_SEED`] (see
    /// [`TimestepEmbeddingConfig::init_with`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> TimestepEmbedding<B> {
        self.init_with(&mut ParamInit::new(DEFAULT_INIT_SEED), device)
    }

    /// Initializes the MLP with weights drawn from `init` (U(−1/√fan_in, 1/√fan_in), see
    /// [`ParamInit`]).
    pub fn init_with<B: Backend>(
        &self,
        init: &mut ParamInit,
        device: &B::Device,
    ) -> TimestepEmbedding<B> {
        TimestepEmbedding {
            linear_1: init.linear(self.in_features, self.time_embed_dim, device),
            linear_2: init.linear(self.time_embed_dim, self.time_embed_dim, device),
        }
    }
}

/// The time-embedding MLP: linear_2(SiLU(linear_1(emb))).
#[derive(Module, Debug)]
pub struct TimestepEmbedding<B: Backend> {
    /// First layer, `in_features → time_embed_dim`.
    pub linear_1: Linear<B>,
    /// Second layer, `time_embed_dim → time_embed_dim`.
    pub linear_2: Linear<B>,
}

impl<B: Backend> TimestepEmbedding<B> {
    /// Applies the MLP.
    ///
    /// # Shapes
    ///
    /// - `emb`: `[batch, in_features]`
    /// - output: `[batch, time_embed_dim]`
    pub fn forward(&self, emb: Tensor<B, 2>) -> Tensor<B, 2> {
        // The sinusoidal embedding is computed in f32; a half-precision MLP casts it here, as
        // diffusers does (`t_emb.to(dtype=self.dtype)`).
        let emb = emb.cast(self.linear_1.weight.val().dtype());
        self.linear_2.forward(silu(self.linear_1.forward(emb)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestBackend = burn::backend::Flex;

    #[test]
    fn embedding_at_t0_is_zeros_then_ones() {
        let device = Default::default();
        let t = Tensor::<TestBackend, 1, Int>::from_ints([0, 0], &device);
        let emb = timestep_embedding(t, 8, false, 1.0);
        assert_eq!(emb.dims(), [2, 8]);
        let v = emb.into_data().to_vec::<f32>().unwrap();
        assert_eq!(&v[..8], &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn flip_and_odd_width() {
        let device = Default::default();
        let t = Tensor::<TestBackend, 1, Int>::from_ints([0], &device);
        let v = timestep_embedding(t, 5, true, 0.0)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(v, [1.0, 1.0, 0.0, 0.0, 0.0]);
    }
}
