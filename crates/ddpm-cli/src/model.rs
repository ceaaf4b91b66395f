//! Where `--unet` (and `ddpm convert`'s source) can point: a diffusers `UNet2DModel`
//! directory, a native checkpoint directory, or a `ddpm train` run directory / one of its
//! checkpoints (EMA weights by default, `--weights raw` for the optimizer's).

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use ddpm_train::Weights;
use ddpm_unet::Unet;

/// Loads the U-Net at `path` (any of the layouts above) onto `device`.
pub fn load_unet<B: Backend>(path: &Path, weights: Weights, device: &B::Device) -> Result<Unet<B>> {
    if ddpm_train::is_training_output(path) {
        return ddpm_train::load_unet::<B>(path, weights, device).with_context(|| {
            format!(
                "loading the {weights:?} weights of training run {}",
                path.display()
            )
        });
    }
    Unet::<B>::load_any(path, device)
        .with_context(|| format!("loading U-Net from {}", path.display()))
}
