//! Data-parallel training: one peer per device, each on its own shard of every batch, with
//! the gradients averaged over all peers (an all-reduce) before the identical optimizer step
//! on every peer.
//!
//! # What a step does
//! Every peer draws the same global batch from the same seeded stream (the data order, the
//! timesteps and ε of the whole batch, exactly as a single trainer of that batch size would)
//! and trains on its rows: peer r of N takes rows `r·B/N .. (r+1)·B/N` of each micro-batch of
//! B images. Forward and backward run locally; one all-reduce then carries every peer's
//! gradients, loss and status; each peer takes the mean, clips it by its global norm, and
//! takes the same Adam step and EMA update. So N peers with batch B train the model a single
//! trainer with batch B trains, up to the rounding of the gradient mean (and the dropout
//! masks: peer r > 0 draws its own, so with dropout the runs agree in distribution only).
//!
//! # Determinism and resume
//! With [`Reduction::Ordered`] (the default) the gradients are added in rank order whatever
//! the transport does, so a run repeated is bit-identical and a resumed run is bit-exact with
//! an uninterrupted one with the same number of peers. Resuming with a different number of
//! peers continues the same data order, timesteps and noise; the gradient means then differ in
//! the last bits (a different sum), and dropout masks of the shards differ.
//!
//! # Outputs
//! Rank 0 writes the run: metrics, checkpoints, previews, evaluations. On several machines
//! the first peer of every other machine also writes checkpoints to its own run directory (so
//! each machine can resume without a shared file system); the others write nothing. Every
//! peer checks at the start that all agree on the step, the data position, the config and the
//! weights.
//!
//! # Failures
//! A peer that fails (a write error, a panic in a kernel) tells the others through the next
//! all-reduce, and they stop with [`TrainError::PeerFailed`]. A peer that disappears makes the
//! others stop after [`PeerGroup::timeout`] with [`TrainError::PeerTimeout`], naming the local
//! peers that did not arrive (or, when all did, that another machine is missing).
//!
//! The transport is [`Collective`]: Burn 0.21's `burn-collective` (`BurnCollective`, feature
//! `collective`), or any implementation of the trait ([`ParallelTraining::run_with`]).

#[cfg(feature = "collective")]
mod collective;
mod group;
mod reduce;

#[cfg(feature = "collective")]
pub use collective::{Arrivals, BurnCollective, run_orchestrator};
pub use group::{Collective, MULTI_NODE_ANYWAY, NodeConfig, PeerGroup};
pub use reduce::{DataParallel, Reduction};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use burn::tensor::backend::AutodiffBackend;
use ddpm_data::Dataset;

use crate::{TrainConfig, TrainError, TrainEvent, Trainer};

/// How a data-parallel run starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new run with this config (as [`Trainer::new`]).
    New(TrainConfig),
    /// Continue the run in the run directory with this config (as
    /// [`Trainer::resume_with_config`]: the saved config with the changes asked for).
    Resume(TrainConfig),
}

/// What a trainer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outputs {
    /// Metrics, checkpoints, previews, evaluations (a single trainer, or rank 0).
    All,
    /// Checkpoints only (the first peer of a machine other than rank 0's).
    Checkpoints,
    /// Nothing (every other peer).
    Nothing,
}

/// Burn keeps one collective server per backend type in a process: one group at a time.
static GROUP_LOCK: Mutex<()> = Mutex::new(());

/// A data-parallel run on this machine's devices: rank 0's trainer is built at once (so the
/// run directory is created or resumed, and a metric can be attached), the other peers when
/// `ParallelTraining::run` (feature `collective`) starts them, one thread each.
pub struct ParallelTraining<B: AutodiffBackend> {
    leader: Trainer<B>,
    dataset: Arc<Dataset>,
    devices: Vec<B::Device>,
    group: PeerGroup,
    reduction: Reduction,
    resumed_from: Option<PathBuf>,
}

impl<B: AutodiffBackend> ParallelTraining<B> {
    /// Prepares a run in `run_dir` on `devices` (one peer each; `group.local_peers` must be
    /// their number). This machine's first peer creates or resumes the run directory now.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] when the devices do not match the group, or when the
    /// batch (per gradient-accumulation step) does not split evenly over the peers; everything
    /// [`Trainer::new`] / [`Trainer::resume_with_config`] return.
    pub fn new(
        start: Start,
        run_dir: impl AsRef<std::path::Path>,
        dataset: Arc<Dataset>,
        devices: Vec<B::Device>,
        group: PeerGroup,
    ) -> Result<Self, TrainError> {
        group.validate()?;
        if devices.len() != group.local_peers {
            return Err(TrainError::InvalidConfig {
                field: "devices",
                value: devices.len().to_string(),
                expected: "one device per local peer",
            });
        }
        let config = match &start {
            Start::New(c) | Start::Resume(c) => c,
        };
        check_split(config, group.num_peers())?;
        let mut leader = match start {
            Start::New(config) => Trainer::new(config, run_dir, dataset.clone(), &devices[0])?,
            Start::Resume(config) => {
                Trainer::resume_with_config(run_dir, dataset.clone(), config, &devices[0])?
            }
        };
        leader.outputs = if group.rank(0) == 0 {
            Outputs::All
        } else {
            Outputs::Checkpoints
        };
        let resumed_from = leader.resume_report().map(|r| r.checkpoint.clone());
        Ok(Self {
            leader,
            dataset,
            devices,
            group,
            reduction: Reduction::default(),
            resumed_from,
        })
    }

    /// With another [`Reduction`] (default [`Reduction::Ordered`]).
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Attaches the metric rank 0 evaluates with (see [`Trainer::with_metric`]).
    pub fn with_metric(
        mut self,
        metric: Box<dyn crate::SampleMetric<B::InnerBackend> + Send>,
    ) -> Self {
        self.leader = self.leader.with_metric(metric);
        self
    }

    /// This machine's first peer (rank 0 on the first machine): its config, step, resume
    /// report.
    pub fn leader(&self) -> &Trainer<B> {
        &self.leader
    }

    /// The group.
    pub fn group(&self) -> &PeerGroup {
        &self.group
    }

    /// Trains to the config's step count on Burn's collectives ([`BurnCollective`]); returns
    /// every local peer's trainer, this machine's first peer first. `on_event` sees the first
    /// peer's events.
    ///
    /// # Errors
    /// The first peer's error, or the error of the peer that failed first; see the
    /// [module docs](self).
    #[cfg(feature = "collective")]
    pub fn run(self, on_event: impl FnMut(TrainEvent)) -> Result<Vec<Trainer<B>>, TrainError> {
        let arrivals = Arrivals::new(self.group.local_peers);
        let group = self.group.clone();
        self.run_locked(
            // State an earlier group of this process left when it failed.
            burn::collective::reset_collective::<B::InnerBackend>,
            |local, device| {
                let c = BurnCollective::<B::InnerBackend>::register(
                    &group,
                    local,
                    device.clone(),
                    &arrivals,
                )?;
                Ok(Box::new(c) as Box<dyn Collective<B::InnerBackend>>)
            },
            on_event,
        )
    }

    /// As `ParallelTraining::run`, with the peers joined by `connect(local_index, device)`:
    /// called once per local peer, concurrently, on the peer's thread.
    ///
    /// # Errors
    /// As `ParallelTraining::run`.
    pub fn run_with<C>(
        self,
        connect: C,
        on_event: impl FnMut(TrainEvent),
    ) -> Result<Vec<Trainer<B>>, TrainError>
    where
        C: Fn(usize, &B::Device) -> Result<Box<dyn Collective<B::InnerBackend>>, TrainError> + Sync,
    {
        self.run_locked(|| {}, connect, on_event)
    }

    /// Holds the process's group lock, runs `prepare`, then the peers.
    fn run_locked<C>(
        self,
        prepare: impl FnOnce(),
        connect: C,
        on_event: impl FnMut(TrainEvent),
    ) -> Result<Vec<Trainer<B>>, TrainError>
    where
        C: Fn(usize, &B::Device) -> Result<Box<dyn Collective<B::InnerBackend>>, TrainError> + Sync,
    {
        let _one_group = GROUP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        prepare();
        let Self {
            leader,
            dataset,
            devices,
            group,
            reduction,
            resumed_from,
        } = self;
        let config = leader.config().clone();
        let run_dir = leader.run_dir().to_path_buf();
        let connect = &connect;
        std::thread::scope(|s| {
            let followers: Vec<_> = devices
                .iter()
                .enumerate()
                .skip(1)
                .map(|(local, device)| {
                    let (config, run_dir, dataset) =
                        (config.clone(), run_dir.clone(), dataset.clone());
                    let resumed_from = resumed_from.clone();
                    std::thread::Builder::new()
                        .name(format!("ddpm-peer-{}", group.rank(local)))
                        .spawn_scoped(s, move || {
                            // Joined first, so that a trainer that cannot be built (a device
                            // out of memory, an unreadable checkpoint) is reported to the
                            // others at once rather than after their timeout.
                            let collective = connect(local, device);
                            let trainer = Trainer::follower(
                                config,
                                run_dir,
                                dataset,
                                device,
                                resumed_from.as_deref(),
                            );
                            match (trainer, collective) {
                                (Ok(t), collective) => peer_run(t, collective, reduction, |_| {}),
                                (Err(e), Ok(c)) => {
                                    DataParallel::new(c, reduction).fail_start(device);
                                    Err(e)
                                }
                                (Err(e), Err(_)) => Err(e),
                            }
                        })
                        .map_err(|e| TrainError::Collective {
                            peer: Some(group.rank(local)),
                            op: "spawn",
                            message: e.to_string(),
                        })
                })
                .collect();
            let first = peer_run(leader, connect(0, &devices[0]), reduction, on_event);
            let mut results = vec![first];
            for (i, f) in followers.into_iter().enumerate() {
                let rank = group.rank(i + 1);
                results.push(f.and_then(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(TrainError::Collective {
                            peer: Some(rank),
                            op: "train",
                            message: "the peer's thread panicked".into(),
                        })
                    })
                }));
            }
            combine(results)
        })
    }
}

/// Joins `trainer` to the group, trains, leaves.
fn peer_run<B: AutodiffBackend>(
    mut trainer: Trainer<B>,
    collective: Result<Box<dyn Collective<B::InnerBackend>>, TrainError>,
    reduction: Reduction,
    on_event: impl FnMut(TrainEvent),
) -> Result<Trainer<B>, TrainError> {
    trainer.join_group(DataParallel::new(collective?, reduction))?;
    trainer.run(on_event)?;
    trainer.leave_group()?;
    Ok(trainer)
}

/// The trainers when every peer finished, else the error that caused the others: a peer's own
/// failure before the consequences other peers saw of it.
fn combine<B: AutodiffBackend>(
    results: Vec<Result<Trainer<B>, TrainError>>,
) -> Result<Vec<Trainer<B>>, TrainError> {
    let mut trainers = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(t) => trainers.push(t),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok(trainers);
    }
    let cause = errors
        .iter()
        .position(|e| !e.is_consequence_of_a_peer())
        .unwrap_or(0);
    Err(errors.swap_remove(cause))
}

/// The batch of each gradient-accumulation step must split evenly over the peers.
pub(crate) fn check_split(config: &TrainConfig, peers: usize) -> Result<(), TrainError> {
    let accum = config.grad_accumulation.max(1);
    if !config.batch_size.is_multiple_of(accum * peers) {
        return Err(TrainError::InvalidConfig {
            field: "batch_size",
            value: format!(
                "{} ({} gradient-accumulation steps, {peers} peers)",
                config.batch_size, accum
            ),
            expected: "a multiple of grad_accumulation × peers, so every peer gets an equal shard",
        });
    }
    Ok(())
}
