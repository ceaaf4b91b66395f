//! Converting decoded images to the model's shape: channel conversion, center crop to the
//! target aspect ratio, resize, interleaved → planar; and the thread pool that does it in
//! parallel.
//!
//! NOTE: parallel work uses `std::thread::scope` with an atomic work counter rather than
//! rayon: loading runs once, before training, so a work-stealing pool buys nothing over a
//! shared counter, and it keeps this crate off the global rayon pool that burn-flex computes on.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, RgbImage};

use crate::ImageSize;

/// The resampling filter: bilinear, widened when shrinking (antialiased), no ringing.
///
/// NOTE: the DDPM paper does not say how CelebA-HQ/LSUN were resized; its official code
/// relies on pre-resized TFRecords. Bilinear with antialiasing is the common choice and keeps
/// values inside [0, 255] without clamping.
const FILTER: FilterType = FilterType::Triangle;

/// The centered `(x, y, width, height)` window of a `src_w × src_h` image with the aspect ratio
/// of `target` (the largest such window).
pub(crate) fn center_crop_window(
    src_w: u32,
    src_h: u32,
    target: ImageSize,
) -> (u32, u32, u32, u32) {
    let (sw, sh) = (src_w as u64, src_h as u64);
    let (tw, th) = (target.width as u64, target.height as u64);
    let (cw, ch) = if sw * th > sh * tw {
        // Wider than the target: keep the full height.
        (((sh * tw + th / 2) / th).clamp(1, sw), sh)
    } else {
        (sw, ((sw * th + tw / 2) / tw).clamp(1, sh))
    };
    (
        ((sw - cw) / 2) as u32,
        ((sh - ch) / 2) as u32,
        cw as u32,
        ch as u32,
    )
}

/// Converts a decoded image to `channels` (1: Rec. 709 luma, 3: RGB, alpha dropped), center
/// crops it to the aspect ratio of `size`, resizes it and returns it planar (C × H × W).
/// Returns whether it had to crop or resize.
pub(crate) fn fit_image(img: DynamicImage, channels: usize, size: ImageSize) -> (Vec<u8>, bool) {
    if channels == 1 {
        let (img, changed) = crop_resize(img.into_luma8(), size);
        (img.into_raw(), changed)
    } else {
        let (img, changed) = crop_resize(img.into_rgb8(), size);
        (interleaved_to_planar(img.as_raw(), 3), changed)
    }
}

fn crop_resize<P>(
    img: image::ImageBuffer<P, Vec<u8>>,
    size: ImageSize,
) -> (image::ImageBuffer<P, Vec<u8>>, bool)
where
    P: image::Pixel<Subpixel = u8> + 'static,
{
    let (w, h) = img.dimensions();
    let (tw, th) = (size.width as u32, size.height as u32);
    if (w, h) == (tw, th) {
        return (img, false);
    }
    let (x, y, cw, ch) = center_crop_window(w, h, size);
    let cropped = if (cw, ch) == (w, h) {
        img
    } else {
        imageops::crop_imm(&img, x, y, cw, ch).to_image()
    };
    if (cw, ch) == (tw, th) {
        return (cropped, true);
    }
    (imageops::resize(&cropped, tw, th, FILTER), true)
}

/// H × W × C (interleaved) → C × H × W (planar).
pub(crate) fn interleaved_to_planar(src: &[u8], channels: usize) -> Vec<u8> {
    let pixels = src.len() / channels;
    let mut out = vec![0u8; src.len()];
    for (p, px) in src.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * pixels + p] = v;
        }
    }
    out
}

/// Builds a decoded image from one planar image of 1 (gray) or 3 (RGB) channels.
pub(crate) fn planar_to_image(
    src: &[u8],
    channels: usize,
    height: usize,
    width: usize,
) -> DynamicImage {
    let (w, h) = (width as u32, height as u32);
    if channels == 1 {
        let img =
            GrayImage::from_raw(w, h, src.to_vec()).expect("planar gray buffer matches its size");
        DynamicImage::ImageLuma8(img)
    } else {
        let pixels = height * width;
        let mut raw = vec![0u8; 3 * pixels];
        for p in 0..pixels {
            for c in 0..3 {
                raw[3 * p + c] = src[c * pixels + p];
            }
        }
        let img = RgbImage::from_raw(w, h, raw).expect("planar RGB buffer matches its size");
        DynamicImage::ImageRgb8(img)
    }
}

/// Converts `n` planar images of `src_channels × src_size` to `channels × size`, in parallel.
/// Returns the new buffer and whether any image was cropped or resized.
pub(crate) fn convert_planar(
    src: Vec<u8>,
    n: usize,
    src_channels: usize,
    src_size: ImageSize,
    channels: usize,
    size: ImageSize,
) -> (Vec<u8>, bool) {
    let src_len = src_channels * src_size.height * src_size.width;
    if src_channels == 1 && channels == 3 {
        // Gray to RGB: resize the one plane (a third of the work), then repeat it.
        let (gray, resized) = convert_planar(src, n, 1, src_size, 1, size);
        let mut out = Vec::with_capacity(3 * gray.len());
        for img in gray.chunks_exact(size.height * size.width) {
            for _ in 0..3 {
                out.extend_from_slice(img);
            }
        }
        return (out, resized);
    }
    if src_size == size && src_channels == channels {
        return (src, false);
    }
    let results = parallel_map(n, false, |i| {
        let img = planar_to_image(
            &src[i * src_len..(i + 1) * src_len],
            src_channels,
            src_size.height,
            src_size.width,
        );
        Ok::<_, std::convert::Infallible>(fit_image(img, channels, size))
    });
    let mut out = Vec::with_capacity(n * channels * size.height * size.width);
    let mut resized = false;
    for r in results {
        let Some(Ok((img, changed))) = r else {
            unreachable!("an infallible map without early stop fills every slot")
        };
        resized |= changed;
        out.extend_from_slice(&img);
    }
    (out, resized)
}

/// Runs `f(0..n)` on all cores. Result `i` is `f(i)`'s; with `stop_on_error`, workers stop
/// taking new indices after the first error, so later slots may be `None`.
pub(crate) fn parallel_map<T, E, F>(
    n: usize,
    stop_on_error: bool,
    f: F,
) -> Vec<Option<Result<T, E>>>
where
    T: Send,
    E: Send,
    F: Fn(usize) -> Result<T, E> + Sync,
{
    // available_parallelism is a hint; when the OS cannot tell, one worker is correct, only slower.
    let workers = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(n)
        .max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut slots: Vec<Option<Result<T, E>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        if stop_on_error && failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let r = f(i);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        done.push((i, r));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            // A panic in `f` is a bug in this crate; propagate it.
            let done = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            for (i, r) in done {
                slots[i] = Some(r);
            }
        }
    });
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_window_is_centered_and_keeps_aspect() {
        // Landscape 40×20 to a square: the middle 20×20.
        assert_eq!(
            center_crop_window(40, 20, ImageSize::square(8)),
            (10, 0, 20, 20)
        );
        // Portrait 20×41 to a square: the middle 20×20, rounding the offset down.
        assert_eq!(
            center_crop_window(20, 41, ImageSize::square(8)),
            (0, 10, 20, 20)
        );
        // Same aspect: everything.
        assert_eq!(
            center_crop_window(28, 28, ImageSize::square(32)),
            (0, 0, 28, 28)
        );
        // 2:1 target (h=16, w=32) from a square 32×32: full width, half height.
        assert_eq!(
            center_crop_window(32, 32, ImageSize::new(16, 32)),
            (0, 8, 32, 16)
        );
    }

    #[test]
    fn planar_round_trip() {
        let planar: Vec<u8> = (0..2 * 3 * 3).map(|v| v as u8).collect(); // 3 channels, 2×3
        let img = planar_to_image(&planar, 3, 2, 3);
        assert_eq!(img.to_rgb8().get_pixel(1, 0).0, [1, 7, 13]);
        assert_eq!(interleaved_to_planar(img.to_rgb8().as_raw(), 3), planar);
    }

    #[test]
    fn fit_crops_then_resizes() {
        // 4×2 gray image (w=4, h=2): left half 0, right half 200; to 1×1 after cropping the
        // middle 2×2 (columns 1, 2) → the mean of 0 and 200.
        let img = GrayImage::from_raw(4, 2, vec![0, 0, 200, 200, 0, 0, 200, 200]).unwrap();
        let (out, changed) = fit_image(DynamicImage::ImageLuma8(img), 1, ImageSize::square(1));
        assert!(changed);
        assert_eq!(out, vec![100]);
    }

    #[test]
    fn gray_to_rgb_replicates_and_same_shape_is_untouched() {
        let src = vec![1u8, 2, 3, 4, 5, 6, 7, 8]; // two 1×2×2 images
        let (rgb, changed) = convert_planar(
            src.clone(),
            2,
            1,
            ImageSize::square(2),
            3,
            ImageSize::square(2),
        );
        assert!(!changed);
        assert_eq!(
            rgb,
            vec![
                1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8
            ]
        );
        let (same, _) = convert_planar(
            src.clone(),
            2,
            1,
            ImageSize::square(2),
            1,
            ImageSize::square(2),
        );
        assert_eq!(same, src);
        let (up, changed) = convert_planar(
            vec![9; 8],
            2,
            1,
            ImageSize::square(2),
            3,
            ImageSize::square(4),
        );
        assert!(changed);
        assert_eq!(up, vec![9; 2 * 3 * 16]);
    }

    #[test]
    fn parallel_map_keeps_order_and_can_stop() {
        let r = parallel_map(100, false, |i| Ok::<_, ()>(i * 2));
        assert!(r.iter().enumerate().all(|(i, s)| *s == Some(Ok(i * 2))));
        let r = parallel_map(1000, true, |i| if i == 3 { Err(i) } else { Ok(i) });
        assert_eq!(r[3], Some(Err(3)));
    }
}
