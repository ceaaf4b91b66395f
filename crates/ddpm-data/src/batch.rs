//! [`Batch`]: images scaled to [-1, 1] (Ho et al. 2020, §3.3), ready for the device.

use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::BatchIterState;

/// The value of pixel byte `v` in the model's data space:
///
/// x = 2 · (v / 255) − 1   (Ho et al. 2020, arXiv:2006.11239v2, §3.3, before Eq. 13)
///
/// so 0 ↦ −1 and 255 ↦ 1 exactly (both are exact in `f32`).
#[doc(alias = "normalize")]
pub fn scale_to_model_range(v: u8) -> f32 {
    SCALE[v as usize]
}

/// `scale_to_model_range` for every byte, computed once at compile time.
const SCALE: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut v = 0;
    while v < 256 {
        t[v] = 2.0 * (v as f32 / 255.0) - 1.0;
        v += 1;
    }
    t
};

/// Writes one C × H × W image scaled to [-1, 1] into `out`, mirrored left–right if `flip`.
pub(crate) fn write_scaled(out: &mut Vec<f32>, img: &[u8], width: usize, flip: bool) {
    if flip {
        for row in img.chunks_exact(width) {
            out.extend(row.iter().rev().map(|&v| SCALE[v as usize]));
        }
    } else {
        out.extend(img.iter().map(|&v| SCALE[v as usize]));
    }
}

/// A batch of training images x₀ in [-1, 1].
///
/// # Shapes
/// `images`: `shape = [batch, channels, height, width]`, row-major (N × C × H × W).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Pixel values 2 · (v / 255) − 1, N × C × H × W.
    pub images: Vec<f32>,
    /// `[batch, channels, height, width]`.
    pub shape: [usize; 4],
    /// The dataset index of each image.
    pub indices: Vec<usize>,
    /// Whether each image was mirrored left–right.
    pub flipped: Vec<bool>,
    /// Where this batch starts: its epoch and the position of its first image in the
    /// epoch's order.
    pub position: BatchIterState,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether the batch holds no image (never the case for a batch from [`BatchIter`](crate::BatchIter)).
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// Copies the images to `device`.
    ///
    /// # Shapes
    /// Output: `[batch, channels, height, width]`.
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(self.images.clone(), self.shape), device)
    }

    /// Moves the images to `device` without copying them on the host first.
    ///
    /// # Shapes
    /// Output: `[batch, channels, height, width]`.
    pub fn into_tensor<B: Backend>(self, device: &B::Device) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(self.images, self.shape), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_is_exact_at_the_ends_and_monotone() {
        assert_eq!(scale_to_model_range(0), -1.0);
        assert_eq!(scale_to_model_range(255), 1.0);
        assert!((scale_to_model_range(128) - 0.003_921_628).abs() < 1e-7);
        for v in 0..255u8 {
            assert!(scale_to_model_range(v) < scale_to_model_range(v + 1));
        }
    }

    #[test]
    fn flip_mirrors_each_row() {
        // 2 channels of 2×3.
        let img = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        let mut out = Vec::new();
        write_scaled(&mut out, &img, 3, true);
        let back: Vec<u8> = out
            .iter()
            .map(|&x| ((x + 1.0) / 2.0 * 255.0).round() as u8)
            .collect();
        assert_eq!(back, vec![2, 1, 0, 5, 4, 3, 8, 7, 6, 11, 10, 9]);
    }

    #[test]
    fn to_tensor_keeps_shape_and_values() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let batch = Batch {
            images: vec![-1.0, 0.0, 0.5, 1.0],
            shape: [1, 1, 2, 2],
            indices: vec![0],
            flipped: vec![false],
            position: BatchIterState::default(),
        };
        let t = batch.to_tensor::<B>(&device);
        assert_eq!(t.dims(), [1, 1, 2, 2]);
        assert_eq!(t.into_data().to_vec::<f32>().unwrap(), batch.images);
        assert_eq!(batch.clone().into_tensor::<B>(&device).dims(), [1, 1, 2, 2]);
    }
}
