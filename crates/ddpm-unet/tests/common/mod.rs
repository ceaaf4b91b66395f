//! Shared helpers of the integration tests: fixture paths and a safetensors reader.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Int, Tensor, TensorData};
use burn_store::{ModuleStore, SafetensorsStore};

pub type TestBackend = burn::backend::Flex;
pub type Device = <TestBackend as burn::tensor::backend::BackendTypes>::Device;

/// A file under `tests/fixtures/` (copied from the shared diffusers fixtures, diffusers 0.42.1,
/// PyTorch 2.15; see `docs/fixtures.md`).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every tensor of a safetensors file, by name.
pub fn read_tensors(name: &str) -> BTreeMap<String, TensorData> {
    let mut store = SafetensorsStore::from_file(fixture(name));
    store
        .get_all_snapshots()
        .expect("readable fixture")
        .iter()
        .map(|(k, s)| (k.clone(), s.to_data().expect("tensor data")))
        .collect()
}

/// The parity fixture: (x, timesteps, named activations).
pub struct UnetIo {
    pub x: Tensor<TestBackend, 4>,
    pub t: Tensor<TestBackend, 1, Int>,
    pub tensors: BTreeMap<String, TensorData>,
}

pub fn unet_io(device: &Device) -> UnetIo {
    let tensors = read_tensors("unet_tiny_io.safetensors");
    let x = Tensor::from_data(tensors["case0/x"].clone(), device);
    let ts: Vec<i64> = tensors["case0/timesteps"]
        .to_vec()
        .expect("int64 timesteps");
    let n = ts.len();
    let t = Tensor::from_data(TensorData::new(ts, [n]), device);
    UnetIo { x, t, tensors }
}

/// Largest |a − b|, panicking on a shape mismatch.
pub fn max_abs_diff(name: &str, got: TensorData, want: &TensorData) -> f32 {
    assert_eq!(got.shape, want.shape, "{name}: shape");
    let got: Vec<f32> = got.to_vec().expect("f32");
    let want: Vec<f32> = want.to_vec().expect("f32");
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
