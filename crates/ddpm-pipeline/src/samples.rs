//! [`Samples`]: the result of a sampling run, as a tensor, images or files.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, backend::Backend};
use image::DynamicImage;

use crate::{PipelineError, images, tensor_file};

/// The key of the raw samples in a file written by [`Samples::save_tensor`].
pub const SAMPLES_KEY: &str = "samples";

/// Samples in model space `[N, C, H, W]` (finite: checked when they were made), exactly as the
/// sampler's last step returns them (not clamped or quantized).
#[derive(Debug, Clone)]
pub struct Samples<B: Backend> {
    tensor: Tensor<B, 4>,
}

impl<B: Backend> Samples<B> {
    /// Wraps finite samples `[N, C, H, W]` in model space.
    pub fn new(tensor: Tensor<B, 4>) -> Self {
        Self { tensor }
    }

    /// The samples.
    pub fn tensor(&self) -> &Tensor<B, 4> {
        &self.tensor
    }

    /// The samples, owned.
    pub fn into_tensor(self) -> Tensor<B, 4> {
        self.tensor
    }

    /// `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.tensor.dims()
    }

    /// N.
    pub fn len(&self) -> usize {
        self.shape()[0]
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One 8-bit image per sample ([`images::to_images`]: diffusers' scaling; gray for one
    /// channel, RGB for three).
    ///
    /// # Errors
    /// [`PipelineError::ImageChannels`] for other channel counts.
    pub fn to_images(&self) -> Result<Vec<DynamicImage>, PipelineError> {
        images::to_images(self.tensor.clone())
    }

    /// All samples in one near-square grid ([`images::grid`]).
    ///
    /// # Errors
    /// As [`Samples::to_images`].
    pub fn grid(&self) -> Result<DynamicImage, PipelineError> {
        Ok(images::grid(&self.to_images()?))
    }

    /// Writes [`Samples::grid`] to `path` (PNG or JPEG by extension), atomically.
    ///
    /// # Errors
    /// As [`images::save_image`]: an unknown extension, or a write error naming the file (the
    /// previous file is intact).
    pub fn save_grid(&self, path: impl AsRef<Path>) -> Result<(), PipelineError> {
        images::ImageFileFormat::from_path(path.as_ref())?;
        images::save_image(&self.grid()?, path)
    }

    /// Writes one PNG per sample into `dir` (created if needed): `sample_00000.png`, ...;
    /// returns the paths.
    ///
    /// # Errors
    /// As [`images::save_image`].
    pub fn save_each(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, PipelineError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
        self.to_images()?
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let path = dir.join(format!("sample_{i:05}.png"));
                images::save_image(img, &path).map(|()| path)
            })
            .collect()
    }

    /// Writes the raw samples (float32, key [`SAMPLES_KEY`]) to a safetensors file, atomically.
    ///
    /// # Errors
    /// [`PipelineError::Write`] naming the file.
    pub fn save_tensor(&self, path: impl AsRef<Path>) -> Result<(), PipelineError> {
        tensor_file::save_tensor(path, SAMPLES_KEY, self.tensor.clone())
    }
}
