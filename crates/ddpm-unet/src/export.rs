//! Writing the DDPM U-Net (Ho et al. 2020, arXiv:2006.11239v2): this crate's native checkpoint
//! (burnpack + config JSON) and diffusers `UNet2DModel` directories that
//! `UNet2DModel.from_pretrained` loads (diffusers key names, PyTorch layouts).
//!
//! Every file is encoded in memory and written with [`ddpm_io::write_atomic`]: a full disk or a
//! crash leaves the previous file (or none), never a truncated one.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{
    BurnToPyTorchAdapter, BurnpackStore, KeyRemapper, ModuleSnapshot, SafetensorsStore,
};

use crate::import::{DIFFUSERS_CONFIG, DIFFUSERS_SAFETENSORS, NATIVE_CONFIG, NATIVE_WEIGHTS};
use crate::{DiffusersUnetConfig, ImportError, Unet};

fn create_dir(dir: &Path) -> Result<(), ImportError> {
    std::fs::create_dir_all(dir).map_err(|source| ImportError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), ImportError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| ImportError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ddpm_io::write_atomic(path, text + "\n")?)
}

impl<B: Backend> Unet<B> {
    /// Saves a native checkpoint directory: `unet_config.json` (the [`UnetConfig`](crate::UnetConfig))
    /// and `unet.bpk` (Burn's burnpack format). Existing files are replaced atomically.
    ///
    /// # Errors
    ///
    /// I/O errors and burnpack writer errors.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), ImportError> {
        let dir = dir.as_ref();
        create_dir(dir)?;
        write_json(&dir.join(NATIVE_CONFIG), self.config())?;
        let mut store = BurnpackStore::from_bytes(None);
        self.save_into(&mut store)?;
        ddpm_io::write_atomic(dir.join(NATIVE_WEIGHTS), &*store.get_bytes()?)?;
        Ok(())
    }

    /// Exports a diffusers `UNet2DModel` directory: `config.json` (diffusers' keys,
    /// `_class_name` `UNet2DModel`) and `diffusion_pytorch_model.safetensors` (diffusers' key
    /// names, Linear weights transposed to PyTorch's `[out, in]`, GroupNorm `weight/bias`).
    /// Existing files are replaced atomically.
    ///
    /// # Errors
    ///
    /// I/O errors and safetensors writer errors.
    pub fn to_diffusers(&self, dir: impl AsRef<Path>) -> Result<(), ImportError> {
        let dir = dir.as_ref();
        create_dir(dir)?;
        write_json(
            &dir.join(DIFFUSERS_CONFIG),
            &DiffusersUnetConfig::from(self.config()),
        )?;
        let remap =
            KeyRemapper::from_patterns(vec![(r"\.to_out\.", ".to_out.0.")]).expect("valid regex");
        let mut store = SafetensorsStore::from_bytes(None)
            .with_to_adapter(BurnToPyTorchAdapter)
            .remap(remap)
            .clear_metadata()
            .metadata("format", "pt");
        self.save_into(&mut store)?;
        ddpm_io::write_atomic(dir.join(DIFFUSERS_SAFETENSORS), store.get_bytes()?)?;
        Ok(())
    }
}
