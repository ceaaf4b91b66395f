//! [`Collective`] on Burn 0.21's `burn-collective` (feature `collective`), and its multi-node
//! orchestrator.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};

use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

use super::{Collective, PeerGroup};
use crate::TrainError;

/// Runs Burn's multi-node orchestrator on `port` (all interfaces) until the process is
/// interrupted (Ctrl-C or SIGTERM). Nodes register with it and learn each other's addresses from
/// it.
///
/// # Errors
///
/// [`TrainError::Collective`] (op `orchestrator`) when the port cannot be listened on (in use,
/// not permitted), when the interrupt handlers cannot be installed, or when Burn's server stops
/// by itself: Burn 0.21 only logs its server's errors (to stdout) and returns, which would
/// otherwise look like a clean exit.
pub fn run_orchestrator(port: u16) -> Result<(), TrainError> {
    let fail = |message: String| collective_error(None, "orchestrator", &message);
    // Burn's server binds 0.0.0.0:port; a port it cannot take is named here, before it starts.
    std::net::TcpListener::bind(("0.0.0.0", port))
        .map_err(|e| fail(format!("cannot listen on 0.0.0.0:{port}: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    runtime.block_on(async {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| fail(format!("cannot install the SIGTERM handler: {e}")))?;
        #[cfg(unix)]
        let terminate = terminate.recv();
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        // `biased`: on an interrupt both this and Burn's own handler wake; the interrupt is
        // checked first, so a stop asked for is not reported as a failure.
        tokio::select! {
            biased;
            signal = interrupt => signal
                .map_err(|e| fail(format!("cannot install the Ctrl-C handler: {e}"))),
            _ = terminate => Ok(()),
            () = burn_collective::start_global_orchestrator(port) => Err(fail(format!(
                "Burn's server on port {port} stopped by itself (its log above says why)"
            ))),
        }
    })
}

fn collective_error(peer: Option<usize>, op: &'static str, message: &str) -> TrainError {
    TrainError::Collective {
        peer,
        op,
        message: message.to_string(),
    }
}

enum Job<B: Backend> {
    Register(B::Device, CollectiveConfig),
    AllReduce(TensorPrimitive<B>),
    Finish,
}

enum Done<B: Backend> {
    Registered,
    Reduced(TensorPrimitive<B>),
    Finished,
}

/// [`Collective`] on Burn 0.21's `burn-collective`: peers on one machine are threads of one
/// process (Burn's local collective server adds their tensors), machines meet through an
/// orchestrator ([`run_orchestrator`]) and exchange tensors over WebSocket.
///
/// Every call runs on a worker thread of the peer and is waited for with the group's
/// timeout, so a peer that never arrives gives [`TrainError::PeerTimeout`] instead of a hang.
/// After a timeout the group is unusable (Burn's call cannot be cancelled: its worker thread
/// stays blocked until the process ends) and every further call fails at once.
///
/// One group per backend type per process at a time: Burn keeps one collective server per
/// backend type (the launcher, [`ParallelTraining`](crate::parallel::ParallelTraining),
/// holds a process-wide lock for this).
pub struct BurnCollective<B: Backend> {
    rank: usize,
    local: usize,
    group: PeerGroup,
    jobs: Sender<Job<B>>,
    done: Receiver<Result<Done<B>, String>>,
    arrivals: Arc<Mutex<Vec<u64>>>,
    calls: u64,
    broken: bool,
}

impl<B: Backend> BurnCollective<B> {
    /// Registers this machine's local peer `local` (on `device`) with the group and waits until
    /// every peer of the group has registered.
    ///
    /// # Errors
    /// [`TrainError::PeerTimeout`] naming the peers (or machines) that did not register in time,
    /// [`TrainError::Collective`] when Burn refuses the registration.
    pub fn register(
        group: &PeerGroup,
        local: usize,
        device: B::Device,
        arrivals: &Arrivals,
    ) -> Result<Self, TrainError> {
        group.validate()?;
        let rank = group.rank(local);
        let mut config = CollectiveConfig::default().with_num_devices(group.local_peers);
        if let Some(n) = &group.nodes {
            let addr = |field: &str, s: &str| {
                s.parse().map_err(|e: String| {
                    collective_error(Some(rank), "register", &format!("{field} {s:?}: {e}"))
                })
            };
            config = config
                .with_num_nodes(n.num_nodes)
                .with_global_address(addr("orchestrator", &n.orchestrator)?)
                .with_node_address(addr("node address", &n.node_address)?)
                .with_data_service_port(n.data_port);
        }
        let (jobs, job_rx) = mpsc::channel::<Job<B>>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("collective-peer-{rank}"))
            .spawn(move || {
                let id = PeerId(rank as u32);
                while let Ok(job) = job_rx.recv() {
                    let result = match job {
                        Job::Register(device, config) => {
                            collective::register::<B>(id, device, config).map(|()| Done::Registered)
                        }
                        Job::AllReduce(TensorPrimitive::Float(t)) => {
                            collective::all_reduce::<B>(id, t, ReduceOperation::Sum)
                                .map(|t| Done::Reduced(TensorPrimitive::Float(t)))
                        }
                        Job::AllReduce(TensorPrimitive::QFloat(_)) => Err(
                            collective::CollectiveError::Other("quantized tensor".into()),
                        ),
                        Job::Finish => {
                            collective::finish_collective::<B>(id).map(|()| Done::Finished)
                        }
                    };
                    let last = matches!(result, Ok(Done::Finished));
                    if done_tx.send(result.map_err(|e| format!("{e:?}"))).is_err() || last {
                        break;
                    }
                }
            })
            .map_err(|e| collective_error(Some(rank), "register", &e.to_string()))?;
        let mut me = Self {
            rank,
            local,
            group: group.clone(),
            jobs,
            done,
            arrivals: arrivals.0.clone(),
            calls: 0,
            broken: false,
        };
        match me.call("register", Job::Register(device, config))? {
            Done::Registered => Ok(me),
            _ => Err(collective_error(Some(rank), "register", "unexpected reply")),
        }
    }

    fn call(&mut self, op: &'static str, job: Job<B>) -> Result<Done<B>, TrainError> {
        if self.broken {
            return Err(collective_error(
                Some(self.rank),
                op,
                "the group failed earlier (a peer timed out or the transport failed)",
            ));
        }
        self.calls += 1;
        if let Ok(mut a) = self.arrivals.lock() {
            a[self.local] = self.calls;
        }
        if self.jobs.send(job).is_err() {
            self.broken = true;
            return Err(collective_error(
                Some(self.rank),
                op,
                "the worker thread ended",
            ));
        }
        match self.done.recv_timeout(self.group.timeout) {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(message)) => {
                self.broken = true;
                Err(collective_error(Some(self.rank), op, &message))
            }
            Err(RecvTimeoutError::Timeout) => {
                self.broken = true;
                Err(self.timeout_error(op))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.broken = true;
                Err(collective_error(
                    Some(self.rank),
                    op,
                    "the worker thread ended",
                ))
            }
        }
    }

    fn timeout_error(&self, op: &'static str) -> TrainError {
        let behind: Vec<usize> = self
            .arrivals
            .lock()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .filter(|(_, c)| **c < self.calls)
                    .map(|(i, _)| self.group.rank(i))
                    .collect()
            })
            .unwrap_or_default();
        let missing = if !behind.is_empty() {
            format!(
                "peer{} {} of this machine did not reach it",
                if behind.len() > 1 { "s" } else { "" },
                behind
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if let Some(n) = &self.group.nodes {
            format!(
                "every peer of this machine (node {} of {}) arrived; another node is missing or \
                 stopped, or the orchestrator at {} is unreachable",
                n.node_rank, n.num_nodes, n.orchestrator
            )
        } else {
            "every peer arrived, but the collective did not complete".to_string()
        };
        TrainError::PeerTimeout {
            peer: self.rank,
            op,
            call: self.calls,
            waited_s: self.group.timeout.as_secs_f64(),
            missing,
        }
    }
}

impl<B: Backend> Collective<B> for BurnCollective<B> {
    fn peer(&self) -> usize {
        self.rank
    }

    fn num_peers(&self) -> usize {
        self.group.num_peers()
    }

    fn all_reduce_sum(&mut self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
        match self.call("all-reduce", Job::AllReduce(tensor.into_primitive()))? {
            Done::Reduced(t) => Ok(Tensor::from_primitive(t)),
            _ => Err(collective_error(
                Some(self.rank),
                "all-reduce",
                "unexpected reply",
            )),
        }
    }

    fn finish(&mut self) -> Result<(), TrainError> {
        match self.call("finish", Job::Finish)? {
            Done::Finished => Ok(()),
            _ => Err(collective_error(
                Some(self.rank),
                "finish",
                "unexpected reply",
            )),
        }
    }
}

/// Counts, per local peer of one group, the collective calls each has entered: who is missing
/// when a call times out.
#[derive(Debug, Clone)]
pub struct Arrivals(pub(crate) Arc<Mutex<Vec<u64>>>);

impl Arrivals {
    /// For `local_peers` peers.
    pub fn new(local_peers: usize) -> Self {
        Self(Arc::new(Mutex::new(vec![0; local_peers])))
    }
}
