//! `ddpm train`: train a DDPM on a folder of images, MNIST or CIFAR-10 (Ho et al. 2020,
//! Algorithm 1 with the paper's recipe), with checkpoints, previews and exact `--resume`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Args;
use ddpm_data::{DataSpec, ImageSize, LoadOptions};
use ddpm_eval::{FeatureSpec, QualityConfig, QualityMetric};
use ddpm_loss::Objective;
use ddpm_schedule::{PredictionType, VarianceType};
use ddpm_train::parallel::{NodeConfig, ParallelTraining, PeerGroup, Reduction, Start};
use ddpm_train::{EmaWarmup, LrSchedule, SampleMetric, TrainConfig, TrainEvent, Trainer};
use ddpm_unet::UnetConfig;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{OnDevices, dispatch_devices};

/// Arguments of `ddpm train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training images: a folder (PNG/JPEG, recursive), `mnist:<dir>`, `fashion-mnist:<dir>`
    /// or `cifar10:<dir>`. The repository bundles MNIST in `data/mnist`.
    #[arg(long)]
    data: String,
    /// Model preset: ddpm-cifar10, ddpm-256, mnist, mnist-small, tiny [default: mnist]
    /// (ignored with --config; with --resume it must be the run's).
    #[arg(long)]
    preset: Option<String>,
    /// A full training config (JSON, as saved in a run's train_config.json); flags override it.
    /// With --resume, only steps and the checkpoint/preview/log cadence may differ from the
    /// run's.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory (config, checkpoints, samples, metrics).
    #[arg(long)]
    out: PathBuf,
    /// Total optimizer steps (with --resume: continue up to this total, at least the
    /// checkpoint's step).
    #[arg(long)]
    steps: Option<usize>,
    /// Images per optimizer step [paper: 128].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate [paper: 2e-4].
    #[arg(long)]
    lr: Option<f64>,
    /// Learning-rate warmup steps [paper: 5000].
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Learning rate after the warmup: constant [paper], cosine or linear (both decay towards 0
    /// at the last step; a resume to more --steps stretches the decay).
    #[arg(long)]
    lr_schedule: Option<LrSchedule>,
    /// What the model predicts: epsilon [paper], sample (x₀), v_prediction, or mean (μ̃, the
    /// paper's Table 2 ablation; not a diffusers type).
    #[arg(long)]
    prediction_type: Option<PredictionType>,
    /// Σ_θ: fixed_small [default], fixed_large (β_t), learned (log σ², Table 2's "learned
    /// diagonal Σ") or learned_range (Nichol & Dhariwal). A learned one doubles the U-Net's
    /// output channels; it needs --objective bound or hybrid.
    #[arg(long)]
    variance_type: Option<VarianceType>,
    /// What a step minimises: simple (L_simple, Eq. 14) [paper], bound (the true variational
    /// bound, Eq. 5, per sample in bits/dim) or hybrid[:λ] (L_simple + λ·L_vlb, for a learned
    /// variance).
    #[arg(long)]
    objective: Option<Objective>,
    /// EMA decay [paper: 0.9999].
    #[arg(long)]
    ema_decay: Option<f64>,
    /// diffusers-style EMA warmup (decay min(d, (1+k)/(10+k))): useful for short runs.
    #[arg(long)]
    ema_warmup: bool,
    /// Random horizontal flips.
    #[arg(long)]
    random_flip: bool,
    /// Seed of the run.
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint every N steps (always at the end).
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Preview grid every N steps (always at the end).
    #[arg(long)]
    sample_every: Option<usize>,
    /// Log every N steps [default: 100, or steps/10 for shorter runs].
    #[arg(long)]
    log_every: Option<usize>,
    /// Score samples of the EMA weights every N steps (and at the end): the Fréchet distance of
    /// --eval-features against the training data, with KID, precision/recall and classifier
    /// score, in metrics.jsonl and the progress output [default: 0, never].
    #[arg(long)]
    eval_every: Option<usize>,
    /// Samples per evaluation [default: 1000].
    #[arg(long)]
    eval_samples: Option<usize>,
    /// DDIM steps of an evaluation's sampling [default: 25].
    #[arg(long)]
    eval_steps: Option<usize>,
    /// Keep the checkpoint with the best evaluation as checkpoints/best-step-N (best.json
    /// names it).
    #[arg(long)]
    save_best: bool,
    /// Feature extractor of the evaluations: digits (bundled digit classifier: FLD),
    /// digits:PATH or inception:PATH (FID).
    #[arg(long, default_value = "digits")]
    eval_features: String,
    /// Training images the evaluation's reference statistics use (cached in the run
    /// directory).
    #[arg(long, default_value_t = 10_000)]
    eval_reference_images: usize,
    /// Continue the run in --out from its newest intact checkpoint. Settings that change a
    /// training step (batch size, lr, warmup, EMA, flips, seed, preset) and the data must be
    /// the run's; --steps, --checkpoint-every, --sample-every and --log-every may change.
    #[arg(long)]
    resume: bool,
    /// Skip unreadable images in a folder (they are counted and listed).
    #[arg(long)]
    skip_bad: bool,
    /// Backend: flex, wgpu[:N], vulkan[:N], metal, cuda[:N].
    #[arg(long, default_value = "flex", conflicts_with = "devices")]
    device: String,
    /// Data-parallel training, one peer per device, all of one backend: `cuda:0,cuda:1`,
    /// `wgpu:0,wgpu:1`, `flex,flex`. --batch-size is the global batch, split evenly over all
    /// peers (of all machines); the run is the one a single device would train, up to the
    /// rounding of the gradient mean.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// Machines in a multi-node run (each runs this command with its own --node-rank and
    /// the same settings; see `ddpm orchestrator`).
    #[arg(long, requires_all = ["node_rank", "orchestrator", "node_address", "data_port"])]
    num_nodes: Option<u32>,
    /// This machine's rank, 0..num-nodes; rank 0 writes the run (metrics, previews, evals),
    /// every machine writes checkpoints to its own --out, so each can resume.
    #[arg(long, requires = "num_nodes")]
    node_rank: Option<u32>,
    /// The orchestrator's address, ws://HOST:PORT.
    #[arg(long, requires = "num_nodes")]
    orchestrator: Option<String>,
    /// This machine's address as the other machines reach it, ws://HOST:PORT (the port is
    /// --data-port).
    #[arg(long, requires = "num_nodes")]
    node_address: Option<String>,
    /// The port this machine's tensor data service listens on.
    #[arg(long, requires = "num_nodes")]
    data_port: Option<u16>,
    /// Seconds a peer waits for the others before stopping with an error naming who is
    /// missing; must exceed the longest preview or evaluation rank 0 runs alone.
    #[arg(long, default_value_t = 600)]
    peer_timeout: u64,
    /// How peers add their gradients: ordered (in rank order, bit-reproducible) or transport
    /// (Burn's order: less traffic, last-bit differences with 3+ peers per machine).
    #[arg(long, default_value = "ordered")]
    reduction: Reduction,
}

/// Runs `ddpm train`.
pub fn run(args: TrainArgs) -> Result<()> {
    // Before any data is loaded: a regular file where the run directory goes.
    ddpm_io::check_output_dir(&args.out).context("--out")?;
    let devices = if args.devices.is_empty() {
        vec![args.device.clone()]
    } else {
        args.devices.clone()
    };
    let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
    dispatch_devices(&devices, args)
}

impl TrainArgs {
    /// The config of a new run: `--config` or `--preset`, then the flags.
    fn config(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => load_config(path)?,
            None => TrainConfig::new(UnetConfig::preset(
                self.preset.as_deref().unwrap_or("mnist"),
            )?),
        };
        self.apply_flags(&mut c);
        c.log_every = self
            .log_every
            .unwrap_or_else(|| c.log_every.min((c.steps / 10).max(1)));
        Ok(c)
    }

    /// The config a resume asks for: the run's saved one (or `--config`), with `--preset` and
    /// the flags given; the library refuses what may not change.
    fn resume_config(&self, saved: &TrainConfig) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => load_config(path)?,
            None => saved.clone(),
        };
        if let (None, Some(preset)) = (&self.config, &self.preset) {
            c.unet = UnetConfig::preset(preset)?;
        }
        self.apply_flags(&mut c);
        if let Some(v) = self.log_every {
            c.log_every = v;
        }
        Ok(c)
    }

    fn apply_flags(&self, c: &mut TrainConfig) {
        if let Some(v) = self.steps {
            c.steps = v;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        if let Some(v) = self.lr {
            c.learning_rate = v;
        }
        if let Some(v) = self.warmup_steps {
            c.warmup_steps = v;
        }
        if let Some(v) = self.lr_schedule {
            c.lr_schedule = v;
        }
        if let Some(v) = self.prediction_type {
            c.prediction_type = v;
        }
        if let Some(v) = self.variance_type {
            c.variance_type = v;
            c.fit_output_channels();
        }
        if let Some(v) = self.objective {
            c.objective = v;
        }
        if let Some(v) = self.ema_decay {
            c.ema_decay = v;
        }
        if self.ema_warmup {
            c.ema_warmup = EmaWarmup::Diffusers;
        }
        if self.random_flip {
            c.random_flip = true;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        if let Some(v) = self.checkpoint_every {
            c.checkpoint_every = v;
        }
        if let Some(v) = self.sample_every {
            c.sample_every = v;
        }
        if let Some(v) = self.eval_every {
            c.eval_every = v;
        }
        if let Some(v) = self.eval_samples {
            c.eval_samples = v;
        }
        if let Some(v) = self.eval_steps {
            c.eval_steps = v;
        }
        if self.save_best {
            c.save_best = true;
        }
    }
}

fn load_config(path: &std::path::Path) -> Result<TrainConfig> {
    TrainConfig::read(path).with_context(|| format!("reading training config {}", path.display()))
}

/// One trainer, or a data-parallel group of them.
enum Job<B: burn::tensor::backend::AutodiffBackend> {
    Single(Box<Trainer<B>>),
    Parallel(Box<ParallelTraining<B>>),
}

impl<B: burn::tensor::backend::AutodiffBackend> Job<B> {
    /// The trainer that reports: the only one, or this machine's first peer.
    fn trainer(&self) -> &Trainer<B> {
        match self {
            Self::Single(t) => t,
            Self::Parallel(p) => p.leader(),
        }
    }

    fn with_metric(self, metric: Box<dyn SampleMetric<B::InnerBackend> + Send>) -> Self {
        match self {
            Self::Single(t) => Self::Single(Box::new(t.with_metric(metric))),
            Self::Parallel(p) => Self::Parallel(Box::new(p.with_metric(metric))),
        }
    }

    fn run(self, on_event: impl FnMut(TrainEvent)) -> Result<()> {
        match self {
            Self::Single(mut t) => t.run(on_event)?,
            #[cfg(feature = "collective")]
            Self::Parallel(p) => {
                p.run(on_event)?;
            }
            #[cfg(not(feature = "collective"))]
            Self::Parallel(_) => {
                let _ = on_event;
                bail!(
                    "--devices/--num-nodes: this `ddpm` was built without the `collective` feature"
                );
            }
        }
        Ok(())
    }
}

impl TrainArgs {
    /// The peer group of `--devices` / `--num-nodes`, when there is more than one peer.
    fn group(&self, devices: usize) -> Option<PeerGroup> {
        let nodes = match (
            self.num_nodes,
            self.node_rank,
            &self.orchestrator,
            &self.node_address,
            self.data_port,
        ) {
            (
                Some(num_nodes),
                Some(node_rank),
                Some(orchestrator),
                Some(node_address),
                Some(data_port),
            ) => Some(NodeConfig {
                num_nodes,
                node_rank,
                orchestrator: orchestrator.clone(),
                node_address: node_address.clone(),
                data_port,
            }),
            _ => None,
        };
        if devices == 1 && nodes.is_none() {
            return None;
        }
        let group = match nodes {
            Some(n) => PeerGroup::multi_node(devices, n),
            None => PeerGroup::local(devices),
        };
        Some(group.with_timeout(std::time::Duration::from_secs(self.peer_timeout)))
    }
}

impl OnDevices for TrainArgs {
    type Output = ();

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<()> {
        let group = self.group(devices.len());
        let device = devices[0].clone();
        let spec: DataSpec = self.data.parse().context("--data")?;
        // Parsed before any data is loaded, so a typo fails at once.
        let eval_features: FeatureSpec = self.eval_features.parse()?;
        let (job, unet, data) = if self.resume {
            let saved = ddpm_train::checkpoint::read_train_config(&self.out)?;
            let requested = self.resume_config(&saved)?;
            let data = open(&spec, &saved.unet, self.skip_bad)?;
            let job = match group.clone() {
                None => Trainer::<Autodiff<B>>::resume_with_config(
                    &self.out,
                    data.clone(),
                    requested,
                    &device,
                )
                .map(|t| Job::Single(Box::new(t))),
                Some(group) => ParallelTraining::new(
                    Start::Resume(requested),
                    &self.out,
                    data.clone(),
                    devices,
                    group,
                )
                .map(|p| Job::Parallel(Box::new(p.with_reduction(self.reduction)))),
            }
            .with_context(|| format!("resuming {} with --data {spec}", self.out.display()))?;
            let t = job.trainer();
            if let Some(report) = t.resume_report() {
                for d in &report.damaged {
                    eprintln!("warning: skipped damaged checkpoint {d}");
                }
                for c in &report.changed {
                    eprintln!("changed {c} (saved in train_config.json)");
                    if c.setting == "steps" && t.config().lr_schedule != LrSchedule::Constant {
                        eprintln!(
                            "note: the {:?} learning-rate decay now runs to step {}",
                            t.config().lr_schedule,
                            t.config().steps
                        );
                    }
                }
            }
            eprintln!("resuming {} at step {}", self.out.display(), t.step());
            (job, saved.unet, data)
        } else {
            if ddpm_train::latest_checkpoint(&self.out)?.is_some() {
                bail!(
                    "{} already holds a run with checkpoints; pass --resume to continue it or choose another --out",
                    self.out.display()
                );
            }
            let config = self.config()?;
            config.validate()?;
            let data = open(&spec, &config.unet, self.skip_bad)?;
            let unet = config.unet.clone();
            let job = match group.clone() {
                None => Job::Single(Box::new(Trainer::<Autodiff<B>>::new(
                    config,
                    &self.out,
                    data.clone(),
                    &device,
                )?)),
                Some(group) => Job::Parallel(Box::new(
                    ParallelTraining::new(
                        Start::New(config),
                        &self.out,
                        data.clone(),
                        devices,
                        group,
                    )?
                    .with_reduction(self.reduction),
                )),
            };
            (job, unet, data)
        };
        let job = if job.trainer().config().eval_every > 0 && job.trainer().writes_run() {
            // The reference statistics of the training data, cached in the run directory.
            let c = &unet;
            let key = format!(
                "{spec}#train@{}x{}x{}",
                c.in_channels, c.sample_size, c.sample_size
            );
            let metric = QualityMetric::<B>::for_dataset(
                &eval_features,
                &data,
                &key,
                Some(self.eval_reference_images),
                &self.out,
                QualityConfig::for_training(),
                &device,
            )
            .context("--eval-features")?;
            eprintln!(
                "evaluating {} of {} samples against {} training images every {} steps",
                eval_features.metric_name(),
                job.trainer().config().eval_samples,
                metric.reference().stats.count,
                job.trainer().config().eval_every
            );
            job.with_metric(Box::new(metric))
        } else {
            job
        };
        let trainer = job.trainer();
        for dir in trainer.removed_temp_dirs() {
            eprintln!(
                "removed {} (left by a killed checkpoint write)",
                dir.display()
            );
        }
        let c = trainer.config().clone();
        if trainer.step() >= c.steps {
            eprintln!(
                "{} is already at step {} of {}; nothing to train (pass a larger --steps to \
                 continue)",
                self.out.display(),
                trainer.step(),
                c.steps
            );
            return Ok(());
        }
        eprintln!(
            "training {} parameters for {} steps (batch {}, lr {}, T = {}) into {}",
            unet.num_params(),
            c.steps,
            c.batch_size,
            c.learning_rate,
            c.schedule.num_train_timesteps,
            self.out.display()
        );
        let bar = ProgressBar::new(c.steps as u64).with_position(trainer.step() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
            )
            .expect("valid template"),
        );
        let tty = !bar.is_hidden();
        if let Job::Parallel(p) = &job {
            let g = p.group();
            eprintln!(
                "data-parallel: {} peers ({} on this machine{}), {} images per peer and step",
                g.num_peers(),
                g.local_peers,
                g.nodes
                    .as_ref()
                    .map(|n| format!(", node {} of {}", n.node_rank, n.num_nodes))
                    .unwrap_or_default(),
                c.batch_size / g.num_peers()
            );
        }
        job.run(|event| match event {
            TrainEvent::Step {
                stats,
                images_per_sec,
                log,
            } => {
                bar.set_position(stats.step as u64);
                if log {
                    let msg = format!(
                        "loss {:.4}  |g| {:.3}  lr {:.2e}  {:.1} img/s",
                        stats.loss, stats.grad_norm, stats.learning_rate, images_per_sec
                    );
                    if tty {
                        bar.set_message(msg);
                    } else {
                        eprintln!("step {}/{}  {msg}", stats.step, c.steps);
                    }
                }
            }
            TrainEvent::Checkpoint(p) => bar.println(format!("checkpoint {}", p.display())),
            TrainEvent::Preview(p) => bar.println(format!("samples {}", p.display())),
            TrainEvent::Eval(r) => {
                let extra: Vec<String> = r
                    .values
                    .extra
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect();
                bar.println(format!(
                    "eval step {}: {} {:.4}  {}{}",
                    r.step,
                    r.name,
                    r.values.primary,
                    extra.join("  "),
                    if r.best { "  (best)" } else { "" }
                ));
            }
        })?;
        bar.finish();
        eprintln!(
            "done: {} (sample with `ddpm sample --unet {}`)",
            self.out.join("samples.png").display(),
            self.out.display()
        );
        Ok(())
    }
}

fn open(spec: &DataSpec, unet: &UnetConfig, skip_bad: bool) -> Result<Arc<ddpm_data::Dataset>> {
    let opts = LoadOptions::new(unet.in_channels, ImageSize::square(unet.sample_size))
        .with_skip_bad(skip_bad);
    let data = spec
        .open(&opts)
        .with_context(|| format!("loading training data {spec}"))?;
    let report = data.report();
    eprintln!(
        "data: {} images {}x{}x{} from {spec}{}",
        data.len(),
        data.channels(),
        data.height(),
        data.width(),
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} unreadable files skipped)", report.skipped.len())
        }
    );
    for s in &report.skipped {
        eprintln!("  skipped {}: {}", s.path.display(), s.reason);
    }
    Ok(Arc::new(data))
}

/// Arguments of `ddpm orchestrator`.
#[derive(Args, Debug)]
pub struct OrchestratorArgs {
    /// The port to listen on: nodes pass `--orchestrator ws://HOST:PORT`.
    #[arg(long)]
    port: u16,
}

/// Runs `ddpm orchestrator`: the rendezvous of a multi-node `ddpm train`, until interrupted.
#[cfg(feature = "collective")]
pub fn run_orchestrator(args: OrchestratorArgs) -> Result<()> {
    eprintln!(
        "orchestrator listening on port {} (nodes: --orchestrator ws://HOST:{}); Ctrl-C stops it",
        args.port, args.port
    );
    ddpm_train::parallel::run_orchestrator(args.port)?;
    Ok(())
}
