//! `ddpm convert`: convert a U-Net between a diffusers `UNet2DModel` directory and this
//! project's native checkpoint (burnpack), keeping its scheduler config (noise schedule and
//! prediction type) beside it. Every file is written atomically: a full disk leaves the
//! previous files intact and fails with the OS error.

use std::path::PathBuf;

use crate::output::outln;
use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use ddpm_pipeline::layout::SCHEDULER_CONFIG_FILE;
use ddpm_pipeline::{ModelDir, Weights};
use ddpm_unet::{DIFFUSERS_CONFIG, DIFFUSERS_SAFETENSORS, NATIVE_CONFIG, NATIVE_WEIGHTS, Unet};

/// Arguments of `ddpm convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Source: a diffusers pipeline or `UNet2DModel` directory, a native checkpoint directory,
    /// or a `ddpm train` run / checkpoint directory (detected).
    pub src: PathBuf,
    /// Weights of a training run or checkpoint to convert: ema (default) or raw. An error for
    /// other sources, which hold one set of weights.
    #[arg(long)]
    pub weights: Option<Weights>,
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
    ddpm_io::check_output_dir(&args.dst).context("destination")?;
    let model = ModelDir::resolve(&args.src, args.weights)?;
    // Checked (parsed) before it is copied; the bytes are copied as they are, so keys this
    // library does not use survive.
    model.load_scheduler_config()?;
    let scheduler = model.scheduler_config_path().map(PathBuf::from);
    let mut files = match args.to {
        Target::Diffusers => vec![DIFFUSERS_CONFIG, DIFFUSERS_SAFETENSORS],
        Target::Burn => vec![NATIVE_CONFIG, NATIVE_WEIGHTS],
    };
    files.extend(scheduler.as_ref().map(|_| SCHEDULER_CONFIG_FILE));
    if !args.force
        && let Some(existing) = files.iter().map(|f| args.dst.join(f)).find(|p| p.exists())
    {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite",
            existing.display()
        );
    }
    let unet: Unet<B> = model
        .load_unet(device)
        .with_context(|| format!("loading {model}"))?;
    match args.to {
        Target::Diffusers => unet.to_diffusers(&args.dst),
        Target::Burn => unet.save(&args.dst),
    }
    .with_context(|| format!("writing {}", args.dst.display()))?;
    if let Some(src) = &scheduler {
        let bytes = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        ddpm_io::write_atomic(args.dst.join(SCHEDULER_CONFIG_FILE), bytes)?;
    }
    outln!(
        "wrote {} ({} parameters{}) to {}",
        match args.to {
            Target::Diffusers => "diffusers UNet2DModel",
            Target::Burn => "native checkpoint",
        },
        super::unet::thousands(unet.config().num_params()),
        if scheduler.is_some() {
            ", with its scheduler_config.json"
        } else {
            ""
        },
        args.dst.display()
    )?;
    Ok(())
}
