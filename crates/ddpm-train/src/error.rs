//! Errors of a training run.

use std::path::PathBuf;

use thiserror::Error;

use crate::{DamagedCheckpoint, DataFingerprint};

/// Why a training run, checkpoint or run directory failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A training setting out of range.
    #[error("{field} is {value}; expected {expected}")]
    InvalidConfig {
        /// The config field.
        field: &'static str,
        /// Its value, printed.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The loss became NaN or infinite.
    #[error(
        "loss is {loss} at step {step}; stopping (the last good checkpoint is kept{})",
        last_checkpoint.as_ref().map(|p| format!(": {}", p.display())).unwrap_or_default()
    )]
    NonFiniteLoss {
        /// The step whose loss was not finite (1-based count of optimizer steps).
        step: usize,
        /// The loss value.
        loss: f64,
        /// The newest checkpoint on disk, if any.
        last_checkpoint: Option<PathBuf>,
    },
    /// The weights went non-finite (the optimizer step overflowed) although the loss that
    /// produced them was finite; caught before a checkpoint would call them good.
    #[error(
        "the {which} weights hold non-finite values after step {step} (tensor `{key}`: {count} \
         of {len}); stopping without writing a checkpoint (the last good checkpoint is kept{})",
        last_checkpoint.as_ref().map(|p| format!(": {}", p.display())).unwrap_or_default()
    )]
    NonFiniteWeights {
        /// The optimizer step after which they were found (1-based).
        step: usize,
        /// `model` or `EMA`.
        which: &'static str,
        /// The first non-finite parameter, in diffusers naming.
        key: String,
        /// How many of its values are not finite.
        count: usize,
        /// How many values it has.
        len: usize,
        /// The newest checkpoint on disk, if any (its weights are finite).
        last_checkpoint: Option<PathBuf>,
    },
    /// The dataset does not fit the model.
    #[error("dataset images are {found}; the model expects {expected}")]
    DataShape {
        /// The model's `[C, H, W]`.
        expected: String,
        /// The dataset's `[C, H, W]`.
        found: String,
    },
    /// `--resume` with no checkpoint in the run directory.
    #[error("no checkpoint to resume from in {dir}")]
    NoCheckpoint {
        /// The run directory.
        dir: PathBuf,
    },
    /// A setting given for a resumed run differs from the run's own and may not change
    /// mid-run (only [`HONOURED_ON_RESUME`](crate::HONOURED_ON_RESUME) may).
    #[error(
        "cannot resume with {setting} = {requested}: the run was started with {setting} = \
         {saved} ({config_file}), and a resumed run keeps it; resume without the new value, or \
         start a new run in another directory"
    )]
    ResumeMismatch {
        /// The setting, as named in `train_config.json` (a nested one with dots, e.g.
        /// `unet.block_out_channels`).
        setting: String,
        /// The run's value (JSON).
        saved: String,
        /// The value asked for (JSON).
        requested: String,
        /// The run's `train_config.json`.
        config_file: PathBuf,
    },
    /// A resume asked for fewer total steps than its checkpoint has already taken.
    #[error(
        "cannot resume to {steps} steps: the run is already at step {step} ({checkpoint}); \
         steps is the run's total, so give at least {step} (e.g. {} to train {steps} more)",
        step + steps
    )]
    StepsBehindCheckpoint {
        /// The total asked for.
        steps: usize,
        /// The checkpoint's step.
        step: usize,
        /// The checkpoint resumed from.
        checkpoint: PathBuf,
    },
    /// A resume was given other training data than the run was trained on.
    #[error(
        "the training data differ from those the run was trained on: {checkpoint} was \
         trained on {saved}, the data given now are {found}; resume with the same data (the \
         same images in the same order), or start a new run in another directory"
    )]
    DatasetChanged {
        /// The checkpoint resumed from.
        checkpoint: PathBuf,
        /// The run's data.
        saved: DataFingerprint,
        /// The data given now.
        found: DataFingerprint,
    },
    /// Every checkpoint of a run is damaged; nothing was changed on disk.
    #[error(
        "no intact checkpoint to resume from in {dir}: {}; the run cannot be continued — \
         restore the files from a backup, or start a new run in another directory",
        damaged.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ")
    )]
    NoIntactCheckpoint {
        /// The run directory.
        dir: PathBuf,
        /// Each checkpoint, newest first, with its first damaged file.
        damaged: Vec<DamagedCheckpoint>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause (names the key and line).
        #[source]
        source: serde_json::Error,
    },
    /// Burn's recorder failed to write or read a checkpoint file.
    #[error("{path}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Burn's message.
        message: String,
    },
    /// The run directory is locked by another trainer (another process, or another
    /// [`Trainer`](crate::Trainer) in this one), or its lock file cannot be created.
    #[error(transparent)]
    Lock(#[from] ddpm_io::LockError),
    /// A run file (`train_config.json`, a checkpoint's `state.json`, ...) could not be written;
    /// the previous file, if any, is intact.
    #[error(transparent)]
    Write(#[from] ddpm_io::WriteError),
    /// A model directory could not be read, or a preview image could not be written (naming
    /// the file).
    #[error(transparent)]
    Pipeline(#[from] ddpm_pipeline::PipelineError),
    /// A U-Net problem (invalid config, unreadable model directory).
    #[error(transparent)]
    Unet(#[from] ddpm_unet::ImportError),
    /// An invalid U-Net config.
    #[error(transparent)]
    UnetConfig(#[from] ddpm_unet::UnetError),
    /// An invalid noise schedule.
    #[error(transparent)]
    Schedule(#[from] ddpm_schedule::ScheduleError),
    /// An invalid loss setting.
    #[error(transparent)]
    Loss(#[from] ddpm_loss::LossError),
    /// A data problem.
    #[error(transparent)]
    Data(#[from] ddpm_data::DataError),
    /// A sampler problem (preview grids).
    #[error(transparent)]
    Sampler(#[from] ddpm_sampler::SamplerError),
    /// A sampling-loop problem (preview grids).
    #[error(transparent)]
    Sample(#[from] ddpm_sampler::SampleError),
    /// The sample metric failed (evaluation during training, `eval_every`).
    #[error("evaluating {metric} at step {step}: {message}")]
    Eval {
        /// The metric's name.
        metric: String,
        /// The step evaluated.
        step: usize,
        /// The metric's error.
        message: String,
    },
    /// `eval_every` is set but no metric was given to the trainer.
    #[error(
        "eval_every is {eval_every} but the trainer has no sample metric (Trainer::with_metric)"
    )]
    NoMetric {
        /// The configured cadence.
        eval_every: usize,
    },
    /// A collective operation of data-parallel training failed (the transport's error).
    #[error(
        "data-parallel {op} failed{}: {message}",
        peer.map(|p| format!(" on peer {p}")).unwrap_or_default()
    )]
    Collective {
        /// The peer that saw it, when there is one.
        peer: Option<usize>,
        /// The operation: register, all-reduce, finish, ...
        op: &'static str,
        /// What the transport said.
        message: String,
    },
    /// The other peers of a data-parallel group did not arrive in time.
    #[error(
        "peer {peer} waited {waited_s:.0} s for the other peers in {op} #{call} and stopped: \
         {missing}"
    )]
    PeerTimeout {
        /// The peer that gave up.
        peer: usize,
        /// The operation it waited in.
        op: &'static str,
        /// Which of its collective calls (1-based).
        call: u64,
        /// How long it waited (the group's timeout).
        waited_s: f64,
        /// Who is missing, as far as this peer can tell.
        missing: String,
    },
    /// Peers of a data-parallel group stopped on an error of their own, and said so.
    #[error("peer{} {} stopped on an error (its own message names it); stopping too",
        if peers.len() > 1 { "s" } else { "" },
        peers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))]
    PeerFailed {
        /// Their ranks.
        peers: Vec<usize>,
    },
    /// The peers of a data-parallel group start from different states.
    #[error("the peers disagree on the {what} at the start: {values}")]
    PeersDisagree {
        /// What differs: step, data position, config, weights, ...
        what: &'static str,
        /// Each peer's value.
        values: String,
    },
    /// A peer that writes nothing was asked to write (only rank 0 writes the run, and the
    /// first peer of each other machine its checkpoints).
    #[error("peer {peer} does not write {what}: rank 0 writes the run")]
    NotWriter {
        /// The peer.
        peer: usize,
        /// What it was asked to write.
        what: &'static str,
    },
}

impl TrainError {
    /// Whether this error is another peer's failure seen from here ([`TrainError::PeerFailed`],
    /// [`TrainError::PeerTimeout`]) or a transport failure, rather than a cause of its own.
    pub fn is_consequence_of_a_peer(&self) -> bool {
        matches!(
            self,
            Self::PeerFailed { .. } | Self::PeerTimeout { .. } | Self::Collective { .. }
        )
    }
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
