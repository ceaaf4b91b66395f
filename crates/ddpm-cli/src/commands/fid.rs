//! `ddpm eval fid`: the Fréchet distance (Heusel et al. 2017; the paper's Table 1 metric) of
//! generated images against a reference data set, with KID, precision/recall and, for the
//! bundled digit classifier, its classifier score (the Inception-score analogue). The
//! computation is `ddpm_eval`'s; this file picks the images and prints.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use clap::Args;
use ddpm_data::{DataSpec, ImageSize, LoadOptions, Split};
use ddpm_eval::{
    FeatureSpec, KidConfig, PrdConfig, QualityConfig, QualityReport, cached_reference_stats,
    compare, default_cache_dir, extract, quantize, reference_stats,
};
use ddpm_pipeline::tensor_file::load_tensor;
use ddpm_pipeline::{ModelDir, Pipeline, SamplerKind, SamplerOverrides, Weights};

use crate::backend::{OnBackend, dispatch};
use crate::output::{note, outln};

/// Arguments of `ddpm eval fid`.
#[derive(Args, Debug, Clone)]
pub struct FidArgs {
    /// Reference images: `mnist:<dir>`, `fashion-mnist:<dir>`, `cifar10:<dir>` or a folder of
    /// PNG/JPEG.
    #[arg(long)]
    pub data: String,
    /// Split of MNIST / CIFAR-10 used as the reference: train or test.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Reference images used (the first N of the split) [default: all].
    #[arg(long)]
    pub reference_images: Option<usize>,
    /// Generated images: a folder of PNG/JPEG (`ddpm sample --output-dir`), or a safetensors
    /// file of samples (`ddpm sample --save-tensor`). Or draw them with --unet.
    #[arg(
        long,
        conflicts_with_all = ["unet", "samples_data"],
        required_unless_present_any = ["unet", "samples_data"]
    )]
    pub samples: Option<PathBuf>,
    /// Or score a data set's images (e.g. `mnist:data/mnist` with `--samples-split test`: real
    /// held-out images, the yardstick a model's figures are read against).
    #[arg(long, conflicts_with = "unet")]
    pub samples_data: Option<String>,
    /// Split of --samples-data: test or train.
    #[arg(long, default_value = "test")]
    pub samples_split: String,
    /// Images of --samples-data used (the first N) [default: all].
    #[arg(long, requires = "samples_data")]
    pub samples_limit: Option<usize>,
    /// Draw the generated images from this model (any directory `ddpm sample --unet` takes,
    /// with its scheduler config).
    #[arg(long)]
    pub unet: Option<PathBuf>,
    /// Weights of a training run or checkpoint: ema (default) or raw.
    #[arg(long, requires = "unet")]
    pub weights: Option<Weights>,
    /// Sampler for --unet: ddpm, ddim or dpm-solver++ [default: the config's].
    #[arg(long, requires = "unet")]
    pub sampler: Option<SamplerKind>,
    /// Sampling steps for --unet [default: the sampler's].
    #[arg(long, requires = "unet")]
    pub steps: Option<usize>,
    /// Images drawn with --unet (FID is biased upward at small N: compare figures at equal N).
    #[arg(long, default_value_t = 1000)]
    pub num_samples: usize,
    /// Seed of the sampling with --unet.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per model / extractor call.
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
    /// Channels the images are compared at (1 or 3) [default: the samples', or the reference
    /// data set's for a folder of samples].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Side the images are compared at, before the extractor's own resize [default: as
    /// --channels].
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Feature extractor: `digits` (the bundled digit classifier: "FLD" and its classifier
    /// score), `digits:PATH`, or `inception:PATH` (pytorch-fid's Inception-v3 weights; FID).
    #[arg(long, default_value = "digits")]
    pub features: String,
    /// Reference statistics cache [default: $DDPM_CACHE_DIR, else $XDG_CACHE_HOME/ddpm, else
    /// ~/.cache/ddpm].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Compute the reference statistics without reading or writing the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// KID subsets (0: no KID).
    #[arg(long, default_value_t = 100)]
    pub kid_subsets: usize,
    /// KID subset size (capped at the smaller set).
    #[arg(long, default_value_t = 1000)]
    pub kid_subset_size: usize,
    /// k of precision/recall (0: no precision/recall).
    #[arg(long, default_value_t = 3)]
    pub pr_k: usize,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Backend: flex, wgpu[:N], vulkan[:N], metal, cuda[:N].
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Runs `ddpm eval fid`.
pub fn run(args: FidArgs) -> Result<()> {
    let device = args.device.clone();
    dispatch(&device, Task(args))
}

struct Task(FidArgs);

impl OnBackend for Task {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        fid::<B>(self.0, &device)
    }
}

/// Channels and side of the reference data set as published (MNIST 1×28, CIFAR-10 3×32).
fn native_shape(spec: &DataSpec) -> Option<(usize, usize)> {
    match spec {
        DataSpec::Mnist(_) | DataSpec::FashionMnist(_) => Some((1, 28)),
        DataSpec::Cifar10(_) => Some((3, 32)),
        DataSpec::ImageFolder(_) => None,
    }
}

/// Channels and side images from `source` are read at: `--channels`/`--image-size`, each
/// defaulting to `spec`'s published shape; an error naming `source` when `spec` has none.
fn read_shape(args: &FidArgs, spec: &DataSpec, source: &str) -> Result<(usize, usize)> {
    Ok(match (args.channels, args.image_size, native_shape(spec)) {
        (Some(c), Some(s), _) => (c, s),
        (c, s, Some((nc, ns))) => (c.unwrap_or(nc), s.unwrap_or(ns)),
        _ => bail!("{source}: give --channels and --image-size to compare the images at"),
    })
}

fn fid<B: Backend>(args: FidArgs, device: &B::Device) -> Result<()> {
    ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    if let Some(path) = &args.report {
        ddpm_io::check_output_file(path).context("--report")?;
    }
    if args.unet.is_some() {
        ensure!(
            args.num_samples >= 2,
            "--num-samples {}: the statistics need at least 2 images",
            args.num_samples
        );
    }
    let features: FeatureSpec = args.features.parse()?;
    let spec: DataSpec = args.data.parse().context("--data")?;
    let split: Split = args.split.parse()?;
    let config = QualityConfig {
        kid: (args.kid_subsets > 0).then(|| {
            KidConfig::default()
                .with_subsets(args.kid_subsets)
                .with_subset_size(args.kid_subset_size)
        }),
        precision_recall: (args.pr_k > 0).then(|| PrdConfig::default().with_k(args.pr_k)),
        batch_size: args.batch_size,
        ..QualityConfig::default()
    };
    let extractor = features.load::<B>(device)?;

    // The generated images, as a model-range tensor.
    let generated: Tensor<B, 4> = if let Some(unet) = &args.unet {
        let model = ModelDir::resolve(unet, args.weights)?;
        let pipe =
            Pipeline::<B>::load(&model, device).with_context(|| format!("loading {model}"))?;
        let sampling = pipe
            .sampling()
            .seed(args.seed)
            .batch_size(args.batch_size)
            .overrides(SamplerOverrides {
                kind: args.sampler,
                num_inference_steps: args.steps,
                ..Default::default()
            });
        let plan = sampling.plan(args.num_samples)?;
        note!(
            "drawing {} samples from {model} ({} sampler, {} steps)",
            args.num_samples,
            plan.sampler_name,
            plan.num_steps()
        );
        sampling.sample(args.num_samples)?.into_tensor()
    } else if let Some(samples) = &args.samples_data {
        let samples: DataSpec = samples.parse().context("--samples-data")?;
        let split: Split = args.samples_split.parse()?;
        let (c, s) = read_shape(
            &args,
            &samples,
            &format!("--samples-data {samples} is a folder"),
        )?;
        let opts = LoadOptions::new(c, ImageSize::square(s)).with_split(split);
        let images = samples
            .open(&opts)
            .with_context(|| format!("--samples-data {samples}"))?;
        let n = args
            .samples_limit
            .map_or(images.len(), |l| l.min(images.len()));
        note!("{n} images of {samples} ({split} split) as the samples");
        ddpm_eval::dataset_tensor::<B>(&images, 0, n, device)
    } else {
        let path = args
            .samples
            .as_ref()
            .expect("clap requires a source of samples");
        if path.is_dir() {
            let (c, s) = read_shape(
                &args,
                &spec,
                &format!(
                    "--samples {} is a folder and --data {spec} a folder too",
                    path.display()
                ),
            )?;
            let images =
                ddpm_data::load_image_folder(path, &LoadOptions::new(c, ImageSize::square(s)))
                    .with_context(|| format!("--samples {}", path.display()))?;
            note!("{} generated images from {}", images.len(), path.display());
            ddpm_eval::dataset_tensor::<B>(&images, 0, images.len(), device)
        } else {
            load_tensor::<B, 4>(path, &["samples"], device).context("--samples")?
        }
    };
    let [n, c, h, w] = generated.dims();
    ensure!(
        n >= 2,
        "{n} generated images: the statistics need at least 2"
    );
    ensure!(
        h == w,
        "the generated images are {h}×{w}; only square images are compared"
    );
    let s = h;
    if args.channels.is_some_and(|x| x != c) || args.image_size.is_some_and(|x| x != s) {
        bail!(
            "the generated images are {c}×{s}×{s}; --channels/--image-size apply to image \
             folders and data sets only"
        );
    }

    // The reference images at the same channels and size.
    let opts = LoadOptions::new(c, ImageSize::square(s)).with_split(split);
    let dataset = spec
        .open(&opts)
        .with_context(|| format!("loading reference images from {spec}"))?;
    ensure!(dataset.len() >= 2, "{spec} holds fewer than 2 images");
    let key = format!("{spec}#{split}@{c}x{s}x{s}");
    let reference = if args.no_cache {
        reference_stats(
            extractor.as_ref(),
            &dataset,
            &key,
            args.reference_images,
            &config,
            device,
        )?
    } else {
        let dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
        let (stats, path, cached) = cached_reference_stats(
            &dir,
            extractor.as_ref(),
            &dataset,
            &key,
            args.reference_images,
            &config,
            device,
        )?;
        note!(
            "reference statistics {} {}",
            if cached { "read from" } else { "saved to" },
            path.display()
        );
        stats
    };

    let extracted = extract(extractor.as_ref(), quantize(generated), args.batch_size)?;
    let report = compare(&extracted, &reference, &config)?;
    print_report(&report, features.metric_name())?;
    if let Some(path) = &args.report {
        let mut json = report.to_json();
        json["features"] = features.to_string().into();
        json["metric"] = features.metric_name().into();
        ddpm_io::write_atomic(path, format!("{json:#}\n"))?;
        note!("wrote {}", path.display());
    }
    Ok(())
}

fn print_report(r: &QualityReport, name: &str) -> Result<()> {
    outln!(
        "{name}: {:.4}  ({} generated vs {} reference images, {})",
        r.frechet_distance,
        r.generated,
        r.reference,
        r.extractor_id
    )?;
    if let Some(k) = &r.kid {
        outln!(
            "kid: {:.6} ± {:.6}  ({} subsets of {})",
            k.mean,
            k.std,
            k.per_subset.len(),
            k.subset_size
        )?;
    }
    if let Some(p) = &r.precision_recall {
        outln!(
            "precision: {:.4}  recall: {:.4}  ({} real, {} generated)",
            p.precision,
            p.recall,
            p.real_used,
            p.generated_used
        )?;
    }
    if let Some(s) = &r.classifier_score {
        outln!(
            "classifier score: {:.4} ± {:.4}  ({} splits of {} images)",
            s.mean,
            s.std,
            s.splits,
            s.used / s.splits.max(1)
        )?;
    }
    Ok(())
}
