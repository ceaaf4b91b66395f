//! Rate–distortion of progressive lossy compression (Ho et al. 2020, arXiv:2006.11239v2,
//! §4.3, Fig. 5 and Table 4), read off a bits/dim evaluation ([`BpdOutput`]).
//!
//! The receiver gets x_T, then x_{T−1}, …, x_0, each coded with the reverse process: after
//! x_t it has spent the rate L_T + Σ_{s ≥ t} L_s (paper's 1-based L_s = KL(q(x_s | x_{s+1}, x₀)
//! ‖ p_θ(x_s | x_{s+1}))) and can show x̂₀(x_t); the distortion is the RMSE of that x̂₀
//! against x₀ on the [0, 255] scale. At t = 0 the decoder L_0 has sent x₀ itself: the rate is
//! the whole bound (what `ddpm eval nll` reports) and the distortion 0.

use serde::{Deserialize, Serialize};

use crate::BpdOutput;

/// Half the width of the [0, 255] scale in model units ([−1, 1] ↔ [0, 255]).
const TO_PIXEL_SCALE: f64 = 127.5;

/// One point of the curve: what the receiver holds after x_t.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateDistortionPoint {
    /// The paper's t (1-based; T: only x_T received; 0: x₀ received).
    pub t: usize,
    /// Bits/dim spent so far: L_T + Σ_{s ≥ t} L_s (mean over images).
    pub rate_bpd: f64,
    /// RMSE of x̂₀(x_t) against x₀ on the [0, 255] scale, √(mean over images and dimensions
    /// of the squared error) · 127.5; 0 at t = 0.
    pub distortion_rmse: f64,
}

impl BpdOutput {
    /// The rate–distortion curve (Fig. 5, Table 4), from t = T down to t = 0.
    ///
    /// With every timestep evaluated ([`crate::BpdTimesteps::All`]) there is one point per t
    /// (T + 1 points), each x̂₀ the one the model predicts from x_t. With a stratified
    /// evaluation there is one point per stratum boundary, its rate the unbiased estimate of
    /// the bits through that stratum and its distortion x̂₀ at the t drawn in the stratum just
    /// below (an estimate of the curve, coarser than the full evaluation). The last point's
    /// rate is the total bound, [`BpdOutput::bits_per_dim`].
    ///
    /// Distortion uses x̂₀ as evaluated (clipped to [−1, 1] when the evaluation clips, as the
    /// original `calc_bpd_loop` does).
    ///
    /// # Panics
    /// If the output holds no terms or no images (it always holds both when made by
    /// [`crate::BpdEvaluator::evaluate`]).
    pub fn rate_distortion(&self) -> Vec<RateDistortionPoint> {
        assert!(
            !self.terms.is_empty() && !self.total.is_empty(),
            "a rate-distortion curve needs evaluated terms and images"
        );
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let rmse = |mse: &[f64]| mean(mse).sqrt() * TO_PIXEL_SCALE;
        let mut terms: Vec<_> = self.terms.iter().collect();
        terms.sort_by_key(|t| std::cmp::Reverse(t.range.start));
        let top = terms[0].range.end;
        let mut rate = mean(&self.prior);
        let mut points = Vec::with_capacity(terms.len() + 1);
        points.push(RateDistortionPoint {
            t: top,
            rate_bpd: rate,
            distortion_rmse: rmse(&terms[0].x0_mse),
        });
        for (i, term) in terms.iter().enumerate() {
            rate += term.weight() as f64 * mean(&term.vb);
            // After this term the receiver holds x at the paper's t = range.start; x̂₀ from
            // there is the model's at 0-based index range.start − 1, i.e. the next term's.
            let distortion = terms.get(i + 1).map_or(0.0, |next| rmse(&next.x0_mse));
            points.push(RateDistortionPoint {
                t: term.range.start,
                rate_bpd: rate,
                distortion_rmse: distortion,
            });
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use crate::{BpdOutput, BpdTerm};

    fn term(t: usize, vb: f64, x0_mse: f64) -> BpdTerm {
        BpdTerm {
            range: t..t + 1,
            timesteps: vec![t, t],
            vb: vec![vb, vb],
            x0_mse: vec![x0_mse, x0_mse],
            eps_mse: vec![0.0, 0.0],
        }
    }

    /// T = 3 by hand: x̂₀ from x_t (paper) is the model's at 0-based index t − 1.
    #[test]
    fn pairs_each_rate_with_the_reconstruction_from_the_x_t_received() {
        let out = BpdOutput {
            total: vec![0.5 + 0.1 + 0.2 + 3.0; 2],
            prior: vec![0.5, 0.5],
            terms: vec![term(2, 0.1, 0.4), term(1, 0.2, 0.1), term(0, 3.0, 0.01)],
        };
        let rd = out.rate_distortion();
        let px = |mse: f64| mse.sqrt() * 127.5;
        let expected = [
            (3, 0.5, px(0.4)),
            (2, 0.6, px(0.1)),
            (1, 0.8, px(0.01)),
            (0, 3.8, 0.0),
        ];
        assert_eq!(rd.len(), 4);
        for (p, (t, rate, dist)) in rd.iter().zip(expected) {
            assert_eq!(p.t, t);
            assert!((p.rate_bpd - rate).abs() < 1e-12, "{p:?}");
            assert!((p.distortion_rmse - dist).abs() < 1e-9, "{p:?}");
        }
        assert!((rd[3].rate_bpd - out.bits_per_dim()).abs() < 1e-12);
    }

    /// From a real evaluation over all T = 20 timesteps: T + 1 points, the first the prior
    /// alone, rates never decreasing (every term is a KL or an NLL), the last the whole bound.
    #[test]
    fn a_full_evaluation_gives_one_point_per_timestep_ending_at_the_bound() {
        use burn::backend::Flex;
        use burn::tensor::{Distribution, Tensor};
        use ddpm_forward::ForwardProcess;
        use ddpm_schedule::{BetaSchedule, NoiseSchedule, NoiseScheduleConfig};
        use rand::SeedableRng;

        let device = Default::default();
        let linear = BetaSchedule::Linear {
            beta_start: 1e-3,
            beta_end: 0.3,
        };
        let schedule = NoiseSchedule::new(&NoiseScheduleConfig::new(20, linear)).unwrap();
        let fp = ForwardProcess::<Flex>::new(&schedule, &device);
        let eval = crate::BpdConfig::new().init(&fp).unwrap();
        let x0 = Tensor::<Flex, 4>::random([3, 1, 4, 4], Distribution::Uniform(-1.0, 1.0), &device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let model = |x_t: Tensor<Flex, 4>, _t| x_t.mul_scalar(0.3);
        let out = eval.evaluate(x0, model, &mut rng, |_, _| {}).unwrap();
        let rd = out.rate_distortion();
        assert_eq!(rd.len(), 21);
        assert_eq!(
            rd.iter().map(|p| p.t).collect::<Vec<_>>(),
            (0..=20).rev().collect::<Vec<_>>()
        );
        let prior = out.prior.iter().sum::<f64>() / 3.0;
        assert_eq!(rd[0].rate_bpd, prior);
        assert!(rd.windows(2).all(|w| w[1].rate_bpd >= w[0].rate_bpd));
        assert!((rd[20].rate_bpd - out.bits_per_dim()).abs() < 1e-9);
        assert_eq!(rd[20].distortion_rmse, 0.0);
        // x̂₀ from x_T (t = 20) is much worse than from x_1 (t = 1).
        assert!(rd[0].distortion_rmse > rd[19].distortion_rmse);
    }

    #[test]
    fn strata_are_weighted_by_their_size() {
        let stratum = BpdTerm {
            range: 1..4,
            timesteps: vec![2],
            vb: vec![0.25],
            x0_mse: vec![0.04],
            eps_mse: vec![0.0],
        };
        let out = BpdOutput {
            total: vec![1.0 + 0.75 + 2.0],
            prior: vec![1.0],
            terms: vec![stratum, term(0, 2.0, 0.0001)],
        };
        let rd = out.rate_distortion();
        assert_eq!(rd.iter().map(|p| p.t).collect::<Vec<_>>(), vec![4, 1, 0]);
        assert!((rd[1].rate_bpd - 1.75).abs() < 1e-12);
        assert!((rd[2].rate_bpd - 3.75).abs() < 1e-12);
        assert!((rd[0].distortion_rmse - 0.2 * 127.5).abs() < 1e-9);
    }
}
