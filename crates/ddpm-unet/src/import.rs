//! Loading U-Net weights: diffusers `UNet2DModel` directories (safetensors or PyTorch `.bin`,
//! current and pre-0.14 attention key names) and this crate's native checkpoints, into the
//! DDPM U-Net of Ho et al. 2020 (arXiv:2006.11239v2).
//!
//! Layout conversions (PyTorch Linear `[out, in]` ↔ Burn `[in, out]`, GroupNorm
//! `weight/bias` ↔ `gamma/beta`) are burn-store's `PyTorchToBurnAdapter`; the only key renames
//! are `to_out.0` ↔ `to_out` and the legacy `query/key/value/proj_attn`.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn_store::{
    ApplyError, ApplyResult, BurnpackStore, KeyRemapper, ModuleAdapter, ModuleSnapshot,
    PyTorchToBurnAdapter, SafetensorsStore,
};
use serde::de::DeserializeOwned;

use crate::safetensors_file::check_safetensors_file;
use crate::weight_dtype::{ToComputeDtype, dtype_name};
use crate::{DiffusersUnetConfig, ImportError, Unet, UnetConfig};

/// diffusers' config file name.
pub const DIFFUSERS_CONFIG: &str = "config.json";
/// diffusers' safetensors weights file name.
pub const DIFFUSERS_SAFETENSORS: &str = "diffusion_pytorch_model.safetensors";
/// diffusers' PyTorch pickle weights file name.
pub const DIFFUSERS_BIN: &str = "diffusion_pytorch_model.bin";
/// Native checkpoint: the [`UnetConfig`] as JSON.
pub const NATIVE_CONFIG: &str = "unet_config.json";
/// Native checkpoint: the weights in Burn's burnpack format.
pub const NATIVE_WEIGHTS: &str = "unet.bpk";

/// The on-disk formats a U-Net can be read from and written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// A diffusers `UNet2DModel` directory: `config.json` + `diffusion_pytorch_model.safetensors`
    /// (or `.bin`).
    Diffusers,
    /// This crate's checkpoint directory: `unet_config.json` + `unet.bpk`.
    Native,
}

impl ModelFormat {
    /// Detects the format of a model directory (a file path stands for its directory).
    ///
    /// # Errors
    ///
    /// [`ImportError::UnknownFormat`] if neither config file is there.
    pub fn detect(path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let dir = model_dir(path.as_ref());
        if dir.join(NATIVE_CONFIG).is_file() {
            Ok(Self::Native)
        } else if dir.join(DIFFUSERS_CONFIG).is_file() {
            Ok(Self::Diffusers)
        } else {
            Err(ImportError::UnknownFormat {
                path: path.as_ref().to_path_buf(),
            })
        }
    }
}

/// The directory of a model path: the path itself, or the parent of a file.
pub(crate) fn model_dir(path: &Path) -> PathBuf {
    if path.is_file() {
        path.parent().map_or_else(PathBuf::new, Path::to_path_buf)
    } else {
        path.to_path_buf()
    }
}

pub(crate) fn read_to_string(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a JSON config file that must hold an object: any other JSON value (`[]`, `null`, a
/// number) is refused by name rather than read as a config of defaults.
pub(crate) fn parse_config_object<T: DeserializeOwned>(file: &Path) -> Result<T, ImportError> {
    let text = read_to_string(file)?;
    let json = |source| ImportError::Json {
        path: file.to_path_buf(),
        source,
    };
    let found = match serde_json::from_str::<serde_json::Value>(&text).map_err(json)? {
        serde_json::Value::Object(_) => return serde_json::from_str(&text).map_err(json),
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
    };
    Err(ImportError::NotAnObject {
        path: file.to_path_buf(),
        found,
    })
}

/// Reads a diffusers `config.json` (a directory stands for its `config.json`) into a validated
/// [`UnetConfig`].
///
/// # Errors
///
/// I/O and JSON errors, [`ImportError::NotAnObject`] for JSON that is not an object,
/// [`ImportError::Unsupported`] for features this U-Net lacks, [`ImportError::InvalidConfig`]
/// for a config that cannot work.
pub fn read_diffusers_config(path: impl AsRef<Path>) -> Result<UnetConfig, ImportError> {
    let path = path.as_ref();
    let file = if path.is_dir() {
        path.join(DIFFUSERS_CONFIG)
    } else {
        path.to_path_buf()
    };
    let diffusers: DiffusersUnetConfig = parse_config_object(&file)?;
    UnetConfig::try_from(&diffusers)
}

/// Reads the [`UnetConfig`] of any model directory ([`ModelFormat::detect`]).
///
/// # Errors
///
/// As [`read_diffusers_config`], or an invalid native config.
pub fn read_config(path: impl AsRef<Path>) -> Result<UnetConfig, ImportError> {
    let dir = model_dir(path.as_ref());
    match ModelFormat::detect(&dir)? {
        ModelFormat::Diffusers => read_diffusers_config(&dir),
        ModelFormat::Native => {
            let config: UnetConfig = parse_config_object(&dir.join(NATIVE_CONFIG))?;
            config.validate()?;
            Ok(config)
        }
    }
}

/// Remaps checkpoint keys (current and legacy diffusers names) to the Burn module's paths.
fn diffusers_to_burn_keys() -> KeyRemapper {
    KeyRemapper::from_patterns(vec![
        (r"(\.attentions\.\d+)\.query\.", "${1}.to_q."),
        (r"(\.attentions\.\d+)\.key\.", "${1}.to_k."),
        (r"(\.attentions\.\d+)\.value\.", "${1}.to_v."),
        (r"(\.attentions\.\d+)\.proj_attn\.", "${1}.to_out."),
        (r"\.to_out\.0\.", ".to_out."),
    ])
    .expect("valid regexes")
}

/// A Burn module path in diffusers naming (`to_out.0`, GroupNorm `weight/bias`).
pub(crate) fn diffusers_key(burn_path: &str) -> String {
    let path = burn_path.replace(".to_out.", ".to_out.0.");
    if let Some(p) = path.strip_suffix(".gamma") {
        format!("{p}.weight")
    } else if let Some(p) = path.strip_suffix(".beta") {
        format!("{p}.bias")
    } else {
        path
    }
}

/// A reader error of burn-store, naming the file.
fn read_error<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> ImportError + '_ {
    move |e| ImportError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The first tensor `cast` refused for its (integer or boolean) dtype, as an error.
fn check_dtypes(cast: &ToComputeDtype, path: &Path) -> Result<(), ImportError> {
    match cast.first_refused() {
        None => Ok(()),
        Some((key, dtype)) => Err(ImportError::UnsupportedDtype {
            path: path.to_path_buf(),
            key: diffusers_key(&key),
            dtype: dtype_name(dtype),
        }),
    }
}

/// Turns burn-store's partial-load report into the first error, if any.
fn check_applied(
    result: &ApplyResult,
    path: &Path,
    pytorch_layout: bool,
) -> Result<(), ImportError> {
    let path = path.to_path_buf();
    if let Some(err) = result.errors.first() {
        return Err(match err {
            ApplyError::ShapeMismatch {
                path: key,
                expected,
                found,
            } => {
                let mut expected = expected.to_vec();
                let mut found = found.to_vec();
                // Linear weights: report both in the file's PyTorch [out, in] layout.
                if pytorch_layout && expected.len() == 2 && key.ends_with(".weight") {
                    expected.reverse();
                    found.reverse();
                }
                ImportError::ShapeMismatch {
                    path,
                    key: diffusers_key(key),
                    expected,
                    found,
                }
            }
            other => ImportError::Tensor {
                path,
                key: match other {
                    ApplyError::DTypeMismatch { path, .. }
                    | ApplyError::AdapterError { path, .. }
                    | ApplyError::LoadError { path, .. }
                    | ApplyError::ShapeMismatch { path, .. } => diffusers_key(path),
                },
                message: other.to_string(),
            },
        });
    }
    if let Some((key, _)) = result.missing.first() {
        return Err(ImportError::MissingKey {
            path,
            key: diffusers_key(key),
            more: result.missing.len() - 1,
        });
    }
    // burn-store lists GroupNorm `weight`/`bias` as unused even when it applied them to
    // `gamma`/`beta` through the adapter's alternative names: drop those.
    let applied = |key: &str| result.applied.iter().any(|a| a == key);
    let unused: Vec<&String> = result
        .unused
        .iter()
        .filter(|key| {
            let alt = if let Some(p) = key.strip_suffix(".weight") {
                format!("{p}.gamma")
            } else if let Some(p) = key.strip_suffix(".bias") {
                format!("{p}.beta")
            } else {
                return true;
            };
            !applied(&alt)
        })
        .collect();
    if let Some(key) = unused.first() {
        return Err(ImportError::UnexpectedKey {
            path,
            key: diffusers_key(key),
            more: unused.len() - 1,
        });
    }
    Ok(())
}

impl<B: Backend> Unet<B> {
    /// Loads a diffusers `UNet2DModel` directory: `config.json` and
    /// `diffusion_pytorch_model.safetensors` (preferred) or `diffusion_pytorch_model.bin`.
    ///
    /// # Errors
    ///
    /// As [`read_diffusers_config`] and [`Unet::load_diffusers_weights`];
    /// [`ImportError::NoWeights`] when the directory has no weights file.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ddpm_unet::Unet;
    /// # fn run<B: burn::tensor::backend::Backend>(device: &B::Device) -> Result<(), ddpm_unet::ImportError> {
    /// let unet = Unet::<B>::from_diffusers("ddpm-cifar10-32/unet", device)?;
    /// # Ok(()) }
    /// ```
    pub fn from_diffusers(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self, ImportError> {
        let dir = model_dir(dir.as_ref());
        let config = read_diffusers_config(&dir)?;
        let weights = [DIFFUSERS_SAFETENSORS, DIFFUSERS_BIN]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| ImportError::NoWeights { dir: dir.clone() })?;
        config.init(device)?.load_diffusers_weights(weights)
    }

    /// Loads a native checkpoint directory written by [`Unet::save`].
    ///
    /// # Errors
    ///
    /// I/O, JSON, invalid config, and missing, unexpected or mis-shaped tensors.
    pub fn load(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self, ImportError> {
        let dir = model_dir(dir.as_ref());
        let config = read_config(&dir)?;
        config
            .init(device)?
            .load_native_weights(dir.join(NATIVE_WEIGHTS))
    }

    /// Loads a model directory in either format ([`ModelFormat::detect`]).
    ///
    /// # Errors
    ///
    /// As [`Unet::from_diffusers`] or [`Unet::load`].
    pub fn load_any(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, ImportError> {
        match ModelFormat::detect(path.as_ref())? {
            ModelFormat::Diffusers => Self::from_diffusers(path, device),
            ModelFormat::Native => Self::load(path, device),
        }
    }

    /// Replaces the weights with those of a diffusers state dict: a `.safetensors` file, or a
    /// PyTorch `.bin`/`.pt`/`.pth` file read by burn-store's PyTorch reader (which parses the
    /// pickle without executing it). Both the current (`to_q`, `to_k`, `to_v`, `to_out.0`) and
    /// the pre-0.14 (`query`, `key`, `value`, `proj_attn`) attention names are accepted.
    ///
    /// Floating-point tensors stored in another precision than the model's (f16, as in
    /// diffusers' `diffusion_pytorch_model.fp16.safetensors`, bf16 or f64) are converted to the
    /// model's dtype as they are loaded.
    ///
    /// # Errors
    ///
    /// [`ImportError::MissingKey`], [`ImportError::UnexpectedKey`] and
    /// [`ImportError::ShapeMismatch`] (both shapes in PyTorch layout) name the first offending
    /// key in diffusers naming; [`ImportError::UnsupportedDtype`] names a tensor stored as
    /// integers or booleans; [`ImportError::Truncated`] and [`ImportError::InvalidSafetensors`]
    /// for a damaged safetensors file; reader errors are passed on.
    pub fn load_diffusers_weights(mut self, path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(ImportError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let cast = self.dtype_adapter();
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let result = if is_safetensors {
            check_safetensors_file(path)?;
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter.chain(cast.clone()))
                .remap(diffusers_to_burn_keys())
                .validate(false)
                .allow_partial(true);
            self.load_from(&mut store).map_err(read_error(path))?
        } else {
            self.load_pytorch_bin(path, &cast)?
        };
        check_dtypes(&cast, path)?;
        check_applied(&result, path, true)?;
        self.check_finite(path)?;
        Ok(self)
    }

    /// The adapter that converts loaded floating-point tensors to this model's dtype.
    fn dtype_adapter(&self) -> ToComputeDtype {
        ToComputeDtype::new(self.conv_in.weight.val().dtype())
    }

    /// Reads a PyTorch pickle (`.bin`) through burn-store (feature `pytorch`), with
    /// burn-store's PyTorch layout adapter followed by `cast`.
    #[cfg(feature = "pytorch")]
    fn load_pytorch_bin(
        &mut self,
        path: &Path,
        cast: &ToComputeDtype,
    ) -> Result<ApplyResult, ImportError> {
        use burn_store::ModuleStore;
        let mut store = burn_store::PytorchStore::from_file(path)
            .remap(diffusers_to_burn_keys())
            .map_indices_contiguous(false);
        let snapshots = store
            .get_all_snapshots()
            .map_err(read_error(path))?
            .values()
            .cloned()
            .collect();
        // What `PytorchStore::apply_to` does, with the cast chained after its layout adapter.
        let adapter = PyTorchToBurnAdapter.chain(cast.clone());
        Ok(self.apply(snapshots, None, Some(Box::new(adapter)), true))
    }

    /// Without the `pytorch` feature a `.bin` file is refused with a message that says how to
    /// read it (build with the feature, or convert it to safetensors).
    #[cfg(not(feature = "pytorch"))]
    fn load_pytorch_bin(
        &mut self,
        path: &Path,
        _cast: &ToComputeDtype,
    ) -> Result<ApplyResult, ImportError> {
        Err(ImportError::PytorchDisabled {
            path: path.to_path_buf(),
        })
    }

    /// Replaces the weights with those of a burnpack file written by [`Unet::save`].
    ///
    /// # Errors
    ///
    /// As [`Unet::load_diffusers_weights`], for burnpack files (Burn layout).
    pub fn load_native_weights(mut self, path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(ImportError::NoWeights {
                dir: path.to_path_buf(),
            });
        }
        let cast = self.dtype_adapter();
        let mut store = BurnpackStore::from_file(path)
            .with_from_adapter(cast.clone())
            .validate(false)
            .allow_partial(true);
        let result = self.load_from(&mut store).map_err(read_error(path))?;
        check_dtypes(&cast, path)?;
        check_applied(&result, path, false)?;
        self.check_finite(path)?;
        Ok(self)
    }

    /// Refuses weights that hold NaN or ±inf, naming the first such tensor: a model with one
    /// non-finite weight turns every sample non-finite.
    fn check_finite(&self, path: &Path) -> Result<(), ImportError> {
        match self.find_non_finite() {
            None => Ok(()),
            Some(p) => Err(ImportError::NonFiniteWeight {
                path: path.to_path_buf(),
                key: p.key,
                count: p.count,
                len: p.len,
                first: p.first,
            }),
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod finite_tests {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::Tensor;

    use super::*;

    type B = burn::backend::Flex;

    /// Puts NaN at flat index 5 and +inf at 7 of `conv_in.weight`.
    struct Poison;

    impl ModuleMapper<B> for Poison {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.map(|t| {
                if D != 4 || t.dims()[0] != 32 || t.dims()[1] != 3 {
                    return t;
                }
                let shape = t.shape();
                let mut values = t.into_data().to_vec::<f32>().unwrap();
                values[5] = f32::NAN;
                values[7] = f32::INFINITY;
                Tensor::from_data(
                    burn::tensor::TensorData::new(values, shape),
                    &Default::default(),
                )
            })
        }
    }

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ddpm-unet-finite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn non_finite_weights_are_refused_by_name() {
        let device = Default::default();
        let config = UnetConfig::tiny();
        assert_eq!(
            config.block_out_channels[0], 32,
            "Poison finds conv_in by its shape"
        );
        let unet = config.init::<B>(&device).unwrap().map(&mut Poison);
        for (format, dir) in [("native", dir("native")), ("diffusers", dir("diffusers"))] {
            match format {
                "native" => unet.save(&dir).unwrap(),
                _ => unet.to_diffusers(&dir).unwrap(),
            }
            let err = Unet::<B>::load_any(&dir, &device).unwrap_err();
            match &err {
                ImportError::NonFiniteWeight {
                    key,
                    count,
                    len,
                    first,
                    ..
                } => {
                    assert_eq!(key, "conv_in.weight", "{format}");
                    assert_eq!((*count, *len, *first), (2, 32 * 3 * 3 * 3, 5), "{format}");
                }
                other => panic!("{format}: {other}"),
            }
            assert!(err.to_string().contains("conv_in.weight"), "{err}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
        // The same model without the poison loads.
        let dir = dir("clean");
        config.init::<B>(&device).unwrap().save(&dir).unwrap();
        Unet::<B>::load_any(&dir, &device).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert_eq!(
            diffusers_key("mid_block.attentions.0.to_out.weight"),
            "mid_block.attentions.0.to_out.0.weight"
        );
        assert_eq!(diffusers_key("conv_norm_out.gamma"), "conv_norm_out.weight");
        assert_eq!(
            diffusers_key("down_blocks.0.resnets.0.norm1.beta"),
            "down_blocks.0.resnets.0.norm1.bias"
        );
    }
}
