//! Reading pytorch-fid's weights: the state dict of `fid_inception_v3()` (torchvision's
//! `Inception3` with 1008 classes, no aux head), by name, checked tensor by tensor.
//!
//! Two formats: safetensors (always), and the `.pth` pytorch-fid downloads with the crate's
//! `pytorch` feature (burn-store's pickle reader). Converting the `.pth` once needs only torch:
//!
//! ```text
//! python -c "import torch, safetensors.torch as st; st.save_file({k: v for k, v in torch.load('pt_inception-2015-12-05-6726825d.pth').items() if v.is_floating_point()}, 'pt_inception-2015-12-05.safetensors')"
//! ```
//!
//! BatchNorm (eval mode, ε = 0.001 as in torchvision's `BasicConv2d`) is folded into each
//! convolution on the host, in f64:
//! `s = γ / √(σ² + ε)`, `W' = s · W`, `b' = β − s · μ`, so `bn(conv(x)) = conv'(x)`.

use crate::hash::{FNV_OFFSET, FNV_PRIME, fnv1a};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::EvalError;

/// BatchNorm ε of torchvision's `BasicConv2d` (`nn.BatchNorm2d(out_channels, eps=0.001)`).
pub(crate) const BN_EPS: f64 = 1e-3;

/// A tensor read from a weights file: shape and row-major `f32` values.
#[derive(Debug, Clone)]
pub(crate) struct HostTensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<f32>,
}

/// The tensors of a weights file, handed out by name to the blocks that need them; whatever is
/// left at the end is an unexpected tensor. Hashes what it hands out (names, shapes, values in
/// the model's order; FNV-1a, the values as 32-bit words), so the hash does not depend on the
/// file format or its tensor order.
pub(crate) struct WeightLoader<'d, B: Backend> {
    path: PathBuf,
    tensors: HashMap<String, HostTensor>,
    /// Names present in the file that are not used and need no check (`num_batches_tracked`).
    ignored: Vec<String>,
    /// Prefixes of the `BasicConv2d`s built so far.
    used: Vec<String>,
    hash: u64,
    device: &'d B::Device,
}

impl<'d, B: Backend> WeightLoader<'d, B> {
    /// Takes the file's tensors; `num_batches_tracked` counters (int64, unused in eval mode)
    /// are set aside whatever their type. Other tensors must already be `f32`.
    pub(crate) fn new(
        path: &Path,
        tensors: HashMap<String, HostTensor>,
        ignored: Vec<String>,
        device: &'d B::Device,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            tensors,
            ignored,
            used: Vec::new(),
            hash: FNV_OFFSET,
            device,
        }
    }

    fn bad(&self, tensor: &str, reason: String) -> EvalError {
        EvalError::BadWeights {
            path: self.path.clone(),
            tensor: tensor.to_string(),
            reason,
        }
    }

    /// Removes tensor `name`, checking its shape and that every value is finite.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor, EvalError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| self.bad(name, "missing".into()))?;
        if t.shape != shape {
            return Err(self.bad(name, format!("has shape {:?}, expected {shape:?}", t.shape)));
        }
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(self.bad(
                name,
                format!("holds a non-finite value ({}) at flat index {i}", t.data[i]),
            ));
        }
        self.hash = fnv1a(self.hash, name.as_bytes());
        for &d in shape {
            self.hash = fnv1a(self.hash, &(d as u64).to_le_bytes());
        }
        // Values word by word (FNV-1a's step on 32-bit words: 4× fewer steps on 95 MB).
        for v in &t.data {
            self.hash = (self.hash ^ u64::from(v.to_bits())).wrapping_mul(FNV_PRIME);
        }
        Ok(t)
    }

    /// Builds torchvision's `BasicConv2d` `{prefix}` (conv without bias, BatchNorm ε = 0.001)
    /// as one convolution with the BatchNorm folded in.
    pub(crate) fn conv(
        &mut self,
        prefix: &str,
        channels: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Conv2d<B>, EvalError> {
        let [c_in, c_out] = channels;
        self.used.push(prefix.to_string());
        let w_name = format!("{prefix}.conv.weight");
        let w = self.take(&w_name, &[c_out, c_in, kernel[0], kernel[1]])?;
        let mut bn = Vec::with_capacity(4);
        for part in ["weight", "bias", "running_mean", "running_var"] {
            bn.push(self.take(&format!("{prefix}.bn.{part}"), &[c_out])?);
        }
        let (gamma, beta, mean, var) = (&bn[0].data, &bn[1].data, &bn[2].data, &bn[3].data);
        if let Some(i) = var.iter().position(|&v| v < 0.0) {
            return Err(self.bad(
                &format!("{prefix}.bn.running_var"),
                format!("is negative ({}) at index {i}", var[i]),
            ));
        }
        let per_out = c_in * kernel[0] * kernel[1];
        let mut weight = Vec::with_capacity(w.data.len());
        let mut bias = Vec::with_capacity(c_out);
        for o in 0..c_out {
            let s = f64::from(gamma[o]) / (f64::from(var[o]) + BN_EPS).sqrt();
            weight.extend(
                w.data[o * per_out..(o + 1) * per_out]
                    .iter()
                    .map(|&x| (f64::from(x) * s) as f32),
            );
            bias.push((f64::from(beta[o]) - s * f64::from(mean[o])) as f32);
        }
        Ok(Conv2d {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [c_out, c_in, kernel[0], kernel[1]]),
                self.device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias, [c_out]),
                self.device,
            ))),
            stride,
            kernel_size: kernel,
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(padding[0], padding[1], padding[0], padding[1]),
        })
    }

    /// Builds the `[d_in → d_out]` linear layer `{prefix}` (PyTorch stores `[d_out, d_in]`,
    /// Burn `[d_in, d_out]`).
    pub(crate) fn linear(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Linear<B>, EvalError> {
        let w = self.take(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let b = self.take(&format!("{prefix}.bias"), &[d_out])?;
        let mut wt = vec![0.0f32; d_in * d_out];
        for o in 0..d_out {
            for i in 0..d_in {
                wt[i * d_out + o] = w.data[o * d_in + i];
            }
        }
        Ok(Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(wt, [d_in, d_out]),
                self.device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b.data, [d_out]),
                self.device,
            ))),
        })
    }

    /// Refuses leftover tensors (naming the first in sorted order) and returns the content hash.
    /// An ignored `…bn.num_batches_tracked` must belong to a BatchNorm the model used.
    pub(crate) fn finish(self) -> Result<u64, EvalError> {
        let mut left: Vec<&String> = self.tensors.keys().collect();
        left.sort();
        if let Some(name) = left.first() {
            return Err(self.bad(name, "unexpected (not part of pytorch-fid's model)".into()));
        }
        for name in &self.ignored {
            let owner = name.strip_suffix(".bn.num_batches_tracked");
            if !owner.is_some_and(|p| self.used.iter().any(|u| u == p)) {
                return Err(self.bad(name, "unexpected (not part of pytorch-fid's model)".into()));
            }
        }
        Ok(self.hash)
    }
}

/// Whether a tensor name is a BatchNorm step counter (unused in eval mode; int64 in the file).
fn is_counter(name: &str) -> bool {
    name.ends_with(".num_batches_tracked")
}

/// The tensors of a safetensors file: `f32` tensors, plus the names of ignored counters.
pub(crate) fn read_safetensors(
    path: &Path,
) -> Result<(HashMap<String, HostTensor>, Vec<String>), EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| EvalError::BadFile {
        path: path.to_path_buf(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    let mut tensors = HashMap::new();
    let mut ignored = Vec::new();
    for (name, view) in st.tensors() {
        if is_counter(&name) {
            ignored.push(name);
            continue;
        }
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(EvalError::BadWeights {
                path: path.to_path_buf(),
                tensor: name,
                reason: format!("has dtype {:?}, expected F32", view.dtype()),
            });
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok((tensors, ignored))
}

/// The tensors of a PyTorch pickle (`torch.save` of a state dict, as pytorch-fid's `.pth`).
#[cfg(feature = "pytorch")]
pub(crate) fn read_pytorch(
    path: &Path,
) -> Result<(HashMap<String, HostTensor>, Vec<String>), EvalError> {
    use burn::tensor::DType;
    let reader =
        burn_store::pytorch::PytorchReader::new(path).map_err(|source| EvalError::Pytorch {
            path: path.to_path_buf(),
            source,
        })?;
    let mut tensors = HashMap::new();
    let mut ignored = Vec::new();
    for (name, snapshot) in reader.into_tensors() {
        if is_counter(&name) {
            ignored.push(name);
            continue;
        }
        if snapshot.dtype != DType::F32 {
            return Err(EvalError::BadWeights {
                path: path.to_path_buf(),
                tensor: name,
                reason: format!("has dtype {:?}, expected F32", snapshot.dtype),
            });
        }
        let data = snapshot.to_data().map_err(|e| EvalError::BadWeights {
            path: path.to_path_buf(),
            tensor: name.clone(),
            reason: format!("cannot be read: {e:?}"),
        })?;
        let shape = data.shape.to_vec();
        let data = data.to_vec::<f32>().map_err(|e| EvalError::BadWeights {
            path: path.to_path_buf(),
            tensor: name.clone(),
            reason: format!("cannot be read as f32: {e:?}"),
        })?;
        tensors.insert(name, HostTensor { shape, data });
    }
    Ok((tensors, ignored))
}
