//! Weights files that are not the plain f32 safetensors this crate writes: f16 / bf16 / f64
//! tensors (diffusers ships `diffusion_pytorch_model.fp16.safetensors`) are converted to the
//! model's f32 at load; integer and boolean tensors, truncated files and configs that are not
//! JSON objects are refused with an error naming the file (and the tensor).
//!
//! The files are the tiny fixture re-encoded here, byte by byte in safetensors' layout (8-byte
//! little-endian header length, JSON header, raw data).

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Tensor, TensorData};
use common::*;
use ddpm_unet::{DIFFUSERS_CONFIG, DIFFUSERS_SAFETENSORS, ImportError, Unet, UnetConfig};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-unet-foreign-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `encode(key, f32 tensor) -> (raw bytes, safetensors dtype name)`.
type Encode<'a> = &'a dyn Fn(&str, TensorData) -> (Vec<u8>, &'static str);

/// Writes the tiny fixture's model into `dir` with each tensor re-encoded by `encode`.
fn reencode(dir: &Path, encode: Encode<'_>) {
    std::fs::copy(
        fixture("unet_tiny").join(DIFFUSERS_CONFIG),
        dir.join(DIFFUSERS_CONFIG),
    )
    .unwrap();
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (key, tensor) in read_tensors("unet_tiny/diffusion_pytorch_model.safetensors") {
        let shape = tensor.shape.to_vec();
        let (bytes, dtype) = encode(&key, tensor);
        let begin = data.len();
        data.extend(bytes);
        header.insert(
            key,
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header.as_bytes());
    file.extend(data);
    std::fs::write(dir.join(DIFFUSERS_SAFETENSORS), file).unwrap();
}

/// Every tensor in `dtype` (`name` in safetensors' spelling), optionally rounded through it
/// and written back as f32 (`round_trip_to_f32`).
fn all_in(dir: &Path, dtype: DType, name: &'static str, round_trip_to_f32: bool) {
    reencode(dir, &|_, t| {
        let t = t.convert_dtype(dtype);
        if round_trip_to_f32 {
            (t.convert_dtype(DType::F32).as_bytes().to_vec(), "F32")
        } else {
            (t.as_bytes().to_vec(), name)
        }
    });
}

fn output(unet: &Unet<TestBackend>, device: &Device) -> Tensor<TestBackend, 4> {
    let io = unet_io(device);
    unet.forward(io.x, io.t)
}

#[test]
fn half_and_double_precision_weights_are_converted_to_f32_at_load() {
    let device: Device = Default::default();
    let f32_model = Unet::<TestBackend>::from_diffusers(fixture("unet_tiny"), &device).unwrap();
    let want = output(&f32_model, &device);
    // Largest |ε̂ − ε̂_f32| allowed: f64 holds f32 exactly; f16 keeps 11 significant bits, bf16 8.
    for (dtype, name, tolerance) in [
        (DType::F64, "F64", 0.0),
        (DType::F16, "F16", 2e-3),
        (DType::BF16, "BF16", 2e-2),
    ] {
        let dir = temp_dir(name);
        all_in(&dir, dtype, name, false);
        let unet = Unet::<TestBackend>::from_diffusers(&dir, &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(unet.conv_in.weight.val().dtype(), DType::F32, "{name}");
        let got = output(&unet, &device);
        assert_eq!(got.dtype(), DType::F32, "{name}");
        let diff = max_abs_diff(name, got.clone().into_data(), &want.clone().into_data());
        assert!(diff <= tolerance, "{name}: max |diff| {diff} > {tolerance}");
        // Exactly the model whose f32 weights went through the same rounding.
        let rounded = temp_dir(&format!("{name}-rounded"));
        all_in(&rounded, dtype, name, true);
        let reference = Unet::<TestBackend>::from_diffusers(&rounded, &device).unwrap();
        assert_eq!(
            got.into_data(),
            output(&reference, &device).into_data(),
            "{name}"
        );
        if dtype != DType::F64 {
            assert!(diff > 0.0, "{name}: the rounding should show");
        }
        for d in [dir, rounded] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

#[test]
fn integer_and_bool_tensors_are_refused_by_name() {
    let device: Device = Default::default();
    // conv_in.bias relabelled I32 (same 4 bytes per value), conv_out.weight as BOOL bytes.
    for (key, dtype) in [("conv_in.bias", "I32"), ("conv_out.weight", "BOOL")] {
        let dir = temp_dir(dtype);
        reencode(&dir, &|k, t| {
            if k != key {
                (t.as_bytes().to_vec(), "F32")
            } else if dtype == "I32" {
                (t.as_bytes().to_vec(), "I32")
            } else {
                (vec![1u8; t.num_elements()], "BOOL")
            }
        });
        let err = Unet::<TestBackend>::from_diffusers(&dir, &device).unwrap_err();
        match &err {
            ImportError::UnsupportedDtype {
                key: k, dtype: d, ..
            } => {
                assert_eq!((k.as_str(), d.as_str()), (key, dtype));
            }
            other => panic!("{dtype}: {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(key) && msg.contains(dtype) && msg.contains(DIFFUSERS_SAFETENSORS),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_truncated_weights_file_is_named_with_both_sizes() {
    let dir = temp_dir("truncated");
    reencode(&dir, &|_, t| (t.as_bytes().to_vec(), "F32"));
    let file = dir.join(DIFFUSERS_SAFETENSORS);
    let bytes = std::fs::read(&file).unwrap();
    let full = bytes.len() as u64;
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = Unet::<TestBackend>::from_diffusers(&dir, &Default::default()).unwrap_err();
    match &err {
        ImportError::Truncated {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, &file);
            assert_eq!((*expected, *actual), (full, full / 2));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("is truncated"), "{err}");
    // An empty file is truncated too (it lacks even the header length).
    std::fs::write(&file, b"").unwrap();
    let err = Unet::<TestBackend>::from_diffusers(&dir, &Default::default()).unwrap_err();
    assert!(
        matches!(err, ImportError::Truncated { actual: 0, .. }),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_config_that_is_not_an_object_is_refused_by_name() {
    let device: Device = Default::default();
    let dir = temp_dir("array");
    reencode(&dir, &|_, t| (t.as_bytes().to_vec(), "F32"));
    for (json, found) in [("[]", "an array"), ("null", "null"), ("7", "a number")] {
        std::fs::write(dir.join(DIFFUSERS_CONFIG), json).unwrap();
        let err = Unet::<TestBackend>::from_diffusers(&dir, &device).unwrap_err();
        assert!(
            matches!(&err, ImportError::NotAnObject { found: f, .. } if *f == found),
            "{json}: {err}"
        );
        assert!(err.to_string().contains("config.json"), "{err}");
    }
    // The native config likewise.
    let native = temp_dir("native-array");
    UnetConfig::tiny()
        .init::<TestBackend>(&device)
        .unwrap()
        .save(&native)
        .unwrap();
    std::fs::write(native.join(ddpm_unet::NATIVE_CONFIG), "[]").unwrap();
    let err = Unet::<TestBackend>::load(&native, &device).unwrap_err();
    assert!(matches!(err, ImportError::NotAnObject { .. }), "{err}");
    assert!(err.to_string().contains("unet_config.json"), "{err}");
    for d in [dir, native] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn absurd_sizes_are_refused_before_allocation() {
    let err = UnetConfig::tiny()
        .with_block_out_channels(vec![1 << 20, 1 << 20])
        .init::<TestBackend>(&Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("block_out_channels[0]"), "{err}");
    // Sizes each under their limit whose total is beyond MAX_PARAMS.
    let err = UnetConfig::tiny()
        .with_block_out_channels(vec![8192, 8192])
        .with_layers_per_block(8)
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("`parameters`"), "{err}");
    let err = UnetConfig::tiny()
        .with_sample_size(1 << 40)
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("sample_size"), "{err}");
}
