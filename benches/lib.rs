//! Criterion benchmarks of the whole workspace (the crates' own micro-benchmarks stay with
//! them: `ddpm-unet`'s kernels, `ddpm-sampler`'s per-step overhead):
//!
//! - `unet`: the U-Net forward pass and training step (forward + MSE + backward + Adam) per
//!   preset and batch, in images/s;
//! - `sampler`: whole samples of a small preset with DDIM (50 steps) and DPM-Solver++(2M)
//!   (20 steps), in images/s;
//! - `data`: the data pipeline, decoding the bundled MNIST and batching it, in images/s.
//!
//! ```sh
//! cargo bench -p ddpm-benches                 # all, on the default backend (flex)
//! cargo bench -p ddpm-benches --bench unet -- mnist-small
//! cargo bench -p ddpm-benches --no-default-features --features cuda --bench unet
//! ```
//!
//! `ddpm bench` (the CLI) remains the tool for side-by-side comparisons with PyTorch; see
//! `docs/guides/benchmark.md`.

use burn::tensor::backend::Backend as BackendTrait;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use ddpm::unet::UnetConfig;

/// The backend the benchmarks run on (the most specific GPU feature enabled, else flex).
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;
/// The backend the benchmarks run on (the most specific GPU feature enabled, else flex).
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Backend = burn::backend::Wgpu;
/// The backend the benchmarks run on (the most specific GPU feature enabled, else flex).
#[cfg(all(feature = "flex", not(any(feature = "cuda", feature = "wgpu"))))]
pub type Backend = burn::backend::Flex;

#[cfg(not(any(feature = "flex", feature = "wgpu", feature = "cuda")))]
compile_error!("ddpm-benches needs a backend feature: flex (default), wgpu or cuda");

/// Random x_t (standard normal), spread-out timesteps and a random ε target for `batch`
/// images of `config`'s shape.
pub fn inputs<B: BackendTrait>(
    config: &UnetConfig,
    batch: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>, Tensor<B, 4>) {
    let shape = [
        batch,
        config.in_channels,
        config.sample_size,
        config.sample_size,
    ];
    let x = Tensor::random(shape, Distribution::Normal(0.0, 1.0), device);
    let eps = Tensor::random(shape, Distribution::Normal(0.0, 1.0), device);
    let t = Tensor::from_data(
        TensorData::new(
            (0..batch as i64)
                .map(|i| (i * 127 + 3) % 1000)
                .collect::<Vec<_>>(),
            [batch],
        ),
        device,
    );
    (x, t, eps)
}

/// A named preset with dropout off (as every speed comparison in this project).
///
/// # Panics
///
/// On an unknown preset name (a typo in a benchmark).
pub fn preset(name: &str) -> UnetConfig {
    UnetConfig::preset(name)
        .unwrap_or_else(|e| panic!("preset {name}: {e}"))
        .with_dropout(0.0)
}
