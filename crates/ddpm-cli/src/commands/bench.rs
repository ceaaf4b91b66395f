//! `ddpm bench`: how fast this machine runs a U-Net preset, in the manner of `llama-bench`.
//!
//! Each case (mode × batch) builds the preset with random weights (dropout 0, as the criterion
//! benches of `ddpm-unet` and the PyTorch figures in `scripts/pytorch/README.md`), runs `--warmup`
//! untimed iterations, then times `--repeats` iterations and reports the median, min and max
//! wall-clock milliseconds and the process's peak resident memory.
//!
//! - `forward`: one U-Net forward pass ε_θ(x_t, t) at the batch.
//! - `train`: one training step on `Autodiff<B>`: forward, MSE against random ε, backward,
//!   Adam step (the optimizer state persists across iterations, as in training).
//! - `sample`: a whole deterministic DDIM sample (η = 0, `--steps` model calls, 50 by default)
//!   of the batch from the paper's schedule.
//!
//! `--precision f16|bf16` runs `forward` and `sample` with the U-Net's weights and activations
//! in half precision (`Unet::with_precision`; the sampler stays f32); training is f32 only, so
//! the standard set then leaves out `train`.
//!
//! Every timed iteration ends by reading a scalar back to the host and synchronizing the
//! device, so lazy or asynchronous backends (wgpu, CUDA) are timed for the work they actually
//! did, not for queueing it.
//!
//! `--scaling` runs the set that shows how cost grows ([`SCALING_SET`]): forward and training
//! step at batch 1, 8 and 64 for `mnist-small` and `mnist` (28×28) and `ddpm-cifar10` (32×32),
//! `ddpm-cifar10`'s U-Net at 64×64 (batch 1 and 8), `ddpm-256` at batch 1, and DDIM-50
//! sampling throughput (images/s) of the MNIST presets at batch 8; it ends with a markdown
//! table. `--batch` takes a list (`--batch 1,8,64`) and `--sample-size` runs a preset's U-Net at
//! another resolution.
//!
//! Peak memory is the process's peak RSS (`VmHWM` in `/proc/self/status`, Linux only; "n/a"
//! elsewhere). The peak is reset before each case where the kernel allows it (writing `5` to
//! `/proc/self/clear_refs`), so each figure covers that case; otherwise it is the peak since the
//! process started. On GPU backends it is host memory, not device memory.

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::backend::Autodiff;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::{Args, ValueEnum};
use ddpm_sampler::{DdimSamplerConfig, NoiseSource, sample_loop};
use ddpm_schedule::NoiseSchedule;
use ddpm_train::optim::FusedAdam;
use ddpm_unet::{Precision, UnetConfig};
use serde_json::json;

use crate::backend::{OnBackend, dispatch};
use crate::output::outln;

/// What one benchmark case times.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// One U-Net forward pass.
    Forward,
    /// One training step: forward + MSE against random ε + backward + Adam step.
    Train,
    /// A whole DDIM sample (`--steps` model calls).
    Sample,
}

impl BenchMode {
    fn name(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Train => "train",
            Self::Sample => "sample",
        }
    }
}

/// The standard set, run when neither `--mode` nor `--batch` is given.
const STANDARD_SET: [(BenchMode, usize); 4] = [
    (BenchMode::Forward, 1),
    (BenchMode::Forward, 8),
    (BenchMode::Train, 8),
    (BenchMode::Sample, 8),
];

/// How cost grows with batch and resolution (`--scaling`): (preset, resolution, mode, batches).
/// Resolution 28 and 32 are the presets' own; 64 is `ddpm-cifar10`'s U-Net at 64×64; 256 is
/// `ddpm-256`. Sampling is DDIM with `--steps` (50) steps.
pub const SCALING_SET: [(&str, usize, BenchMode, &[usize]); 11] = [
    ("mnist-small", 28, BenchMode::Forward, &[1, 8, 64]),
    ("mnist-small", 28, BenchMode::Train, &[1, 8, 64]),
    ("mnist-small", 28, BenchMode::Sample, &[8]),
    ("mnist", 28, BenchMode::Forward, &[1, 8, 64]),
    ("mnist", 28, BenchMode::Train, &[1, 8, 64]),
    ("mnist", 28, BenchMode::Sample, &[8]),
    ("ddpm-cifar10", 32, BenchMode::Forward, &[1, 8, 64]),
    ("ddpm-cifar10", 32, BenchMode::Train, &[1, 8, 64]),
    ("ddpm-cifar10", 64, BenchMode::Forward, &[1, 8]),
    ("ddpm-cifar10", 64, BenchMode::Train, &[1, 8]),
    ("ddpm-256", 256, BenchMode::Forward, &[1]),
];

/// Arguments of `ddpm bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// U-Net preset: ddpm-cifar10, ddpm-256, mnist, mnist-small or tiny (random weights).
    #[arg(long, required_unless_present = "scaling")]
    pub preset: Option<String>,
    /// What to time: forward, train or sample. Omit it (and --batch) for the standard set:
    /// forward b1, forward b8, train b8, sample b8. With --mode alone: that mode's batches
    /// from the standard set; with --batch alone: every mode at those batches.
    #[arg(long, value_enum)]
    pub mode: Option<BenchMode>,
    /// Images per iteration; a comma-separated list runs each (`--batch 1,8,64`).
    #[arg(long, value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Run the preset's U-Net at this resolution instead of its own (a multiple of
    /// 2^(levels − 1)), e.g. `--preset ddpm-cifar10 --sample-size 64`.
    #[arg(long)]
    pub sample_size: Option<usize>,
    /// Run the scaling set instead of one preset: forward and training step against batch
    /// (1, 8, 64) and resolution (28, 32, 64, 256), DDIM sampling in images/s; ends with a
    /// markdown table. --preset, --mode, --batch and --sample-size do not apply.
    #[arg(long, conflicts_with_all = ["preset", "mode", "batch", "sample_size"])]
    pub scaling: bool,
    /// Timed iterations per case.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Untimed warm-up iterations per case (kernel compilation, autotuning, allocator).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// DDIM steps of one `sample` iteration.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Backend and device: flex, wgpu[:N], vulkan[:N], metal, cuda[:N].
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Print one JSON object per case (preset, mode, batch, device, repeats, median_ms,
    /// min_ms, max_ms, peak_rss_mb) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run Burn's own convolution and GroupNorm ops instead of this project's fast Flex
    /// kernels (the same as `DDPM_FLEX_KERNELS=0`), to measure what the kernels bring.
    #[arg(long)]
    pub burn_kernels: bool,
    /// Float type of the U-Net in `forward` and `sample`: f32, f16 or bf16 (half precision
    /// on GPU backends; `train` is f32 only).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Print the cases the other flags select (preset, resolution, mode, batch), one per line,
    /// after checking each preset at its resolution, and time nothing.
    #[arg(long)]
    pub list: bool,
}

/// One benchmark case: a preset's U-Net at a resolution, a mode and a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Case {
    preset: String,
    sample_size: usize,
    mode: BenchMode,
    batch: usize,
}

/// The preset's config at `sample_size` (its own when `None`), dropout off, validated.
fn config_of(preset: &str, sample_size: Option<usize>) -> Result<UnetConfig> {
    let mut config = UnetConfig::preset(preset)
        .with_context(|| format!("--preset {preset}"))?
        .with_dropout(0.0);
    if let Some(size) = sample_size {
        config = config.with_sample_size(size);
    }
    config.validate().with_context(|| match sample_size {
        Some(size) => format!("preset {preset} at --sample-size {size}"),
        None => format!("preset {preset}"),
    })?;
    Ok(config)
}

/// Runs `ddpm bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    // Check everything before any backend starts up.
    ensure!(args.repeats >= 1, "--repeats must be at least 1");
    ensure!(args.steps >= 1, "--steps must be at least 1");
    if args.batch.contains(&0) {
        bail!("--batch must be at least 1");
    }
    if args.precision != Precision::F32 && args.mode == Some(BenchMode::Train) {
        bail!(
            "--mode train runs in f32 only (--precision {} applies to forward and sample)",
            args.precision
        );
    }
    for case in case_list(&args)? {
        let c = config_of(&case.preset, Some(case.sample_size))?;
        // The batch's x_t alone, before the model's activations: absurd batches are refused
        // before anything is allocated.
        let values = case.batch as u128 * (c.in_channels * c.sample_size * c.sample_size) as u128;
        if values > ddpm_pipeline::MAX_SAMPLE_VALUES as u128 {
            bail!(
                "--batch {} of {}x{}x{} images is {values} values, beyond the limit of {} \
                 (4 GiB of f32)",
                case.batch,
                c.in_channels,
                c.sample_size,
                c.sample_size,
                ddpm_pipeline::MAX_SAMPLE_VALUES
            );
        }
    }
    if args.list {
        for case in case_list(&args)? {
            crate::output::write_stdout(format_args!(
                "{} {} {} {}\n",
                case.preset,
                case.sample_size,
                case.mode.name(),
                case.batch
            ))?;
        }
        return Ok(());
    }
    if args.burn_kernels {
        ddpm_unet::kernels::set_fast_kernels(false);
    }
    let device = args.device.clone();
    dispatch(&device, args)
}

/// Whether `mode` runs in `precision` (training is f32 only).
fn runs_in(mode: BenchMode, precision: Precision) -> bool {
    mode != BenchMode::Train || precision == Precision::F32
}

/// Every case the arguments ask for, in order (no training cases in half precision).
fn case_list(args: &BenchArgs) -> Result<Vec<Case>> {
    Ok(all_cases(args)?
        .into_iter()
        .filter(|case| runs_in(case.mode, args.precision))
        .collect())
}

/// Every case the arguments ask for, in order, in any precision.
fn all_cases(args: &BenchArgs) -> Result<Vec<Case>> {
    if args.scaling {
        return Ok(SCALING_SET
            .iter()
            .flat_map(|&(preset, sample_size, mode, batches)| {
                batches.iter().map(move |&batch| Case {
                    preset: preset.to_string(),
                    sample_size,
                    mode,
                    batch,
                })
            })
            .collect());
    }
    let preset = args
        .preset
        .clone()
        .context("--preset is required without --scaling")?;
    let sample_size = config_of(&preset, args.sample_size)?.sample_size;
    Ok(cases(args.mode, &args.batch)
        .into_iter()
        .map(|(mode, batch)| Case {
            preset: preset.clone(),
            sample_size,
            mode,
            batch,
        })
        .collect())
}

/// The (mode, batch) cases of one preset, in order.
fn cases(mode: Option<BenchMode>, batches: &[usize]) -> Vec<(BenchMode, usize)> {
    const MODES: [BenchMode; 3] = [BenchMode::Forward, BenchMode::Train, BenchMode::Sample];
    match (mode, batches.is_empty()) {
        (Some(m), false) => batches.iter().map(|&b| (m, b)).collect(),
        (Some(m), true) => STANDARD_SET
            .into_iter()
            .filter(|&(sm, _)| sm == m)
            .collect(),
        (None, false) => MODES
            .into_iter()
            .flat_map(|m| batches.iter().map(move |&b| (m, b)))
            .collect(),
        (None, true) => STANDARD_SET.to_vec(),
    }
}

/// Timings of one case, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Stats {
    /// Median (mean of the middle two for an even count), min and max; `times` is not empty.
    fn of(mut times: Vec<f64>) -> Self {
        times.sort_by(f64::total_cmp);
        let n = times.len();
        let median_ms = if n % 2 == 1 {
            times[n / 2]
        } else {
            0.5 * (times[n / 2 - 1] + times[n / 2])
        };
        Self {
            median_ms,
            min_ms: times[0],
            max_ms: times[n - 1],
        }
    }
}

/// Peak resident set size in MiB (`VmHWM`), or `None` where it cannot be read.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak RSS to the current RSS (Linux ≥ 4.0); silently does nothing elsewhere.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `iter` `warmup` times untimed, then `repeats` times timed.
fn time_it(warmup: usize, repeats: usize, mut iter: impl FnMut() -> Result<()>) -> Result<Stats> {
    for _ in 0..warmup {
        iter()?;
    }
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        iter()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Stats::of(times))
}

/// Waits for every queued computation on `device`.
fn sync<B: Backend>(device: &B::Device) -> Result<()> {
    B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))
}

/// Reads a tensor's sum back to the host (forces a lazy backend to compute it).
fn read_back<B: Backend>(x: Tensor<B, 4>) -> f64 {
    use burn::tensor::ElementConversion;
    x.sum().into_scalar().elem::<f64>()
}

/// Random x (normal) and deterministic spread-out timesteps of a batch.
fn inputs<B: Backend>(
    config: &UnetConfig,
    batch: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let shape = [
        batch,
        config.in_channels,
        config.sample_size,
        config.sample_size,
    ];
    let x = Tensor::random(shape, Distribution::Normal(0.0, 1.0), device);
    let t = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..batch as i64)
                .map(|i| (i * 127 + 3) % 1000)
                .collect::<Vec<_>>(),
            [batch],
        ),
        device,
    );
    (x, t)
}

fn bench_forward<B: Backend>(
    config: &UnetConfig,
    batch: usize,
    args: &BenchArgs,
    device: &B::Device,
) -> Result<Stats> {
    let unet = config.init::<B>(device)?.with_precision(args.precision)?;
    let (x, t) = inputs::<B>(config, batch, device);
    sync::<B>(device)?;
    time_it(args.warmup, args.repeats, || {
        let out = unet.forward(x.clone(), t.clone());
        ensure!(
            read_back(out).is_finite(),
            "forward returned a non-finite value"
        );
        sync::<B>(device)
    })
}

fn bench_train<B: Backend>(
    config: &UnetConfig,
    batch: usize,
    args: &BenchArgs,
    device: &B::Device,
) -> Result<Stats> {
    let mut model = Some(config.init::<Autodiff<B>>(device)?);
    let mut optim = FusedAdam::default().init();
    let (x, t) = inputs::<Autodiff<B>>(config, batch, device);
    let eps = x.random_like(Distribution::Normal(0.0, 1.0));
    sync::<Autodiff<B>>(device)?;
    time_it(args.warmup, args.repeats, || {
        let unet = model.take().expect("the model is put back after each step");
        let loss = (unet.forward(x.clone(), t.clone()) - eps.clone())
            .square()
            .mean();
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        let unet = optim.step(2e-4, unet, grads);
        model = Some(unet);
        use burn::tensor::ElementConversion;
        let loss = loss.into_scalar().elem::<f64>();
        ensure!(loss.is_finite(), "the training loss is not finite");
        // The loss is read before the update; wait for the Adam step too.
        sync::<Autodiff<B>>(device)
    })
}

fn bench_sample<B: Backend>(
    config: &UnetConfig,
    batch: usize,
    args: &BenchArgs,
    device: &B::Device,
) -> Result<Stats> {
    let unet = config.init::<B>(device)?.with_precision(args.precision)?;
    let schedule = NoiseSchedule::paper();
    let mut sampler = DdimSamplerConfig::new()
        .with_num_inference_steps(args.steps)
        .init(&schedule)
        .map_err(|e| anyhow::anyhow!("--steps {}: {e}", args.steps))?;
    let (x_t, _) = inputs::<B>(config, batch, device);
    let mut noise = NoiseSource::<B>::seeded(0);
    let model = |x: Tensor<B, 4>, t: Tensor<B, 1, Int>| unet.forward(x, t);
    sync::<B>(device)?;
    time_it(args.warmup, args.repeats, || {
        let out = sample_loop(&mut sampler, &model, x_t.clone(), &mut noise, |_| {}, None)?;
        ensure!(read_back(out).is_finite(), "the sample is not finite");
        sync::<B>(device)
    })
}

impl OnBackend for BenchArgs {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let kernels = if ddpm_unet::kernels::fast_kernels_apply::<B>() {
            "fast"
        } else {
            "burn"
        };
        let cases = case_list(&self)?;
        if !self.json {
            outln!(
                "ddpm bench: device {} ({}), {}, {kernels} kernels, {} warm-up + {} timed iterations",
                self.device,
                B::name(&device),
                self.precision,
                self.warmup,
                self.repeats,
            )?;
        }
        let mut rows = Vec::new();
        let mut current: Option<(&str, usize)> = None;
        for case in &cases {
            let config = config_of(&case.preset, Some(case.sample_size))?;
            if !self.json && current != Some((case.preset.as_str(), case.sample_size)) {
                outln!(
                    "preset {} ({} parameters, {}×{}×{})",
                    case.preset,
                    config.num_params(),
                    config.in_channels,
                    config.sample_size,
                    config.sample_size,
                )?;
                current = Some((case.preset.as_str(), case.sample_size));
            }
            let (mode, batch) = (case.mode, case.batch);
            reset_peak_rss();
            let stats = match mode {
                BenchMode::Forward => bench_forward::<B>(&config, batch, &self, &device),
                BenchMode::Train => bench_train::<B>(&config, batch, &self, &device),
                BenchMode::Sample => bench_sample::<B>(&config, batch, &self, &device),
            }
            .with_context(|| {
                format!(
                    "{} {}×{} {} at batch {batch}",
                    case.preset,
                    case.sample_size,
                    case.sample_size,
                    mode.name()
                )
            })?;
            let rss = peak_rss_mb();
            let images_per_s = batch as f64 * 1e3 / stats.median_ms;
            if self.json {
                let mut line = json!({
                    "preset": case.preset,
                    "sample_size": case.sample_size,
                    "mode": mode.name(),
                    "batch": batch,
                    "device": self.device,
                    "repeats": self.repeats,
                    "median_ms": stats.median_ms,
                    "min_ms": stats.min_ms,
                    "max_ms": stats.max_ms,
                    "images_per_s": images_per_s,
                    "peak_rss_mb": rss,
                    "kernels": kernels,
                    "precision": self.precision.name(),
                });
                if mode == BenchMode::Sample {
                    line["steps"] = json!(self.steps);
                }
                outln!("{line}")?;
            } else {
                let what = mode_label(mode, self.steps);
                let rss = rss.map_or_else(|| "n/a".to_string(), |mb| format!("{mb:.0} MiB"));
                let per_image = stats.median_ms / batch as f64;
                outln!(
                    "  {what:<24} b{batch:<4} median {:>10.2} ms  (min {:.2}, max {:.2}; {per_image:.2} ms/image, {images_per_s:.1} images/s)  peak RSS {rss}",
                    stats.median_ms,
                    stats.min_ms,
                    stats.max_ms,
                )?;
            }
            rows.push((case.clone(), stats, rss));
        }
        if self.scaling && !self.json {
            outln!()?;
            crate::output::write_stdout(format_args!("{}", scaling_table(&rows, self.steps)))?;
        }
        Ok(())
    }
}

/// "forward", "train", or "sample (N DDIM steps)".
fn mode_label(mode: BenchMode, steps: usize) -> String {
    match mode {
        BenchMode::Sample => format!("sample ({steps} DDIM steps)"),
        m => m.name().to_string(),
    }
}

/// The markdown table of a `--scaling` run.
fn scaling_table(rows: &[(Case, Stats, Option<f64>)], steps: usize) -> String {
    let mut out = String::from(
        "| preset | resolution | mode | batch | median ms | ms/image | images/s | peak RSS MiB |\n\
         |---|---:|---|---:|---:|---:|---:|---:|\n",
    );
    for (case, stats, rss) in rows {
        let rss = rss.map_or_else(|| "n/a".to_string(), |mb| format!("{mb:.0}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.2} | {:.1} | {rss} |\n",
            case.preset,
            case.sample_size,
            mode_label(case.mode, steps),
            case.batch,
            stats.median_ms,
            stats.median_ms / case.batch as f64,
            case.batch as f64 * 1e3 / stats.median_ms,
        ));
    }
    out
}
