//! One all-reduce per step: every peer's gradients, loss and status travel as one flat vector;
//! [`Reduction`] says how they are added.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, backend::AutodiffBackend, backend::Backend};

use super::Collective;
use crate::TrainError;

/// How the peers' gradients are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// In rank order, ((g₀ + g₁) + g₂) + …, whatever order the transport adds in: each peer's
    /// vector travels in its own slot of an N·P vector of zeros (x + 0 = x exactly, so the
    /// all-reduce is an exact all-gather), and every peer adds the slots itself in rank order.
    /// A run is reproducible to the bit, and a resumed run is bit-exact with an uninterrupted
    /// one. Costs N times the traffic and memory of [`Reduction::Transport`].
    #[default]
    Ordered,
    /// One all-reduce of P values, added in the transport's order. Burn 0.21's local reducers
    /// take the peers in `HashMap` order, which can change from run to run with 3 or more
    /// peers on a machine: runs then differ in the last bits of the gradients. With 1 or 2
    /// peers per machine the order does not matter (a + b = b + a).
    Transport,
}

impl std::str::FromStr for Reduction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ordered" => Ok(Self::Ordered),
            "transport" => Ok(Self::Transport),
            other => Err(format!(
                "{other:?} is not a reduction; expected ordered or transport"
            )),
        }
    }
}

/// How many values peers compare at the start ([`DataParallel::agree`]).
pub(crate) const START_CHECKS: usize = 6;

/// A trainer's place in a data-parallel group: its collective and how gradients are added.
pub struct DataParallel<B: Backend> {
    collective: Box<dyn Collective<B>>,
    reduction: Reduction,
}

impl<B: Backend> DataParallel<B> {
    /// A peer of `collective`'s group.
    pub fn new(collective: Box<dyn Collective<B>>, reduction: Reduction) -> Self {
        Self {
            collective,
            reduction,
        }
    }

    /// This peer's rank.
    pub fn peer(&self) -> usize {
        self.collective.peer()
    }

    /// Peers in the group.
    pub fn num_peers(&self) -> usize {
        self.collective.num_peers()
    }

    /// The reduction.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The sum over peers of `values`, added in rank order with [`Reduction::Ordered`].
    fn sum(&mut self, values: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
        match self.reduction {
            Reduction::Transport => self.collective.all_reduce_sum(values),
            Reduction::Ordered => {
                let slots = self.gather(values)?;
                let mut it = slots.into_iter();
                let first = it.next().expect("at least one peer");
                Ok(it.fold(first, |acc, s| acc + s))
            }
        }
    }

    /// Every peer's `values` (all of the same length), in rank order: an exact all-gather
    /// through one all-reduce of zero-padded slots.
    fn gather(&mut self, values: Tensor<B, 1>) -> Result<Vec<Tensor<B, 1>>, TrainError> {
        let (n, rank) = (self.num_peers(), self.peer());
        let len = values.dims()[0];
        let device = values.device();
        let mut parts = Vec::with_capacity(3);
        if rank > 0 {
            parts.push(Tensor::zeros([rank * len], &device));
        }
        parts.push(values);
        if rank + 1 < n {
            parts.push(Tensor::zeros([(n - rank - 1) * len], &device));
        }
        let all = self.collective.all_reduce_sum(Tensor::cat(parts, 0))?;
        Ok((0..n)
            .map(|p| all.clone().slice(p * len..(p + 1) * len))
            .collect())
    }

    /// Checks that every peer holds the same [`START_CHECKS`] `values` (named), e.g. step and
    /// data position at the start of a run.
    ///
    /// # Errors
    /// [`TrainError::PeerFailed`] when a peer could not start ([`Self::fail_start`]),
    /// [`TrainError::PeersDisagree`] naming the first value that differs and each peer's.
    pub(crate) fn agree(
        &mut self,
        values: &[(&'static str, u64); START_CHECKS],
        device: &B::Device,
    ) -> Result<(), TrainError> {
        let rows = self.start_exchange(0, values.map(|(_, v)| v), device)?;
        for (k, (name, _)) in values.iter().enumerate() {
            let first = rows[0][k];
            if rows.iter().any(|r| r[k] != first) {
                return Err(TrainError::PeersDisagree {
                    what: name,
                    values: rows
                        .iter()
                        .enumerate()
                        .map(|(p, r)| format!("peer {p}: {}", r[k]))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(())
    }

    /// Takes part in the start-up check of [`Self::agree`] as a peer that could not start (its
    /// trainer failed to build), so that the others stop with [`TrainError::PeerFailed`] at
    /// once instead of waiting for it until the timeout. Best effort: errors are ignored.
    pub(crate) fn fail_start(&mut self, device: &B::Device) {
        let _ = self.start_exchange(1, [0; START_CHECKS], device);
    }

    /// Every peer's status and start-up values, in rank order; [`TrainError::PeerFailed`] when a
    /// status is not 0.
    fn start_exchange(
        &mut self,
        status: u64,
        values: [u64; START_CHECKS],
        device: &B::Device,
    ) -> Result<Vec<Vec<u64>>, TrainError> {
        // Each u64 as four exact 16-bit pieces (f32 holds integers up to 2^24 exactly).
        let pieces: Vec<f32> = std::iter::once(status)
            .chain(values)
            .flat_map(|v| (0..4).map(move |i| ((v >> (16 * i)) & 0xFFFF) as f32))
            .collect();
        let n = pieces.len();
        let mine = Tensor::<B, 1>::from_data(burn::tensor::TensorData::new(pieces, [n]), device);
        let rows: Vec<Vec<u64>> = self
            .gather(mine)?
            .into_iter()
            .map(|s| {
                let v = s
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .unwrap_or_default();
                v.chunks(4)
                    .map(|c| {
                        c.iter()
                            .enumerate()
                            .map(|(i, &x)| (x as u64) << (16 * i))
                            .sum()
                    })
                    .collect()
            })
            .collect();
        let failed: Vec<usize> = (0..rows.len()).filter(|&p| rows[p][0] != 0).collect();
        if !failed.is_empty() {
            return Err(TrainError::PeerFailed { peers: failed });
        }
        Ok(rows.into_iter().map(|r| r[1..].to_vec()).collect())
    }

    /// The mean over peers of this peer's gradients and loss (one all-reduce), or
    /// [`TrainError::PeerFailed`] when a peer reported a failure instead ([`Self::abort`]).
    pub(crate) fn reduce_step<AB, M>(
        &mut self,
        grads: GradientsParams,
        model: &M,
        loss: Tensor<B, 1>,
    ) -> Result<(GradientsParams, f64), TrainError>
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let n = self.num_peers();
        let mut flat = Flatten::<AB> {
            grads: &grads,
            parts: Vec::new(),
            present: Vec::new(),
        };
        model.visit(&mut flat);
        let (mut parts, present) = (flat.parts, flat.present);
        let device = loss.device();
        let len: usize = parts.iter().map(|p| p.dims()[0]).sum();
        parts.push(loss);
        parts.push(Tensor::zeros([n], &device));
        let summed = self.sum(Tensor::cat(parts, 0))?;
        let tail: Vec<f32> = summed
            .clone()
            .slice(len..len + 1 + n)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        check_status(&tail[1..])?;
        let mean = summed.slice(0..len).div_scalar(n as f64);
        let mut unflatten = Unflatten::<AB> {
            flat: mean,
            offset: 0,
            present: present.into_iter(),
            grads: GradientsParams::new(),
        };
        model.visit(&mut unflatten);
        Ok((unflatten.grads, tail[0] as f64 / n as f64))
    }

    /// Tells the other peers that this one stopped (its status slot set in a step's all-reduce
    /// of `len` gradient values), so that they return [`TrainError::PeerFailed`] at their next
    /// step instead of waiting for it. Best effort: errors are ignored.
    pub(crate) fn abort(&mut self, len: usize, device: &B::Device) {
        let (n, rank) = (self.num_peers(), self.peer());
        let mut status = vec![0.0f32; n];
        status[rank] = 1.0;
        let payload = Tensor::cat(
            vec![
                Tensor::<B, 1>::zeros([len + 1], device),
                Tensor::from_data(burn::tensor::TensorData::new(status, [n]), device),
            ],
            0,
        );
        let _ = self.sum(payload);
    }

    /// Leaves the group.
    pub(crate) fn finish(&mut self) -> Result<(), TrainError> {
        self.collective.finish()
    }
}

fn check_status(status: &[f32]) -> Result<(), TrainError> {
    let failed: Vec<usize> = status
        .iter()
        .enumerate()
        .filter(|(_, s)| **s != 0.0)
        .map(|(p, _)| p)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(TrainError::PeerFailed { peers: failed })
    }
}

struct Flatten<'a, AB: AutodiffBackend> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<AB::InnerBackend, 1>>,
    present: Vec<bool>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Flatten<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let shape = param.shape();
        let numel = shape.num_elements();
        // A parameter without a gradient (unused by the forward pass) contributes zeros and
        // gets none back: the same on every peer, since all run the same model.
        match self.grads.get::<AB::InnerBackend, D>(param.id) {
            Some(g) => {
                self.parts.push(g.reshape([numel]));
                self.present.push(true);
            }
            None => {
                let device = param.val().inner().device();
                self.parts
                    .push(Tensor::<AB::InnerBackend, 1>::zeros([numel], &device));
                self.present.push(false);
            }
        }
    }
}

struct Unflatten<AB: AutodiffBackend> {
    flat: Tensor<AB::InnerBackend, 1>,
    offset: usize,
    present: std::vec::IntoIter<bool>,
    grads: GradientsParams,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Unflatten<AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let shape = param.shape();
        let numel = shape.num_elements();
        let part = self.flat.clone().slice(self.offset..self.offset + numel);
        self.offset += numel;
        if self.present.next().unwrap_or(false) {
            let id: ParamId = param.id;
            self.grads
                .register::<AB::InnerBackend, D>(id, part.reshape(shape));
        }
    }
}
