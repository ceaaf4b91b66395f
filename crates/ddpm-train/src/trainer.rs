//! The training loop: Ho et al. 2020, Algorithm 1 with the paper's recipe (Appendix B) —
//! x₀ ~ data, t ~ Uniform, ε ~ N(0, I), a gradient step on ‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖²
//! (Eq. 14) with Adam, linear warmup, global-norm clipping and an EMA of the weights.
//!
//! Every random choice derives from the run's seed and is drawn on the host (ChaCha8), never
//! from Burn's per-backend, process-wide device RNG: the initial weights from (seed, 0), the
//! timesteps, ε and the dropout masks of step k from (seed, k), the data order from
//! (seed, epoch). So a run resumed from a checkpoint takes bit for bit the same steps as one
//! that never stopped, a seed starts the same run on every backend, and trainers in several
//! threads of one process do not disturb each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use ddpm_data::{Batch, BatchIter, BatchIterConfig, Dataset};
use ddpm_forward::ForwardProcess;
use ddpm_io::DirLock;
use ddpm_loss::{TimestepDistribution, TrainingLoss, UniformTimesteps};
use ddpm_pipeline::images;
use ddpm_pipeline::layout::{LATEST_PREVIEW_FILE, SCHEDULER_CONFIG_FILE, preview_path};
use ddpm_sampler::{NoiseSource, SamplerOverrides, sample_loop, sampler_from_config};
use ddpm_schedule::{DiffusersSchedulerConfig, NoiseSchedule, SamplingConfig, SchedulerClass};
use ddpm_unet::Unet;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

use crate::checkpoint::{
    EMA_RECORD, METRICS_FILE, MODEL_RECORD, OPTIMIZER_RECORD, TRAIN_CONFIG_FILE, TrainState,
    list_checkpoints, move_aside, read_train_config, record_error, recorder,
    remove_stale_temp_checkpoints, write_checkpoint, write_json_atomic,
};
use crate::error::io;
use crate::eval::{
    BestCheckpoint, EvalRecord, MetricValues, SampleMetric, best_dir_name, keep_best, read_best,
};
use crate::optim::FusedAdam;
use crate::parallel::{DataParallel, Outputs, check_split};
use crate::resume::{ResumeReport, diff_settings, load_checkpoint, log_resume};
use crate::{DataFingerprint, TrainConfig, TrainError, clip_global_norm, ema_update};

pub(crate) type Optim<B> = OptimizerAdaptor<FusedAdam, Unet<B>, B>;
/// A new run's raw weights, EMA weights and data stream.
type FreshRun<B> = (
    Unet<B>,
    Unet<<B as AutodiffBackend>::InnerBackend>,
    BatchIter,
);
pub(crate) type OptimRecord<B> = <Optim<B> as Optimizer<Unet<B>, B>>::Record;

/// What one optimizer step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Optimizer steps taken so far (after this one).
    pub step: usize,
    /// Mean training loss of the step.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub learning_rate: f64,
}

/// Something the run loop reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// A step finished (every step; `log` is true every `log_every` steps).
    Step {
        /// The step's figures.
        stats: StepStats,
        /// Images per second over the last logging window.
        images_per_sec: f64,
        /// Whether this step is a logging step.
        log: bool,
    },
    /// A checkpoint was written.
    Checkpoint(PathBuf),
    /// A preview grid was written.
    Preview(PathBuf),
    /// The sample metric was evaluated (`eval_every`).
    Eval(EvalRecord),
}

/// A training run bound to a run directory, a dataset and a device.
pub struct Trainer<B: AutodiffBackend> {
    config: TrainConfig,
    run_dir: PathBuf,
    device: B::Device,
    model: Unet<B>,
    ema: Unet<B::InnerBackend>,
    optim: Optim<B>,
    loss: TrainingLoss<B>,
    schedule: NoiseSchedule,
    data: BatchIter,
    step: usize,
    last_checkpoint: Option<PathBuf>,
    data_fingerprint: DataFingerprint,
    resume_report: Option<ResumeReport>,
    removed_temp_dirs: Vec<PathBuf>,
    metric: Option<Box<dyn SampleMetric<B::InnerBackend> + Send>>,
    best: Option<BestCheckpoint>,
    /// The run directory's exclusive lock, held as long as the trainer lives (the OS releases
    /// it when the process dies, so a killed run leaves no stale lock). `None` for a
    /// data-parallel peer that writes nothing.
    _lock: Option<DirLock>,
    /// What this trainer writes (everything, unless it is a data-parallel peer).
    pub(crate) outputs: Outputs,
    /// Its data-parallel group, when it has one.
    parallel: Option<DataParallel<B::InnerBackend>>,
}

/// A seed for stream `stream` of step `step` (SplitMix64 over the run seed).
fn derive_seed(seed: u64, step: usize, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add((step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The run's sampling settings for a scheduler class: its defaults with the run's schedule,
/// prediction and variance type.
fn sampling_config(config: &TrainConfig, class: SchedulerClass) -> SamplingConfig {
    let mut scheduler = SamplingConfig::class_defaults(class);
    scheduler.schedule = config.schedule.clone();
    scheduler.prediction_type = config.prediction_type;
    scheduler.variance_type = config.variance_type;
    scheduler
}

/// diffusers' `scheduler_config.json` of a run (DDPMScheduler with the run's schedule,
/// prediction and variance type), written to the run directory and to every checkpoint, so
/// samplers (and diffusers) pick up the training schedule from either.
fn scheduler_config(config: &TrainConfig) -> DiffusersSchedulerConfig {
    sampling_config(config, SchedulerClass::Ddpm).to_diffusers()
}

fn check_data(config: &TrainConfig, data: &Dataset) -> Result<(), TrainError> {
    let u = &config.unet;
    let expected = [u.in_channels, u.sample_size, u.sample_size];
    let found = [data.channels(), data.height(), data.width()];
    if expected != found {
        return Err(TrainError::DataShape {
            expected: format!("{expected:?}"),
            found: format!("{found:?}"),
        });
    }
    Ok(())
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Starts a new run in `run_dir` (created; its `train_config.json` is written). Temporary
    /// checkpoint directories left by a killed run are removed
    /// ([`Trainer::removed_temp_dirs`]).
    ///
    /// The trainer holds an exclusive lock on `run_dir` (`<run_dir>/.lock`) for as long as it
    /// lives, so a second trainer on the same directory is refused instead of interleaving
    /// its metrics and overwriting the first one's checkpoints.
    ///
    /// # Errors
    /// An invalid config (naming the field), a dataset that does not fit the model,
    /// [`TrainError::Lock`] when another trainer holds the run directory, or I/O.
    pub fn new(
        config: TrainConfig,
        run_dir: impl AsRef<Path>,
        dataset: Arc<Dataset>,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        check_data(&config, &dataset)?;
        let run_dir = run_dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&run_dir).map_err(io(&run_dir))?;
        let lock = DirLock::acquire(&run_dir)?;
        let removed = remove_stale_temp_checkpoints(&run_dir, &lock)?;
        write_json_atomic(&run_dir.join(TRAIN_CONFIG_FILE), &config)?;
        write_json_atomic(
            &run_dir.join(SCHEDULER_CONFIG_FILE),
            &scheduler_config(&config),
        )?;
        let fingerprint = DataFingerprint::of(&dataset);
        let (model, ema, data) = Self::fresh(&config, dataset, device)?;
        let mut trainer = Self::assemble(
            config,
            run_dir,
            device,
            model,
            ema,
            None,
            data,
            0,
            fingerprint,
            Some(lock),
        )?;
        trainer.removed_temp_dirs = removed;
        Ok(trainer)
    }

    /// A data-parallel peer other than a machine's first: the same run as the first peer's
    /// (a new run, or the one resumed from `checkpoint`), on `device`, writing nothing.
    pub(crate) fn follower(
        config: TrainConfig,
        run_dir: PathBuf,
        dataset: Arc<Dataset>,
        device: &B::Device,
        checkpoint: Option<&Path>,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        check_data(&config, &dataset)?;
        let fingerprint = DataFingerprint::of(&dataset);
        let (model, ema, optim, data, step) = match checkpoint {
            None => {
                let (model, ema, data) = Self::fresh(&config, dataset, device)?;
                (model, ema, None, data, 0)
            }
            Some(ckpt) => {
                let loaded = match load_checkpoint::<B>(&config, ckpt, device)? {
                    Ok(loaded) => loaded,
                    Err(damaged) => {
                        return Err(TrainError::NoIntactCheckpoint {
                            dir: run_dir,
                            damaged: vec![damaged],
                        });
                    }
                };
                let data = Self::batches(&config).resume(dataset, loaded.state.data)?;
                let step = loaded.state.step;
                (loaded.model, loaded.ema, Some(loaded.optim), data, step)
            }
        };
        let mut trainer = Self::assemble(
            config,
            run_dir,
            device,
            model,
            ema,
            optim,
            data,
            step,
            fingerprint,
            None,
        )?;
        trainer.outputs = Outputs::Nothing;
        trainer.last_checkpoint = checkpoint.map(Path::to_path_buf);
        Ok(trainer)
    }

    /// Joins a data-parallel group: checks that the batch splits over its peers and that
    /// every peer holds the same step, data position, config and weights.
    pub(crate) fn join_group(
        &mut self,
        mut group: DataParallel<B::InnerBackend>,
    ) -> Result<(), TrainError> {
        check_split(&self.config, group.num_peers())?;
        let config = serde_json::to_vec(&self.config).map_err(|source| TrainError::Json {
            path: self.run_dir.join(TRAIN_CONFIG_FILE),
            source,
        })?;
        let state = self.data.state();
        group.agree(
            &[
                ("step", self.step as u64),
                ("data epoch", state.epoch),
                ("data position", state.index as u64),
                ("training config", crate::fingerprint::hash_bytes(&config)),
                ("data fingerprint", self.data_fingerprint.hash),
                ("weights", weights_hash(&self.model.valid(), &self.ema)),
            ],
            &self.device,
        )?;
        self.parallel = Some(group);
        Ok(())
    }

    /// Leaves the data-parallel group (after [`Trainer::run`]).
    pub(crate) fn leave_group(&mut self) -> Result<(), TrainError> {
        match self.parallel.take() {
            Some(mut group) => group.finish(),
            None => Ok(()),
        }
    }

    /// Whether this trainer writes the run's metrics, previews and evaluations: a single
    /// trainer, or rank 0 of a data-parallel group.
    pub fn writes_run(&self) -> bool {
        self.outputs == Outputs::All
    }

    /// This trainer's rank in its data-parallel group (0 without one).
    pub fn peer(&self) -> usize {
        self.parallel.as_ref().map_or(0, |p| p.peer())
    }

    /// Continues the run in `run_dir` from its newest intact checkpoint with the run's saved
    /// settings, up to `steps` total steps (the saved count when `None`). As
    /// [`Trainer::resume_with_config`] with the saved config and that step count.
    ///
    /// # Errors
    /// As [`Trainer::resume_with_config`].
    pub fn resume(
        run_dir: impl AsRef<Path>,
        dataset: Arc<Dataset>,
        steps: Option<usize>,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let mut config = read_train_config(run_dir.as_ref())?;
        if let Some(steps) = steps {
            config.steps = steps;
        }
        Self::resume_with_config(run_dir, dataset, config, device)
    }

    /// Continues the run in `run_dir` with `config`: the run's saved config with the changes
    /// asked for. Only the settings in [`HONOURED_ON_RESUME`](crate::HONOURED_ON_RESUME) (step
    /// count; checkpoint, preview and log cadence) may differ from the saved ones; they are
    /// written to `train_config.json`. The run continues from its newest intact checkpoint:
    /// newer ones with a missing, truncated or undecodable file are moved aside to
    /// `checkpoints/damaged-step-N`. What was found is in [`Trainer::resume_report`] and in a
    /// `{"event": "resume", ...}` line of `metrics.jsonl`. Temporary checkpoint directories of
    /// killed runs are removed ([`Trainer::removed_temp_dirs`]).
    ///
    /// Nothing in the run directory changes unless the resume succeeds.
    ///
    /// # Errors
    /// - [`TrainError::ResumeMismatch`] naming a setting that may not change, with the saved
    ///   and the requested value;
    /// - [`TrainError::StepsBehindCheckpoint`] when `config.steps` is below the checkpoint's
    ///   step;
    /// - [`TrainError::DatasetChanged`] when `dataset` is not the data the run was trained on
    ///   (its [`DataFingerprint`] differs from the one saved in the checkpoint);
    /// - [`TrainError::NoCheckpoint`] when there is none, [`TrainError::NoIntactCheckpoint`]
    ///   naming each damaged file when none is intact;
    /// - [`TrainError::Lock`] when another trainer holds the run directory (see
    ///   [`Trainer::new`]);
    /// - I/O and JSON errors naming the file (e.g. a missing `train_config.json`).
    pub fn resume_with_config(
        run_dir: impl AsRef<Path>,
        dataset: Arc<Dataset>,
        config: TrainConfig,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let run_dir = run_dir.as_ref().to_path_buf();
        let saved = read_train_config(&run_dir)?;
        let lock = DirLock::acquire(&run_dir)?;
        let changed = diff_settings(&run_dir, &saved, &config)?;
        config.validate()?;
        check_data(&config, &dataset)?;
        let fingerprint = DataFingerprint::of(&dataset);
        let checkpoints = list_checkpoints(&run_dir)?;
        if checkpoints.is_empty() {
            return Err(TrainError::NoCheckpoint { dir: run_dir });
        }
        let mut damaged = Vec::new();
        let mut found = None;
        for (_, ckpt) in checkpoints.iter().rev() {
            match load_checkpoint::<B>(&config, ckpt, device)? {
                Ok(loaded) => {
                    found = Some((ckpt.clone(), loaded));
                    break;
                }
                Err(d) => damaged.push(d),
            }
        }
        let Some((ckpt, loaded)) = found else {
            return Err(TrainError::NoIntactCheckpoint {
                dir: run_dir,
                damaged,
            });
        };
        let step = loaded.state.step;
        if let Some(saved_fp) = loaded.state.data_fingerprint
            && saved_fp != fingerprint
        {
            return Err(TrainError::DatasetChanged {
                checkpoint: ckpt,
                saved: saved_fp,
                found: fingerprint,
            });
        }
        if config.steps < step {
            return Err(TrainError::StepsBehindCheckpoint {
                steps: config.steps,
                step,
                checkpoint: ckpt,
            });
        }
        let data = Self::batches(&config).resume(dataset, loaded.state.data)?;

        // Every check passed: only now does the run directory change.
        for d in &mut damaged {
            d.moved_to = Some(move_aside(&d.checkpoint)?);
        }
        let removed = remove_stale_temp_checkpoints(&run_dir, &lock)?;
        if !changed.is_empty() {
            write_json_atomic(&run_dir.join(TRAIN_CONFIG_FILE), &config)?;
        }
        let report = ResumeReport {
            checkpoint: ckpt.clone(),
            step,
            changed,
            damaged,
        };
        log_resume(&run_dir.join(METRICS_FILE), &report)?;
        let mut trainer = Self::assemble(
            config,
            run_dir,
            device,
            loaded.model,
            loaded.ema,
            Some(loaded.optim),
            data,
            step,
            fingerprint,
            Some(lock),
        )?;
        trainer.last_checkpoint = Some(ckpt);
        trainer.resume_report = Some(report);
        trainer.best = read_best(&trainer.run_dir)?;
        trainer.removed_temp_dirs = removed;
        Ok(trainer)
    }

    /// A new run's weights (from the seed alone), EMA and data stream.
    fn fresh(
        config: &TrainConfig,
        dataset: Arc<Dataset>,
        device: &B::Device,
    ) -> Result<FreshRun<B>, TrainError> {
        let model = config
            .unet
            .init_seeded::<B>(derive_seed(config.seed, 0, 0), device)?;
        let ema = model.valid();
        let data = Self::batches(config).init(dataset)?;
        Ok((model, ema, data))
    }

    fn batches(config: &TrainConfig) -> BatchIterConfig {
        BatchIterConfig::new(config.batch_size / config.grad_accumulation, config.seed)
            .with_random_flip(config.random_flip)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: TrainConfig,
        run_dir: PathBuf,
        device: &B::Device,
        model: Unet<B>,
        ema: Unet<B::InnerBackend>,
        optim_record: Option<OptimRecord<B>>,
        data: BatchIter,
        step: usize,
        data_fingerprint: DataFingerprint,
        lock: Option<DirLock>,
    ) -> Result<Self, TrainError> {
        let schedule = config.schedule.build()?;
        let forward = ForwardProcess::<B>::new(&schedule, device);
        let loss = config.loss_config().init(&forward)?;
        let mut optim = FusedAdam::new(config.adam_beta1, config.adam_beta2, config.adam_epsilon)
            .init::<B, Unet<B>>();
        if let Some(record) = optim_record {
            optim = optim.load_record(record);
        }
        Ok(Self {
            config,
            run_dir,
            device: device.clone(),
            model,
            ema,
            optim,
            loss,
            schedule,
            data,
            step,
            last_checkpoint: None,
            data_fingerprint,
            resume_report: None,
            removed_temp_dirs: Vec::new(),
            metric: None,
            best: None,
            _lock: lock,
            outputs: Outputs::All,
            parallel: None,
        })
    }

    /// The run's configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Optimizer steps taken.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The raw weights.
    pub fn model(&self) -> &Unet<B> {
        &self.model
    }

    /// The EMA weights.
    pub fn ema(&self) -> &Unet<B::InnerBackend> {
        &self.ema
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// What [`Trainer::resume`] / [`Trainer::resume_with_config`] found: the checkpoint, the
    /// settings changed, the damaged checkpoints skipped. `None` for a new run.
    pub fn resume_report(&self) -> Option<&ResumeReport> {
        self.resume_report.as_ref()
    }

    /// Temporary checkpoint directories and temporary files of killed writes that starting
    /// this run removed.
    pub fn removed_temp_dirs(&self) -> &[PathBuf] {
        &self.removed_temp_dirs
    }

    /// The fingerprint of the training data, saved in every checkpoint.
    pub fn data_fingerprint(&self) -> DataFingerprint {
        self.data_fingerprint
    }

    /// One optimizer step over `batch_size` images (in `grad_accumulation` micro-batches).
    ///
    /// # Errors
    /// [`TrainError::NonFiniteLoss`] (naming the step and the newest checkpoint) when the loss
    /// is NaN or infinite; the weights are then left as they were before the step.
    ///
    /// In a data-parallel group ([`crate::parallel`]) every peer draws the whole batch's data,
    /// timesteps and noise and trains on its shard of rows; the step's gradients and loss are
    /// the mean over the peers.
    pub fn train_step(&mut self) -> Result<StepStats, TrainError> {
        let k = self.step;
        let accum = self.config.grad_accumulation;
        let (rank, peers) = self
            .parallel
            .as_ref()
            .map_or((0, 1), |p| (p.peer(), p.num_peers()));
        let mut accumulator = GradientsAccumulator::<Unet<B>>::new();
        let mut total = 0.0;
        let mut shard_loss: Option<Tensor<B::InnerBackend, 1>> = None;
        for micro in 0..accum {
            let batch: Batch = self.data.next().expect("BatchIter never ends");
            // This peer's rows of the batch: all of them for a single trainer.
            let n = batch.len() / peers;
            let rows = rank * n..(rank + 1) * n;
            let shape = batch.shape;
            let x0 = if peers == 1 {
                batch.into_tensor::<B>(&self.device)
            } else {
                let per_image: usize = shape[1..].iter().product();
                let images = batch.images[rows.start * per_image..rows.end * per_image].to_vec();
                let [_, c, h, w] = shape;
                Tensor::from_data(TensorData::new(images, [n, c, h, w]), &self.device)
            };
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive_seed(self.config.seed, k, 2 + micro as u64));
            let t = UniformTimesteps::new(self.schedule.num_train_timesteps())?
                .draw(shape[0], &mut rng)
                .timesteps_tensor::<B>(&self.device);
            let eps =
                NoiseSource::<B>::seeded(derive_seed(self.config.seed, k, 1000 + micro as u64))
                    .standard_normal(shape, &self.device)?;
            let (t, eps) = if peers == 1 {
                (t, eps)
            } else {
                (t.narrow(0, rows.start, n), eps.narrow(0, rows.start, n))
            };
            // Peer 0 draws a single trainer's masks; the others their own.
            self.model.set_dropout_seed(derive_seed(
                self.config.seed,
                k,
                2000 + micro as u64 + ((rank as u64) << 20),
            ));
            let model = &self.model;
            let per_sample = self
                .loss
                .forward_with(|x, t| model.forward(x, t), x0, eps, t);
            let loss = per_sample.mean().div_scalar(accum as f64);
            if self.parallel.is_some() {
                // Checked after the all-reduce, on the mean every peer sees.
                let l = loss.clone().inner();
                shard_loss = Some(match shard_loss.take() {
                    Some(s) => s + l,
                    None => l,
                });
            } else {
                let value: f64 = loss.clone().into_scalar().elem();
                if !value.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        step: k + 1,
                        loss: value,
                        last_checkpoint: self.last_checkpoint.clone(),
                    });
                }
                total += value;
            }
            let grads = GradientsParams::from_grads(loss.backward(), &self.model);
            accumulator.accumulate(&self.model, grads);
        }
        let mut grads = accumulator.grads();
        if let Some(group) = self.parallel.as_mut() {
            let loss = shard_loss.expect("at least one micro-batch");
            let (mean, loss) = group.reduce_step::<B, _>(grads, &self.model, loss)?;
            if !loss.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    step: k + 1,
                    loss,
                    last_checkpoint: self.last_checkpoint.clone(),
                });
            }
            grads = mean;
            total = loss;
        }
        let grad_norm = match self.config.grad_clip_norm {
            Some(max) => clip_global_norm::<B, _>(&mut grads, &self.model, max),
            None => crate::clip::global_norm::<B, _>(&grads, &self.model),
        };
        let lr = self.config.learning_rate_at(k);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        let decay = self.config.ema_decay_at(k);
        self.ema = ema_update(self.ema.clone(), &self.model.valid(), decay);
        self.step += 1;
        Ok(StepStats {
            step: self.step,
            loss: total,
            grad_norm,
            learning_rate: lr,
        })
    }

    /// Writes a checkpoint of the current step (model, EMA, optimizer, data position).
    ///
    /// # Errors
    /// [`TrainError::NonFiniteWeights`] (nothing written) when the model's or the EMA's weights
    /// hold NaN or ±inf; I/O and record errors naming the file. The previous checkpoints are
    /// untouched then.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf, TrainError> {
        if self.outputs == Outputs::Nothing {
            return Err(TrainError::NotWriter {
                peer: self.peer(),
                what: "checkpoints",
            });
        }
        // A checkpoint is good only if its weights are finite: a step can overflow the weights
        // while the loss it computed (from the weights before it) was still finite.
        let found = [
            ("model", self.model.find_non_finite()),
            ("EMA", self.ema.find_non_finite()),
        ];
        for (which, param) in found {
            if let Some(p) = param {
                return Err(TrainError::NonFiniteWeights {
                    step: self.step,
                    which,
                    key: p.key,
                    count: p.count,
                    len: p.len,
                    last_checkpoint: self.last_checkpoint.clone(),
                });
            }
        }
        let state = TrainState {
            step: self.step,
            data: self.data.state(),
            data_fingerprint: Some(self.data_fingerprint),
        };
        let (model, ema) = (self.model.clone(), self.ema.clone());
        let optim_record = self.optim.to_record();
        let rec = recorder();
        let path = write_checkpoint(
            &self.run_dir,
            state,
            &self.config.unet,
            &scheduler_config(&self.config),
            self.config.keep_checkpoints,
            |dir| {
                let m = dir.join(MODEL_RECORD);
                model.save_file(&m, &rec).map_err(|e| record_error(&m, e))?;
                let e = dir.join(EMA_RECORD);
                ema.save_file(&e, &rec)
                    .map_err(|err| record_error(&e, err))?;
                let o = dir.join(OPTIMIZER_RECORD);
                Recorder::<B>::record(&rec, optim_record, o.clone())
                    .map_err(|err| record_error(&o, err))?;
                Ok(())
            },
        )?;
        self.last_checkpoint = Some(path.clone());
        Ok(path)
    }

    /// Samples `n` images from the EMA weights with DDIM (`preview_steps` steps, η = 0) from a
    /// fixed seed, so successive previews are comparable.
    ///
    /// # Errors
    /// Sampler errors (e.g. more preview steps than T).
    pub fn sample_ema(
        &self,
        n: usize,
    ) -> Result<burn::tensor::Tensor<B::InnerBackend, 4>, TrainError> {
        // DDIM with diffusers' defaults; a learned variance's channels are dropped by the
        // sampler built from the config.
        let (_, mut sampler) = sampler_from_config::<B::InnerBackend>(
            &sampling_config(&self.config, SchedulerClass::Ddim),
            &SamplerOverrides::new().with_num_inference_steps(self.config.preview_steps),
        )?;
        let u = &self.config.unet;
        let mut noise = NoiseSource::<B::InnerBackend>::seeded(derive_seed(self.config.seed, 0, 7));
        let x_t = noise.standard_normal(
            [n, u.in_channels, u.sample_size, u.sample_size],
            &self.device,
        )?;
        let ema = &self.ema;
        let model = |x, t| ema.forward(x, t);
        Ok(sample_loop(
            sampler.as_mut(),
            &model,
            x_t,
            &mut noise,
            |_| {},
            None,
        )?)
    }

    /// Writes a preview grid `samples/step-NNNNNNNN.png` and the same grid as `samples.png`,
    /// each atomically.
    ///
    /// # Errors
    /// Sampler errors, and write errors naming the file ([`TrainError::Pipeline`]): a preview
    /// that cannot be written (e.g. a full disk) stops [`Trainer::run`] — the checkpoint of
    /// the step is already written, so `--resume` continues from it.
    pub fn write_preview(&self) -> Result<PathBuf, TrainError> {
        if self.outputs != Outputs::All {
            return Err(TrainError::NotWriter {
                peer: self.peer(),
                what: "previews",
            });
        }
        let samples = self.sample_ema(self.config.num_preview_samples)?;
        let grid = images::grid(&images::to_images(samples)?);
        let path = preview_path(&self.run_dir, self.step);
        images::save_image(&grid, &path)?;
        images::save_image(&grid, self.run_dir.join(LATEST_PREVIEW_FILE))?;
        Ok(path)
    }

    /// Trains up to `config.steps`, logging to `metrics.jsonl`, writing checkpoints,
    /// previews and evaluations ([`Trainer::evaluate`]) on schedule, and always a final
    /// checkpoint and preview (and evaluation, with `eval_every > 0`).
    ///
    /// # Errors
    /// As [`Trainer::train_step`], [`Trainer::save_checkpoint`], [`Trainer::write_preview`].
    ///
    /// In a data-parallel group only rank 0 logs, previews and evaluates, and only the first
    /// peer of each machine writes checkpoints ([`crate::parallel`]); a peer that fails on its
    /// own tells the others before returning its error.
    pub fn run(&mut self, on_event: impl FnMut(TrainEvent)) -> Result<(), TrainError> {
        let result = self.run_steps(on_event);
        if let Err(e) = &result
            && !e.is_consequence_of_a_peer()
            && !matches!(e, TrainError::NonFiniteLoss { .. })
            && let Some(group) = self.parallel.as_mut()
        {
            // NonFiniteLoss is seen by every peer at once (the loss is the reduced one); any
            // other error of this peer alone would leave the others waiting for it.
            group.abort(self.model.num_params(), &self.device);
        }
        result
    }

    fn run_steps(&mut self, mut on_event: impl FnMut(TrainEvent)) -> Result<(), TrainError> {
        let writes_all = self.outputs == Outputs::All;
        if writes_all && self.config.eval_every > 0 && self.metric.is_none() {
            return Err(TrainError::NoMetric {
                eval_every: self.config.eval_every,
            });
        }
        let metrics_path = self.run_dir.join(METRICS_FILE);
        let mut window = (Instant::now(), 0usize);
        while self.step < self.config.steps {
            let stats = self.train_step()?;
            window.1 += self.config.batch_size;
            let log = stats.step.is_multiple_of(self.config.log_every.max(1))
                || stats.step == self.config.steps;
            let secs = window.0.elapsed().as_secs_f64().max(1e-9);
            let images_per_sec = window.1 as f64 / secs;
            if log && writes_all {
                append_metrics(&metrics_path, &stats, images_per_sec)?;
                window = (Instant::now(), 0);
            }
            on_event(TrainEvent::Step {
                stats,
                images_per_sec,
                log,
            });
            let last = self.step == self.config.steps;
            if self.outputs != Outputs::Nothing
                && (self.step.is_multiple_of(self.config.checkpoint_every) || last)
            {
                on_event(TrainEvent::Checkpoint(self.save_checkpoint()?));
            }
            if !writes_all {
                continue;
            }
            if (self.config.sample_every > 0 && self.step.is_multiple_of(self.config.sample_every))
                || last
            {
                on_event(TrainEvent::Preview(self.write_preview()?));
            }
            if self.config.eval_every > 0
                && (self.step.is_multiple_of(self.config.eval_every) || last)
            {
                on_event(TrainEvent::Eval(self.evaluate()?));
            }
        }
        Ok(())
    }

    /// Scores the EMA weights with the trainer's sample metric: samples
    /// `eval_samples` images (DDIM, `eval_steps` steps, η = 0, the same seed at every
    /// evaluation, batch-size independent), appends `{"step", "eval": name, name: value,
    /// ...}` to `metrics.jsonl`, and with `save_best` keeps a copy of this step's checkpoint
    /// (written if it is not yet) when the value is the lowest so far.
    ///
    /// # Errors
    /// [`TrainError::NoMetric`] without [`Trainer::with_metric`], [`TrainError::Eval`] when
    /// the metric fails or returns a non-finite value, sampling, checkpoint and I/O errors.
    pub fn evaluate(&mut self) -> Result<EvalRecord, TrainError> {
        let step = self.step;
        if self.metric.is_none() {
            return Err(TrainError::NoMetric {
                eval_every: self.config.eval_every,
            });
        }
        let samples = self.sample_ema_for_eval()?;
        let metric = self.metric.as_mut().expect("checked above");
        let name = metric.name();
        let eval_error = |message: String| TrainError::Eval {
            metric: name.clone(),
            step,
            message,
        };
        let values: MetricValues = metric
            .score(samples)
            .map_err(|e| eval_error(e.to_string()))?;
        if !values.primary.is_finite() {
            return Err(eval_error(format!("the metric is {}", values.primary)));
        }
        let mut best = false;
        if self.config.save_best
            && self
                .best
                .as_ref()
                .is_none_or(|b| b.metric != name || values.primary < b.value)
        {
            let checkpoint = match &self.last_checkpoint {
                Some(c) if c == &ddpm_pipeline::layout::checkpoint_dir(&self.run_dir, step) => {
                    c.clone()
                }
                _ => self.save_checkpoint()?,
            };
            let record = BestCheckpoint {
                step,
                metric: name.clone(),
                value: values.primary,
                checkpoint: best_dir_name(step),
            };
            keep_best(&self.run_dir, &checkpoint, &record)?;
            self.best = Some(record);
            best = true;
        }
        let mut line = serde_json::Map::new();
        line.insert("step".into(), step.into());
        line.insert("eval".into(), name.clone().into());
        line.insert(name.clone(), values.primary.into());
        for (key, value) in &values.extra {
            line.insert(key.clone(), (*value).into());
        }
        if self.config.save_best {
            line.insert("best".into(), best.into());
        }
        append_line(
            &self.run_dir.join(METRICS_FILE),
            &serde_json::Value::Object(line),
        )?;
        Ok(EvalRecord {
            step,
            name,
            values,
            best,
        })
    }

    /// Attaches the metric [`Trainer::evaluate`] scores samples with (needed when
    /// `eval_every > 0`).
    pub fn with_metric(mut self, metric: Box<dyn SampleMetric<B::InnerBackend> + Send>) -> Self {
        self.metric = Some(metric);
        self
    }

    /// The best evaluation so far (`save_best`), as in `best.json`.
    pub fn best(&self) -> Option<&BestCheckpoint> {
        self.best.as_ref()
    }

    fn sample_ema_for_eval(&self) -> Result<burn::tensor::Tensor<B::InnerBackend, 4>, TrainError> {
        let scheduler = sampling_config(&self.config, SchedulerClass::Ddim);
        let pipe = ddpm_pipeline::Pipeline::new(self.ema.clone(), scheduler, &self.device);
        let samples = pipe
            .sampler(ddpm_pipeline::SamplerKind::Ddim)
            .steps(self.config.eval_steps)
            .eta(0.0)
            .seed(derive_seed(self.config.seed, 0, 8))
            .batch_size(self.config.eval_batch_size)
            .sample(self.config.eval_samples)?;
        Ok(samples.into_tensor())
    }
}

fn append_metrics(path: &Path, s: &StepStats, images_per_sec: f64) -> Result<(), TrainError> {
    let line = serde_json::json!({
        "step": s.step,
        "loss": s.loss,
        "grad_norm": s.grad_norm,
        "learning_rate": s.learning_rate,
        "images_per_sec": images_per_sec,
    });
    append_line(path, &line)
}

fn append_line(path: &Path, line: &serde_json::Value) -> Result<(), TrainError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    writeln!(f, "{line}").map_err(io(path))
}

/// The backend a trainer's EMA model lives on.
pub type InferenceBackend<B> = <B as AutodiffBackend>::InnerBackend;

/// A hash of the raw and EMA weights' bits (data-parallel peers check they start equal),
/// one parameter at a time.
fn weights_hash<IB: burn::tensor::backend::Backend>(model: &Unet<IB>, ema: &Unet<IB>) -> u64 {
    struct Hash(u64);
    impl<IB: burn::tensor::backend::Backend> burn::module::ModuleVisitor<IB> for Hash {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<IB, D>>) {
            let data = p.val().into_data().convert::<f32>();
            let bytes: Vec<u8> = data
                .iter::<f32>()
                .flat_map(|v| v.to_bits().to_le_bytes())
                .collect();
            self.0 = crate::fingerprint::hash_more(self.0, &bytes);
        }
    }
    let mut hash = Hash(0);
    model.visit(&mut hash);
    ema.visit(&mut hash);
    hash.0
}
