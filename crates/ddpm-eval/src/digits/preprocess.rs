//! The digit classifier's input conversion: any `[N, C, H, W]` batch in [−1, 1] with C = 1 or 3
//! → `[N, 1, 28, 28]`, the size of MNIST's IDX files that the classifier is trained on.
//!
//! - **Channels.** C = 3 is turned grey with Rec. 709 luma, Y = 0.2126 R + 0.7152 G + 0.0722 B,
//!   the conversion `ddpm_data` applies (through the `image` crate) when it loads colour images
//!   as one channel. The weights sum to 1, so a grey image stored as three equal planes maps to
//!   that plane, and applying them in [−1, 1] equals applying them in [0, 255].
//! - **Size.** `ddpm_data` makes 32 × 32 MNIST by *resizing* (not padding) the 28 × 28 digits
//!   with the `image` crate's Triangle filter (bilinear, widened when shrinking), after a center
//!   crop to the target aspect ratio (none for square sizes). We invert that per axis, each a
//!   linear map, applied as `R_h · X · R_wᵀ`:
//!   - a side n > 28 was upsampled from 28 by the Triangle matrix `U` (n × 28, full column
//!     rank); we apply its least-squares inverse `(UᵀU)⁻¹Uᵀ`. A 32 × 32 MNIST image from
//!     `ddpm_data` comes back as its 28 × 28 original up to the u8 rounding of the 32 × 32 file
//!     (measured: at most 2.2/255, RMS 0.23/255 on the test set), where resizing back with the
//!     Triangle filter would blur every stroke (RMS 15.8/255). The inverse has singular values
//!     in [0.93, 2.0] for 28 → 32, so sample noise is amplified at most twofold, and it can
//!     overshoot [−1, 1] slightly near edges; the classifier takes the values as they are.
//!   - a side n < 28 (a digit shrunk, as `ddpm_data` would at that size) is resized to 28 with
//!     the same Triangle filter — shrinking loses detail an inverse cannot restore;
//!   - n = 28 is left alone.
//!
//!   Non-square images are resampled per axis (no crop).
//!
//! NOTE: the choice of the least-squares inverse is ours; the point is that the same digit
//! scores the same whether a model was trained at 28 × 28 or at `ddpm_data`'s 32 × 32, so a
//! FLD or classifier score of 32 × 32 samples is comparable with the 28 × 28 test set's.

use burn::tensor::{Tensor, TensorData, backend::Backend};

/// The side of the classifier's input (MNIST's IDX size).
pub const DIGIT_SIDE: usize = 28;

/// Rec. 709 luma weights (R, G, B), those of `ddpm_data`'s colour → grey conversion.
pub const LUMA_709: [f32; 3] = [0.2126, 0.7152, 0.0722];

/// The `image` crate's Triangle resampling (`imageops::resize` with `FilterType::Triangle`,
/// which `ddpm_data` uses) as a `dst × src` row-major matrix: output pixel `o` is
/// `Σ_i M[o, i] · x[i]`.
///
/// For output `o` the source centre is `(o + ½) · r − ½` with `r = src / dst`; the kernel is
/// `max(0, 1 − |d| / s)` with `s = max(r, 1)` (widened when shrinking: antialiasing), over the
/// source pixels within `s` of the centre, normalised to sum to 1.
pub(crate) fn triangle_matrix(src: usize, dst: usize) -> Vec<f64> {
    let ratio = src as f64 / dst as f64;
    let scale = ratio.max(1.0);
    let mut m = vec![0.0; dst * src];
    for o in 0..dst {
        let centre = (o as f64 + 0.5) * ratio;
        let left = ((centre - scale).floor().max(0.0) as usize).min(src - 1);
        let right = ((centre + scale).ceil() as usize).clamp(left + 1, src);
        let centre = centre - 0.5;
        let row = &mut m[o * src..(o + 1) * src];
        let mut sum = 0.0;
        for (i, w) in row.iter_mut().enumerate().take(right).skip(left) {
            *w = (1.0 - ((i as f64 - centre) / scale).abs()).max(0.0);
            sum += *w;
        }
        for w in &mut row[left..right] {
            *w /= sum;
        }
    }
    m
}

/// `(UᵀU)⁻¹Uᵀ` for a `rows × cols` matrix `U` of full column rank (rows ≥ cols), as a
/// `cols × rows` row-major matrix, by Cholesky factorisation of `UᵀU` in f64.
///
/// Returns `None` if `UᵀU` is not (numerically) positive definite (never for a Triangle
/// upsampling matrix: its eigenvalues lie in [0.25, 1.15] for 28 → 32).
pub(crate) fn left_inverse(u: &[f64], rows: usize, cols: usize) -> Option<Vec<f64>> {
    // G = UᵀU (cols × cols).
    let mut g = vec![0.0; cols * cols];
    for a in 0..cols {
        for b in 0..cols {
            g[a * cols + b] = (0..rows).map(|r| u[r * cols + a] * u[r * cols + b]).sum();
        }
    }
    // G = L Lᵀ, L lower triangular, in place.
    let mut l = vec![0.0; cols * cols];
    for i in 0..cols {
        for j in 0..=i {
            let s: f64 = g[i * cols + j]
                - (0..j)
                    .map(|k| l[i * cols + k] * l[j * cols + k])
                    .sum::<f64>();
            if i == j {
                // Relative to the diagonal: a rank-deficient G leaves rounding noise here.
                if s <= 1e-12 * g[i * cols + i] {
                    return None;
                }
                l[i * cols + i] = s.sqrt();
            } else {
                l[i * cols + j] = s / l[j * cols + j];
            }
        }
    }
    // Solve G X = Uᵀ column by column (each column of Uᵀ is a row of U).
    let mut out = vec![0.0; cols * rows];
    let mut y = vec![0.0; cols];
    for r in 0..rows {
        for i in 0..cols {
            let s: f64 = (0..i).map(|k| l[i * cols + k] * y[k]).sum();
            y[i] = (u[r * cols + i] - s) / l[i * cols + i];
        }
        for i in (0..cols).rev() {
            let s: f64 = (i + 1..cols)
                .map(|k| l[k * cols + i] * out[k * rows + r])
                .sum();
            out[i * rows + r] = (y[i] - s) / l[i * cols + i];
        }
    }
    Some(out)
}

/// The `28 × n` matrix that takes one axis of length `n` to the classifier's 28 (see the module
/// docs): the least-squares inverse of the Triangle upsampling for n > 28, the Triangle resize
/// for n < 28, the identity for n = 28.
pub(crate) fn axis_matrix(n: usize) -> Vec<f64> {
    use std::cmp::Ordering;
    match n.cmp(&DIGIT_SIDE) {
        Ordering::Equal => {
            let mut m = vec![0.0; n * n];
            for i in 0..n {
                m[i * n + i] = 1.0;
            }
            m
        }
        Ordering::Less => triangle_matrix(n, DIGIT_SIDE),
        Ordering::Greater => left_inverse(&triangle_matrix(DIGIT_SIDE, n), n, DIGIT_SIDE)
            .expect("a Triangle upsampling matrix has full column rank"),
    }
}

/// `[N, C, H, W]` (C = 1 or 3, already checked) → `[N, 1, 28, 28]`: luma, then the per-axis
/// maps of [`axis_matrix`].
pub(crate) fn to_digit_input<B: Backend>(images: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = images.dims();
    let device = images.device();
    let grey = if c == 3 {
        let weights = Tensor::<B, 1>::from_data(TensorData::new(LUMA_709.to_vec(), [3]), &device)
            .reshape([1, 3, 1, 1]);
        (images * weights).sum_dim(1)
    } else {
        images
    };
    if (h, w) == (DIGIT_SIDE, DIGIT_SIDE) {
        return grey;
    }
    let matrix = |len: usize| {
        // Transposed (len × 28), so rows of pixels multiply on the left.
        let m = axis_matrix(len);
        let mut t = vec![0f32; len * DIGIT_SIDE];
        for o in 0..DIGIT_SIDE {
            for i in 0..len {
                t[i * DIGIT_SIDE + o] = m[o * len + i] as f32;
            }
        }
        Tensor::<B, 2>::from_data(TensorData::new(t, [len, DIGIT_SIDE]), &device)
    };
    let s = DIGIT_SIDE;
    // Rows: [N·H, W] · R_wᵀ → [N, H, 28]; then columns: [N·28, H] · R_hᵀ → [N, 28(w), 28(h)].
    let x = grey.reshape([n * h, w]).matmul(matrix(w));
    let x = x.reshape([n, h, s]).swap_dims(1, 2).reshape([n * s, h]);
    let x = x.matmul(matrix(h));
    x.reshape([n, s, s]).swap_dims(1, 2).reshape([n, 1, s, s])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_data::{ImageSize, LoadOptions, Split, load_mnist_dir};

    type B = burn::backend::Flex;

    fn mnist_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
    }

    fn load(size: ImageSize) -> ddpm_data::Dataset {
        load_mnist_dir(
            mnist_dir(),
            &LoadOptions::new(1, size).with_split(Split::Test),
        )
        .unwrap()
    }

    /// Applies a `dst × src` matrix per axis to a `src_h × src_w` u8 image, in f64.
    fn apply(
        img: &[u8],
        mh: &[f64],
        mw: &[f64],
        (sh, sw): (usize, usize),
        (dh, dw): (usize, usize),
    ) -> Vec<f64> {
        let mut out = vec![0.0; dh * dw];
        for y in 0..dh {
            for x in 0..dw {
                let mut acc = 0.0;
                for i in 0..sh {
                    for j in 0..sw {
                        acc += mh[y * sh + i] * mw[x * sw + j] * f64::from(img[i * sw + j]);
                    }
                }
                out[y * dw + x] = acc;
            }
        }
        out
    }

    #[test]
    fn triangle_matrix_reproduces_ddpm_data_resizes() {
        // The image crate (through ddpm_data) resizes in f32 and rounds to u8: within 0.5 + ε.
        let raw = load(ImageSize::square(28));
        for side in [32, 20] {
            let resized = load(ImageSize::square(side));
            let m = triangle_matrix(28, side);
            for k in 0..20 {
                let ours = apply(raw.image(k), &m, &m, (28, 28), (side, side));
                let max = ours
                    .iter()
                    .zip(resized.image(k))
                    .map(|(a, &b)| (a - f64::from(b)).abs())
                    .fold(0.0, f64::max);
                assert!(max <= 0.5 + 1e-3, "side {side}, image {k}: {max}");
            }
        }
    }

    #[test]
    fn left_inverse_is_a_left_inverse() {
        for n in [29, 32, 64] {
            let u = triangle_matrix(28, n);
            let p = left_inverse(&u, n, 28).unwrap();
            for a in 0..28 {
                for b in 0..28 {
                    let v: f64 = (0..n).map(|r| p[a * n + r] * u[r * 28 + b]).sum();
                    let want = if a == b { 1.0 } else { 0.0 };
                    assert!((v - want).abs() < 1e-10, "n={n} ({a},{b}): {v}");
                }
            }
        }
        // Rank-deficient input is refused, not inverted.
        assert!(left_inverse(&[1.0, 1.0, 1.0, 1.0], 2, 2).is_none());
    }

    #[test]
    fn ddpm_data_32_mnist_maps_back_to_the_28_originals() {
        let raw = load(ImageSize::square(28));
        let up = load(ImageSize::square(32));
        let n = 16;
        let scale = |v: &[u8]| {
            v.iter()
                .map(|&b| ddpm_data::scale_to_model_range(b))
                .collect::<Vec<_>>()
        };
        let x32 = Tensor::<B, 4>::from_data(
            TensorData::new(scale(&up.as_bytes()[..n * 1024]), [n, 1, 32, 32]),
            &Default::default(),
        );
        let back = to_digit_input(x32).into_data().to_vec::<f32>().unwrap();
        let want = scale(&raw.as_bytes()[..n * 784]);
        let (mut max, mut sq) = (0f64, 0f64);
        for (a, b) in back.iter().zip(&want) {
            let d = f64::from(a - b).abs() * 127.5; // in u8 steps
            max = max.max(d);
            sq += d * d;
        }
        let rms = (sq / want.len() as f64).sqrt();
        // Measured 2.2 / 0.23 u8 steps (rounding of the 32 × 32 file, amplified ≤ 2×).
        assert!(max < 3.0 && rms < 0.35, "max {max}, rms {rms}");
    }

    #[test]
    fn luma_and_identity_paths() {
        let device = Default::default();
        let grey: Vec<f32> = (0..2 * 28 * 28)
            .map(|i| ((i % 97) as f32 / 48.0) - 1.0)
            .collect();
        let g = Tensor::<B, 4>::from_data(TensorData::new(grey.clone(), [2, 1, 28, 28]), &device);
        assert_eq!(
            to_digit_input(g.clone())
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
            grey
        );
        let rgb = to_digit_input(g.clone().repeat_dim(1, 3))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (a, b) in rgb.iter().zip(&grey) {
            assert!((a - b).abs() < 1e-6);
        }
        // A pure red image has luma 0.2126 · r + 0.7152 · (−1) + 0.0722 · (−1) at r = 1.
        let mut red = vec![-1f32; 3 * 28 * 28];
        red[..784].fill(1.0);
        let y = to_digit_input(Tensor::<B, 4>::from_data(
            TensorData::new(red, [1, 3, 28, 28]),
            &device,
        ));
        let v = y.into_data().to_vec::<f32>().unwrap()[0];
        assert!((v - (0.2126 - 0.7152 - 0.0722)).abs() < 1e-6, "{v}");
    }
}
