//! [`DigitClassifier`]: the small CNN behind the digit features ("FLD") and the classifier score.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::{ElementConversion, Tensor, TensorData, backend::Backend};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::preprocess::{DIGIT_SIDE, to_digit_input};
use crate::{EvalError, ExtractorOutput, FeatureExtractor};

/// The architecture of a [`DigitClassifier`]: three 3 × 3 convolution blocks and two linear
/// layers (LeCun et al. 1998's convolution + pooling pattern, with ReLU).
///
/// ```text
/// [N, 1, 28, 28] → conv 3×3 (c₁) → ReLU → max-pool 2 → [N, c₁, 14, 14]
///                → conv 3×3 (c₂) → ReLU → max-pool 2 → [N, c₂, 7, 7]
///                → conv 3×3 (c₃) → ReLU → max-pool 2 → [N, c₃, 3, 3]   (floor: the 7th row/column is dropped)
///                → flatten → linear → ReLU → features [N, d]       (the "FLD" features)
///                → linear → logits [N, classes]
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct DigitClassifierConfig {
    /// Output channels of the three convolutions. Default `[16, 32, 64]`: 98,442 parameters
    /// with the defaults below (385 KiB as f32), enough for > 99 % on MNIST.
    #[config(default = "[16, 32, 64]")]
    pub conv_channels: [usize; 3],
    /// Dimension of the penultimate layer, the features. Default 128.
    #[config(default = 128)]
    pub feature_dim: usize,
    /// Number of classes. Default 10 (digits; Fashion-MNIST's ten garments).
    #[config(default = 10)]
    pub classes: usize,
}

/// Spatial side after the three 2 × 2 poolings of a 28 × 28 input: 28 → 14 → 7 → 3.
pub(crate) const FINAL_SIDE: usize = 3;

/// A small CNN for 28 × 28 grey images (MNIST, Fashion-MNIST): penultimate-layer features and
/// class logits. See [`DigitClassifierConfig`] for the layers, [`DigitClassifier::pretrained`]
/// for the bundled MNIST weights, and [`train_digit_classifier`](crate::digits::train_digit_classifier)
/// for how they were made.
#[derive(Module, Debug)]
pub struct DigitClassifier<B: Backend> {
    /// First convolution (1 → c₁, 3 × 3, padding 1).
    pub conv1: Conv2d<B>,
    /// Second convolution (c₁ → c₂).
    pub conv2: Conv2d<B>,
    /// Third convolution (c₂ → c₃).
    pub conv3: Conv2d<B>,
    /// Flattened `c₃ · 3 · 3` → features.
    pub fc1: Linear<B>,
    /// Features → logits.
    pub fc2: Linear<B>,
}

/// What [`DigitClassifier::forward`] computes.
#[derive(Debug, Clone)]
pub struct DigitClassifierOutput<B: Backend> {
    /// `[N, feature_dim]` penultimate-layer activations (after ReLU).
    pub features: Tensor<B, 2>,
    /// `[N, classes]` logits.
    pub logits: Tensor<B, 2>,
}

/// SplitMix64 of `seed` combined with `stream`: decorrelated seeds for neighbouring streams.
pub(crate) fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed.wrapping_add(stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One parameter tensor of a [`DigitClassifier`]: its name in weight files (the module path),
/// its shape (Burn's layouts: convolutions `[out, in, 3, 3]`, linear `[in, out]`) and the fan-in
/// of its layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub fan_in: usize,
}

/// The parameters of a classifier of `config`, in file and hash order.
pub(crate) fn param_specs(config: &DigitClassifierConfig) -> Vec<ParamSpec> {
    let [c1, c2, c3] = config.conv_channels;
    let flat = c3 * FINAL_SIDE * FINAL_SIDE;
    let (d, k) = (config.feature_dim, config.classes);
    let spec = |name, shape: &[usize], fan_in| ParamSpec {
        name,
        shape: shape.to_vec(),
        fan_in,
    };
    vec![
        spec("conv1.weight", &[c1, 1, 3, 3], 9),
        spec("conv1.bias", &[c1], 9),
        spec("conv2.weight", &[c2, c1, 3, 3], c1 * 9),
        spec("conv2.bias", &[c2], c1 * 9),
        spec("conv3.weight", &[c3, c2, 3, 3], c2 * 9),
        spec("conv3.bias", &[c3], c2 * 9),
        spec("fc1.weight", &[flat, d], flat),
        spec("fc1.bias", &[d], flat),
        spec("fc2.weight", &[d, k], d),
        spec("fc2.bias", &[k], d),
    ]
}

/// Builds a classifier of `config` from one value vector per [`param_specs`] entry (same order,
/// lengths already checked by the caller).
pub(crate) fn assemble<B: Backend>(
    config: &DigitClassifierConfig,
    mut values: Vec<Vec<f32>>,
    device: &B::Device,
) -> DigitClassifier<B> {
    let specs = param_specs(config);
    debug_assert_eq!(values.len(), specs.len());
    let mut take = |i: usize| std::mem::take(&mut values[i]);
    let param4 = |v: Vec<f32>, s: &ParamSpec| {
        let shape: [usize; 4] = s
            .shape
            .clone()
            .try_into()
            .expect("a 4-d convolution weight");
        Param::from_tensor(Tensor::<B, 4>::from_data(TensorData::new(v, shape), device))
    };
    let param2 = |v: Vec<f32>, s: &ParamSpec| {
        let shape: [usize; 2] = s.shape.clone().try_into().expect("a 2-d linear weight");
        Param::from_tensor(Tensor::<B, 2>::from_data(TensorData::new(v, shape), device))
    };
    let param1 = |v: Vec<f32>| {
        let n = v.len();
        Param::from_tensor(Tensor::<B, 1>::from_data(TensorData::new(v, [n]), device))
    };
    let conv = |i: usize, w: Vec<f32>, b: Vec<f32>| {
        let s = &specs[2 * i];
        let mut layer = Conv2dConfig::new([s.shape[1], s.shape[0]], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_initializer(Initializer::Zeros)
            .init::<B>(device);
        layer.weight = param4(w, s);
        layer.bias = Some(param1(b));
        layer
    };
    let linear = |i: usize, w: Vec<f32>, b: Vec<f32>| {
        let s = &specs[2 * i];
        let mut layer = LinearConfig::new(s.shape[0], s.shape[1])
            .with_initializer(Initializer::Zeros)
            .init::<B>(device);
        layer.weight = param2(w, s);
        layer.bias = Some(param1(b));
        layer
    };
    DigitClassifier {
        conv1: conv(0, take(0), take(1)),
        conv2: conv(1, take(2), take(3)),
        conv3: conv(2, take(4), take(5)),
        fc1: linear(3, take(6), take(7)),
        fc2: linear(4, take(8), take(9)),
    }
}

/// `n` values ~ U(−bound, bound) from StdRng(`seed`) (ChaCha12): u = ⌊r / 2⁸⌋ · 2⁻²⁴ for each
/// 32-bit output r, value = (2u − 1) · bound in f64, rounded to f32 — the same bits on every
/// machine and backend.
fn uniform_values(seed: u64, n: usize, bound: f64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u = f64::from(rng.next_u32() >> 8) * (1.0 / 16_777_216.0);
            ((2.0 * u - 1.0) * bound) as f32
        })
        .collect()
}

impl DigitClassifierConfig {
    /// Checks that every size is positive and that there are at least two classes.
    ///
    /// # Errors
    /// [`EvalError::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<(), EvalError> {
        let zero = |what: &'static str| EvalError::InvalidArgument {
            what,
            reason: "must be positive".into(),
        };
        if self.conv_channels.contains(&0) {
            return Err(zero("DigitClassifierConfig::conv_channels"));
        }
        if self.feature_dim == 0 {
            return Err(zero("DigitClassifierConfig::feature_dim"));
        }
        if self.classes < 2 {
            return Err(EvalError::InvalidArgument {
                what: "DigitClassifierConfig::classes",
                reason: format!("{} classes; a classifier needs at least 2", self.classes),
            });
        }
        Ok(())
    }

    /// A classifier with weights and biases ~ U(−1/√fan_in, 1/√fan_in) (Burn's and PyTorch's
    /// default bound), drawn on the host from `seed` (parameter i from StdRng(mix(seed, i)),
    /// SplitMix64 mixing): a seed gives the same model on every backend.
    ///
    /// # Errors
    /// Those of [`validate`](Self::validate).
    pub fn init<B: Backend>(
        &self,
        seed: u64,
        device: &B::Device,
    ) -> Result<DigitClassifier<B>, EvalError> {
        self.validate()?;
        let values = param_specs(self)
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = s.shape.iter().product();
                uniform_values(mix(seed, i as u64), n, 1.0 / (s.fan_in as f64).sqrt())
            })
            .collect();
        Ok(assemble(self, values, device))
    }
}

impl<B: Backend> DigitClassifier<B> {
    /// The architecture, read off the parameter shapes.
    pub fn config(&self) -> DigitClassifierConfig {
        DigitClassifierConfig::new()
            .with_conv_channels([
                self.conv1.weight.dims()[0],
                self.conv2.weight.dims()[0],
                self.conv3.weight.dims()[0],
            ])
            .with_feature_dim(self.fc1.weight.dims()[1])
            .with_classes(self.fc2.weight.dims()[1])
    }

    /// Features and logits of 28 × 28 grey images in [−1, 1] (no conversion; see
    /// [`FeatureExtractor::extract`] for other shapes).
    ///
    /// # Shapes
    /// `x`: `[N, 1, 28, 28]` → features `[N, feature_dim]`, logits `[N, classes]`.
    ///
    /// # Panics
    /// If `x` is not `[N, 1, 28, 28]` (Burn's shape checks in the convolutions and reshape).
    pub fn forward(&self, x: Tensor<B, 4>) -> DigitClassifierOutput<B> {
        let [n, c, h, w] = x.dims();
        assert!(
            c == 1 && h == DIGIT_SIDE && w == DIGIT_SIDE,
            "DigitClassifier::forward takes [N, 1, 28, 28], got [{n}, {c}, {h}, {w}]"
        );
        let block = |conv: &Conv2d<B>, x: Tensor<B, 4>| {
            max_pool2d(relu(conv.forward(x)), [2, 2], [2, 2], [0, 0], [1, 1], false)
        };
        let x = block(&self.conv1, x);
        let x = block(&self.conv2, x);
        let x = block(&self.conv3, x);
        let features = relu(self.fc1.forward(x.flatten(1, 3)));
        let logits = self.fc2.forward(features.clone());
        DigitClassifierOutput { features, logits }
    }
}

impl<B: Backend> FeatureExtractor<B> for DigitClassifier<B> {
    /// `digits-v1-<hash>`: the preprocessing version and the first 12 hex digits of the FNV-1a
    /// hash of the weights ([`DigitClassifier::weights_hash`]), e.g. `digits-v1-3f2a9c01b7de`.
    /// Reads every parameter back to the host.
    fn id(&self) -> String {
        format!("digits-v1-{:012x}", self.weights_hash() >> 16)
    }

    fn dim(&self) -> usize {
        self.fc1.weight.dims()[1]
    }

    /// Converts the batch as the `preprocess` module describes (C = 3 → Rec. 709 luma; sides
    /// other than 28 → the inverse of `ddpm_data`'s resize), then runs [`forward`](Self::forward).
    ///
    /// # Errors
    /// [`EvalError::BadImages`] for C ∉ {1, 3}, an empty batch or a zero side;
    /// [`EvalError::NonFinite`] if an image holds NaN or ±inf (checked on the device, one
    /// boolean read back).
    fn extract(&self, images: Tensor<B, 4>) -> Result<ExtractorOutput<B>, EvalError> {
        let shape = images.dims();
        let [n, c, h, w] = shape;
        let bad = |reason: &str| EvalError::BadImages {
            extractor: "digits".into(),
            shape,
            reason: reason.into(),
        };
        if c != 1 && c != 3 {
            return Err(bad("expected 1 (grey) or 3 (RGB) channels"));
        }
        if n == 0 || h == 0 || w == 0 {
            return Err(bad("expected a non-empty batch of non-empty images"));
        }
        let non_finite: i64 = images
            .clone()
            .is_finite()
            .bool_not()
            .any()
            .int()
            .into_scalar()
            .elem();
        if non_finite != 0 {
            let values = images.into_data().to_vec::<f32>().unwrap_or_default();
            let index = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(EvalError::NonFinite {
                what: "images given to the digit classifier".into(),
                index,
            });
        }
        let out = self.forward(to_digit_input(images));
        Ok(ExtractorOutput {
            features: out.features,
            logits: Some(out.logits),
        })
    }
}
