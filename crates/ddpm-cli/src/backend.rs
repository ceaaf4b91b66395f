//! `--device`: picks the Burn backend at run time among those compiled in.
//!
//! Cargo features choose what is compiled: `flex` (default, pure-Rust CPU), `wgpu`
//! (Vulkan/Metal/DX12/WebGPU, whatever adapter wgpu finds), `vulkan`, `metal`, `cuda`. Every
//! command body is generic over `B: Backend` ([`OnBackend`]); [`dispatch`] instantiates it for
//! the backend named on the command line.

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;

/// A command body that runs on any backend.
pub trait OnBackend {
    /// What the command returns.
    type Output;
    /// Runs on backend `B` with `device`.
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// wgpu with its default adapter (Vulkan, Metal, DX12 or WebGPU), or the N-th discrete GPU.
    Wgpu(Option<usize>),
    /// wgpu restricted to Vulkan (SPIR-V kernels).
    Vulkan(Option<usize>),
    /// wgpu restricted to Metal.
    Metal,
    /// CUDA device N (default 0).
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, index) = match s.split_once(':') {
            Some((n, i)) => {
                let idx: usize = i
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--device {s}: {i:?} is not a device index"))?;
                (n, Some(idx))
            }
            None => (s, None),
        };
        Ok(match name {
            "flex" | "cpu" => Self::Flex,
            "wgpu" => Self::Wgpu(index),
            "vulkan" => Self::Vulkan(index),
            "metal" => Self::Metal,
            "cuda" => Self::Cuda(index.unwrap_or(0)),
            other => bail!(
                "--device {other:?} is not a backend; expected flex, wgpu[:N], vulkan[:N], metal or cuda[:N]"
            ),
        })
    }
}

// Unused only in a build with every backend compiled in.
#[cfg_attr(
    all(
        feature = "flex",
        feature = "wgpu",
        feature = "vulkan",
        feature = "metal",
        feature = "cuda"
    ),
    allow(dead_code)
)]
fn not_compiled(device: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--device {device}: this `ddpm` was built without the `{feature}` feature; rebuild with \
         `cargo install --path crates/ddpm-cli --features {feature}` (or `cargo run --features {feature}`)"
    )
}

/// The device of commands that have no `--device` (`convert`, `unet info`): `flex` when it is
/// compiled in, else the first GPU backend that is (cuda, vulkan, metal, wgpu).
pub fn default_device() -> &'static str {
    if cfg!(feature = "flex") {
        "flex"
    } else if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "vulkan") {
        "vulkan"
    } else if cfg!(feature = "metal") {
        "metal"
    } else {
        "wgpu"
    }
}

/// Runs `task` on the backend named by `device` (`flex`, `wgpu[:N]`, `vulkan[:N]`, `metal`,
/// `cuda[:N]`).
///
/// # Errors
/// When the name is unknown, or its backend was not compiled into this binary.
pub fn dispatch<T: OnBackend>(device: &str, task: T) -> Result<T::Output> {
    let spec: DeviceSpec = device.parse()?;
    match spec {
        DeviceSpec::Flex => {
            #[cfg(feature = "flex")]
            {
                task.run::<burn::backend::Flex>(Default::default())
            }
            #[cfg(not(feature = "flex"))]
            {
                Err(not_compiled(device, "flex"))
            }
        }
        DeviceSpec::Wgpu(index) => {
            #[cfg(feature = "wgpu")]
            {
                use burn::backend::wgpu::WgpuDevice;
                let dev = match index {
                    Some(i) => WgpuDevice::DiscreteGpu(i),
                    None => WgpuDevice::DefaultDevice,
                };
                task.run::<burn::backend::Wgpu>(dev)
            }
            #[cfg(not(feature = "wgpu"))]
            {
                let _ = index;
                Err(not_compiled(device, "wgpu"))
            }
        }
        DeviceSpec::Vulkan(index) => {
            #[cfg(feature = "vulkan")]
            {
                use burn::backend::wgpu::WgpuDevice;
                let dev = match index {
                    Some(i) => WgpuDevice::DiscreteGpu(i),
                    None => WgpuDevice::DefaultDevice,
                };
                task.run::<burn::backend::Vulkan>(dev)
            }
            #[cfg(not(feature = "vulkan"))]
            {
                let _ = index;
                Err(not_compiled(device, "vulkan"))
            }
        }
        DeviceSpec::Metal => {
            #[cfg(feature = "metal")]
            {
                task.run::<burn::backend::Metal>(Default::default())
            }
            #[cfg(not(feature = "metal"))]
            {
                Err(not_compiled(device, "metal"))
            }
        }
        DeviceSpec::Cuda(index) => {
            #[cfg(feature = "cuda")]
            {
                task.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::new(index))
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = index;
                Err(not_compiled(device, "cuda"))
            }
        }
    }
}
