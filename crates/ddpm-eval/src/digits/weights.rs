//! Digit classifier weight files: safetensors, one f32 tensor per parameter under its module
//! path (`conv1.weight`, …, `fc2.bias`, Burn's layouts: convolutions `[out, in, 3, 3]`, linear
//! `[in, out]`), and one header metadata entry, `ddpm-eval-digits` = the
//! [`DigitClassifierConfig`] as JSON (its presence marks the format). Written atomically, the
//! same bytes for the same weights; every tensor is checked (dtype, shape, finiteness) on load.

use crate::hash::{FNV_OFFSET, fnv1a};
use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use safetensors::{Dtype, SafeTensors};

use super::model::{DigitClassifier, DigitClassifierConfig, assemble, param_specs};
use crate::EvalError;

/// The metadata key of digit classifier weight files; its value is the architecture
/// ([`DigitClassifierConfig`]) as JSON.
pub const DIGITS_FORMAT: &str = "ddpm-eval-digits";

/// The bundled MNIST weights (see [`DigitClassifier::pretrained`]).
static PRETRAINED_MNIST: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/weights/digits-mnist.safetensors"
));

/// The name errors give the bundled weights.
const PRETRAINED_NAME: &str = "<bundled weights/digits-mnist.safetensors>";

impl<B: Backend> DigitClassifier<B> {
    /// The classifier trained by this project on the bundled MNIST training set (60,000
    /// images), loaded from the weights compiled into the crate (`weights/digits-mnist.safetensors`,
    /// 394,616 bytes).
    ///
    /// Made with
    /// `cargo run -p ddpm-eval --example train_digits -- --data mnist:data/mnist --out crates/ddpm-eval/weights/digits-mnist.safetensors`:
    /// [`DigitTrainConfig`](crate::digits::DigitTrainConfig)'s defaults — seed 0, 3 epochs
    /// (2,811 steps of 64 images), Adam 1e-3 with cosine decay, random shifts of ±2 pixels —
    /// on the Flex backend (dev profile), 1,144 s of wall time on 2 shared cores.
    ///
    /// Measured on the MNIST test set (10,000 images): accuracy 99.07 %, classifier score
    /// 9.571 ± 0.150 (10 splits; the test labels' own exp(H(y)) = 9.983 bounds it). On its first
    /// 2,000 images (the tests' subset): 98.70 %, score 9.293 ± 0.085.
    ///
    /// # Errors
    /// Never for the shipped file; the same checks as [`load`](Self::load).
    pub fn pretrained(device: &B::Device) -> Result<Self, EvalError> {
        Self::from_bytes(PRETRAINED_MNIST, Path::new(PRETRAINED_NAME), device)
    }

    /// Loads a weight file written by [`save`](Self::save).
    ///
    /// # Errors
    /// [`EvalError::Read`] if the file cannot be read; [`EvalError::BadFile`] naming the file
    /// and the tensor or key for a file that is not safetensors, lacks or has a malformed
    /// [`DIGITS_FORMAT`] metadata entry, lacks a tensor, has a tensor of the wrong dtype or shape, or has one the
    /// architecture does not know; [`EvalError::NonFinite`] naming the tensor if a weight is
    /// NaN or ±inf.
    pub fn load(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, EvalError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| EvalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path, device)
    }

    /// Parses weight-file bytes; `path` only names the file in errors. See [`load`](Self::load).
    ///
    /// # Errors
    /// As [`load`](Self::load), without the read.
    pub fn from_bytes(bytes: &[u8], path: &Path, device: &B::Device) -> Result<Self, EvalError> {
        let bad = |reason: String| EvalError::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        let config_json = meta.get(DIGITS_FORMAT).ok_or_else(|| {
            bad(format!(
                "metadata key `{DIGITS_FORMAT}` (the classifier's architecture) is missing: \
                 not a digit classifier weight file"
            ))
        })?;
        let config: DigitClassifierConfig = serde_json::from_str(config_json).map_err(|e| {
            bad(format!(
                "metadata `{DIGITS_FORMAT}` is not a DigitClassifierConfig: {e}"
            ))
        })?;
        config
            .validate()
            .map_err(|e| bad(format!("metadata `{DIGITS_FORMAT}`: {e}")))?;
        let specs = param_specs(&config);
        if let Some(extra) = file
            .names()
            .into_iter()
            .find(|name| !specs.iter().any(|s| s.name == *name))
        {
            return Err(bad(format!("unexpected tensor `{extra}`")));
        }
        let mut values = Vec::with_capacity(specs.len());
        for spec in &specs {
            let view = file
                .tensor(spec.name)
                .map_err(|_| bad(format!("missing tensor `{}`", spec.name)))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor `{}` is {:?}; expected F32",
                    spec.name,
                    view.dtype()
                )));
            }
            if view.shape() != spec.shape.as_slice() {
                return Err(bad(format!(
                    "tensor `{}` has shape {:?}; expected {:?}",
                    spec.name,
                    view.shape(),
                    spec.shape
                )));
            }
            let v: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some(index) = v.iter().position(|x| !x.is_finite()) {
                return Err(EvalError::NonFinite {
                    what: format!("{}: tensor `{}`", path.display(), spec.name),
                    index,
                });
            }
            values.push(v);
        }
        Ok(assemble(&config, values, device))
    }

    /// Every parameter read back to the host, in file order: `(name, shape, values)`.
    pub fn parameters(&self) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        let read1 = |p: &burn::module::Param<burn::tensor::Tensor<B, 1>>| p.val().into_data();
        let read2 = |p: &burn::module::Param<burn::tensor::Tensor<B, 2>>| p.val().into_data();
        let read4 = |p: &burn::module::Param<burn::tensor::Tensor<B, 4>>| p.val().into_data();
        let bias = |b: &Option<burn::module::Param<burn::tensor::Tensor<B, 1>>>| {
            b.as_ref().map(read1).expect("every layer has a bias")
        };
        let data = [
            read4(&self.conv1.weight),
            bias(&self.conv1.bias),
            read4(&self.conv2.weight),
            bias(&self.conv2.bias),
            read4(&self.conv3.weight),
            bias(&self.conv3.bias),
            read2(&self.fc1.weight),
            bias(&self.fc1.bias),
            read2(&self.fc2.weight),
            bias(&self.fc2.bias),
        ];
        param_specs(&self.config())
            .into_iter()
            .zip(data)
            .map(|(s, d)| {
                let v = d
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("a float parameter converts to f32");
                (s.name, s.shape, v)
            })
            .collect()
    }

    /// FNV-1a (64 bit) over every parameter in file order: its name, its shape (u64
    /// little-endian) and its f32 values (little-endian). Any change of a weight or of the
    /// architecture changes it (up to hash collisions); [`FeatureExtractor::id`] shows its top
    /// 48 bits.
    ///
    /// [`FeatureExtractor::id`]: crate::FeatureExtractor::id
    pub fn weights_hash(&self) -> u64 {
        let mut h = FNV_OFFSET;
        for (name, shape, values) in self.parameters() {
            h = fnv1a(h, name.as_bytes());
            for d in shape {
                h = fnv1a(h, &(d as u64).to_le_bytes());
            }
            for v in values {
                h = fnv1a(h, &v.to_le_bytes());
            }
        }
        h
    }

    /// The weight file's bytes (see the module docs).
    ///
    /// # Errors
    /// [`EvalError::NonFinite`] naming the tensor if a weight is NaN or ±inf (such a file would
    /// be refused on load).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EvalError> {
        let params = self.parameters();
        for (name, _, values) in &params {
            if let Some(index) = values.iter().position(|x| !x.is_finite()) {
                return Err(EvalError::NonFinite {
                    what: format!("digit classifier tensor `{name}`"),
                    index,
                });
            }
        }
        let bytes: Vec<(&str, Vec<usize>, Vec<u8>)> = params
            .into_iter()
            .map(|(name, shape, values)| {
                (
                    name,
                    shape,
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views = bytes.iter().map(|(name, shape, data)| {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .expect("the byte length matches the shape of an f32 tensor");
            (*name, view)
        });
        let config = serde_json::to_string(&self.config()).expect("a config serializes to JSON");
        // One metadata entry: safetensors writes the metadata map in HashMap order, so with
        // one key the file's bytes are a function of the weights alone.
        let metadata = HashMap::from([(DIGITS_FORMAT.to_string(), config)]);
        Ok(safetensors::serialize(views, Some(metadata))
            .expect("named f32 tensors with matching shapes serialize"))
    }

    /// Writes the weights to `path` (safetensors, see the module docs), atomically: a crash or
    /// a full disk leaves the previous file (or none), never a truncated one.
    ///
    /// # Errors
    /// [`EvalError::NonFinite`] for a NaN/±inf weight; [`EvalError::Write`] naming the file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), EvalError> {
        Ok(ddpm_io::write_atomic(path, self.to_bytes()?)?)
    }
}
