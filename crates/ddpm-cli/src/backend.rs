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

/// A command body that runs on several devices of one backend (`ddpm train --devices`).
pub trait OnDevices {
    /// What the command returns.
    type Output;
    /// Runs on backend `B` with `devices` (at least one).
    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<Self::Output>;
}

/// An [`OnBackend`] task as an [`OnDevices`] one of a single device.
struct One<T>(T);

impl<T: OnBackend> OnDevices for One<T> {
    type Output = T::Output;
    fn run<B: Backend>(self, mut devices: Vec<B::Device>) -> Result<T::Output> {
        self.0.run::<B>(devices.remove(0))
    }
}

/// Runs `task` on the backend named by `device` (`flex`, `wgpu[:N]`, `vulkan[:N]`, `metal`,
/// `cuda[:N]`).
///
/// # Errors
/// When the name is unknown, or its backend was not compiled into this binary.
pub fn dispatch<T: OnBackend>(device: &str, task: T) -> Result<T::Output> {
    dispatch_devices(&[device], One(task))
}

/// The backend of a spec, for checking that a device list names one backend.
fn backend_name(spec: DeviceSpec) -> &'static str {
    match spec {
        DeviceSpec::Flex => "flex",
        DeviceSpec::Wgpu(_) => "wgpu",
        DeviceSpec::Vulkan(_) => "vulkan",
        DeviceSpec::Metal => "metal",
        DeviceSpec::Cuda(_) => "cuda",
    }
}

/// Runs `task` on the devices named by `devices` (each as in [`dispatch`]), which must all be
/// of one backend: `flex,flex`, `cuda:0,cuda:1`, `wgpu:0,wgpu:1`.
///
/// # Errors
/// An empty list, an unknown name, a backend not compiled in, or two backends in one list.
pub fn dispatch_devices<T: OnDevices>(devices: &[&str], task: T) -> Result<T::Output> {
    let specs = devices
        .iter()
        .map(|d| d.parse::<DeviceSpec>())
        .collect::<Result<Vec<_>>>()?;
    let Some(&first) = specs.first() else {
        bail!("no device given");
    };
    if let Some(other) = specs
        .iter()
        .find(|s| backend_name(**s) != backend_name(first))
    {
        bail!(
            "--devices {}: every device must be of one backend ({} and {} differ)",
            devices.join(","),
            backend_name(first),
            backend_name(*other)
        );
    }
    match first {
        DeviceSpec::Flex => {
            #[cfg(feature = "flex")]
            {
                task.run::<burn::backend::Flex>(vec![Default::default(); specs.len()])
            }
            #[cfg(not(feature = "flex"))]
            {
                Err(not_compiled(devices[0], "flex"))
            }
        }
        DeviceSpec::Wgpu(_) => {
            #[cfg(feature = "wgpu")]
            {
                task.run::<burn::backend::Wgpu>(specs.iter().map(|s| wgpu_device(*s)).collect())
            }
            #[cfg(not(feature = "wgpu"))]
            {
                Err(not_compiled(devices[0], "wgpu"))
            }
        }
        DeviceSpec::Vulkan(_) => {
            #[cfg(feature = "vulkan")]
            {
                task.run::<burn::backend::Vulkan>(specs.iter().map(|s| wgpu_device(*s)).collect())
            }
            #[cfg(not(feature = "vulkan"))]
            {
                Err(not_compiled(devices[0], "vulkan"))
            }
        }
        DeviceSpec::Metal => {
            #[cfg(feature = "metal")]
            {
                task.run::<burn::backend::Metal>(vec![Default::default(); specs.len()])
            }
            #[cfg(not(feature = "metal"))]
            {
                Err(not_compiled(devices[0], "metal"))
            }
        }
        DeviceSpec::Cuda(_) => {
            #[cfg(feature = "cuda")]
            {
                task.run::<burn::backend::Cuda>(
                    specs
                        .iter()
                        .map(|s| match s {
                            DeviceSpec::Cuda(i) => burn::backend::cuda::CudaDevice::new(*i),
                            _ => unreachable!("one backend, checked above"),
                        })
                        .collect(),
                )
            }
            #[cfg(not(feature = "cuda"))]
            {
                Err(not_compiled(devices[0], "cuda"))
            }
        }
    }
}

/// The wgpu device of a `wgpu[:N]` / `vulkan[:N]` spec: the N-th discrete GPU, or the default.
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
fn wgpu_device(spec: DeviceSpec) -> burn::backend::wgpu::WgpuDevice {
    use burn::backend::wgpu::WgpuDevice;
    match spec {
        DeviceSpec::Wgpu(Some(i)) | DeviceSpec::Vulkan(Some(i)) => WgpuDevice::DiscreteGpu(i),
        _ => WgpuDevice::DefaultDevice,
    }
}
