//! Bits/dim of data under the model's variational bound: the original code's `calc_bpd_loop`,
//! over all T timesteps or a stratified subsample of them.
//!
//! Ho et al. 2020 (arXiv:2006.11239v2), Eqs. 3, 5 and 13 and Table 2 ("NLL test ≤ 3.75");
//! `diffusion_tf/diffusion_utils_2.py` (`calc_bpd_loop`) and
//! `improved_diffusion/gaussian_diffusion.py`.

use std::ops::Range;

use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use ddpm_forward::ForwardProcess;
use ddpm_schedule::{PredictionType, VarianceType};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::gaussian::mean_flat;
use crate::{LossError, VariationalBound, VlbConfig, check_data_range};

/// Which timesteps a bits/dim evaluation visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BpdTimesteps {
    /// Every t: the exact bound Σ_t L_t + L_T for the drawn x_t (one model call per t).
    All,
    /// K model calls per image: t = 0 (the decoder L_0, always evaluated) and one t drawn
    /// uniformly, independently per image, from each of K − 1 equal strata of {1, …, T − 1}.
    ///
    /// Estimator: L̂ = L_T + L_0 + Σ_k n_k · L_{t_k}, n_k the stratum's size. Each stratum's
    /// term has expectation Σ_{t ∈ stratum} L_t, so L̂ is unbiased for the full bound; per-image
    /// draws make the images' estimates independent, so the standard error over images
    /// includes the timestep-sampling variance. K ≥ T means [`BpdTimesteps::All`].
    Stratified {
        /// K ≥ 2, the number of model calls per image.
        k: usize,
    },
}

/// Configuration of [`BpdEvaluator`].
#[derive(Config, Debug)]
pub struct BpdConfig {
    /// What the model predicts. Default: ε.
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// Σ_θ. Default: fixed large, which gives the paper's better NLL bound (§4).
    #[config(default = "VarianceType::FixedLarge")]
    pub variance_type: VarianceType,
    /// Clip x̂₀ to [−1, 1]. Default: true, as the original `calc_bpd_loop`.
    #[config(default = true)]
    pub clip_denoised: bool,
    /// Which timesteps to visit. Default: all.
    #[config(default = "BpdTimesteps::All")]
    pub timesteps: BpdTimesteps,
}

impl BpdConfig {
    /// Validates and builds the evaluator on `forward`'s schedule and device.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for K < 2 (or T < 2 with K).
    pub fn init<B: Backend>(
        &self,
        forward: &ForwardProcess<B>,
    ) -> Result<BpdEvaluator<B>, LossError> {
        let num_timesteps = forward.num_train_timesteps();
        let strata = match self.timesteps {
            BpdTimesteps::Stratified { k } if k < num_timesteps => {
                if k < 2 {
                    return Err(LossError::InvalidParameter {
                        field: "timesteps (K)",
                        value: k as f64,
                        expected: "K >= 2 (t = 0 and at least one stratum), or all",
                    });
                }
                let (n, s) = (num_timesteps - 1, k - 1);
                (0..s)
                    .rev()
                    .map(|i| 1 + i * n / s..1 + (i + 1) * n / s)
                    .chain(std::iter::once(0..1))
                    .collect()
            }
            _ => (0..num_timesteps).rev().map(|t| t..t + 1).collect(),
        };
        let vlb = VlbConfig::new()
            .with_prediction_type(self.prediction_type)
            .with_variance_type(self.variance_type)
            .with_clip_denoised(self.clip_denoised)
            .init(forward);
        Ok(BpdEvaluator { vlb, strata })
    }
}

/// One evaluated term: a timestep range, the t drawn from it for each image, and the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BpdTerm {
    /// The 0-based timesteps this term stands for; its weight in the total is their count.
    pub range: Range<usize>,
    /// The t used for each image.
    pub timesteps: Vec<usize>,
    /// L_t in bits/dim per image (decoder NLL at t = 0, KL otherwise), unweighted.
    pub vb: Vec<f64>,
    /// mean((x̂₀ − x₀)²) per image.
    pub x0_mse: Vec<f64>,
    /// mean((ε̂ − ε)²) per image, ε̂ derived from the (clipped) x̂₀.
    pub eps_mse: Vec<f64>,
}

impl BpdTerm {
    /// The number of timesteps the term stands for.
    pub fn weight(&self) -> usize {
        self.range.len()
    }
}

/// Bits/dim of a set of images with its breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BpdOutput {
    /// Total bits/dim per image: L_T + Σ_terms weight · L_t.
    pub total: Vec<f64>,
    /// L_T (prior) in bits/dim per image.
    pub prior: Vec<f64>,
    /// The evaluated terms, in evaluation order (t descending).
    pub terms: Vec<BpdTerm>,
}

impl BpdOutput {
    /// Number of images.
    pub fn num_images(&self) -> usize {
        self.total.len()
    }

    /// Mean bits/dim over images.
    pub fn bits_per_dim(&self) -> f64 {
        mean(&self.total)
    }

    /// Standard error of [`BpdOutput::bits_per_dim`]: sample standard deviation / √n; `None`
    /// for fewer than two images.
    pub fn stderr(&self) -> Option<f64> {
        let n = self.total.len();
        if n < 2 {
            return None;
        }
        let m = self.bits_per_dim();
        let var = self.total.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        Some((var / n as f64).sqrt())
    }

    /// Appends another batch's results evaluated with the same timestep strata.
    ///
    /// # Errors
    /// [`LossError::ShapeMismatch`] if the strata differ.
    pub fn append(&mut self, other: BpdOutput) -> Result<(), LossError> {
        if self.terms.is_empty() && self.total.is_empty() {
            *self = other;
            return Ok(());
        }
        let ranges = |o: &BpdOutput| o.terms.iter().map(|t| t.range.len()).collect::<Vec<_>>();
        if self.terms.len() != other.terms.len()
            || self
                .terms
                .iter()
                .zip(&other.terms)
                .any(|(a, b)| a.range != b.range)
        {
            return Err(LossError::ShapeMismatch {
                what: "timestep strata of appended bits/dim results",
                actual: ranges(&other),
                expected: ranges(self),
            });
        }
        self.total.extend(other.total);
        self.prior.extend(other.prior);
        for (a, b) in self.terms.iter_mut().zip(other.terms) {
            a.timesteps.extend(b.timesteps);
            a.vb.extend(b.vb);
            a.x0_mse.extend(b.x0_mse);
            a.eps_mse.extend(b.eps_mse);
        }
        Ok(())
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Evaluates the variational bound of data in bits/dim (`calc_bpd_loop`).
///
/// For each visited t: draw ε, x_t = q_sample(x₀, t, ε), call the model, and record L_t
/// ([`VariationalBound::terms`]), mean((x̂₀ − x₀)²) and mean((ε̂ − ε)²); add L_T.
/// Works on any backend and device; the model is a closure, so it can be a `Unet`, an EMA copy
/// or a test oracle.
///
/// # Example
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{Distribution, Tensor};
/// use ddpm_forward::ForwardProcess;
/// use ddpm_loss::{BpdConfig, BpdTimesteps};
/// use ddpm_schedule::NoiseSchedule;
/// use rand::SeedableRng;
///
/// let device = Default::default();
/// let fp = ForwardProcess::<Flex>::new(&NoiseSchedule::paper(), &device);
/// let eval = BpdConfig::new()
///     .with_timesteps(BpdTimesteps::Stratified { k: 8 })
///     .init(&fp)?;
/// let x0 = Tensor::<Flex, 4>::random([2, 1, 4, 4], Distribution::Uniform(-1.0, 1.0), &device);
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let zero_model = |x_t: Tensor<Flex, 4>, _t| x_t.zeros_like();
/// let out = eval.evaluate(x0, zero_model, &mut rng, |_done, _total| {})?;
/// assert!(out.bits_per_dim() > 1.0);
/// # Ok::<(), ddpm_loss::LossError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BpdEvaluator<B: Backend> {
    vlb: VariationalBound<B>,
    strata: Vec<Range<usize>>,
}

impl<B: Backend> BpdEvaluator<B> {
    /// The bound's terms.
    pub fn variational_bound(&self) -> &VariationalBound<B> {
        &self.vlb
    }

    /// The timestep ranges visited, in order; one model call each per batch.
    pub fn strata(&self) -> &[Range<usize>] {
        &self.strata
    }

    /// Bits/dim of `x_0` under `model`, calling `progress(done, total)` after each model call.
    ///
    /// # Shapes
    /// `x_0`: `[batch, C, …]` in [−1, 1]; `model(x_t, t)` → `[batch, C or 2·C, …]`.
    ///
    /// # Errors
    /// [`LossError::DataOutOfRange`] for data outside [−1, 1]; [`LossError::OutputChannels`] or
    /// [`LossError::ShapeMismatch`] when the model's output does not fit.
    pub fn evaluate<const D: usize, F, R, P>(
        &self,
        x_0: Tensor<B, D>,
        mut model: F,
        rng: &mut R,
        mut progress: P,
    ) -> Result<BpdOutput, LossError>
    where
        F: FnMut(Tensor<B, D>, Tensor<B, 1, Int>) -> Tensor<B, D>,
        R: Rng + ?Sized,
        P: FnMut(usize, usize),
    {
        check_data_range(&x_0)?;
        let dims = x_0.dims();
        let (batch, channels) = (dims[0], dims[1]);
        let param = self.vlb.parameterization();
        let fp = self.vlb.forward_process();
        let device = x_0.device();
        let mut terms = Vec::with_capacity(self.strata.len());
        for (step, range) in self.strata.iter().enumerate() {
            let timesteps: Vec<usize> = (0..batch)
                .map(|_| rng.random_range(range.clone()))
                .collect();
            let t_host: Vec<i64> = timesteps.iter().map(|&t| t as i64).collect();
            let t = Tensor::<B, 1, Int>::from_data(TensorData::new(t_host, [batch]), &device);
            let noise = Tensor::<B, D>::from_data(
                TensorData::new(standard_normal(rng, x_0.shape().num_elements()), dims),
                &device,
            );
            let x_t = fp.q_sample(x_0.clone(), noise.clone(), t.clone());
            let out = model(x_t.clone(), t.clone());
            let out_dims = out.dims();
            let mut expected = dims;
            expected[1] = out_dims[1];
            if out_dims != expected {
                return Err(LossError::ShapeMismatch {
                    what: "model output (batch and spatial dimensions must match the data)",
                    actual: out_dims.to_vec(),
                    expected: expected.to_vec(),
                });
            }
            param.check_output_channels(out_dims[1], channels)?;
            let vt = self.vlb.terms(out, x_0.clone(), x_t.clone(), t.clone());
            let pred_x0 = vt.p.pred_x0;
            let eps_hat = fp.predict_eps_from_x0(x_t, pred_x0.clone(), t);
            let x0_mse = mean_flat((pred_x0 - x_0.clone()).powi_scalar(2));
            let eps_mse = mean_flat((eps_hat - noise).powi_scalar(2));
            terms.push(BpdTerm {
                range: range.clone(),
                timesteps,
                vb: host(vt.term),
                x0_mse: host(x0_mse),
                eps_mse: host(eps_mse),
            });
            progress(step + 1, self.strata.len());
        }
        let prior = host(self.vlb.prior_bpd(x_0));
        let total = (0..batch)
            .map(|i| {
                prior[i]
                    + terms
                        .iter()
                        .map(|term| term.weight() as f64 * term.vb[i])
                        .sum::<f64>()
            })
            .collect();
        Ok(BpdOutput {
            total,
            prior,
            terms,
        })
    }
}

fn host<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .expect("a float tensor")
}

/// `n` standard normal draws (Box–Muller), so that the caller's RNG alone fixes the noise.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        out.push((r * c) as f32);
        out.push((r * s) as f32);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;
    use ddpm_schedule::NoiseScheduleConfig;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    type B = Flex;

    fn schedule(t: usize) -> ForwardProcess<B> {
        let s = NoiseScheduleConfig {
            num_train_timesteps: t,
            ..Default::default()
        }
        .build()
        .unwrap();
        ForwardProcess::new(&s, &Default::default())
    }

    fn data() -> Tensor<B, 4> {
        // 8-bit levels in [−1, 1].
        let x = Tensor::<B, 4>::random(
            [4, 1, 4, 4],
            Distribution::Uniform(0.0, 255.0),
            &Default::default(),
        );
        x.floor().div_scalar(127.5).sub_scalar(1.0)
    }

    #[test]
    fn strata_cover_every_timestep_once() {
        let fp = schedule(100);
        for k in [2, 3, 7, 99] {
            let e = BpdConfig::new()
                .with_timesteps(BpdTimesteps::Stratified { k })
                .init(&fp)
                .unwrap();
            assert_eq!(e.strata().len(), k);
            let mut covered: Vec<usize> = e.strata().iter().flat_map(|r| r.clone()).collect();
            covered.sort();
            assert_eq!(covered, (0..100).collect::<Vec<_>>(), "k = {k}");
        }
        let all = BpdConfig::new()
            .with_timesteps(BpdTimesteps::Stratified { k: 100 })
            .init(&fp)
            .unwrap();
        assert_eq!(all.strata().len(), 100);
        assert!(
            BpdConfig::new()
                .with_timesteps(BpdTimesteps::Stratified { k: 1 })
                .init(&fp)
                .is_err()
        );
    }

    #[test]
    fn stratified_estimate_is_unbiased_for_a_fixed_model() {
        // An oracle-free check: with a deterministic model and the same x_0, the mean of many
        // stratified estimates approaches the full-T value.
        let fp = schedule(20);
        let x0 = data();
        let model = |x_t: Tensor<B, 4>, _t: Tensor<B, 1, Int>| x_t.mul_scalar(0.3);
        let full = BpdConfig::new().init(&fp).unwrap();
        let sub = BpdConfig::new()
            .with_timesteps(BpdTimesteps::Stratified { k: 4 })
            .init(&fp)
            .unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let reps = 30;
        let mut f = 0.0;
        let mut s = 0.0;
        for _ in 0..reps {
            f += full
                .evaluate(x0.clone(), model, &mut rng, |_, _| {})
                .unwrap()
                .bits_per_dim();
            s += sub
                .evaluate(x0.clone(), model, &mut rng, |_, _| {})
                .unwrap()
                .bits_per_dim();
        }
        let (f, s) = (f / reps as f64, s / reps as f64);
        assert!((f - s).abs() < 0.05 * f, "full {f} vs stratified {s}");
    }

    #[test]
    fn progress_and_breakdown() {
        let fp = schedule(10);
        let eval = BpdConfig::new().init(&fp).unwrap();
        let mut calls = vec![];
        let mut rng = StdRng::seed_from_u64(0);
        let out = eval
            .evaluate(
                data(),
                |x: Tensor<B, 4>, _| x.zeros_like(),
                &mut rng,
                |d, n| calls.push((d, n)),
            )
            .unwrap();
        assert_eq!(calls.len(), 10);
        assert_eq!(calls.last(), Some(&(10, 10)));
        assert_eq!(out.terms.len(), 10);
        assert_eq!(out.terms[9].range, 0..1);
        let i = 2;
        let sum: f64 = out.prior[i] + out.terms.iter().map(|t| t.vb[i]).sum::<f64>();
        assert!((sum - out.total[i]).abs() < 1e-9);
        assert!(out.stderr().unwrap() >= 0.0);
    }

    #[test]
    fn bad_inputs_are_named() {
        let fp = schedule(10);
        let eval = BpdConfig::new().init(&fp).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        let err = eval
            .evaluate(
                data().mul_scalar(255.0),
                |x: Tensor<B, 4>, _| x,
                &mut rng,
                |_, _| {},
            )
            .unwrap_err();
        assert!(matches!(err, LossError::DataOutOfRange { .. }), "{err}");
        let err = eval
            .evaluate(
                data(),
                |x: Tensor<B, 4>, _| Tensor::cat(vec![x.clone(), x], 1),
                &mut rng,
                |_, _| {},
            )
            .unwrap_err();
        assert!(err.to_string().contains("fixed_large"), "{err}");
        let err = eval
            .evaluate(
                data(),
                |x: Tensor<B, 4>, _| x.narrow(2, 0, 2),
                &mut rng,
                |_, _| {},
            )
            .unwrap_err();
        assert!(matches!(err, LossError::ShapeMismatch { .. }), "{err}");
    }
}
