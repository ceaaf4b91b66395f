//! Samples → 8-bit images, grids and image files: the one place that does it (the CLI, the
//! trainer's previews and [`crate::Samples`] all call these).
//!
//! Model space is [−1, 1] (the data scaling of Ho et al. 2020, arXiv:2006.11239v2, §3.3); a
//! value x becomes the 8-bit level round(clamp(x/2 + 0.5, 0, 1) · 255), exactly as diffusers'
//! `DDPMPipeline` (`(image / 2 + 0.5).clamp(0, 1)`, then `numpy_to_pil`), so the same samples
//! give the same PNG bytes in both libraries. One channel gives a gray image, three an RGB
//! image.
//!
//! Files are written through [`ddpm_io::write_atomic`]: the image is encoded in memory, written
//! to a temporary file in the target's directory, flushed, synced and renamed, so a full disk
//! or a crash never leaves a truncated image under the final name or destroys the previous one,
//! and every write error is returned. The format follows the extension: `.png`, or `.jpg` /
//! `.jpeg` (quality [`JPEG_QUALITY`]); a name without extension (e.g. `/dev/stdout`) gets PNG;
//! any other extension is refused.

use std::path::Path;

use burn::tensor::{Tensor, backend::Backend};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, GrayImage, RgbImage};

use crate::PipelineError;

/// Pixels between the images of a grid and around it (black).
pub const GRID_PADDING: u32 = 2;

/// JPEG quality of `.jpg`/`.jpeg` files (0–100; high, since samples are small and detailed).
pub const JPEG_QUALITY: u8 = 95;

/// An image file format this crate writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFileFormat {
    /// PNG (lossless), `.png`.
    Png,
    /// JPEG, `.jpg` or `.jpeg`, at [`JPEG_QUALITY`].
    Jpeg,
}

impl ImageFileFormat {
    /// The format a file name's extension names (case-insensitive); PNG for a name without
    /// extension (a device such as `/dev/stdout`).
    ///
    /// # Errors
    /// [`PipelineError::ImageFormat`] for any other extension.
    pub fn from_path(path: &Path) -> Result<Self, PipelineError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "png" | "" => Ok(Self::Png),
            "jpg" | "jpeg" => Ok(Self::Jpeg),
            _ => Err(PipelineError::ImageFormat {
                path: path.to_path_buf(),
                extension: ext,
            }),
        }
    }
}

/// Model value → 8-bit level: round(clamp(x/2 + 0.5, 0, 1) · 255) (diffusers' formula).
/// NaN maps to 0 (samples are checked for finiteness when they are made).
pub fn to_u8(x: f32) -> u8 {
    ((x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Images from samples `[N, C, H, W]` in model space (C = 1: gray, C = 3: RGB).
///
/// # Errors
/// [`PipelineError::ImageChannels`] for any other C.
pub fn to_images<B: Backend>(samples: Tensor<B, 4>) -> Result<Vec<DynamicImage>, PipelineError> {
    let shape = samples.dims();
    let values = samples
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("a float tensor converts to f32");
    images_from_values(&values, shape)
}

/// As [`to_images`], from host values in `[N, C, H, W]` order.
///
/// # Errors
/// [`PipelineError::ImageChannels`] for C ∉ {1, 3}.
///
/// # Panics
/// If `values.len()` is not the product of `shape`.
pub fn images_from_values(
    values: &[f32],
    shape: [usize; 4],
) -> Result<Vec<DynamicImage>, PipelineError> {
    let [n, c, h, w] = shape;
    assert_eq!(
        values.len(),
        n * c * h * w,
        "{} values for shape {shape:?}",
        values.len()
    );
    if c != 1 && c != 3 {
        return Err(PipelineError::ImageChannels { channels: c });
    }
    let (hw, per_sample) = (h * w, c * h * w);
    Ok(values
        .chunks_exact(per_sample.max(1))
        .take(n)
        .map(|s| {
            if c == 1 {
                let pixels = s.iter().map(|&v| to_u8(v)).collect();
                let img = GrayImage::from_raw(w as u32, h as u32, pixels).expect("h·w pixels");
                DynamicImage::ImageLuma8(img)
            } else {
                // CHW → HWC
                let pixels = (0..hw)
                    .flat_map(|p| (0..3).map(move |ch| to_u8(s[ch * hw + p])))
                    .collect();
                let img = RgbImage::from_raw(w as u32, h as u32, pixels).expect("h·w·3 values");
                DynamicImage::ImageRgb8(img)
            }
        })
        .collect())
}

/// Arranges images of one size in a near-square grid (⌈√N⌉ columns) on black, with
/// [`GRID_PADDING`] pixels between and around them. The grid is gray if every image is gray,
/// RGB otherwise.
///
/// # Panics
/// If `images` is empty or the images differ in size.
pub fn grid(images: &[DynamicImage]) -> DynamicImage {
    let cols = (images.len() as f64).sqrt().ceil() as usize;
    grid_with_columns(images, cols)
}

/// Arranges images of one size row by row, `cols` per row (the last row may be short), as
/// [`grid`] does: figures whose columns mean something (timesteps, interpolation weights).
///
/// # Panics
/// If `images` is empty, `cols` is 0 or the images differ in size.
pub fn grid_with_columns(images: &[DynamicImage], cols: usize) -> DynamicImage {
    assert!(!images.is_empty(), "a grid needs at least one image");
    assert!(cols > 0, "a grid needs at least one column");
    let (w, h) = (images[0].width(), images[0].height());
    let n = images.len() as u32;
    let cols = (cols as u32).min(n);
    let rows = n.div_ceil(cols);
    let pad = GRID_PADDING;
    let (gw, gh) = (cols * (w + pad) + pad, rows * (h + pad) + pad);
    let origin = |i: u32| (pad + (i % cols) * (w + pad), pad + (i / cols) * (h + pad));
    let gray = images
        .iter()
        .all(|img| matches!(img, DynamicImage::ImageLuma8(_)));
    let check = |img: &DynamicImage| {
        assert!(
            (img.width(), img.height()) == (w, h),
            "grid images differ in size: {}×{} and {w}×{h}",
            img.width(),
            img.height()
        );
    };
    if gray {
        let mut out = GrayImage::new(gw, gh);
        for (i, img) in (0..).zip(images) {
            check(img);
            let (x, y) = origin(i);
            image::imageops::replace(&mut out, &img.to_luma8(), x as i64, y as i64);
        }
        DynamicImage::ImageLuma8(out)
    } else {
        let mut out = RgbImage::new(gw, gh);
        for (i, img) in (0..).zip(images) {
            check(img);
            let (x, y) = origin(i);
            image::imageops::replace(&mut out, &img.to_rgb8(), x as i64, y as i64);
        }
        DynamicImage::ImageRgb8(out)
    }
}

/// Encodes `image` in memory in `format`.
///
/// # Errors
/// The encoder's error (e.g. a color type the format cannot hold).
pub fn encode(image: &DynamicImage, format: ImageFileFormat) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    match format {
        ImageFileFormat::Png => image.write_with_encoder(PngEncoder::new(&mut bytes))?,
        ImageFileFormat::Jpeg => {
            image.write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY))?
        }
    }
    Ok(bytes)
}

/// Writes `image` to `path` atomically, in the format its extension names, creating missing
/// parent directories.
///
/// # Errors
/// [`PipelineError::ImageFormat`] for an unknown extension (checked before anything is
/// written), [`PipelineError::Encode`], and [`PipelineError::Write`] naming the file and the
/// OS error (e.g. "No space left on device"); the previous file under `path` is then intact.
pub fn save_image(image: &DynamicImage, path: impl AsRef<Path>) -> Result<(), PipelineError> {
    let path = path.as_ref();
    let format = ImageFileFormat::from_path(path)?;
    let bytes = encode(image, format).map_err(|source| PipelineError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    create_parent(path)?;
    ddpm_io::write_atomic(path, bytes)?;
    Ok(())
}

/// Creates the parent directory of `path` if it is missing.
pub(crate) fn create_parent(path: &Path) -> Result<(), PipelineError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(crate::error::io(parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn levels_invert_the_data_scaling() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(2.0), 255);
        assert_eq!(to_u8(-7.0), 0);
        assert_eq!(to_u8(f32::NAN), 0);
        for v in 0..=255u8 {
            assert_eq!(to_u8(2.0 * (v as f32 / 255.0) - 1.0), v);
        }
        // diffusers' arithmetic in f32: 0.2 → (0.2/2 + 0.5)·255 = 153.0 → 153
        assert_eq!(to_u8(0.2), ((0.2f32 / 2.0 + 0.5) * 255.0).round() as u8);
    }

    #[test]
    fn chw_becomes_hwc_and_one_channel_is_gray() {
        let device = Default::default();
        // one 3×1×2 sample: R = [-1, 1], G = [1, -1], B = [0, 0]
        let x = Tensor::<Flex, 4>::from_data(
            TensorData::new(vec![-1.0f32, 1.0, 1.0, -1.0, 0.0, 0.0], [1, 3, 1, 2]),
            &device,
        );
        let img = to_images(x).unwrap().remove(0).to_rgb8();
        assert_eq!(img.get_pixel(0, 0).0, [0, 255, 128]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 0, 128]);
        let g = images_from_values(&[1.0, -1.0], [2, 1, 1, 1]).unwrap();
        assert!(matches!(g[0], DynamicImage::ImageLuma8(_)));
        assert_eq!(g[1].to_luma8().get_pixel(0, 0).0, [0]);
        assert!(matches!(
            images_from_values(&[0.0; 4], [1, 4, 1, 1]),
            Err(PipelineError::ImageChannels { channels: 4 })
        ));
    }

    #[test]
    fn grid_layout() {
        let images = images_from_values(&[1.0; 5 * 16], [5, 1, 4, 4]).unwrap();
        let g = grid(&images);
        // 3 columns × 2 rows of 4×4 with 2-pixel borders.
        assert_eq!((g.width(), g.height()), (3 * 6 + 2, 2 * 6 + 2));
        let gray = g.to_luma8();
        assert_eq!(gray.get_pixel(2, 2).0[0], 255);
        assert_eq!(gray.get_pixel(0, 0).0[0], 0);
        assert_eq!(gray.get_pixel(6, 2).0[0], 0); // the gap between columns
        assert_eq!(gray.get_pixel(8, 8).0[0], 255); // second image, second row
        assert_eq!(gray.get_pixel(14, 8).0[0], 0); // the empty sixth cell
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(
            ImageFileFormat::from_path(Path::new("a/b.PNG")).unwrap(),
            ImageFileFormat::Png
        );
        assert_eq!(
            ImageFileFormat::from_path(Path::new("x.jpeg")).unwrap(),
            ImageFileFormat::Jpeg
        );
        let e = ImageFileFormat::from_path(Path::new("x.bmp")).unwrap_err();
        assert!(e.to_string().contains("\"bmp\""), "{e}");
        assert_eq!(
            ImageFileFormat::from_path(Path::new("/dev/stdout")).unwrap(),
            ImageFileFormat::Png
        );
        let img = &images_from_values(&[0.5; 3 * 64], [1, 3, 8, 8]).unwrap()[0];
        let png = encode(img, ImageFileFormat::Png).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
        let jpg = encode(img, ImageFileFormat::Jpeg).unwrap();
        assert_eq!(&jpg[..3], &[0xFF, 0xD8, 0xFF]);
    }

    #[test]
    fn saving_is_atomic_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("ddpm-pipeline-images-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let img = &images_from_values(&[0.0; 16], [1, 1, 4, 4]).unwrap()[0];
        let path = dir.join("nested/grid.png");
        save_image(img, &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert_eq!(image::load_from_memory(&before).unwrap().width(), 4);
        // an unknown extension is refused before anything is written
        assert!(save_image(img, dir.join("grid.gif")).is_err());
        assert!(!dir.join("grid.gif").exists());
        #[cfg(target_os = "linux")]
        {
            // A full disk: the OS error reaches the caller, naming the file.
            let e = save_image(img, "/dev/full").unwrap_err();
            assert!(matches!(e, PipelineError::Write(_)), "{e}");
            assert!(e.to_string().contains("/dev/full"), "{e}");
            assert!(e.to_string().contains("No space left"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
