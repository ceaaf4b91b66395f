//! `ddpm eval nll`: bits/dim of images under a model's variational bound (Ho et al. 2020,
//! arXiv:2006.11239v2, Eqs. 3, 5 and 13; Table 2's "NLL ≤ 3.75 bits/dim"), the original code's
//! `calc_bpd_loop`, with its standard error over images, a per-term breakdown (prior, per-t
//! VLB terms, MSE of x̂₀ and ε), a JSON report and a plot of the per-t terms.
//!
//! `--timesteps all` evaluates every t (T model calls per batch); `--timesteps K` is the
//! stratified estimator of [`ddpm_loss::BpdTimesteps::Stratified`]: t = 0 exactly plus one t per
//! image from each of K − 1 equal strata of {1, …, T − 1}, weighted by the stratum size;
//! unbiased for the full bound, its sampling noise included in the standard error.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::backend::Backend;
use clap::{Args, Subcommand};
use ddpm_data::{DataSpec, ImageSize, LoadOptions, Split};
use ddpm_forward::ForwardProcess;
use ddpm_loss::{BpdConfig, BpdOutput, BpdTimesteps, RateDistortionPoint};
use ddpm_pipeline::ModelDir;
use ddpm_schedule::{PredictionType, SamplingConfig, VarianceType};
use ddpm_unet::{Unet, UnetConfig};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use serde_json::{Value, json};

use crate::backend::{OnBackend, dispatch};
use crate::output::{note, outln};
use crate::plot::{Panel, Series, line_panels};

/// Arguments of `ddpm eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: EvalCommand,
}

/// Subcommands of `ddpm eval`.
#[derive(Subcommand, Debug, Clone)]
pub enum EvalCommand {
    /// Bits/dim (negative log-likelihood bound) of images, with standard error and breakdown.
    Nll(NllArgs),
    /// Rate–distortion of progressive coding (the paper's Fig. 5 and Table 4): for each t, the
    /// bits spent until x_t (L_T + Σ_{s≥t} L_s) against the RMSE of x̂₀(x_t) on [0, 255]. The
    /// same evaluation as `eval nll` (same arguments; its total rate is the bits/dim `eval nll`
    /// reports); `--report` adds the curve, `--plot` draws it.
    RateDistortion(NllArgs),
    /// Fréchet distance (FID with Inception features, FLD with the bundled digit classifier),
    /// KID, precision/recall and classifier score of generated images against a data set.
    Fid(super::fid::FidArgs),
}

/// Arguments of `ddpm eval nll`.
#[derive(Args, Debug, Clone)]
pub struct NllArgs {
    /// The model: a diffusers pipeline or `UNet2DModel` directory, a native checkpoint
    /// directory, a `ddpm train` run (EMA weights of its newest checkpoint) or checkpoint
    /// directory, or `preset:NAME` (random weights, for sanity checks; see `--seed`).
    #[arg(long)]
    pub unet: String,
    /// diffusers `scheduler_config.json` (or a directory holding one). Default: the one stored
    /// with the model, else the paper's schedule (T = 1000, linear β, ε, fixed_large).
    #[arg(long)]
    pub scheduler: Option<PathBuf>,
    /// The images: a folder of PNG/JPEG, `mnist:<dir>`, `fashion-mnist:<dir>` or
    /// `cifar10:<dir>`; converted to the model's channels and size.
    #[arg(long)]
    pub data: String,
    /// Split of MNIST / CIFAR-10 to read: test or train.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// How many images (the first N of the split).
    #[arg(long, default_value_t = 100)]
    pub num_images: usize,
    /// `all` (T model calls per image batch, the exact bound) or K ≥ 2 (stratified estimate).
    #[arg(long, default_value = "all")]
    pub timesteps: String,
    /// Images per model call.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Override the config's prediction type: epsilon, sample, v_prediction or mean.
    #[arg(long)]
    pub prediction_type: Option<PredictionType>,
    /// Override the config's variance type: fixed_small, fixed_large, learned or
    /// learned_range. Without a scheduler config: fixed_large (the paper's better bound).
    #[arg(long)]
    pub variance_type: Option<VarianceType>,
    /// Do not clip x̂₀ to [−1, 1] (the original `calc_bpd_loop` clips).
    #[arg(long)]
    pub no_clip: bool,
    /// Seed of the host RNG (noise and stratified timesteps; preset weights use the backend's
    /// default initialization).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the JSON report here (`bits_per_dim`, `stderr`, per-term breakdown).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Plot the per-t terms (L_t in bits/dim, MSE of x̂₀ and ε) to this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Backend and device: flex, wgpu[:N], vulkan[:N], metal, cuda[:N].
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Runs `ddpm eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    match args.command {
        EvalCommand::Nll(args) => {
            let device = args.device.clone();
            dispatch(&device, Task(args, Mode::Nll))
        }
        EvalCommand::RateDistortion(args) => {
            let device = args.device.clone();
            dispatch(&device, Task(args, Mode::RateDistortion))
        }
        EvalCommand::Fid(args) => super::fid::run(args),
    }
}

/// What `nll` reports: the bound, or the rate–distortion curve read off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Nll,
    RateDistortion,
}

struct Task(NllArgs, Mode);

impl OnBackend for Task {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        nll::<B>(self.0, self.1, &device)
    }
}

/// A scheduler config and the file it was read from.
type StoredScheduler = (SamplingConfig, String);

/// The model and its scheduler config: `preset:NAME` (random weights, no config) or any model
/// directory [`ModelDir::resolve`] accepts (EMA weights of a training run).
fn load_model<B: Backend>(
    spec: &str,
    device: &B::Device,
) -> Result<(Unet<B>, Option<StoredScheduler>)> {
    if let Some(name) = spec.strip_prefix("preset:") {
        let config = UnetConfig::preset(name)?.with_dropout(0.0);
        return Ok((config.init::<B>(device)?, None));
    }
    let model = ModelDir::resolve(spec, None)?;
    let unet = model
        .load_unet::<B>(device)
        .with_context(|| format!("loading {model}"))?;
    let scheduler = model.load_scheduler_config()?.map(|loaded| {
        let path = model.scheduler_config_path().expect("loaded from a path");
        (loaded.config, path.display().to_string())
    });
    Ok((unet, scheduler))
}

fn parse_timesteps(s: &str) -> Result<BpdTimesteps> {
    if s == "all" {
        return Ok(BpdTimesteps::All);
    }
    let k: usize = s
        .parse()
        .with_context(|| format!("--timesteps {s:?}: expected `all` or a number K >= 2"))?;
    Ok(BpdTimesteps::Stratified { k })
}

fn nll<B: Backend>(args: NllArgs, mode: Mode, device: &B::Device) -> Result<()> {
    ensure!(args.num_images > 0, "--num-images must be at least 1");
    ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let timesteps = parse_timesteps(&args.timesteps)?;
    if let Some(path) = &args.report {
        ddpm_io::check_output_file(path).context("--report")?;
    }
    if let Some(path) = &args.plot {
        ddpm_io::check_output_file(path).context("--plot")?;
    }
    let (unet, stored) = load_model::<B>(&args.unet, device)?;
    let scheduler = match &args.scheduler {
        Some(path) => Some((
            SamplingConfig::load(path)
                .with_context(|| format!("--scheduler {}", path.display()))?
                .config,
            path.display().to_string(),
        )),
        None => stored,
    };
    let (schedule_config, prediction_type, variance_type, source) = match &scheduler {
        Some((c, path)) => (
            c.schedule.clone(),
            c.prediction_type,
            c.variance_type,
            path.clone(),
        ),
        None => (
            Default::default(),
            PredictionType::Epsilon,
            VarianceType::FixedLarge,
            "the paper's defaults".to_string(),
        ),
    };
    let prediction_type = args.prediction_type.unwrap_or(prediction_type);
    let variance_type = args.variance_type.unwrap_or(variance_type);
    let schedule = schedule_config.build()?;
    let uc = unet.config().clone();
    let expected_out = if variance_type.is_learned() {
        2 * uc.in_channels
    } else {
        uc.in_channels
    };
    if uc.out_channels != expected_out {
        bail!(
            "the model outputs {} channels for {}-channel images, but variance type {} needs {}",
            uc.out_channels,
            uc.in_channels,
            variance_type.diffusers_name(),
            expected_out
        );
    }

    let spec: DataSpec = args.data.parse()?;
    let split: Split = args.split.parse()?;
    let opts =
        LoadOptions::new(uc.in_channels, ImageSize::square(uc.sample_size)).with_split(split);
    let dataset = spec
        .open(&opts)
        .with_context(|| format!("loading images from {spec}"))?;
    ensure!(!dataset.is_empty(), "{spec} holds no images");
    let n = args.num_images.min(dataset.len());
    if n < args.num_images {
        note!("note: {spec} has only {n} images; evaluating all of them");
    }

    let fp = ForwardProcess::<B>::new(&schedule, device);
    let evaluator = BpdConfig::new()
        .with_prediction_type(prediction_type)
        .with_variance_type(variance_type)
        .with_clip_denoised(!args.no_clip)
        .with_timesteps(timesteps)
        .init(&fp)?;
    let steps = evaluator.strata().len();
    let batches = n.div_ceil(args.batch_size);
    note!(
        "eval nll: {n} images ({}×{}×{}) from {spec}, T = {}, {} model calls per batch, \
         {} / {}, clip x̂₀ {}; schedule from {source}",
        uc.in_channels,
        uc.sample_size,
        uc.sample_size,
        schedule.num_train_timesteps(),
        steps,
        prediction_type.diffusers_name(),
        variance_type.diffusers_name(),
        !args.no_clip,
    );
    let bar = ProgressBar::new((steps * batches) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} model calls [{elapsed} < {eta}]")
            .expect("a valid template"),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut result: Option<BpdOutput> = None;
    let (c, s) = (uc.in_channels, uc.sample_size);
    for b in 0..batches {
        let lo = b * args.batch_size;
        let hi = (lo + args.batch_size).min(n);
        let images: Vec<f32> = (lo..hi)
            .flat_map(|i| {
                dataset
                    .image(i)
                    .iter()
                    .map(|&v| ddpm_data::scale_to_model_range(v))
            })
            .collect();
        let x0 = burn::tensor::Tensor::<B, 4>::from_data(
            burn::tensor::TensorData::new(images, [hi - lo, c, s, s]),
            device,
        );
        let done = b * steps;
        let out = evaluator.evaluate(
            x0,
            |x_t, t| unet.forward(x_t, t),
            &mut rng,
            |step, _| bar.set_position((done + step) as u64),
        )?;
        match &mut result {
            Some(r) => r.append(out)?,
            None => result = Some(out),
        }
    }
    bar.finish_and_clear();
    let result = result.expect("at least one batch");
    let bpd = result.bits_per_dim();
    let stderr = result.stderr();
    match stderr {
        Some(se) => outln!("bits/dim: {bpd:.4} ± {se:.4} (standard error over {n} images)")?,
        None => outln!("bits/dim: {bpd:.4} (one image: no standard error)")?,
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let prior = mean(&result.prior);
    let decoder = result
        .terms
        .iter()
        .find(|t| t.range.start == 0)
        .map(|t| mean(&t.vb))
        .unwrap_or(f64::NAN);
    let kl_sum: f64 = result
        .terms
        .iter()
        .filter(|t| t.range.start > 0)
        .map(|t| t.weight() as f64 * mean(&t.vb))
        .sum();
    outln!("  prior L_T        {prior:.6}")?;
    outln!("  Σ L_(t-1), t > 1 {kl_sum:.4}")?;
    outln!("  decoder L_0      {decoder:.4}")?;
    let curve = (mode == Mode::RateDistortion).then(|| result.rate_distortion());
    if let Some(curve) = &curve {
        print_rate_distortion(curve)?;
    }

    if let Some(path) = &args.report {
        let mut report = report_json(&args, &result, &source, prediction_type, variance_type);
        if let Some(curve) = &curve {
            report["rate_distortion"] = serde_json::to_value(curve)?;
        }
        ddpm_io::write_atomic(path, serde_json::to_string_pretty(&report)? + "\n")?;
        note!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        match &curve {
            Some(curve) => plot_rate_distortion(curve, path)?,
            None => plot_terms(&result, path)?,
        }
        note!("wrote {}", path.display());
    }
    Ok(())
}

/// Table 4's layout: rows at t = T, 0.9 T, …, 0.1 T, 0.05 T, 0.01 T, 1 and 0 (the nearest
/// points the evaluation has).
fn print_rate_distortion(curve: &[RateDistortionPoint]) -> Result<()> {
    let top = curve[0].t;
    let targets = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01]
        .iter()
        .map(|f| (f * top as f64).round() as usize)
        .chain([1, 0]);
    let mut shown: Vec<&RateDistortionPoint> = Vec::new();
    for target in targets {
        let nearest = curve
            .iter()
            .min_by_key(|p| p.t.abs_diff(target))
            .expect("a curve has points");
        if !shown.iter().any(|p| p.t == nearest.t) {
            shown.push(nearest);
        }
    }
    outln!("rate-distortion (paper's t: x_t received; rate L_T + sum_(s>=t) L_s):")?;
    outln!(
        "  {:>6}  {:>12}  {:>18}",
        "t",
        "rate (b/dim)",
        "distortion (RMSE)"
    )?;
    for p in shown {
        outln!(
            "  {:>6}  {:>12.5}  {:>18.5}",
            p.t,
            p.rate_bpd,
            p.distortion_rmse
        )?;
    }
    Ok(())
}

/// Fig. 5: distortion and rate against the reverse-process time, and distortion against rate.
fn plot_rate_distortion(curve: &[RateDistortionPoint], path: &Path) -> Result<()> {
    let top = curve[0].t as f64;
    let steps = |p: &RateDistortionPoint| top - p.t as f64;
    let series = |name: &str, points: Vec<(f64, f64)>| Series {
        name: name.into(),
        points,
    };
    line_panels(
        path,
        &[
            Panel {
                title: "Distortion".into(),
                x_label: "reverse process steps (T - t)".into(),
                y_label: "RMSE of x̂₀ on [0, 255]".into(),
                log_y: false,
                series: vec![series(
                    "distortion",
                    curve
                        .iter()
                        .map(|p| (steps(p), p.distortion_rmse))
                        .collect(),
                )],
            },
            Panel {
                title: "Rate".into(),
                x_label: "reverse process steps (T - t)".into(),
                y_label: "bits/dim".into(),
                log_y: false,
                series: vec![series(
                    "rate",
                    curve.iter().map(|p| (steps(p), p.rate_bpd)).collect(),
                )],
            },
            Panel {
                title: "Rate-distortion".into(),
                x_label: "rate (bits/dim)".into(),
                y_label: "RMSE of x̂₀ on [0, 255]".into(),
                log_y: false,
                series: vec![series(
                    "distortion",
                    curve
                        .iter()
                        .map(|p| (p.rate_bpd, p.distortion_rmse))
                        .collect(),
                )],
            },
        ],
    )
}

fn report_json(
    args: &NllArgs,
    r: &BpdOutput,
    schedule_source: &str,
    prediction_type: PredictionType,
    variance_type: VarianceType,
) -> Value {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let terms: Vec<Value> = r
        .terms
        .iter()
        .map(|t| {
            json!({
                "t_start": t.range.start,
                "t_end": t.range.end,
                "weight": t.weight(),
                "vb_bpd": mean(&t.vb),
                "x0_mse": mean(&t.x0_mse),
                "eps_mse": mean(&t.eps_mse),
            })
        })
        .collect();
    let estimator = if r.terms.len() == r.terms.iter().map(|t| t.weight()).sum::<usize>() {
        "all timesteps: L_T + sum_t L_t".to_string()
    } else {
        format!(
            "stratified: L_T + L_0 + sum_k n_k L_(t_k), t_k uniform per image in each of {} strata \
             of 1..T-1 (unbiased)",
            r.terms.len() - 1
        )
    };
    json!({
        "bits_per_dim": r.bits_per_dim(),
        "stderr": r.stderr(),
        "num_images": r.num_images(),
        "model": args.unet,
        "data": args.data,
        "split": args.split,
        "scheduler": schedule_source,
        "prediction_type": prediction_type.diffusers_name(),
        "variance_type": variance_type.diffusers_name(),
        "clip_denoised": !args.no_clip,
        "seed": args.seed,
        "estimator": estimator,
        "prior_bpd": mean(&r.prior),
        "terms": terms,
        "per_image_bits_per_dim": r.total,
    })
}

fn plot_terms(r: &BpdOutput, path: &Path) -> Result<()> {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // Paper's t = index + 1; a stratum is drawn at its mean drawn t.
    let at = |t: &ddpm_loss::BpdTerm| {
        mean(&t.timesteps.iter().map(|&x| x as f64).collect::<Vec<_>>()) + 1.0
    };
    let mut terms: Vec<_> = r.terms.iter().collect();
    terms.sort_by_key(|t| t.range.start);
    let series = |name: &str, f: &dyn Fn(&ddpm_loss::BpdTerm) -> f64| Series {
        name: name.into(),
        points: terms
            .iter()
            .map(|t| (at(t), f(t)))
            .filter(|(_, y)| *y > 0.0 && y.is_finite())
            .collect(),
    };
    line_panels(
        path,
        &[
            Panel {
                title: "VLB term L_t (bits/dim)".into(),
                x_label: "t".into(),
                y_label: "bits/dim (log scale)".into(),
                log_y: true,
                series: vec![series("L_t", &|t| mean(&t.vb))],
            },
            Panel {
                title: "MSE of x̂₀ and ε".into(),
                x_label: "t".into(),
                y_label: "mean squared error (log scale)".into(),
                log_y: true,
                series: vec![
                    series("x̂₀", &|t| mean(&t.x0_mse)),
                    series("ε", &|t| mean(&t.eps_mse)),
                ],
            },
        ],
    )
}
