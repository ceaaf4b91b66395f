//! The interface data-parallel training needs from a collective library ([`Collective`]) and
//! where a group's peers live ([`PeerGroup`]).
//!
//! NOTE: Burn 0.21's `burn-collective` implements [`Collective`] here
//! (`BurnCollective`, feature `collective`); it was removed
//! from Burn after 0.21. Everything else in [`parallel`](crate::parallel) talks to the trait
//! only, so a later Burn (or another transport) needs one new implementation and nothing else.

use std::time::Duration;

use burn::tensor::{Tensor, backend::Backend};

use crate::TrainError;

/// A group of peers that sum tensors together: the whole interface data-parallel training
/// uses. Every peer of a group calls the same operations in the same order.
pub trait Collective<B: Backend>: Send {
    /// This peer's rank, `0..num_peers()`: unique over all machines.
    fn peer(&self) -> usize;

    /// The number of peers over all machines.
    fn num_peers(&self) -> usize;

    /// The element-wise sum of `tensor` over every peer. All peers receive the same values;
    /// how the additions are ordered is the implementation's (see
    /// [`Reduction`](crate::parallel::Reduction) for how training makes the result exact
    /// anyway).
    ///
    /// # Errors
    /// [`TrainError::PeerTimeout`] when the other peers do not arrive in time (naming the local
    /// peers that are missing), [`TrainError::Collective`] for a failure of the transport.
    fn all_reduce_sum(&mut self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError>;

    /// Leaves the group (the last peer of a machine closes its connections).
    ///
    /// # Errors
    /// As [`Collective::all_reduce_sum`].
    fn finish(&mut self) -> Result<(), TrainError>;
}

/// The environment variable that lifts the multi-node refusal of [`PeerGroup::validate`]
/// (for a Burn whose multi-node all-reduce completes more than once).
pub const MULTI_NODE_ANYWAY: &str = "DDPM_MULTI_NODE_ANYWAY";

/// Where a group's peers live: how many on this machine and, for several machines, how to
/// reach the others.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerGroup {
    /// Peers (devices) on this machine; every machine of a group runs the same number.
    pub local_peers: usize,
    /// The machines, when there are several.
    pub nodes: Option<NodeConfig>,
    /// How long a collective call waits for the other peers before failing with
    /// [`TrainError::PeerTimeout`]. It must exceed the longest work one peer does alone
    /// between two steps: peer 0 writes previews and runs evaluations while the others wait.
    pub timeout: Duration,
}

impl PeerGroup {
    /// `local_peers` peers on this machine only, with a 10-minute timeout.
    pub fn local(local_peers: usize) -> Self {
        Self {
            local_peers,
            nodes: None,
            timeout: Duration::from_secs(600),
        }
    }

    /// Several machines, `local_peers` on each.
    pub fn multi_node(local_peers: usize, nodes: NodeConfig) -> Self {
        Self {
            nodes: Some(nodes),
            ..Self::local(local_peers)
        }
    }

    /// With another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Peers over all machines.
    pub fn num_peers(&self) -> usize {
        self.local_peers * self.nodes.as_ref().map_or(1, |n| n.num_nodes as usize)
    }

    /// The rank of this machine's local peer `local`.
    pub fn rank(&self, local: usize) -> usize {
        self.nodes.as_ref().map_or(0, |n| n.node_rank as usize) * self.local_peers + local
    }

    /// Checks the counts and ranks.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.local_peers == 0 {
            return Err(TrainError::InvalidConfig {
                field: "local_peers",
                value: "0".into(),
                expected: "at least one device",
            });
        }
        if let Some(n) = &self.nodes {
            if n.num_nodes > 1 && std::env::var_os(MULTI_NODE_ANYWAY).is_none() {
                return Err(TrainError::InvalidConfig {
                    field: "num_nodes",
                    value: n.num_nodes.to_string(),
                    expected: "1: Burn 0.21's multi-node all-reduce hangs on its second call \
                               (burn-collective's SyncService::sync clears a copy of its list of \
                               synced nodes, so the second sync never completes; see also \
                               tracel-ai/burn#4549), so training over several machines would \
                               stop at its first step; set DDPM_MULTI_NODE_ANYWAY=1 to try it \
                               with a Burn that has the fix",
                });
            }
            if n.num_nodes == 0 {
                return Err(TrainError::InvalidConfig {
                    field: "num_nodes",
                    value: "0".into(),
                    expected: "at least 1",
                });
            }
            if n.node_rank >= n.num_nodes {
                return Err(TrainError::InvalidConfig {
                    field: "node_rank",
                    value: n.node_rank.to_string(),
                    expected: "below num_nodes (ranks count from 0)",
                });
            }
        }
        Ok(())
    }
}

/// One machine's place in a multi-machine group (Burn's global collective: an orchestrator
/// that every node registers with, and a WebSocket data service per node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Machines in the group.
    pub num_nodes: u32,
    /// This machine's rank, `0..num_nodes`: its peers are ranks
    /// `node_rank · local_peers ..`; rank 0's first peer writes the run's outputs.
    pub node_rank: u32,
    /// The orchestrator's address, `ws://HOST:PORT` (`ddpm orchestrator --port PORT`).
    pub orchestrator: String,
    /// This node's address as the others reach it, `ws://HOST:PORT`, with the data port.
    pub node_address: String,
    /// The port this node's tensor data service listens on (the port of `node_address`).
    pub data_port: u16,
}
