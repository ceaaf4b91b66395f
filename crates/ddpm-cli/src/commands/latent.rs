//! `ddpm interpolate` (Ho et al. 2020, Fig. 8) and `ddpm shared-latent` (Fig. 7): real images
//! encoded to x_t with q(x_t | x₀) and decoded with the reverse process.
//!
//! A thin shell over [`ddpm_pipeline::experiments`]: the encoding, the fixed noise, the
//! sampling and the figure are the library's; this file reads the images, prints and writes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use clap::Args;
use ddpm_data::{ImageRef, ImageSize, LoadOptions, Split};
use ddpm_pipeline::experiments::{even_lambdas, interpolate, shared_latent};
use ddpm_pipeline::images::ImageFileFormat;
use ddpm_pipeline::{Pipeline, SamplerKind, SamplerOverrides, Sampling};

use super::sample::ModelArgs;
use crate::backend::{OnBackend, dispatch};
use crate::output::{note, outln};

/// The model and the reverse process, shared by both commands.
#[derive(Args, Debug, Clone)]
pub struct ReverseArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sampler of the reverse process: ddpm (the paper's ancestral sampling, the default),
    /// ddim or dpm-solver++. The start timestep must be one it visits.
    #[arg(long, default_value = "ddpm")]
    pub sampler: SamplerKind,
    /// Number of sampling steps of the full chain (default: all T for ddpm).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's η (0 = deterministic: every draw from one x_t is then the same image).
    #[arg(long)]
    pub eta: Option<f64>,
    /// Seed of ε in q(x_t | x₀) and of the reverse process's noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Split of a data set that `SPEC#INDEX` images are read from: test or train.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// The figure: .png, or .jpg/.jpeg.
    #[arg(long)]
    pub output: PathBuf,
    /// Backend: flex (CPU), wgpu[:N], vulkan[:N], metal, cuda[:N] (as compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Arguments of `ddpm interpolate`.
#[derive(Args, Debug, Clone)]
pub struct InterpolateArgs {
    /// The first image: a PNG/JPEG file, or `SPEC#INDEX` (e.g. `mnist:data/mnist#0`).
    #[arg(long)]
    pub image_a: ImageRef,
    /// The second image, as `--image-a`.
    #[arg(long)]
    pub image_b: ImageRef,
    /// The timestep both are encoded to (0-based: 499 is the paper's t = 500; T − 1 is x_T).
    #[arg(long, default_value_t = 499)]
    pub t: usize,
    /// How many λ values, evenly spaced over [0, 1] (the paper shows 11).
    #[arg(long, default_value_t = 11)]
    pub lambdas: usize,
    #[command(flatten)]
    pub reverse: ReverseArgs,
}

/// Arguments of `ddpm shared-latent`.
#[derive(Args, Debug, Clone)]
pub struct SharedLatentArgs {
    /// The image: a PNG/JPEG file, or `SPEC#INDEX` (e.g. `mnist:data/mnist#0`).
    #[arg(long)]
    pub image: ImageRef,
    /// The timesteps x_t is taken at, comma-separated (0-based: 999 is x_T, the paper's
    /// t = 1000).
    #[arg(long, value_delimiter = ',', default_value = "999,749,499,249")]
    pub timesteps: Vec<usize>,
    /// Samples drawn from each x_t.
    #[arg(long, default_value_t = 4)]
    pub per_t: usize,
    #[command(flatten)]
    pub reverse: ReverseArgs,
}

/// Runs `ddpm interpolate`.
pub fn run_interpolate(args: InterpolateArgs) -> Result<()> {
    let device = args.reverse.device.clone();
    dispatch(&device, Task::Interpolate(args))
}

/// Runs `ddpm shared-latent`.
pub fn run_shared_latent(args: SharedLatentArgs) -> Result<()> {
    let device = args.reverse.device.clone();
    dispatch(&device, Task::Shared(args))
}

enum Task {
    Interpolate(InterpolateArgs),
    Shared(SharedLatentArgs),
}

impl OnBackend for Task {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        match self {
            Task::Interpolate(args) => interpolate_on::<B>(args, &device),
            Task::Shared(args) => shared_on::<B>(args, &device),
        }
    }
}

/// Checks the output path, loads the model with its scheduler settings.
fn load<B: Backend>(args: &ReverseArgs, device: &B::Device) -> Result<Pipeline<B>> {
    ImageFileFormat::from_path(&args.output)?;
    ddpm_io::check_output_file(&args.output).context("--output")?;
    args.model.load(device)
}

/// The sampler settings of the command line, applied to a run.
fn configure<'p, B: Backend>(
    args: &ReverseArgs,
) -> impl Fn(Sampling<'p, B>) -> Sampling<'p, B> + use<'p, B> {
    let overrides = SamplerOverrides {
        kind: Some(args.sampler),
        num_inference_steps: args.steps,
        eta: args.eta,
        ..Default::default()
    };
    let seed = args.seed;
    move |s: Sampling<'p, B>| s.overrides(overrides.clone()).seed(seed)
}

/// Reads one image as `[1, C, H, W]` in the model's range.
fn read_image<B: Backend>(
    image: &ImageRef,
    pipe: &Pipeline<B>,
    split: Split,
    what: &str,
) -> Result<Tensor<B, 4>> {
    // `sample_shape` is [C, S, S]: the U-Net's samples are square.
    let [c, h, w] = pipe.sample_shape();
    let opts = LoadOptions::new(c, ImageSize::square(h)).with_split(split);
    // The data error names the file or `SPEC#INDEX` itself.
    let values = image.load_scaled(&opts).context(what.to_string())?;
    Ok(Tensor::from_data(
        TensorData::new(values, [1, c, h, w]),
        pipe.device(),
    ))
}

fn interpolate_on<B: Backend>(args: InterpolateArgs, device: &B::Device) -> Result<()> {
    let r = &args.reverse;
    let lambdas = even_lambdas(args.lambdas).context("--lambdas")?;
    let split: Split = r.split.parse()?;
    let pipe = load::<B>(r, device)?;
    let a = read_image(&args.image_a, &pipe, split, "--image-a")?;
    let b = read_image(&args.image_b, &pipe, split, "--image-b")?;
    note!(
        "interpolating {} and {} at t = {} with {} λ values ({} sampler, noise fixed across λ)",
        args.image_a,
        args.image_b,
        args.t,
        lambdas.len(),
        r.sampler
    );
    let fig = interpolate(&pipe, a, b, args.t, &lambdas, r.seed, configure::<B>(r))?;
    fig.save_grid(&r.output)?;
    let lambdas: Vec<String> = fig.lambdas().iter().map(|l| format!("{l:.2}")).collect();
    outln!("columns: image A, λ = {}, image B", lambdas.join(", "))?;
    note!("wrote {}", r.output.display());
    Ok(())
}

fn shared_on<B: Backend>(args: SharedLatentArgs, device: &B::Device) -> Result<()> {
    let r = &args.reverse;
    let split: Split = r.split.parse()?;
    let pipe = load::<B>(r, device)?;
    let x0 = read_image(&args.image, &pipe, split, "--image")?;
    note!(
        "{} samples from x_t of {} at t = {:?} ({} sampler)",
        args.per_t,
        args.image,
        args.timesteps,
        r.sampler
    );
    let fig = shared_latent(
        &pipe,
        x0,
        &args.timesteps,
        args.per_t,
        r.seed,
        configure::<B>(r),
    )?;
    fig.save_grid(&r.output)?;
    outln!(
        "rows: t = {:?}; columns: the image, its x_t, {} samples of p(x_0 | x_t)",
        fig.timesteps(),
        args.per_t
    )?;
    note!("wrote {}", r.output.display());
    Ok(())
}
