//! The tiny diffusers U-Net in f16 and bf16 (`Unet::with_precision`) against diffusers' f32
//! output, on Flex: the deviation half precision costs, measured where every CI run can see it
//! (run with `--nocapture`). The GPU set (`crates/ddpm-gpu-tests`) measures the same on the GPU
//! and through sampling loops.

mod common;

use common::*;
use ddpm_unet::{Precision, Unet};

/// Max |ε̂ − diffusers| of the fixture output in `precision`, and max |diffusers|.
fn deviation(precision: Precision) -> (f32, f32) {
    let device = Default::default();
    let unet = Unet::<TestBackend>::from_diffusers(fixture("unet_tiny"), &device)
        .unwrap()
        .with_precision(precision)
        .unwrap();
    assert_eq!(unet.precision(), precision);
    let io = unet_io(&device);
    let out = unet.forward(io.x, io.t);
    assert_eq!(out.dtype(), burn::tensor::DType::F32);
    let want = &io.tensors["case0/output"];
    let scale = want
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    (max_abs_diff("output", out.into_data(), want), scale)
}

#[test]
fn half_precision_deviation_from_diffusers_f32() {
    let (f32_dev, scale) = deviation(Precision::F32);
    let (f16_dev, _) = deviation(Precision::F16);
    let (bf16_dev, _) = deviation(Precision::Bf16);
    eprintln!(
        "tiny U-Net on Flex, max |ε̂ − diffusers f32| (|ε̂| ≤ {scale:.2}): f32 {f32_dev:.1e}, \
         f16 {f16_dev:.1e}, bf16 {bf16_dev:.1e}"
    );
    assert!(f32_dev <= 1e-4);
    // Rounding to 11 (f16) or 8 (bf16) significant bits per operation, through ~40 layers.
    assert!(f16_dev > f32_dev && f16_dev <= 1e-2, "f16: {f16_dev:e}");
    assert!(bf16_dev > f16_dev && bf16_dev <= 6e-2, "bf16: {bf16_dev:e}");
}
