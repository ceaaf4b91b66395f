//! Seeded, backend-independent parameter initialisation: every weight is drawn on the host from
//! a ChaCha8 stream derived from one seed, so a seed gives the same model on Flex, wgpu, Vulkan,
//! Metal and CUDA, and no module touches Burn's per-backend, process-wide device RNG.
//!
//! The distributions are Burn's (and PyTorch's) defaults, which diffusers' `UNet2DModel` keeps
//! (it applies no custom initialisation):
//!
//! - `Linear(d_in → d_out)`: weight and bias ~ U(−1/√d_in, 1/√d_in);
//! - `Conv2d(c_in → c_out, k×k)`: weight and bias ~ U(−1/√(c_in·k²), 1/√(c_in·k²));
//! - `GroupNorm`: γ = 1, β = 0 (no randomness).
//!
//! (Burn's `KaimingUniform { gain: 1/√3, fan_out_only: false }` bound √3 · gain / √fan_in =
//! 1/√fan_in; PyTorch's `kaiming_uniform_(a = √5)` gives the same bound.)
//!
//! NOTE: the original DDPM code (TF) used variance-scaling ("fan_avg", uniform) and scaled the
//! last conv of each residual block and of the network to zero; like diffusers we do not.
//!
//! Each parameter owns a seed derived from (seed, its position in construction order) and is
//! drawn lazily, on first use, like Burn's own initialisers: loading a checkpoint into a freshly
//! built model never draws (or pays for) the random weights it replaces.

use burn::module::{Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Shape, Tensor, TensorData};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};

/// The seed [`UnetConfig::init`](crate::UnetConfig::init) and the blocks' `init` use
/// when the caller names none.
pub const DEFAULT_INIT_SEED: u64 = 0;

/// A seeded source of initial weights: hands every parameter (and every dropout layer) its own
/// seed, derived from the run's seed and the order in which the modules are built.
///
/// # Example
///
/// ```
/// use burn::backend::Flex;
/// use ddpm_unet::{ParamInit, ResnetBlock2dConfig};
///
/// let device = Default::default();
/// let config = ResnetBlock2dConfig::new(8, 16, 32).with_groups(4);
/// let a = config.init_with::<Flex>(&mut ParamInit::new(7), &device);
/// let b = config.init_with::<Flex>(&mut ParamInit::new(7), &device);
/// assert_eq!(a.conv1.weight.val().into_data(), b.conv1.weight.val().into_data());
/// ```
#[derive(Debug, Clone)]
pub struct ParamInit {
    seed: u64,
    next: u64,
}

impl ParamInit {
    /// A source whose streams all derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, next: 0 }
    }

    /// The seed of the next parameter or dropout layer (advances the source).
    pub fn next_seed(&mut self) -> u64 {
        let s = mix(self.seed, self.next);
        self.next += 1;
        s
    }

    /// A lazily drawn parameter of `shape` with entries ~ U(−bound, bound).
    pub fn uniform<B: Backend, const D: usize>(
        &mut self,
        shape: [usize; D],
        bound: f64,
        device: &B::Device,
    ) -> Param<Tensor<B, D>> {
        let seed = self.next_seed();
        Param::uninitialized(
            ParamId::new(),
            move |device, require_grad| {
                B::memory_persistent_allocations(device, (), |_| {
                    let values = uniform_values(seed, shape.iter().product(), bound);
                    let t = Tensor::<B, D>::from_data(TensorData::new(values, shape), device);
                    if require_grad { t.require_grad() } else { t }
                })
            },
            device.clone(),
            true,
            Shape::from(shape),
        )
    }

    /// `Linear(d_in → d_out)` with bias, weight and bias ~ U(−1/√d_in, 1/√d_in).
    pub fn linear<B: Backend>(
        &mut self,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Linear<B> {
        let bound = 1.0 / (d_in as f64).sqrt();
        Linear {
            weight: self.uniform([d_in, d_out], bound, device),
            bias: Some(self.uniform([d_out], bound, device)),
        }
    }

    /// The `Conv2d` of `config` (its initializer is ignored), weight and bias ~
    /// U(−1/√fan_in, 1/√fan_in) with fan_in = c_in / groups · k_h · k_w.
    pub fn conv2d<B: Backend>(&mut self, config: &Conv2dConfig, device: &B::Device) -> Conv2d<B> {
        // Zeros: a constant initializer, never drawn (Burn's params are lazy) and RNG-free.
        let mut conv = config
            .clone()
            .with_initializer(Initializer::Zeros)
            .init::<B>(device);
        let [c_in, c_out] = config.channels;
        let [kh, kw] = config.kernel_size;
        let fan_in = c_in / config.groups * kh * kw;
        let bound = 1.0 / (fan_in as f64).sqrt();
        conv.weight = self.uniform([c_out, c_in / config.groups, kh, kw], bound, device);
        conv.bias = config.bias.then(|| self.uniform([c_out], bound, device));
        conv
    }
}

/// SplitMix64 of `seed` combined with `stream`: decorrelated seeds for neighbouring streams.
pub(crate) fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed.wrapping_add(stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` values ~ U(−bound, bound) from ChaCha8(`seed`): u = ⌊r / 2⁸⌋ · 2⁻²⁴ for each 32-bit
/// output r, value = (2u − 1) · bound, computed in `f64` and rounded to `f32` — the same bits
/// on every machine.
pub(crate) fn uniform_values(seed: u64, n: usize, bound: f64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u = f64::from(rng.next_u32() >> 8) * (1.0 / 16_777_216.0);
            ((2.0 * u - 1.0) * bound) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::PaddingConfig2d;

    type TestBackend = burn::backend::Flex;

    fn values<const D: usize>(p: &Param<Tensor<TestBackend, D>>) -> Vec<f32> {
        p.val().into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn uniform_values_lie_in_the_bound_with_the_right_moments() {
        let bound = 0.25;
        let v = uniform_values(3, 200_000, bound);
        assert!(v.iter().all(|x| (-bound as f32..bound as f32).contains(x)));
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        // U(−b, b): mean 0, variance b²/3; 200k draws: standard errors ~3e-4 and ~2e-5.
        assert!(mean.abs() < 2e-3, "mean {mean}");
        assert!((var - bound * bound / 3.0).abs() < 2e-4, "var {var}");
        assert_eq!(v, uniform_values(3, 200_000, bound));
        assert_ne!(v[..8], uniform_values(4, 8, bound)[..]);
    }

    #[test]
    fn layers_use_burns_default_bounds_and_distinct_streams() {
        let device = Default::default();
        let mut init = ParamInit::new(1);
        let linear = init.linear::<TestBackend>(64, 16, &device);
        let conv = init.conv2d::<TestBackend>(
            &Conv2dConfig::new([8, 4], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            &device,
        );
        assert_eq!(linear.weight.dims(), [64, 16]);
        assert_eq!(conv.weight.dims(), [4, 8, 3, 3]);
        assert_eq!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1));
        let max_abs = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let (lw, lb) = (
            values(&linear.weight),
            values(linear.bias.as_ref().unwrap()),
        );
        let (cw, cb) = (values(&conv.weight), values(conv.bias.as_ref().unwrap()));
        assert!(
            max_abs(&lw) <= 1.0 / 8.0 && max_abs(&lw) > 0.1,
            "{}",
            max_abs(&lw)
        );
        assert!(max_abs(&lb) <= 1.0 / 8.0);
        let conv_bound = 1.0 / 72f32.sqrt();
        assert!(max_abs(&cw) <= conv_bound && max_abs(&cw) > 0.8 * conv_bound);
        assert!(max_abs(&cb) <= conv_bound);
        // Every parameter has its own stream.
        assert_ne!(lw[..4], cw[..4]);
        assert_ne!(lb[..4], cb[..4]);
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let device = Default::default();
        let draw = |seed| {
            values(
                &ParamInit::new(seed)
                    .linear::<TestBackend>(9, 5, &device)
                    .weight,
            )
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }
}
