//! The GPU test set of the workspace (`tests/gpu.rs`) and what it shares: the backend chosen by
//! cargo feature, the device, and paths to the diffusers fixtures the other crates' tests
//! already hold (so a fresh clone has everything).
//!
//! Run it on one backend: `cargo test -p ddpm-gpu-tests --features vulkan` (CI, on Mesa's
//! lavapipe software Vulkan device), `--features wgpu`, `--features metal` or
//! `--features cuda` (`scripts/gpu_check.sh`). With no feature nothing is compiled.
#![warn(missing_docs)]

use std::path::PathBuf;

/// The backend under test: the first of cuda, vulkan, wgpu, metal that is enabled.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;
/// The backend under test: the first of cuda, vulkan, wgpu, metal that is enabled.
#[cfg(all(feature = "vulkan", not(feature = "cuda")))]
pub type Gpu = burn::backend::Vulkan;
/// The backend under test: the first of cuda, vulkan, wgpu, metal that is enabled.
#[cfg(all(feature = "wgpu", not(any(feature = "cuda", feature = "vulkan"))))]
pub type Gpu = burn::backend::Wgpu;
/// The backend under test: the first of cuda, vulkan, wgpu, metal that is enabled.
#[cfg(all(
    feature = "metal",
    not(any(feature = "cuda", feature = "vulkan", feature = "wgpu"))
))]
pub type Gpu = burn::backend::Metal;

/// The reference backend: Burn's pure-Rust CPU backend.
pub type Cpu = burn::backend::Flex;

/// The default device of the backend under test.
#[cfg(any(
    feature = "cuda",
    feature = "vulkan",
    feature = "wgpu",
    feature = "metal"
))]
pub fn device() -> <Gpu as burn::tensor::backend::BackendTypes>::Device {
    Default::default()
}

/// `crates/<krate>/tests/fixtures/<name>`: the fixtures another crate's tests hold.
pub fn fixture(krate: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("tests/fixtures")
        .join(name)
}

/// A fresh scratch directory for one test.
pub fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-gpu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Largest |a − b| / max(1, |b|) over two equally long slices.
///
/// # Panics
/// If the lengths differ.
pub fn max_rel_dev(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs() / f64::from(y.abs()).max(1.0))
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}
