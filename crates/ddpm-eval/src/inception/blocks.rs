//! The blocks of pytorch-fid's Inception-v3 (Szegedy et al. 2015, arXiv:1512.00567v3, Fig. 5–7
//! and Table 1), as torchvision's `inception.py` builds them, with pytorch-fid's patches:
//! `FIDInceptionA`/`FIDInceptionC`/`FIDInceptionE_1` average-pool without counting the zero
//! padding (TensorFlow's `avg_pool`), `FIDInceptionE_2` max-pools instead.
//!
//! Field names are the state-dict names (`branch5x5_1`, `branch3x3dbl_3a`, ...); each
//! `BasicConv2d` is a convolution with its BatchNorm folded in, followed by ReLU.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::{avg_pool2d, max_pool2d};

use super::weights::WeightLoader;
use crate::EvalError;

/// torchvision's `BasicConv2d`: convolution (no bias) → BatchNorm (ε = 0.001) → ReLU, with the
/// BatchNorm folded into the convolution's weights and bias at load.
#[derive(Module, Debug)]
pub struct BasicConv2d<B: Backend> {
    /// The convolution, BatchNorm folded in.
    pub conv: Conv2d<B>,
}

impl<B: Backend> BasicConv2d<B> {
    /// Loads `{prefix}.conv.weight` and `{prefix}.bn.*`.
    pub(crate) fn load(
        w: &mut WeightLoader<'_, B>,
        prefix: &str,
        channels: [usize; 2],
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
    ) -> Result<Self, EvalError> {
        Ok(Self {
            conv: w.conv(prefix, channels, kernel, [stride, stride], padding)?,
        })
    }

    /// `relu(bn(conv(x)))`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        relu(self.conv.forward(x))
    }
}

/// 3×3 average pool, stride 1, padding 1, padded zeros not counted (pytorch-fid's patch, as
/// TensorFlow's pool).
fn avg_pool_3x3_same<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    avg_pool2d(x, [3, 3], [1, 1], [1, 1], false, false)
}

/// 3×3 max pool, stride 2, no padding (`F.max_pool2d(x, kernel_size=3, stride=2)`).
pub(crate) fn max_pool_3x3_s2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], false)
}

fn conv<B: Backend>(
    w: &mut WeightLoader<'_, B>,
    prefix: &str,
    name: &str,
    channels: [usize; 2],
    kernel: [usize; 2],
    stride: usize,
    padding: [usize; 2],
) -> Result<BasicConv2d<B>, EvalError> {
    BasicConv2d::load(
        w,
        &format!("{prefix}.{name}"),
        channels,
        kernel,
        stride,
        padding,
    )
}

/// `FIDInceptionA` (Mixed_5b/5c/5d, 35×35): 1×1, 5×5, double 3×3 and pool branches.
#[derive(Module, Debug)]
pub struct InceptionA<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch5x5_1: BasicConv2d<B>,
    branch5x5_2: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
}

impl<B: Backend> InceptionA<B> {
    pub(crate) fn load(
        w: &mut WeightLoader<'_, B>,
        p: &str,
        c_in: usize,
        pool_features: usize,
    ) -> Result<Self, EvalError> {
        Ok(Self {
            branch1x1: conv(w, p, "branch1x1", [c_in, 64], [1, 1], 1, [0, 0])?,
            branch5x5_1: conv(w, p, "branch5x5_1", [c_in, 48], [1, 1], 1, [0, 0])?,
            branch5x5_2: conv(w, p, "branch5x5_2", [48, 64], [5, 5], 1, [2, 2])?,
            branch3x3dbl_1: conv(w, p, "branch3x3dbl_1", [c_in, 64], [1, 1], 1, [0, 0])?,
            branch3x3dbl_2: conv(w, p, "branch3x3dbl_2", [64, 96], [3, 3], 1, [1, 1])?,
            branch3x3dbl_3: conv(w, p, "branch3x3dbl_3", [96, 96], [3, 3], 1, [1, 1])?,
            branch_pool: conv(
                w,
                p,
                "branch_pool",
                [c_in, pool_features],
                [1, 1],
                1,
                [0, 0],
            )?,
        })
    }

    /// `[N, c_in, H, W]` → `[N, 224 + pool_features, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b5 = self
            .branch5x5_2
            .forward(self.branch5x5_1.forward(x.clone()));
        let b3 = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        let bp = self.branch_pool.forward(avg_pool_3x3_same(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }
}

/// torchvision's `InceptionB` (Mixed_6a, 35×35 → 17×17): strided 3×3, double 3×3, max pool.
#[derive(Module, Debug)]
pub struct InceptionB<B: Backend> {
    branch3x3: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3: BasicConv2d<B>,
}

impl<B: Backend> InceptionB<B> {
    pub(crate) fn load(
        w: &mut WeightLoader<'_, B>,
        p: &str,
        c_in: usize,
    ) -> Result<Self, EvalError> {
        Ok(Self {
            branch3x3: conv(w, p, "branch3x3", [c_in, 384], [3, 3], 2, [0, 0])?,
            branch3x3dbl_1: conv(w, p, "branch3x3dbl_1", [c_in, 64], [1, 1], 1, [0, 0])?,
            branch3x3dbl_2: conv(w, p, "branch3x3dbl_2", [64, 96], [3, 3], 1, [1, 1])?,
            branch3x3dbl_3: conv(w, p, "branch3x3dbl_3", [96, 96], [3, 3], 2, [0, 0])?,
        })
    }

    /// `[N, c_in, H, W]` → `[N, 480 + c_in, (H−3)/2+1, (W−3)/2+1]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b3 = self.branch3x3.forward(x.clone());
        let bd = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        let bp = max_pool_3x3_s2(x);
        Tensor::cat(vec![b3, bd, bp], 1)
    }
}

/// `FIDInceptionC` (Mixed_6b–6e, 17×17): factorised 7×7 branches (1×7, 7×1).
#[derive(Module, Debug)]
pub struct InceptionC<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch7x7_1: BasicConv2d<B>,
    branch7x7_2: BasicConv2d<B>,
    branch7x7_3: BasicConv2d<B>,
    branch7x7dbl_1: BasicConv2d<B>,
    branch7x7dbl_2: BasicConv2d<B>,
    branch7x7dbl_3: BasicConv2d<B>,
    branch7x7dbl_4: BasicConv2d<B>,
    branch7x7dbl_5: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
}

impl<B: Backend> InceptionC<B> {
    pub(crate) fn load(
        w: &mut WeightLoader<'_, B>,
        p: &str,
        c_in: usize,
        c7: usize,
    ) -> Result<Self, EvalError> {
        let (h, v) = (([1, 7], [0, 3]), ([7, 1], [3, 0]));
        Ok(Self {
            branch1x1: conv(w, p, "branch1x1", [c_in, 192], [1, 1], 1, [0, 0])?,
            branch7x7_1: conv(w, p, "branch7x7_1", [c_in, c7], [1, 1], 1, [0, 0])?,
            branch7x7_2: conv(w, p, "branch7x7_2", [c7, c7], h.0, 1, h.1)?,
            branch7x7_3: conv(w, p, "branch7x7_3", [c7, 192], v.0, 1, v.1)?,
            branch7x7dbl_1: conv(w, p, "branch7x7dbl_1", [c_in, c7], [1, 1], 1, [0, 0])?,
            branch7x7dbl_2: conv(w, p, "branch7x7dbl_2", [c7, c7], v.0, 1, v.1)?,
            branch7x7dbl_3: conv(w, p, "branch7x7dbl_3", [c7, c7], h.0, 1, h.1)?,
            branch7x7dbl_4: conv(w, p, "branch7x7dbl_4", [c7, c7], v.0, 1, v.1)?,
            branch7x7dbl_5: conv(w, p, "branch7x7dbl_5", [c7, 192], h.0, 1, h.1)?,
            branch_pool: conv(w, p, "branch_pool", [c_in, 192], [1, 1], 1, [0, 0])?,
        })
    }

    /// `[N, c_in, H, W]` → `[N, 768, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = self.branch1x1.forward(x.clone());
        let mut b7 = self.branch7x7_1.forward(x.clone());
        b7 = self.branch7x7_3.forward(self.branch7x7_2.forward(b7));
        let mut bd = self.branch7x7dbl_1.forward(x.clone());
        bd = self.branch7x7dbl_3.forward(self.branch7x7dbl_2.forward(bd));
        bd = self.branch7x7dbl_5.forward(self.branch7x7dbl_4.forward(bd));
        let bp = self.branch_pool.forward(avg_pool_3x3_same(x));
        Tensor::cat(vec![b1, b7, bd, bp], 1)
    }
}

/// torchvision's `InceptionD` (Mixed_7a, 17×17 → 8×8): strided 3×3 and 7×7×3 branches, max pool.
#[derive(Module, Debug)]
pub struct InceptionD<B: Backend> {
    branch3x3_1: BasicConv2d<B>,
    branch3x3_2: BasicConv2d<B>,
    branch7x7x3_1: BasicConv2d<B>,
    branch7x7x3_2: BasicConv2d<B>,
    branch7x7x3_3: BasicConv2d<B>,
    branch7x7x3_4: BasicConv2d<B>,
}

impl<B: Backend> InceptionD<B> {
    pub(crate) fn load(
        w: &mut WeightLoader<'_, B>,
        p: &str,
        c_in: usize,
    ) -> Result<Self, EvalError> {
        Ok(Self {
            branch3x3_1: conv(w, p, "branch3x3_1", [c_in, 192], [1, 1], 1, [0, 0])?,
            branch3x3_2: conv(w, p, "branch3x3_2", [192, 320], [3, 3], 2, [0, 0])?,
            branch7x7x3_1: conv(w, p, "branch7x7x3_1", [c_in, 192], [1, 1], 1, [0, 0])?,
            branch7x7x3_2: conv(w, p, "branch7x7x3_2", [192, 192], [1, 7], 1, [0, 3])?,
            branch7x7x3_3: conv(w, p, "branch7x7x3_3", [192, 192], [7, 1], 1, [3, 0])?,
            branch7x7x3_4: conv(w, p, "branch7x7x3_4", [192, 192], [3, 3], 2, [0, 0])?,
        })
    }

    /// `[N, c_in, H, W]` → `[N, 512 + c_in, (H−3)/2+1, (W−3)/2+1]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b3 = self
            .branch3x3_2
            .forward(self.branch3x3_1.forward(x.clone()));
        let mut b7 = self.branch7x7x3_1.forward(x.clone());
        b7 = self.branch7x7x3_2.forward(b7);
        b7 = self.branch7x7x3_4.forward(self.branch7x7x3_3.forward(b7));
        let bp = max_pool_3x3_s2(x);
        Tensor::cat(vec![b3, b7, bp], 1)
    }
}

/// `FIDInceptionE_1` (Mixed_7b, average pool without padding) and `FIDInceptionE_2` (Mixed_7c,
/// max pool), 8×8: split 1×3 / 3×1 branches.
#[derive(Module, Debug)]
pub struct InceptionE<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch3x3_1: BasicConv2d<B>,
    branch3x3_2a: BasicConv2d<B>,
    branch3x3_2b: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3a: BasicConv2d<B>,
    branch3x3dbl_3b: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
    /// `FIDInceptionE_2`: 3×3 max pool (stride 1, padding 1) before `branch_pool`, instead of
    /// the average pool. NOTE: pytorch-fid keeps this quirk of the TensorFlow graph on purpose.
    max_pool: bool,
}

impl<B: Backend> InceptionE<B> {
    pub(crate) fn load(
        w: &mut WeightLoader<'_, B>,
        p: &str,
        c_in: usize,
        max_pool: bool,
    ) -> Result<Self, EvalError> {
        Ok(Self {
            branch1x1: conv(w, p, "branch1x1", [c_in, 320], [1, 1], 1, [0, 0])?,
            branch3x3_1: conv(w, p, "branch3x3_1", [c_in, 384], [1, 1], 1, [0, 0])?,
            branch3x3_2a: conv(w, p, "branch3x3_2a", [384, 384], [1, 3], 1, [0, 1])?,
            branch3x3_2b: conv(w, p, "branch3x3_2b", [384, 384], [3, 1], 1, [1, 0])?,
            branch3x3dbl_1: conv(w, p, "branch3x3dbl_1", [c_in, 448], [1, 1], 1, [0, 0])?,
            branch3x3dbl_2: conv(w, p, "branch3x3dbl_2", [448, 384], [3, 3], 1, [1, 1])?,
            branch3x3dbl_3a: conv(w, p, "branch3x3dbl_3a", [384, 384], [1, 3], 1, [0, 1])?,
            branch3x3dbl_3b: conv(w, p, "branch3x3dbl_3b", [384, 384], [3, 1], 1, [1, 0])?,
            branch_pool: conv(w, p, "branch_pool", [c_in, 192], [1, 1], 1, [0, 0])?,
            max_pool,
        })
    }

    /// `[N, c_in, H, W]` → `[N, 2048, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b3 = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(
            vec![
                self.branch3x3_2a.forward(b3.clone()),
                self.branch3x3_2b.forward(b3),
            ],
            1,
        );
        let bd = self
            .branch3x3dbl_2
            .forward(self.branch3x3dbl_1.forward(x.clone()));
        let bd = Tensor::cat(
            vec![
                self.branch3x3dbl_3a.forward(bd.clone()),
                self.branch3x3dbl_3b.forward(bd),
            ],
            1,
        );
        let pooled = if self.max_pool {
            max_pool2d(x, [3, 3], [1, 1], [1, 1], [1, 1], false)
        } else {
            avg_pool_3x3_same(x)
        };
        let bp = self.branch_pool.forward(pooled);
        Tensor::cat(vec![b1, b3, bd, bp], 1)
    }
}
