//! Test-only helpers shared by the workspace's integration tests (never a dependency of a
//! library): read the diffusers fixtures (`NAME.json` + `NAME.safetensors`, see
//! `docs/fixtures.md`) and compare tensors with the fixture tolerances.
#![warn(missing_docs)]

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use serde_json::Value;

/// Reads a JSON fixture.
///
/// # Panics
/// If the file is missing or not JSON (tests only).
pub fn load_json(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A host tensor read from a fixture: shape and row-major `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values (int64 fixtures are converted to f32 exactly when small).
    pub values: Vec<f32>,
}

impl HostTensor {
    /// Uploads to `device` as a `D`-dimensional float tensor.
    ///
    /// # Panics
    /// If `D` differs from the stored rank.
    pub fn to_tensor<B: Backend, const D: usize>(&self, device: &B::Device) -> Tensor<B, D> {
        assert_eq!(
            self.shape.len(),
            D,
            "fixture tensor rank {:?} vs {D}",
            self.shape
        );
        Tensor::from_data(
            TensorData::new(self.values.clone(), self.shape.clone()),
            device,
        )
    }
}

/// Reads every tensor of a `.safetensors` fixture (f32, f64 and i64 are accepted; stored as f32).
///
/// # Panics
/// If the file is missing or malformed (tests only).
pub fn load_safetensors(path: impl AsRef<Path>) -> HashMap<String, HostTensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                safetensors::Dtype::F64 => data
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                safetensors::Dtype::I64 => data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                other => panic!("{}: {name} has unsupported dtype {other:?}", path.display()),
            };
            (
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    values,
                },
            )
        })
        .collect()
}

/// Reads a JSON array `{"shape", "dtype", "data"}` or a plain list of numbers as `f64`s.
pub fn json_f64s(v: &Value) -> Vec<f64> {
    let list = if v.get("data").is_some() {
        &v["data"]
    } else {
        v
    };
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

/// Largest |a − b| over two equally long slices, with its index.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| ((x - y).abs(), i))
        .fold(
            (0.0, 0),
            |acc, x| if x.0 > acc.0 || x.0.is_nan() { x } else { acc },
        )
}

/// A tensor's values on the host as `f32`.
pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("float tensor")
}

/// Asserts |ours − reference| ≤ atol + rtol · |reference| elementwise; returns the largest
/// absolute deviation.
///
/// # Panics
/// With `what`, the worst index and both values when the tolerance is exceeded.
pub fn assert_close(what: &str, ours: &[f32], reference: &[f32], atol: f32, rtol: f32) -> f32 {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let dev = (a - b).abs();
        assert!(
            dev <= atol + rtol * b.abs(),
            "{what}: index {i}: ours {a} vs reference {b} (|Δ| = {dev:e}, atol {atol:e}, rtol {rtol:e})"
        );
        worst = worst.max(dev);
    }
    worst
}
