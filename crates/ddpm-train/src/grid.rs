//! Sample grids: a batch in model space [−1, 1] → one PNG (the inverse of Eq. 13's scaling).

use std::path::Path;

use burn::tensor::{Tensor, backend::Backend};
use image::{DynamicImage, GrayImage, RgbImage};

use crate::TrainError;
use crate::error::io;

/// Model value → 8-bit: round((x + 1) · 127.5), clamped to 0..=255.
pub fn to_u8(x: f32) -> u8 {
    ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

/// Arranges `[N, C, H, W]` images (C = 1 or 3, values in [−1, 1]) in a near-square grid with a
/// 2-pixel border.
///
/// # Panics
/// If C is neither 1 nor 3 (model outputs are validated before sampling).
pub fn grid_image<B: Backend>(images: Tensor<B, 4>) -> DynamicImage {
    let [n, c, h, w] = images.dims();
    assert!(
        c == 1 || c == 3,
        "grid: images have {c} channels; expected 1 or 3"
    );
    let values = images
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("float tensor");
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols).max(1);
    let pad = 2;
    let (gw, gh) = (cols * (w + pad) + pad, rows * (h + pad) + pad);
    let pixel =
        |i: usize, ch: usize, y: usize, x: usize| to_u8(values[((i * c + ch) * h + y) * w + x]);
    let origin = |i: usize| (pad + (i % cols) * (w + pad), pad + (i / cols) * (h + pad));
    if c == 1 {
        let mut img = GrayImage::new(gw as u32, gh as u32);
        for i in 0..n {
            let (ox, oy) = origin(i);
            for y in 0..h {
                for x in 0..w {
                    img.put_pixel(
                        (ox + x) as u32,
                        (oy + y) as u32,
                        image::Luma([pixel(i, 0, y, x)]),
                    );
                }
            }
        }
        DynamicImage::ImageLuma8(img)
    } else {
        let mut img = RgbImage::new(gw as u32, gh as u32);
        for i in 0..n {
            let (ox, oy) = origin(i);
            for y in 0..h {
                for x in 0..w {
                    let p = [pixel(i, 0, y, x), pixel(i, 1, y, x), pixel(i, 2, y, x)];
                    img.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb(p));
                }
            }
        }
        DynamicImage::ImageRgb8(img)
    }
}

/// Writes [`grid_image`] as a PNG, through a temporary file renamed into place.
///
/// # Errors
/// [`TrainError::Image`] or [`TrainError::Io`] naming the file.
pub fn save_grid<B: Backend>(images: Tensor<B, 4>, path: &Path) -> Result<(), TrainError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_extension("png.tmp");
    grid_image(images)
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|source| TrainError::Image {
            path: tmp.clone(),
            source,
        })?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn scaling_inverts_eq_13() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(2.0), 255);
        for v in 0..=255u8 {
            assert_eq!(to_u8(2.0 * (v as f32 / 255.0) - 1.0), v);
        }
    }

    #[test]
    fn grid_layout() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::ones([5, 1, 4, 4], &device);
        let img = grid_image(x);
        // 3 columns × 2 rows of 4×4 with 2-pixel borders.
        assert_eq!((img.width(), img.height()), (3 * 6 + 2, 2 * 6 + 2));
        let gray = img.to_luma8();
        assert_eq!(gray.get_pixel(2, 2).0[0], 255);
        assert_eq!(gray.get_pixel(0, 0).0[0], 0);
    }
}
