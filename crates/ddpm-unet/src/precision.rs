//! Reduced-precision inference: the U-Net's weights and activations in f16 or bf16 on GPU
//! backends (wgpu/Vulkan/Metal, CUDA), with the caller's tensors left in f32.
//!
//! [`Unet::with_precision`] casts every parameter once; [`Unet::forward`] then casts x_t to the
//! weights' type on the way in and ε̂ back to x_t's type on the way out, and the time embedding
//! sin(t·ω), cos(t·ω) is computed in f32 and cast afterwards, as diffusers does
//! (`t_emb.to(dtype=self.dtype)`): in f16, t·ω near t = 1000 would be rounded to a multiple of
//! 0.5. A sampler (and its noise, its x_t, its f64 coefficients) therefore keeps running in f32
//! around a half-precision network.
//!
//! NOTE: diffusers' `torch_dtype=torch.float16` pipelines keep x_t itself in f16; ours keeps it
//! in f32, so the deviation from f32 comes from the network alone. Training stays f32: mixed
//! precision with f32 master weights would need a cast of every weight inside the forward pass
//! and loss scaling, which Burn 0.21 does not provide as a module-level switch.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Unet, UnetError};

/// Floating-point format of a U-Net's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE single precision (every backend; training and the reference results).
    #[default]
    F32,
    /// IEEE half precision: 11-bit significand, range ±65504 (GPU backends).
    F16,
    /// bfloat16: 8-bit significand, f32's range (GPU backends that support it; not Vulkan
    /// through wgpu 29).
    Bf16,
}

impl Precision {
    /// The names accepted by [`str::parse`].
    pub const NAMES: &'static str = "f32, f16, bf16";

    /// Burn's float type for this precision.
    pub fn dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
            Self::Bf16 => FloatDType::BF16,
        }
    }

    /// `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    /// The precision of a float dtype, `None` for other types (f64, quantized, ...).
    pub fn of(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F32 => Some(Self::F32),
            DType::F16 => Some(Self::F16),
            DType::BF16 => Some(Self::Bf16),
            _ => None,
        }
    }

    /// Whether backend `B` can run the U-Net in this precision on `device`.
    pub fn is_supported<B: Backend>(self, device: &B::Device) -> bool {
        B::supports_dtype(device, self.dtype().into())
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = UnetError;

    fn from_str(s: &str) -> Result<Self, UnetError> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(UnetError::UnknownPrecision {
                name: s.to_string(),
            }),
        }
    }
}

/// Casts every float parameter to one dtype.
struct CastParams(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

impl<B: Backend> Unet<B> {
    /// The model with every parameter cast to `precision`. [`Unet::forward`] keeps taking and
    /// returning the caller's float type (usually f32); only the network runs in `precision`.
    ///
    /// # Errors
    ///
    /// [`UnetError::UnsupportedPrecision`] when the backend cannot compute in `precision` on
    /// the model's device (e.g. bf16 on Vulkan). Flex (CPU) accepts f16 and bf16 but runs
    /// them through Burn's generic ops, slower than its f32 kernels: half precision is for GPUs.
    pub fn with_precision(self, precision: Precision) -> Result<Self, UnetError> {
        let device = self.conv_in.weight.lazy_device();
        if !precision.is_supported::<B>(&device) {
            return Err(UnetError::UnsupportedPrecision {
                precision,
                backend: B::name(&device),
                hint: match precision {
                    Precision::Bf16 => " or f16 (bf16 needs CUDA, Metal or the CPU backend)",
                    _ => "",
                },
            });
        }
        Ok(self.map(&mut CastParams(precision.dtype())))
    }

    /// The precision the weights are stored and computed in.
    pub fn precision(&self) -> Precision {
        Precision::of(self.conv_in.weight.val().dtype()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UnetConfig;

    #[test]
    fn names_parse_and_print() {
        for p in [Precision::F32, Precision::F16, Precision::Bf16] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::F16);
        let err = "f8".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("unknown precision `f8`"), "{err}");
    }

    #[test]
    fn casting_changes_the_weights_type_not_the_callers() {
        use burn::tensor::{Int, TensorData};
        type B = burn::backend::Flex;
        let device = Default::default();
        let unet = UnetConfig::tiny().init::<B>(&device).unwrap();
        assert_eq!(unet.precision(), Precision::F32);
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(
                (0..768).map(|i| (i as f32 * 0.37).sin()).collect(),
                [1, 3, 16, 16],
            ),
            &device,
        );
        let t = Tensor::<B, 1, Int>::from_ints([700], &device);
        let want = unet
            .forward(x.clone(), t.clone())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let half = unet.with_precision(Precision::F16).unwrap();
        assert_eq!(half.precision(), Precision::F16);
        assert_eq!(
            half.conv_out.bias.as_ref().unwrap().val().dtype(),
            DType::F16
        );
        let out = half.forward(x, t);
        assert_eq!(out.dtype(), DType::F32, "ε̂ comes back in the caller's type");
        let got = out.into_data().to_vec::<f32>().unwrap();
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let dev = got
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        // f16 keeps ~3 decimal digits: the output moves, but by far less than its scale.
        assert!(
            dev > 0.0 && dev < 2e-2 * scale,
            "max |f16 − f32| = {dev} (scale {scale})"
        );
    }
}
