//! Training-timestep distributions: which t each sample of a batch is trained at (not to be
//! confused with the reverse-process samplers of `ddpm-sampler`). Uniform (Ho et al. 2020,
//! Algorithm 1) and importance sampling by the second moment of each timestep's loss (Nichol &
//! Dhariwal 2021, arXiv:2102.09672v1, §3.3, Eq. 17; `improved_diffusion/resample.py`, whose
//! `ScheduleSampler` these are).
//!
//! Randomness comes from a `rand` RNG the caller owns: a seed reproduces the draws.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use rand::{Rng, RngExt};

use crate::LossError;

/// Timesteps drawn for a batch and their importance weights 1/(T · p_t), which make
/// E[w_t · L_t] = (1/T) Σ_t L_t (all ones for uniform sampling).
#[derive(Debug, Clone, PartialEq)]
pub struct TimestepDraw {
    /// 0-based timesteps, one per sample.
    pub timesteps: Vec<usize>,
    /// 1/(T · p_t) per sample.
    pub weights: Vec<f64>,
}

impl TimestepDraw {
    /// The timesteps as an `Int` tensor `[batch]`.
    pub fn timesteps_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        let t: Vec<i64> = self.timesteps.iter().map(|&t| t as i64).collect();
        let n = t.len();
        Tensor::from_data(TensorData::new(t, [n]), device)
    }

    /// The weights as a float tensor `[batch]`.
    pub fn weights_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1> {
        let n = self.weights.len();
        Tensor::from_data(TensorData::new(self.weights.clone(), [n]), device)
    }
}

/// Chooses the training timestep of each sample (improved-diffusion's `ScheduleSampler`).
#[doc(alias = "ScheduleSampler")]
pub trait TimestepDistribution {
    /// T.
    fn num_timesteps(&self) -> usize;

    /// p_t for t = 0..T.
    fn probabilities(&self) -> Vec<f64>;

    /// Draws `batch` timesteps from [`TimestepDistribution::probabilities`] with their weights.
    fn draw<R: Rng + ?Sized>(&self, batch: usize, rng: &mut R) -> TimestepDraw {
        let p = self.probabilities();
        let cdf: Vec<f64> = p
            .iter()
            .scan(0.0, |acc, &x| {
                *acc += x;
                Some(*acc)
            })
            .collect();
        let total = *cdf.last().expect("T >= 1");
        let timesteps: Vec<usize> = (0..batch)
            .map(|_| {
                let u = rng.random::<f64>() * total;
                cdf.partition_point(|&c| c <= u).min(p.len() - 1)
            })
            .collect();
        let n = p.len() as f64;
        let weights = timesteps.iter().map(|&t| total / (n * p[t])).collect();
        TimestepDraw { timesteps, weights }
    }

    /// Reports the per-sample losses of a batch (no-op for fixed distributions).
    ///
    /// # Errors
    /// As the implementation's: a timestep ≥ T or a non-finite loss.
    fn update(&mut self, _timesteps: &[usize], _losses: &[f64]) -> Result<(), LossError> {
        Ok(())
    }
}

/// t ~ Uniform{0, …, T − 1}   (Ho et al. 2020, Algorithm 1)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniformTimesteps {
    num_timesteps: usize,
}

impl UniformTimesteps {
    /// Uniform over T timesteps.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for T = 0.
    pub fn new(num_timesteps: usize) -> Result<Self, LossError> {
        check_t(num_timesteps)?;
        Ok(Self { num_timesteps })
    }
}

impl TimestepDistribution for UniformTimesteps {
    fn num_timesteps(&self) -> usize {
        self.num_timesteps
    }

    fn probabilities(&self) -> Vec<f64> {
        vec![1.0 / self.num_timesteps as f64; self.num_timesteps]
    }

    fn draw<R: Rng + ?Sized>(&self, batch: usize, rng: &mut R) -> TimestepDraw {
        TimestepDraw {
            timesteps: (0..batch)
                .map(|_| rng.random_range(0..self.num_timesteps))
                .collect(),
            weights: vec![1.0; batch],
        }
    }
}

/// Importance sampling with p_t ∝ √E\[L_t²\]   (Nichol & Dhariwal 2021, Eq. 17)
///
/// Keeps the last `history_per_term` (10) losses of each t; uniform until every t has a full
/// history, then p_t ∝ √(mean of the squared history), mixed with `uniform_prob` (0.001) of the
/// uniform distribution: p = (1 − u) · p_{2nd moment} + u/T. Weights are 1/(T · p_t).
#[derive(Debug, Clone, PartialEq)]
pub struct LossSecondMomentTimesteps {
    history: Vec<Vec<f64>>,
    history_per_term: usize,
    uniform_prob: f64,
}

impl LossSecondMomentTimesteps {
    /// improved-diffusion's settings: history 10 per t, uniform share 0.001.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for T = 0.
    pub fn new(num_timesteps: usize) -> Result<Self, LossError> {
        Self::with_settings(num_timesteps, 10, 0.001)
    }

    /// Custom history length and uniform share.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for T = 0, a zero history or a share outside (0, 1].
    pub fn with_settings(
        num_timesteps: usize,
        history_per_term: usize,
        uniform_prob: f64,
    ) -> Result<Self, LossError> {
        check_t(num_timesteps)?;
        if history_per_term == 0 {
            return Err(LossError::InvalidParameter {
                field: "history_per_term",
                value: 0.0,
                expected: "at least 1 (improved-diffusion: 10)",
            });
        }
        if !(uniform_prob > 0.0 && uniform_prob <= 1.0) {
            return Err(LossError::InvalidParameter {
                field: "uniform_prob",
                value: uniform_prob,
                expected: "0 < uniform_prob <= 1 (improved-diffusion: 0.001)",
            });
        }
        Ok(Self {
            history: vec![Vec::with_capacity(history_per_term); num_timesteps],
            history_per_term,
            uniform_prob,
        })
    }

    /// Whether every timestep has a full history (before that, sampling is uniform).
    pub fn warmed_up(&self) -> bool {
        self.history
            .iter()
            .all(|h| h.len() == self.history_per_term)
    }
}

impl TimestepDistribution for LossSecondMomentTimesteps {
    fn num_timesteps(&self) -> usize {
        self.history.len()
    }

    fn probabilities(&self) -> Vec<f64> {
        let n = self.history.len() as f64;
        if !self.warmed_up() {
            return vec![1.0 / n; self.history.len()];
        }
        let rms: Vec<f64> = self
            .history
            .iter()
            .map(|h| (h.iter().map(|l| l * l).sum::<f64>() / h.len() as f64).sqrt())
            .collect();
        let total: f64 = rms.iter().sum();
        rms.iter()
            .map(|r| {
                let p = if total > 0.0 { r / total } else { 1.0 / n };
                p * (1.0 - self.uniform_prob) + self.uniform_prob / n
            })
            .collect()
    }

    fn update(&mut self, timesteps: &[usize], losses: &[f64]) -> Result<(), LossError> {
        let num_timesteps = self.history.len();
        for (&t, &loss) in timesteps.iter().zip(losses) {
            if t >= num_timesteps {
                return Err(LossError::TimestepOutOfRange { t, num_timesteps });
            }
            if !loss.is_finite() {
                return Err(LossError::NonFiniteLoss { t, value: loss });
            }
            let h = &mut self.history[t];
            if h.len() == self.history_per_term {
                h.remove(0);
            }
            h.push(loss);
        }
        Ok(())
    }
}

fn check_t(num_timesteps: usize) -> Result<(), LossError> {
    if num_timesteps == 0 {
        Err(LossError::InvalidParameter {
            field: "num_timesteps",
            value: 0.0,
            expected: "T >= 1",
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn uniform_is_seeded_and_in_range() {
        let s = UniformTimesteps::new(50).unwrap();
        let a = s.draw(64, &mut StdRng::seed_from_u64(3));
        let b = s.draw(64, &mut StdRng::seed_from_u64(3));
        assert_eq!(a, b);
        assert!(a.timesteps.iter().all(|&t| t < 50));
        assert!(a.weights.iter().all(|&w| w == 1.0));
    }

    #[test]
    fn second_moment_distribution_warms_up_then_follows_the_losses() {
        let mut s = LossSecondMomentTimesteps::new(4).unwrap();
        assert_eq!(s.probabilities(), vec![0.25; 4]);
        for _ in 0..10 {
            s.update(&[0, 1, 2], &[1.0, 1.0, 2.0]).unwrap();
            assert!(!s.warmed_up());
        }
        for _ in 0..12 {
            s.update(&[3], &[4.0]).unwrap();
        }
        assert!(s.warmed_up());
        let p = s.probabilities();
        let expected = [1.0, 1.0, 2.0, 4.0].map(|r| r / 8.0 * 0.999 + 0.001 / 4.0);
        for (p, e) in p.iter().zip(expected) {
            assert!((p - e).abs() < 1e-12);
        }
        let draw = s.draw(2000, &mut StdRng::seed_from_u64(0));
        let share3 = draw.timesteps.iter().filter(|&&t| t == 3).count() as f64 / 2000.0;
        assert!((share3 - p[3]).abs() < 0.05, "{share3}");
        // E[w] = 1 under p.
        let mean_w = draw.weights.iter().sum::<f64>() / 2000.0;
        assert!((mean_w - 1.0).abs() < 0.1, "{mean_w}");
        let i = draw.timesteps.iter().position(|&t| t == 3).unwrap();
        assert!((draw.weights[i] - 1.0 / (4.0 * p[3])).abs() < 1e-12);
    }

    #[test]
    fn bad_updates_are_errors() {
        let mut s = LossSecondMomentTimesteps::new(4).unwrap();
        assert!(matches!(
            s.update(&[4], &[1.0]),
            Err(LossError::TimestepOutOfRange { t: 4, .. })
        ));
        assert!(s.update(&[1], &[f64::NAN]).is_err());
        assert!(UniformTimesteps::new(0).is_err());
    }
}
