//! Bilinear resize with PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`
//! semantics (no antialiasing), as pytorch-fid resizes every image to 299×299.
//!
//! For each output row `o` of `out` from an input of `in` rows (columns alike):
//! `src = max(0, (o + ½) · in/out − ½)`, `i₀ = ⌊src⌋`, `i₁ = min(i₀ + 1, in − 1)`,
//! `λ = src − i₀`, `y[o] = (1 − λ) · x[i₀] + λ · x[i₁]` (ATen's `upsample_bilinear2d`,
//! `area_pixel_compute_source_index`). Bilinear interpolation is separable, so the resize is two
//! matrix products `R_h · x · R_wᵀ` with `R` built on the host: the same numbers on every
//! backend, whatever its own `interpolate` does.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The `[out, in]` interpolation matrix along one axis (weights in f64, rounded once).
pub(crate) fn bilinear_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    let mut m = vec![0.0f64; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for o in 0..n_out {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        // `src` ≤ in − ½, so `i0` is a valid index.
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let lambda = src - i0 as f64;
        m[o * n_in + i0] += 1.0 - lambda;
        m[o * n_in + i1] += lambda;
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// Resizes `[N, C, H, W]` to `[N, C, size[0], size[1]]` (bilinear, `align_corners=False`).
///
/// # Panics
/// If `H` or `W` is 0 (callers check image shapes first).
pub fn resize_bilinear<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    assert!(h > 0 && w > 0, "resize_bilinear: empty image {h}×{w}");
    let device = x.device();
    let [oh, ow] = size;
    // x · R_wᵀ: [N, C, H, W] · [W, OW] → [N, C, H, OW].
    let rw = bilinear_matrix(w, ow);
    let mut rwt = vec![0.0f32; w * ow];
    for o in 0..ow {
        for i in 0..w {
            rwt[i * ow + o] = rw[o * w + i];
        }
    }
    let rwt = Tensor::<B, 2>::from_data(TensorData::new(rwt, [w, ow]), &device);
    let x = x
        .reshape([n * c * h, w])
        .matmul(rwt)
        .reshape([n * c, h, ow]);
    // R_h · x: [OH, H] · [N·C, H, OW] → [N·C, OH, OW].
    let rh = Tensor::<B, 2>::from_data(TensorData::new(bilinear_matrix(h, oh), [oh, h]), &device);
    let rh = rh.unsqueeze_dim::<3>(0).expand([n * c, oh, h]);
    rh.matmul(x).reshape([n, c, oh, ow])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same size: the identity. Upsampling by 2: PyTorch's ¼/¾ weights, edges clamped.
    #[test]
    fn matrix_weights() {
        let id = bilinear_matrix(5, 5);
        for o in 0..5 {
            for i in 0..5 {
                assert_eq!(id[o * 5 + i], if o == i { 1.0 } else { 0.0 });
            }
        }
        let up = bilinear_matrix(2, 4);
        // src = (o + ½)/2 − ½ = −¼ (→ 0), ¼, ¾, 5/4 (i0 = 1, i1 clamped to 1).
        let expected = [1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0];
        assert_eq!(up, expected);
        for o in 0..7 {
            let row: f32 = bilinear_matrix(3, 7)[o * 3..o * 3 + 3].iter().sum();
            assert!((row - 1.0).abs() < 1e-7);
        }
    }
}
