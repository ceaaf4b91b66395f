//! `ddpm sample`: draw images from a U-Net with DDPM ancestral sampling (Ho et al. 2020,
//! Algorithm 2), DDIM (Song et al. 2021) or DPM-Solver++(2M) (Lu et al. 2022), and write a PNG
//! grid, one PNG per sample, and/or the raw samples as safetensors.
//!
//! Settings not given on the command line come from the scheduler config (`--scheduler`, or a
//! `scheduler_config.json` found next to the model); keys the config lacks take diffusers'
//! defaults for its `_class_name`, so a diffusers model directory samples the same way in both
//! libraries; with no config at all, the paper's defaults (T = 1000, linear β, ε, DDPM).
//! Every input is checked (steps, η, noise shapes) before the first model call.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use clap::Args;
use ddpm_sampler::{
    NoiseSource, Sampler, SamplerKind, SamplerOverrides, sample_loop, sampler_from_config,
};
use ddpm_schedule::{SamplingConfig, TimestepSpacing};
use ddpm_train::Weights;
use ddpm_unet::Unet;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{OnBackend, dispatch};

/// Arguments of `ddpm sample`.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// The model: a diffusers `UNet2DModel` directory (config.json + weights), a native
    /// checkpoint directory (unet_config.json + unet.bpk), or a `ddpm train` run directory
    /// (its newest checkpoint) or checkpoint directory.
    #[arg(long)]
    pub unet: PathBuf,
    /// Weights of a training run to use: ema (what the paper samples from) or raw.
    #[arg(long, default_value = "ema")]
    pub weights: Weights,
    /// diffusers `scheduler_config.json` (or a directory holding one). Default: the one next
    /// to the model (`<unet>/scheduler_config.json`, `<unet>/../scheduler/...`), else the
    /// paper's settings.
    #[arg(long)]
    pub scheduler: Option<PathBuf>,
    /// Sampler: ddpm, ddim or dpm-solver++; default from the config's `_class_name`
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
    /// How many images go through the model at once. Default: all of them.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of the host RNG (same seed and batch size → same images on every backend).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// x_T as a safetensors file with one tensor `[num_samples, C, H, W]`.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// Per-step noise as a safetensors file with one tensor `[steps, num_samples, C, H, W]`
    /// (e.g. recorded from another implementation), replacing the RNG inside the loop.
    #[arg(long)]
    pub noise_file: Option<PathBuf>,
    /// The PNG grid of all samples.
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

/// Loads the U-Net from a diffusers directory, a native checkpoint or a training run.
pub fn load_unet<B: Backend>(path: &Path, weights: Weights, device: &B::Device) -> Result<Unet<B>> {
    crate::model::load_unet::<B>(path, weights, device)
}

/// The scheduler config: `--scheduler`, else one next to the model, else the paper's.
fn scheduler_config(args: &SampleArgs) -> Result<(SamplingConfig, String)> {
    let found = match &args.scheduler {
        Some(path) => Some(path.clone()),
        None => {
            let candidates = [
                args.unet.join("scheduler_config.json"),
                args.unet.join("scheduler").join("scheduler_config.json"),
                args.unet
                    .join("..")
                    .join("scheduler")
                    .join("scheduler_config.json"),
            ];
            candidates.into_iter().find(|p| p.is_file())
        }
    };
    match found {
        Some(path) => {
            let loaded = SamplingConfig::load(&path)
                .with_context(|| format!("reading scheduler config {}", path.display()))?;
            if !loaded.ignored_keys.is_empty() {
                eprintln!(
                    "note: {} keys not used: {}",
                    path.display(),
                    loaded.ignored_keys.join(", ")
                );
            }
            Ok((loaded.config, path.display().to_string()))
        }
        None => Ok((SamplingConfig::default(), "paper defaults".to_string())),
    }
}

/// Builds the sampler from the config and the command line (all checks happen here), through
/// the library's [`sampler_from_config`].
fn build_sampler<B: Backend>(
    args: &SampleArgs,
    config: &SamplingConfig,
) -> Result<(SamplerKind, Box<dyn Sampler<B>>)> {
    let overrides = SamplerOverrides {
        kind: args.sampler,
        num_inference_steps: args.steps,
        eta: args.eta,
        timestep_spacing: args.timestep_spacing,
        diffusers_compat: args.diffusers_compat.then_some(true),
    };
    Ok(sampler_from_config::<B>(config, &overrides)?)
}

/// Reads the only tensor of a safetensors file (or the one named `preferred`) as f32.
fn read_tensor(path: &Path, preferred: &[&str]) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let names = st.names();
    let name = match preferred.iter().find(|p| names.iter().any(|n| n == *p)) {
        Some(p) => p.to_string(),
        None if names.len() == 1 => names[0].to_string(),
        None => bail!(
            "{} holds {} tensors ({}); expected one, or one named {}",
            path.display(),
            names.len(),
            names
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            preferred.join(" or ")
        ),
    };
    let view = st.tensor(&name)?;
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        safetensors::Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => bail!(
            "{}: tensor {name} has dtype {other:?}; expected F32 or F64",
            path.display()
        ),
    };
    Ok((view.shape().to_vec(), values))
}

/// Runs `ddpm sample` on backend `B`.
pub fn run_on<B: Backend>(args: SampleArgs, device: &B::Device) -> Result<()> {
    ensure!(args.num_samples > 0, "--num-samples must be at least 1");
    let batch_size = args.batch_size.unwrap_or(args.num_samples);
    ensure!(batch_size > 0, "--batch-size must be at least 1");

    // Everything is checked before the model is loaded or run.
    let (config, config_source) = scheduler_config(&args)?;
    let (kind, mut sampler) = build_sampler::<B>(&args, &config)?;
    let num_steps = sampler.timesteps().len();
    let unet = load_unet::<B>(&args.unet, args.weights, device)?;
    let uc = unet.config();
    let (c, size) = (uc.in_channels, uc.sample_size);
    let factor = sampler.model_channel_factor();
    ensure!(
        uc.out_channels == c * factor,
        "the U-Net outputs {} channels for {c} input channels, but variance_type {:?} needs {}",
        uc.out_channels,
        config.variance_type,
        c * factor
    );
    let n = args.num_samples;
    let sample_shape = [n, c, size, size];
    let init_noise = match &args.init_noise {
        Some(path) => {
            let (shape, values) = read_tensor(path, &["x_T", "init_noise", "noise"])?;
            ensure!(
                shape == sample_shape,
                "--init-noise {} has shape {shape:?}; the model needs [num_samples, C, H, W] = {sample_shape:?}",
                path.display()
            );
            Some(values)
        }
        None => None,
    };
    let step_noise = match &args.noise_file {
        Some(path) => {
            let (shape, values) = read_tensor(path, &["variance_noise", "noise"])?;
            let expected = [num_steps, n, c, size, size];
            ensure!(
                shape == expected,
                "--noise-file {} has shape {shape:?}; expected [steps, num_samples, C, H, W] = {expected:?} ({num_steps} steps of the {kind} sampler)",
                path.display()
            );
            Some(values)
        }
        None => None,
    };
    eprintln!(
        "{} sampler, {num_steps} steps, {n} samples of {c}×{size}×{size} in batches of {batch_size}; scheduler: {config_source}",
        sampler.name()
    );

    let per_sample = c * size * size;
    let mut rng = NoiseSource::<B>::seeded(args.seed);
    // x_T for every sample first, so that a seed gives the same x_T whatever the batch size.
    let x_big_t: Vec<f32> = match init_noise {
        Some(v) => v,
        None => rng
            .standard_normal(sample_shape, device)?
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    };

    let num_batches = n.div_ceil(batch_size);
    let bar = ProgressBar::new((num_batches * num_steps) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})")
            .expect("valid template"),
    );
    let model = |x: Tensor<B, 4>, t: Tensor<B, 1, Int>| unet.forward(x, t);
    let mut samples: Vec<f32> = Vec::with_capacity(n * per_sample);
    for batch in 0..num_batches {
        let start = batch * batch_size;
        let b = batch_size.min(n - start);
        let shape = [b, c, size, size];
        let x_t = Tensor::<B, 4>::from_data(
            TensorData::new(
                x_big_t[start * per_sample..(start + b) * per_sample].to_vec(),
                shape,
            ),
            device,
        );
        let mut replay;
        let noise = match &step_noise {
            Some(all) => {
                // [steps, n, …] → this batch's [steps, b, …].
                let mut v = Vec::with_capacity(num_steps * b * per_sample);
                for s in 0..num_steps {
                    let offset = (s * n + start) * per_sample;
                    v.extend_from_slice(&all[offset..offset + b * per_sample]);
                }
                replay = NoiseSource::replay(Tensor::<B, 5>::from_data(
                    TensorData::new(v, [num_steps, b, c, size, size]),
                    device,
                ));
                &mut replay
            }
            None => &mut rng,
        };
        bar.set_message(format!("batch {}/{num_batches}", batch + 1));
        let out = sample_loop(sampler.as_mut(), &model, x_t, noise, |_| bar.inc(1), None)?;
        samples.extend(
            out.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
    }
    bar.finish_and_clear();

    if let Some(path) = &args.save_tensor {
        write_safetensors(path, "samples", &sample_shape, &samples)?;
        eprintln!("wrote {}", path.display());
    }
    let images: Vec<Vec<u8>> = samples
        .chunks_exact(per_sample)
        .map(|s| to_rgb8(s, c, size))
        .collect::<Result<_>>()?;
    write_grid(&args.output, &images, size)?;
    eprintln!("wrote {}", args.output.display());
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (i, img) in images.iter().enumerate() {
            let path = dir.join(format!("sample_{i:05}.png"));
            save_png(&path, img, size as u32, size as u32)?;
        }
        eprintln!("wrote {n} images to {}", dir.display());
    }
    Ok(())
}

/// Model space [−1, 1] → 8-bit RGB, HWC (as diffusers: (x/2 + 0.5) clamped to [0, 1], ×255,
/// rounded). One channel is shown as gray.
fn to_rgb8(chw: &[f32], c: usize, size: usize) -> Result<Vec<u8>> {
    ensure!(
        c == 1 || c == 3,
        "cannot write {c}-channel samples as PNG (1 or 3 channels); use --save-tensor"
    );
    let hw = size * size;
    let mut out = Vec::with_capacity(hw * 3);
    for p in 0..hw {
        for ch in 0..3 {
            let v = chw[(if c == 1 { 0 } else { ch }) * hw + p];
            out.push(((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    Ok(out)
}

/// A near-square grid with 2-pixel gaps.
fn write_grid(path: &Path, images: &[Vec<u8>], size: usize) -> Result<()> {
    const PAD: usize = 2;
    let n = images.len();
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (w, h) = (cols * (size + PAD) + PAD, rows * (size + PAD) + PAD);
    let mut buf = vec![0u8; w * h * 3];
    for (i, img) in images.iter().enumerate() {
        let (x0, y0) = (
            PAD + (i % cols) * (size + PAD),
            PAD + (i / cols) * (size + PAD),
        );
        for y in 0..size {
            let dst = ((y0 + y) * w + x0) * 3;
            buf[dst..dst + size * 3].copy_from_slice(&img[y * size * 3..(y + 1) * size * 3]);
        }
    }
    save_png(path, &buf, w as u32, h as u32)
}

fn save_png(path: &Path, rgb: &[u8], w: u32, h: u32) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    image::save_buffer_with_format(
        path,
        rgb,
        w,
        h,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .with_context(|| format!("writing {}", path.display()))
}

fn write_safetensors(path: &Path, key: &str, shape: &[usize], values: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)?;
    let data = safetensors::serialize([(key, view)], None)?;
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}
