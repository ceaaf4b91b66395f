//! What a sampler does to the predicted x̂₀ before using it: clipping to a range (the original
//! DDPM code and diffusers), or Imagen's dynamic thresholding (Saharia et al. 2022,
//! arXiv:2205.11487v1, §2.3). The one place these live; every sampler calls
//! [`X0ProcessingConfig::apply`].
//!
//! NOTE: clipping x̂₀ is not part of Algorithm 2 of Ho et al. 2020; it comes from their code
//! (`clip_denoised=True`), which computes the step's mean through x̂₀.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};

use crate::SamplerError;

/// How x̂₀ is post-processed at every step. Dynamic thresholding wins over clipping when both
/// are on (as in diffusers).
#[derive(Config, Debug, PartialEq)]
pub struct X0ProcessingConfig {
    /// Clip x̂₀ to ±`clip_sample_range` (original code; diffusers' `clip_sample`, default true
    /// for DDPM and DDIM).
    #[config(default = true)]
    pub clip_sample: bool,
    /// The clip range; 1.0 for data scaled to [−1, 1] (diffusers' `clip_sample_range`).
    #[config(default = 1.0)]
    pub clip_sample_range: f64,
    /// Dynamic thresholding (Saharia et al. 2022, §2.3; diffusers' `thresholding`, default
    /// false): per sample, s = clamp(quantile(|x̂₀|, ratio), 1, `sample_max_value`), then
    /// x̂₀ ← clamp(x̂₀, −s, s) / s.
    #[config(default = false)]
    pub thresholding: bool,
    /// The percentile of |x̂₀| used as threshold (Imagen: 0.995).
    #[config(default = 0.995)]
    pub dynamic_thresholding_ratio: f64,
    /// Upper bound of the dynamic threshold (diffusers' `sample_max_value`, 1.0).
    #[config(default = 1.0)]
    pub sample_max_value: f64,
}

impl X0ProcessingConfig {
    /// No clipping and no thresholding (DPM-Solver's default, and DDIM inversion).
    pub fn none() -> Self {
        Self::new().with_clip_sample(false)
    }

    /// Clip to ±`range`.
    pub fn clip(range: f64) -> Self {
        Self::new().with_clip_sample_range(range)
    }

    /// Imagen's dynamic thresholding with the given percentile and maximum threshold.
    pub fn dynamic_threshold(ratio: f64, max_value: f64) -> Self {
        Self::new()
            .with_clip_sample(false)
            .with_thresholding(true)
            .with_dynamic_thresholding_ratio(ratio)
            .with_sample_max_value(max_value)
    }

    /// Checks the ranges: clip range > 0, 0 < ratio ≤ 1, max value ≥ 1.
    ///
    /// # Errors
    /// [`SamplerError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let bad = |field, value, expected| {
            Err(SamplerError::InvalidParameter {
                field,
                value,
                expected,
            })
        };
        if self.clip_sample && !(self.clip_sample_range.is_finite() && self.clip_sample_range > 0.0)
        {
            return bad(
                "clip_sample_range",
                self.clip_sample_range,
                "a finite range > 0",
            );
        }
        if self.thresholding {
            let r = self.dynamic_thresholding_ratio;
            if !(r > 0.0 && r <= 1.0) {
                return bad("dynamic_thresholding_ratio", r, "0 < ratio <= 1");
            }
            let m = self.sample_max_value;
            if !(m.is_finite() && m >= 1.0) {
                return bad("sample_max_value", m, "a finite value >= 1");
            }
        }
        Ok(())
    }

    /// Applies thresholding or clipping to x̂₀ (identity when both are off).
    ///
    /// # Shapes
    /// `x_0`: `[batch, C, H, W]`; the threshold is per sample.
    pub fn apply<B: Backend>(&self, x_0: Tensor<B, 4>) -> Tensor<B, 4> {
        if self.thresholding {
            dynamic_threshold(x_0, self.dynamic_thresholding_ratio, self.sample_max_value)
        } else if self.clip_sample {
            let r = self.clip_sample_range;
            x_0.clamp(-r, r)
        } else {
            x_0
        }
    }
}

/// s = clamp(quantile(|x|, ratio), 1, max) per sample, x ← clamp(x, −s, s)/s; the quantile
/// interpolates linearly between order statistics, like `torch.quantile`.
fn dynamic_threshold<B: Backend>(x: Tensor<B, 4>, ratio: f64, max_value: f64) -> Tensor<B, 4> {
    let dims = x.dims();
    let (b, n) = (dims[0], dims[1] * dims[2] * dims[3]);
    let flat: Tensor<B, 2> = x.reshape([b, n]);
    let sorted = flat.clone().abs().sort(1);
    // Position of the quantile: computed on the host, no device read.
    let pos = ratio * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    let v_lo = sorted.clone().narrow(1, lo, 1);
    let v_hi = sorted.narrow(1, hi, 1);
    let s = (v_lo.clone() + (v_hi - v_lo).mul_scalar(frac)).clamp(1.0, max_value);
    let s = s.expand([b, n]);
    let clipped = flat.max_pair(s.clone().neg()).min_pair(s.clone());
    (clipped / s).reshape(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    type B = Flex;

    #[test]
    fn clip_and_identity() {
        let device = Default::default();
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(vec![-3.0f32, -0.5, 0.5, 3.0], [1, 1, 2, 2]),
            &device,
        );
        let clipped = X0ProcessingConfig::clip(1.0).apply(x.clone());
        assert_eq!(
            clipped.to_data().to_vec::<f32>().unwrap(),
            [-1.0, -0.5, 0.5, 1.0]
        );
        let same = X0ProcessingConfig::none().apply(x);
        assert_eq!(
            same.to_data().to_vec::<f32>().unwrap(),
            [-3.0, -0.5, 0.5, 3.0]
        );
    }

    #[test]
    fn dynamic_threshold_matches_torch_quantile() {
        // Sample 0: |x| = 0..=99 / 10 → quantile(0.995) = 9.8505; s = min(9.8505, 2) = 2.
        // Sample 1: all |x| ≤ 0.5 → s = clamp(·, 1, 2) = 1, plain clipping to [−1, 1].
        let device = Default::default();
        let mut v: Vec<f32> = (0..100).map(|i| i as f32 / 10.0).collect();
        v.extend((0..100).map(|i| (i as f32 - 50.0) / 100.0));
        let x = Tensor::<B, 4>::from_data(TensorData::new(v.clone(), [2, 1, 10, 10]), &device);
        let out = X0ProcessingConfig::dynamic_threshold(0.995, 2.0)
            .apply(x)
            .to_data()
            .to_vec::<f32>()
            .unwrap();
        for i in 0..100 {
            let expect = v[i].clamp(-2.0, 2.0) / 2.0;
            assert!(
                (out[i] - expect).abs() < 1e-6,
                "{i}: {} vs {expect}",
                out[i]
            );
            assert!((out[100 + i] - v[100 + i]).abs() < 1e-6);
        }
        // With a large max value, s is the interpolated quantile itself.
        let x =
            Tensor::<B, 4>::from_data(TensorData::new(v[..100].to_vec(), [1, 1, 10, 10]), &device);
        let out = X0ProcessingConfig::dynamic_threshold(0.995, 100.0)
            .apply(x)
            .to_data()
            .to_vec::<f32>()
            .unwrap();
        let s = 9.8 + 0.505 * 0.1; // torch.quantile(arange(100)/10, 0.995)
        assert!((out[99] - 1.0).abs() < 1e-6);
        assert!((out[50] - 5.0 / s as f32).abs() < 1e-5);
    }

    #[test]
    fn validation_names_the_field() {
        let e = X0ProcessingConfig::dynamic_threshold(1.5, 1.0)
            .validate()
            .unwrap_err();
        assert!(
            e.to_string().contains("dynamic_thresholding_ratio is 1.5"),
            "{e}"
        );
        let e = X0ProcessingConfig::clip(0.0).validate().unwrap_err();
        assert!(e.to_string().contains("clip_sample_range"), "{e}");
        assert!(X0ProcessingConfig::none().validate().is_ok());
    }
}
