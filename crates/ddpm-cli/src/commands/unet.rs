//! `ddpm unet info`: print a U-Net's configuration and its parameter count, total and per block,
//! for a diffusers model directory, a native checkpoint, or a preset.

use std::path::PathBuf;

use crate::output::outln;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::backend::Backend;
use clap::{Args, Subcommand};
use ddpm_unet::{Unet, UnetConfig};

/// Arguments of `ddpm unet`.
#[derive(Args, Debug)]
pub struct UnetArgs {
    #[command(subcommand)]
    pub command: UnetCommand,
}

/// Subcommands of `ddpm unet`.
#[derive(Subcommand, Debug)]
pub enum UnetCommand {
    /// Print the config and the parameter count (total and per block).
    Info(InfoArgs),
}

/// Arguments of `ddpm unet info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A diffusers model directory (config.json + diffusion_pytorch_model.safetensors/.bin) or a
    /// native checkpoint directory (unet_config.json + unet.bpk); its weights are loaded and
    /// checked.
    #[arg(required_unless_present = "preset", conflicts_with = "preset")]
    pub path: Option<PathBuf>,
    /// A preset instead of a file: ddpm-cifar10, ddpm-256, mnist, mnist-small, tiny.
    #[arg(long)]
    pub preset: Option<String>,
    /// Print the config as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ddpm unet` on the default backend ([`crate::backend::default_device`]).
pub fn run(args: UnetArgs) -> Result<()> {
    crate::backend::dispatch(crate::backend::default_device(), args)
}

impl crate::backend::OnBackend for UnetArgs {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        run_on::<B>(self, &device)
    }
}

/// Runs `ddpm unet` on backend `B`.
pub fn run_on<B: Backend>(args: UnetArgs, device: &B::Device) -> Result<()> {
    match args.command {
        UnetCommand::Info(args) => info::<B>(args, device),
    }
}

/// 35746307 → "35,746,307".
pub(crate) fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn info<B: Backend>(args: InfoArgs, device: &B::Device) -> Result<()> {
    let (source, config, module_params) = match (&args.preset, &args.path) {
        (Some(name), _) => (format!("preset {name}"), UnetConfig::preset(name)?, None),
        (None, Some(path)) => {
            let unet = Unet::<B>::load_any(path, device)
                .with_context(|| format!("loading U-Net from {}", path.display()))?;
            let n = unet.num_params();
            (path.display().to_string(), unet.config().clone(), Some(n))
        }
        (None, None) => anyhow::bail!("give a model directory or --preset NAME"),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&config)?)?;
        return Ok(());
    }
    let c = &config;
    outln!("U-Net ({source})")?;
    outln!("  sample_size          {}", c.sample_size)?;
    outln!(
        "  in/out channels      {} -> {}",
        c.in_channels,
        c.out_channels
    )?;
    outln!("  block_out_channels   {:?}", c.block_out_channels)?;
    outln!("  down_block_types     {:?}", c.down_block_types)?;
    outln!("  up_block_types       {:?}", c.up_block_types)?;
    outln!("  layers_per_block     {}", c.layers_per_block)?;
    outln!("  mid block attention  {}", c.mid_block_attention)?;
    let heads = match c.attention_head_dim {
        Some(d) => format!("{d} channels per head"),
        None => "one head of full width".to_string(),
    };
    outln!("  attention            {heads}")?;
    outln!(
        "  norm                 GroupNorm({}), eps {:e}",
        c.norm_num_groups,
        c.norm_eps
    )?;
    outln!("  dropout              {}", c.dropout)?;
    outln!(
        "  time embedding       sinusoidal {} (flip_sin_to_cos {}, freq_shift {}) -> MLP {}",
        c.block_out_channels[0],
        c.flip_sin_to_cos,
        c.freq_shift,
        c.time_embed_dim()
    )?;
    outln!("  downsample_padding   {}", c.downsample_padding)?;
    outln!("  mid_block_scale      {}", c.mid_block_scale_factor)?;
    let sizes = c.level_sizes(c.sample_size)?;
    outln!("  resolutions          {sizes:?}")?;
    outln!()?;
    let total = c.num_params();
    outln!("parameters: {}", thousands(total))?;
    for (name, n) in c.param_counts() {
        let pct = 100.0 * n as f64 / total as f64;
        outln!("  {name:<16} {:>13}  {pct:5.1}%", thousands(n))?;
    }
    if let Some(n) = module_params
        && n != total
    {
        anyhow::bail!("loaded module has {n} parameters but the config implies {total}");
    }
    Ok(())
}
