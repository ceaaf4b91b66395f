//! `ddpm convert`: convert a U-Net between a diffusers `UNet2DModel` directory and this
//! project's native checkpoint (burnpack).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use ddpm_unet::{DIFFUSERS_CONFIG, DIFFUSERS_SAFETENSORS, NATIVE_CONFIG, NATIVE_WEIGHTS, Unet};

/// Arguments of `ddpm convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Source: a diffusers model directory, a native checkpoint directory, or a `ddpm train`
    /// run / checkpoint directory (detected).
    pub src: PathBuf,
    /// Weights of a training run to convert: ema or raw.
    #[arg(long, default_value = "ema")]
    pub weights: ddpm_train::Weights,
    /// Destination directory (created if needed).
    pub dst: PathBuf,
    /// Target format.
    #[arg(long, value_enum)]
    pub to: Target,
    /// Overwrite existing files in the destination.
    #[arg(long)]
    pub force: bool,
}

/// Target format of `ddpm convert`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// diffusers `UNet2DModel` directory: config.json + diffusion_pytorch_model.safetensors.
    Diffusers,
    /// Native checkpoint: unet_config.json + unet.bpk.
    Burn,
}

/// Runs `ddpm convert` on the default backend ([`crate::backend::default_device`]).
pub fn run(args: ConvertArgs) -> Result<()> {
    crate::backend::dispatch(crate::backend::default_device(), args)
}

impl crate::backend::OnBackend for ConvertArgs {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        run_on::<B>(self, &device)
    }
}

/// Runs `ddpm convert` on backend `B`.
pub fn run_on<B: Backend>(args: ConvertArgs, device: &B::Device) -> Result<()> {
    let files = match args.to {
        Target::Diffusers => [DIFFUSERS_CONFIG, DIFFUSERS_SAFETENSORS],
        Target::Burn => [NATIVE_CONFIG, NATIVE_WEIGHTS],
    };
    if !args.force
        && let Some(existing) = files.iter().map(|f| args.dst.join(f)).find(|p| p.exists())
    {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite",
            existing.display()
        );
    }
    let unet: Unet<B> = crate::model::load_unet(&args.src, args.weights, device)?;
    match args.to {
        Target::Diffusers => unet.to_diffusers(&args.dst),
        Target::Burn => unet.save(&args.dst),
    }
    .with_context(|| format!("writing {}", args.dst.display()))?;
    println!(
        "wrote {} ({} parameters) to {}",
        match args.to {
            Target::Diffusers => "diffusers UNet2DModel",
            Target::Burn => "native checkpoint",
        },
        super::unet::thousands(unet.config().num_params()),
        args.dst.display()
    );
    Ok(())
}
