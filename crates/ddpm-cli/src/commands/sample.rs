//! `ddpm sample`: draw images from a model with DDPM ancestral sampling (Ho et al. 2020,
//! Algorithm 2), DDIM (Song et al. 2021) or DPM-Solver++(2M) (Lu et al. 2022), and write a
//! grid, one PNG per sample, and/or the raw samples as safetensors.
//!
//! A thin shell over [`ddpm_pipeline`]: the model directory, its scheduler config, the sampler,
//! the noise, the non-finite checks and the images are the library's; this file parses the
//! command line, prints and shows progress.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use ddpm_pipeline::images::ImageFileFormat;
use ddpm_pipeline::tensor_file::load_tensor;
use ddpm_pipeline::{ModelDir, Pipeline, SamplerKind, SamplerOverrides, Weights};
use ddpm_schedule::TimestepSpacing;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{OnBackend, dispatch};
use crate::output::{note, outln};

/// The model to sample from and its scheduler settings: `ddpm sample`, `ddpm interpolate`,
/// `ddpm shared-latent`.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The model: a diffusers pipeline or `UNet2DModel` directory, a native checkpoint
    /// directory, or a `ddpm train` run directory (its newest checkpoint) or checkpoint
    /// directory, each with the scheduler config stored with it.
    #[arg(long)]
    pub unet: PathBuf,
    /// Weights of a training run or checkpoint: ema (default; what the paper samples from) or
    /// raw. An error for other directories, which hold one set of weights.
    #[arg(long)]
    pub weights: Option<Weights>,
    /// diffusers `scheduler_config.json` (or a directory holding one), replacing the one
    /// stored with the model (default; the paper's settings if there is none).
    #[arg(long)]
    pub scheduler: Option<PathBuf>,
}

impl ModelArgs {
    /// Resolves and loads the model with its scheduler settings (`--scheduler` replacing them).
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<Pipeline<B>> {
        let model = ModelDir::resolve(&self.unet, self.weights)?;
        let mut pipe =
            Pipeline::<B>::load(&model, device).with_context(|| format!("loading {model}"))?;
        if let Some(path) = &self.scheduler {
            pipe = pipe
                .with_scheduler_config_file(path)
                .with_context(|| format!("--scheduler {}", path.display()))?;
        }
        Ok(pipe)
    }
}

/// Arguments of `ddpm sample`.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sampler: ddpm, ddim or dpm-solver++. Default from the config's `_class_name`
    /// (DDPMScheduler → ddpm, DDIMScheduler → ddim, DPMSolverMultistepScheduler → dpm-solver++).
    #[arg(long)]
    pub sampler: Option<SamplerKind>,
    /// Number of sampling steps. Default: all T for ddpm, 50 for ddim, 20 for dpm-solver++.
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's η (0 = deterministic, 1 = DDPM-like). DDIM only; default 0.
    #[arg(long, allow_negative_numbers = true)]
    pub eta: Option<f64>,
    /// Timestep spacing: leading, linspace or trailing. Default: the config's.
    #[arg(long)]
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Follow diffusers where its timestep rule differs from ours: DDIM steps to `t − T // n`
    /// instead of the next timestep of the list (they differ for trailing/linspace when n does
    /// not divide T). DPM-Solver++ follows diffusers for a DPMSolverMultistepScheduler config
    /// anyway. An error with the DDPM sampler.
    #[arg(long)]
    pub diffusers_compat: bool,
    /// How many images to draw.
    #[arg(long, default_value_t = 16)]
    pub num_samples: usize,
    /// How many images go through the model at once (default: all). Does not change the images.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of the host RNG (same seed → same images on every backend and batch size).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// x_T as a safetensors file with one tensor `[num_samples, C, H, W]`.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// Per-step noise as a safetensors file with one tensor `[steps, num_samples, C, H, W]`
    /// (e.g. recorded from another implementation), replacing the RNG inside the loop.
    #[arg(long)]
    pub noise_file: Option<PathBuf>,
    /// Progressive generation (the paper's Fig. 6): record x̂₀ at K steps spread evenly over the
    /// run (first and last included) and write them to `--output` as a grid, one row per
    /// sample, one column per step (large t on the left), instead of the samples' grid.
    #[arg(long, value_name = "K")]
    pub progressive: Option<usize>,
    /// The grid of all samples: .png, or .jpg/.jpeg (the extension picks the format).
    #[arg(long, default_value = "samples.png")]
    pub output: PathBuf,
    /// Also write one PNG per sample into this directory (sample_00000.png, ...).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Also write the final samples exactly as the sampler returns them (model space, not
    /// clamped or quantized), key `samples`, `[num_samples, C, H, W]` float32.
    #[arg(long)]
    pub save_tensor: Option<PathBuf>,
    /// Backend: flex (CPU), wgpu[:N], vulkan[:N], metal, cuda[:N] (as compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Float type of the U-Net: f32, f16 or bf16 (half precision is for GPU backends; the
    /// sampler, x_t and the noise stay f32).
    #[arg(long, default_value = "f32")]
    pub precision: ddpm_unet::Precision,
}

/// Runs `ddpm sample` on the backend named by `--device`.
pub fn run(args: SampleArgs) -> Result<()> {
    let device = args.device.clone();
    dispatch(&device, Task(args))
}

struct Task(SampleArgs);

impl OnBackend for Task {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        run_on::<B>(self.0, &device)
    }
}

/// Runs `ddpm sample` on backend `B`.
pub fn run_on<B: Backend>(args: SampleArgs, device: &B::Device) -> Result<()> {
    // Every output path is checked before the model is loaded and sampled.
    ImageFileFormat::from_path(&args.output)?;
    ddpm_io::check_output_file(&args.output).context("--output")?;
    if let Some(dir) = &args.output_dir {
        ddpm_io::check_output_dir(dir).context("--output-dir")?;
    }
    if let Some(path) = &args.save_tensor {
        ddpm_io::check_output_file(path).context("--save-tensor")?;
    }
    let pipe = args
        .model
        .load::<B>(device)?
        .with_precision(args.precision)?;
    if !pipe.ignored_keys().is_empty() {
        let keys = pipe.ignored_keys().join(", ");
        note!("note: {} keys not used: {keys}", pipe.scheduler_source());
    }
    let mut sampling = pipe.sampling().seed(args.seed).overrides(SamplerOverrides {
        kind: args.sampler,
        num_inference_steps: args.steps,
        eta: args.eta,
        timestep_spacing: args.timestep_spacing,
        diffusers_compat: args.diffusers_compat.then_some(true),
    });
    if let Some(b) = args.batch_size {
        sampling = sampling.batch_size(b);
    }
    if let Some(path) = &args.init_noise {
        let names = ["x_T", "init_noise", "noise"];
        let x = load_tensor(path, &names, device).context("--init-noise")?;
        sampling = sampling.init_noise(x);
    }
    if let Some(path) = &args.noise_file {
        let z = load_tensor(path, &["variance_noise", "noise"], device).context("--noise-file")?;
        sampling = sampling.noise_replay(z);
    }
    let plan = sampling.plan(args.num_samples)?;
    let [n, c, h, w] = plan.shape;
    note!(
        "{} sampler, {} steps, {n} samples of {c}×{h}×{w} in batches of {}; scheduler: {}",
        plan.sampler_name,
        plan.num_steps(),
        plan.batch_size,
        pipe.scheduler_source()
    );
    let bar = ProgressBar::new((plan.num_batches() * plan.num_steps()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})")
            .expect("valid template"),
    );
    let sampling = sampling.on_progress(|p| {
        bar.set_message(format!("batch {}/{}", p.batch + 1, p.num_batches));
        bar.set_position(p.steps_done() as u64);
    });
    let (samples, progressive) = match args.progressive {
        Some(k) => {
            let p = sampling.sample_progressive(n, k)?;
            (p.samples().clone(), Some(p))
        }
        None => (sampling.sample(n)?, None),
    };
    bar.finish_and_clear();

    if let Some(path) = &args.save_tensor {
        samples.save_tensor(path)?;
        note!("wrote {}", path.display());
    }
    match &progressive {
        Some(p) => {
            p.save_grid(&args.output)?;
            let ts: Vec<String> = p.timesteps().iter().map(usize::to_string).collect();
            outln!("columns: x̂₀ at t = {} (0-based)", ts.join(", "))?;
        }
        None => samples.save_grid(&args.output)?,
    }
    note!("wrote {}", args.output.display());
    if let Some(dir) = &args.output_dir {
        samples.save_each(dir)?;
        note!("wrote {n} images to {}", dir.display());
    }
    Ok(())
}
