//! Dropout (Srivastava et al. 2014) with masks drawn on the host from a seed, as the DDPM
//! residual blocks use it (Ho et al. 2020, arXiv:2006.11239v2, Appendix B: dropout 0.1 on
//! CIFAR10). diffusers: `nn.Dropout` inside `ResnetBlock2D`.
//!
//! Burn's `Dropout` draws its masks from the backend's device RNG, which differs per backend
//! and is shared by every thread of the process. [`SeededDropout`] draws them with ChaCha8 on
//! the host instead, from a seed the caller sets ([`SeededDropout::set_seed`], or
//! [`Unet::set_dropout_seed`](crate::Unet::set_dropout_seed) for a whole model): a training
//! step then drops the same elements on every backend, and a resumed run the same as one that
//! never stopped.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};

use crate::init::mix;

/// Elements per independently seeded block of a mask: the mask does not depend on how many
/// threads draw it.
const CHUNK: usize = 1 << 16;

/// Zeroes each element with probability `prob` and scales the rest by 1 / (1 − `prob`), only
/// under an autodiff backend (training); the identity otherwise.
///
/// The mask of the n-th call after [`SeededDropout::set_seed`]`(s)` is a function of (s, n)
/// alone. Each element is dropped when 16 bits of ChaCha8 output fall below
/// round(`prob` · 2¹⁶), so `prob` is applied rounded to a multiple of 2⁻¹⁶.
#[derive(Module, Clone, Debug)]
pub struct SeededDropout {
    /// Probability of zeroing an element, in [0, 1).
    pub prob: f64,
    /// Seed and call counter of the mask stream (not a parameter; not saved).
    #[module(skip)]
    stream: MaskStream,
}

/// The seed of a dropout layer and how many masks it drew since the seed was set.
#[derive(Debug)]
struct MaskStream {
    seed: u64,
    calls: AtomicU64,
}

impl Clone for MaskStream {
    fn clone(&self) -> Self {
        Self {
            seed: self.seed,
            calls: AtomicU64::new(self.calls.load(Ordering::Relaxed)),
        }
    }
}

impl SeededDropout {
    /// A dropout layer with probability `prob` whose masks derive from `seed`.
    ///
    /// # Panics
    ///
    /// If `prob` is not in [0, 1) (configs validate it before).
    pub fn new(prob: f64, seed: u64) -> Self {
        assert!(
            (0.0..1.0).contains(&prob),
            "SeededDropout: prob {prob} is not in [0, 1)"
        );
        Self {
            prob,
            stream: MaskStream {
                seed,
                calls: AtomicU64::new(0),
            },
        }
    }

    /// Restarts the mask stream from `seed`: the next call draws mask 0 of that seed.
    pub fn set_seed(&mut self, seed: u64) {
        self.stream = MaskStream {
            seed,
            calls: AtomicU64::new(0),
        };
    }

    /// Applies dropout under an autodiff backend; returns `x` unchanged otherwise or when
    /// `prob` = 0.
    ///
    /// # Shapes
    ///
    /// - `x`: any; output: same as `x`
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let device = x.device();
        if self.prob == 0.0 || !B::ad_enabled(&device) {
            return x;
        }
        let call = self.stream.calls.fetch_add(1, Ordering::Relaxed);
        let shape = x.shape();
        let mask = keep_mask(mix(self.stream.seed, call), shape.num_elements(), self.prob);
        let mask = Tensor::<B, D>::from_data(TensorData::new(mask, shape), &device);
        let dtype = x.dtype();
        x * mask.cast(dtype)
    }
}

/// `n` mask values: 0 for a dropped element, 1 / (1 − prob) for a kept one. Blocks of
/// [`CHUNK`] elements are seeded with mix(seed, block) and filled in parallel.
fn keep_mask(seed: u64, n: usize, prob: f64) -> Vec<f32> {
    let threshold = (prob * 65536.0).round() as u32;
    let scale = (1.0 / (1.0 - prob)) as f32;
    let mut out = vec![0.0f32; n];
    let fill = |block: usize, dst: &mut [f32]| {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, block as u64));
        for quad in dst.chunks_mut(4) {
            let r = rng.next_u64();
            for (k, v) in quad.iter_mut().enumerate() {
                let bits = ((r >> (16 * k)) & 0xFFFF) as u32;
                *v = if bits < threshold { 0.0 } else { scale };
            }
        }
    };
    let blocks = n.div_ceil(CHUNK);
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(blocks);
    if threads <= 1 {
        for (b, dst) in out.chunks_mut(CHUNK).enumerate() {
            fill(b, dst);
        }
    } else {
        let per_thread = blocks.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, part) in out.chunks_mut(per_thread * CHUNK).enumerate() {
                let fill = &fill;
                s.spawn(move || {
                    for (i, dst) in part.chunks_mut(CHUNK).enumerate() {
                        fill(t * per_thread + i, dst);
                    }
                });
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;

    type TestBackend = burn::backend::Flex;
    type Ad = Autodiff<TestBackend>;

    fn run<B: Backend>(d: &SeededDropout, n: usize) -> Vec<f32> {
        let x = Tensor::<B, 2>::ones([n / 4, 4], &Default::default());
        d.forward(x).into_data().convert::<f32>().to_vec().unwrap()
    }

    #[test]
    fn identity_without_autodiff_or_with_prob_zero() {
        let d = SeededDropout::new(0.5, 1);
        assert!(run::<TestBackend>(&d, 64).iter().all(|&v| v == 1.0));
        let d = SeededDropout::new(0.0, 1);
        assert!(run::<Ad>(&d, 64).iter().all(|&v| v == 1.0));
    }

    #[test]
    fn drops_about_prob_and_rescales_the_rest() {
        let d = SeededDropout::new(0.1, 9);
        let n = 3 * CHUNK + 100; // several blocks, the last one partial
        let v = run::<Ad>(&d, n);
        let dropped = v.iter().filter(|&&x| x == 0.0).count() as f64 / n as f64;
        // Binomial standard error √(0.09 / n) ≈ 6e-4.
        assert!((dropped - 0.1).abs() < 4e-3, "dropped fraction {dropped}");
        let scale = (1.0 / 0.9) as f32;
        assert!(v.iter().all(|&x| x == 0.0 || x == scale));
        // E[output] = input.
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 5e-3, "mean {mean}");
    }

    #[test]
    fn masks_follow_the_seed_and_the_call_count() {
        let mut a = SeededDropout::new(0.3, 5);
        let first = run::<Ad>(&a, 4096);
        let second = run::<Ad>(&a, 4096);
        assert_ne!(first, second, "each call draws a new mask");
        a.set_seed(5);
        assert_eq!(run::<Ad>(&a, 4096), first, "set_seed restarts the stream");
        let b = SeededDropout::new(0.3, 6);
        assert_ne!(run::<Ad>(&b, 4096), first);
        // A clone continues from the same point of the stream.
        let c = a.clone();
        assert_eq!(run::<Ad>(&c, 4096), run::<Ad>(&a, 4096));
    }

    #[test]
    fn mask_is_independent_of_the_thread_count() {
        // The parallel fill equals a sequential fill block by block.
        let n = 5 * CHUNK + 7;
        let got = keep_mask(11, n, 0.2);
        let mut want = Vec::new();
        for b in 0..n.div_ceil(CHUNK) {
            let len = CHUNK.min(n - b * CHUNK);
            let mut rng = ChaCha8Rng::seed_from_u64(mix(11, b as u64));
            let mut block = Vec::new();
            while block.len() < len {
                let r = rng.next_u64();
                for k in 0..4 {
                    block.push(if ((r >> (16 * k)) & 0xFFFF) < 13107 {
                        0.0
                    } else {
                        1.25f32
                    });
                }
            }
            block.truncate(len);
            want.extend(block);
        }
        assert_eq!(got, want);
    }
}
