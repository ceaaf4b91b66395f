//! pytorch-fid's Inception-v3 (Seitzer, `pytorch-fid` 0.3, `inception.py`): the network of
//! TensorFlow's `inception-2015-12-05` graph that FID is defined with (Heusel et al. 2017,
//! arXiv:1706.08500v6, §3), ported to Burn. Features are the 2048-d output of the final average
//! pool (`pool_3`), the numbers pytorch-fid's `InceptionV3([3])` returns; logits are its 1008-way
//! `fc` applied to them (the classifier of the same graph, used for the Inception score).
//!
//! The weights are the file pytorch-fid downloads, `pt_inception-2015-12-05-6726825d.pth`
//! (95 MB, not redistributable with this crate), read as safetensors or, with the `pytorch`
//! feature, directly; see [`InceptionV3::from_file`] for the one-line conversion.
//!
//! Preprocessing, as `InceptionV3(resize_input=True, normalize_input=True)`: pytorch-fid takes
//! images in [0, 1], resizes them to 299×299 (bilinear, `align_corners=False`) and maps them by
//! `2x − 1`. Our images are already in [−1, 1]: since bilinear weights sum to 1,
//! `resize(2x − 1) = 2 · resize(x) − 1`, so the mapping is the identity here and only the
//! resize remains. Grey images are replicated to three channels (pytorch-fid's loader reads
//! every image with PIL's `convert('RGB')`).

mod blocks;
mod resize;
mod weights;

use std::path::Path;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::adaptive_avg_pool2d;

pub use blocks::{BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE};
pub use resize::resize_bilinear;

use blocks::max_pool_3x3_s2;
use weights::WeightLoader;

use crate::{EvalError, ExtractorOutput, FeatureExtractor};

/// Side of the square pytorch-fid resizes every image to.
pub const INPUT_SIZE: usize = 299;
/// Dimension of the pool features (pytorch-fid's default `--dims 2048`).
pub const FEATURE_DIM: usize = 2048;
/// Classes of the `fc` layer of the 2015-12-05 graph (1000 ImageNet classes and 8 unused).
pub const NUM_CLASSES: usize = 1008;

/// pytorch-fid's Inception-v3 (`fid_inception_v3()` wrapped by `InceptionV3([3])`), BatchNorms
/// folded into the convolutions. Field names are torchvision's (`Conv2d_1a_3x3` → `conv2d_1a_3x3`,
/// `Mixed_5b` → `mixed_5b`).
#[derive(Module, Debug)]
pub struct InceptionV3<B: Backend> {
    conv2d_1a_3x3: BasicConv2d<B>,
    conv2d_2a_3x3: BasicConv2d<B>,
    conv2d_2b_3x3: BasicConv2d<B>,
    conv2d_3b_1x1: BasicConv2d<B>,
    conv2d_4a_3x3: BasicConv2d<B>,
    mixed_5b: InceptionA<B>,
    mixed_5c: InceptionA<B>,
    mixed_5d: InceptionA<B>,
    mixed_6a: InceptionB<B>,
    mixed_6b: InceptionC<B>,
    mixed_6c: InceptionC<B>,
    mixed_6d: InceptionC<B>,
    mixed_6e: InceptionC<B>,
    mixed_7a: InceptionD<B>,
    mixed_7b: InceptionE<B>,
    mixed_7c: InceptionE<B>,
    fc: Linear<B>,
    /// Hash of the weights (FNV-1a 64 over names, shapes and f32 bit patterns in load order).
    weights_hash: u64,
}

impl<B: Backend> InceptionV3<B> {
    /// Loads the weights from a file: safetensors (`.safetensors`), or the `.pth` pytorch-fid
    /// downloads (`.pth`, `.pt`, `.bin`; needs the crate's `pytorch` feature).
    ///
    /// Without the feature, convert the `.pth` once (torch and safetensors installed):
    ///
    /// ```text
    /// python -c "import torch, safetensors.torch as st; st.save_file({k: v for k, v in torch.load('pt_inception-2015-12-05-6726825d.pth').items() if v.is_floating_point()}, 'pt_inception-2015-12-05.safetensors')"
    /// ```
    ///
    /// # Errors
    /// [`EvalError::Read`] if the file cannot be read, [`EvalError::BadFile`] if it is not of its
    /// format (or a `.pth` without the `pytorch` feature), [`EvalError::BadWeights`] naming the
    /// first tensor that is missing, unexpected, mis-shaped, not f32, non-finite, or a negative
    /// BatchNorm variance.
    pub fn from_file(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, EvalError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("safetensors") => Self::from_safetensors(path, device),
            Some("pth" | "pt" | "bin") => Self::from_pytorch_file(path, device),
            _ => Err(EvalError::BadFile {
                path: path.to_path_buf(),
                reason: "unknown weights format: expected .safetensors or .pth".into(),
            }),
        }
    }

    /// Loads the weights from a safetensors file holding pytorch-fid's state dict (names as in
    /// the `.pth`: `Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_var`, ...,
    /// `fc.weight`; `*.num_batches_tracked` may be present and is ignored).
    ///
    /// # Errors
    /// As [`InceptionV3::from_file`].
    pub fn from_safetensors(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, EvalError> {
        let path = path.as_ref();
        let (tensors, ignored) = weights::read_safetensors(path)?;
        Self::load(WeightLoader::new(path, tensors, ignored, device))
    }

    /// Loads pytorch-fid's `.pth` (a pickled state dict) with burn-store's PyTorch reader.
    ///
    /// # Errors
    /// As [`InceptionV3::from_file`], and [`EvalError::Pytorch`] if the pickle cannot be read.
    #[cfg(feature = "pytorch")]
    pub fn from_pytorch(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, EvalError> {
        let path = path.as_ref();
        let (tensors, ignored) = weights::read_pytorch(path)?;
        Self::load(WeightLoader::new(path, tensors, ignored, device))
    }

    #[cfg(feature = "pytorch")]
    fn from_pytorch_file(path: &Path, device: &B::Device) -> Result<Self, EvalError> {
        Self::from_pytorch(path, device)
    }

    #[cfg(not(feature = "pytorch"))]
    fn from_pytorch_file(path: &Path, _device: &B::Device) -> Result<Self, EvalError> {
        Err(EvalError::BadFile {
            path: path.to_path_buf(),
            reason: "reading PyTorch .pth weights needs ddpm-eval's `pytorch` feature; or \
                     convert the file to safetensors (see InceptionV3::from_file)"
                .into(),
        })
    }

    fn load(mut w: WeightLoader<'_, B>) -> Result<Self, EvalError> {
        let c = |w: &mut WeightLoader<'_, B>, name, ch, k, s, p| {
            BasicConv2d::load(w, name, ch, k, s, p)
        };
        let model = Self {
            conv2d_1a_3x3: c(&mut w, "Conv2d_1a_3x3", [3, 32], [3, 3], 2, [0, 0])?,
            conv2d_2a_3x3: c(&mut w, "Conv2d_2a_3x3", [32, 32], [3, 3], 1, [0, 0])?,
            conv2d_2b_3x3: c(&mut w, "Conv2d_2b_3x3", [32, 64], [3, 3], 1, [1, 1])?,
            conv2d_3b_1x1: c(&mut w, "Conv2d_3b_1x1", [64, 80], [1, 1], 1, [0, 0])?,
            conv2d_4a_3x3: c(&mut w, "Conv2d_4a_3x3", [80, 192], [3, 3], 1, [0, 0])?,
            mixed_5b: InceptionA::load(&mut w, "Mixed_5b", 192, 32)?,
            mixed_5c: InceptionA::load(&mut w, "Mixed_5c", 256, 64)?,
            mixed_5d: InceptionA::load(&mut w, "Mixed_5d", 288, 64)?,
            mixed_6a: InceptionB::load(&mut w, "Mixed_6a", 288)?,
            mixed_6b: InceptionC::load(&mut w, "Mixed_6b", 768, 128)?,
            mixed_6c: InceptionC::load(&mut w, "Mixed_6c", 768, 160)?,
            mixed_6d: InceptionC::load(&mut w, "Mixed_6d", 768, 160)?,
            mixed_6e: InceptionC::load(&mut w, "Mixed_6e", 768, 192)?,
            mixed_7a: InceptionD::load(&mut w, "Mixed_7a", 768)?,
            mixed_7b: InceptionE::load(&mut w, "Mixed_7b", 1280, false)?,
            mixed_7c: InceptionE::load(&mut w, "Mixed_7c", 2048, true)?,
            fc: w.linear("fc", FEATURE_DIM, NUM_CLASSES)?,
            weights_hash: 0,
        };
        let weights_hash = w.finish()?;
        Ok(Self {
            weights_hash,
            ..model
        })
    }

    /// pytorch-fid's preprocessing for images in [−1, 1]: grey → three channels, bilinear resize
    /// to 299×299 (`align_corners=False`); the `2x − 1` of pytorch-fid is the identity on this
    /// range (see the module doc).
    ///
    /// # Shapes
    /// `[N, C, H, W]` (C = 1 or 3) → `[N, 3, 299, 299]`.
    ///
    /// # Errors
    /// [`EvalError::BadImages`] if N, H or W is 0 or C is neither 1 nor 3.
    pub fn preprocess(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 4>, EvalError> {
        let [n, c, h, w] = images.dims();
        let reason = if n == 0 {
            Some("empty batch")
        } else if h == 0 || w == 0 {
            Some("empty images")
        } else if c != 1 && c != 3 {
            Some("expected 1 (grey) or 3 (RGB) channels")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(EvalError::BadImages {
                extractor: self.id(),
                shape: [n, c, h, w],
                reason: reason.into(),
            });
        }
        let x = resize_bilinear(images, [INPUT_SIZE, INPUT_SIZE]);
        Ok(if c == 1 { x.repeat_dim(1, 3) } else { x })
    }

    /// The network on preprocessed images: the 2048-d output of the final average pool
    /// (pytorch-fid's block 3).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` (H, W ≥ 75; 299 after [`InceptionV3::preprocess`]) → `[N, 2048]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        // Block 0: input → maxpool1.
        let x = self.conv2d_1a_3x3.forward(x);
        let x = self.conv2d_2a_3x3.forward(x);
        let x = self.conv2d_2b_3x3.forward(x);
        let x = max_pool_3x3_s2(x);
        // Block 1: maxpool1 → maxpool2.
        let x = self.conv2d_3b_1x1.forward(x);
        let x = self.conv2d_4a_3x3.forward(x);
        let x = max_pool_3x3_s2(x);
        // Block 2: → the aux-classifier input (768 × 17 × 17 at 299²).
        let x = self.mixed_5b.forward(x);
        let x = self.mixed_5c.forward(x);
        let x = self.mixed_5d.forward(x);
        let x = self.mixed_6a.forward(x);
        let x = self.mixed_6b.forward(x);
        let x = self.mixed_6c.forward(x);
        let x = self.mixed_6d.forward(x);
        let x = self.mixed_6e.forward(x);
        // Block 3: → final average pool.
        let x = self.mixed_7a.forward(x);
        let x = self.mixed_7b.forward(x);
        let x = self.mixed_7c.forward(x);
        let [n, c, _, _] = x.dims();
        adaptive_avg_pool2d(x, [1, 1]).reshape([n, c])
    }

    /// The 1008-way logits of the graph's classifier, `fc(features)`.
    ///
    /// # Shapes
    /// `[N, 2048]` → `[N, 1008]`.
    pub fn logits(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        self.fc.forward(features)
    }

    /// Hash of the weights (FNV-1a 64 over tensor names, shapes and f32 values): the same for
    /// the `.pth` and its safetensors conversion.
    pub fn weights_hash(&self) -> u64 {
        self.weights_hash
    }
}

impl<B: Backend> FeatureExtractor<B> for InceptionV3<B> {
    /// `inception-pytorch-fid-<weights hash, 16 hex digits>`.
    fn id(&self) -> String {
        format!("inception-pytorch-fid-{:016x}", self.weights_hash)
    }

    fn dim(&self) -> usize {
        FEATURE_DIM
    }

    /// Preprocesses (grey → RGB, resize to 299²), runs the network, and returns the pool
    /// features and the `fc` logits.
    ///
    /// # Errors
    /// [`EvalError::BadImages`] for an empty batch or a channel count other than 1 or 3;
    /// [`EvalError::NonFinite`] if an image holds NaN or ±∞.
    fn extract(&self, images: Tensor<B, 4>) -> Result<ExtractorOutput<B>, EvalError> {
        let finite = images.clone().is_finite().all().into_scalar();
        if !burn::tensor::ElementConversion::elem::<bool>(finite) {
            let data = images.into_data().convert::<f32>();
            let index = data
                .as_slice::<f32>()
                .ok()
                .and_then(|s| s.iter().position(|v| !v.is_finite()))
                .unwrap_or(0);
            return Err(EvalError::NonFinite {
                what: "images".into(),
                index,
            });
        }
        let x = self.preprocess(images)?;
        let features = self.forward(x);
        let logits = self.logits(features.clone());
        Ok(ExtractorOutput {
            features,
            logits: Some(logits),
        })
    }
}
