//! Channel concatenation of NCHW images and its adjoint, on plain `f32` slices: each image's
//! channels are one contiguous block, so both are two block copies per image.

use rayon::prelude::*;

/// `[a[0], b[0], a[1], b[1], …]` for `n` images of `len_a` and `len_b` elements.
pub(crate) fn cat_channels(a: &[f32], b: &[f32], n: usize, len_a: usize, len_b: usize) -> Vec<f32> {
    let mut y = super::buf::uninit(n * (len_a + len_b));
    if y.is_empty() {
        return Vec::new();
    }
    y.par_chunks_mut(len_a + len_b)
        .enumerate()
        .for_each(|(i, out)| {
            let (out_a, out_b) = out.split_at_mut(len_a);
            for (d, &v) in out_a.iter_mut().zip(&a[i * len_a..][..len_a]) {
                d.write(v);
            }
            for (d, &v) in out_b.iter_mut().zip(&b[i * len_b..][..len_b]) {
                d.write(v);
            }
        });
    // SAFETY: the chunks partition `y` and each was written in full (a's part, then b's).
    unsafe { super::buf::assume_init(y) }
}

/// The adjoint of [`cat_channels`]: `(da, db)` from the concatenation's gradient.
pub(crate) fn split_channels(
    dy: &[f32],
    n: usize,
    len_a: usize,
    len_b: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut da = Vec::with_capacity(n * len_a);
    let mut db = Vec::with_capacity(n * len_b);
    for img in dy.chunks_exact(len_a + len_b).take(n) {
        da.extend_from_slice(&img[..len_a]);
        db.extend_from_slice(&img[len_a..]);
    }
    (da, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cat_then_split_round_trips() {
        let a: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let b: Vec<f32> = (0..6).map(|v| 100.0 + v as f32).collect();
        let y = cat_channels(&a, &b, 2, 6, 3);
        assert_eq!(&y[..9], &[0., 1., 2., 3., 4., 5., 100., 101., 102.]);
        assert_eq!(&y[9..], &[6., 7., 8., 9., 10., 11., 103., 104., 105.]);
        assert_eq!(split_channels(&y, 2, 6, 3), (a, b));
    }
}
