//! Setup shared by the trainer's integration tests: a small 8×8 model with dropout, a
//! synthetic dataset and a fast config.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use ddpm_data::Dataset;
use ddpm_train::TrainConfig;
use ddpm_unet::{BlockType, UnetConfig};

pub type B = Autodiff<Flex>;

pub fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// 8×8 grayscale model with dropout, so the dropout masks' seeding is exercised too.
pub fn small_unet() -> UnetConfig {
    UnetConfig::new()
        .with_sample_size(8)
        .with_in_channels(1)
        .with_out_channels(1)
        .with_block_out_channels(vec![16, 32])
        .with_down_block_types(vec![BlockType::Plain, BlockType::Attention])
        .with_up_block_types(vec![BlockType::Attention, BlockType::Plain])
        .with_layers_per_block(1)
        .with_norm_num_groups(8)
        .with_dropout(0.1)
}

pub fn dataset() -> Arc<Dataset> {
    // 40 synthetic 8×8 images: bright squares at varying places.
    let mut data = vec![0u8; 40 * 64];
    for i in 0..40 {
        for y in 0..8 {
            for x in 0..8 {
                let on = (x + i) % 8 < 4 && (y + i / 8) % 8 < 4;
                data[i * 64 + y * 8 + x] = if on { 230 } else { 20 };
            }
        }
    }
    Arc::new(Dataset::from_raw(data, 40, 1, 8, 8).unwrap())
}

pub fn config(steps: usize) -> TrainConfig {
    TrainConfig::new(small_unet())
        .with_steps(steps)
        .with_batch_size(6)
        .with_grad_accumulation(2)
        .with_learning_rate(1e-3)
        .with_warmup_steps(5)
        .with_ema_decay(0.9)
        .with_random_flip(true)
        .with_seed(7)
        .with_checkpoint_every(1000)
        .with_sample_every(0)
        .with_num_preview_samples(4)
        .with_preview_steps(3)
        .with_log_every(5)
}
