//! The noise schedule: β and every table derived from it, in `f64`.
//!
//! Index convention: 0-based as in diffusers. Entry `i` of every table belongs to diffusers'
//! "timestep i", which is the paper's t = i + 1 (Ho et al. 2020 count t = 1..T). So
//! `alpha_bar()[0]` is ᾱ₁ and `alpha_bar_prev()[0]` is ᾱ₀ = 1.

use serde::{Deserialize, Serialize};

use crate::{BetaSchedule, ScheduleError, rescale_zero_terminal_snr, validate_betas};

/// How to build a [`NoiseSchedule`]: T, the β shape, and optional zero-terminal-SNR rescaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseScheduleConfig {
    /// T, the number of diffusion steps (paper: 1000).
    pub num_train_timesteps: usize,
    /// The β shape (paper: linear 1e-4..0.02).
    pub beta_schedule: BetaSchedule,
    /// Rescale β to zero terminal SNR (Lin et al. 2023); default false as in the paper.
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
}

impl Default for NoiseScheduleConfig {
    /// The paper's schedule: T = 1000, linear β from 1e-4 to 0.02.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_schedule: BetaSchedule::linear(),
            rescale_betas_zero_snr: false,
        }
    }
}

impl NoiseScheduleConfig {
    /// A config with the given T and β shape, no rescaling.
    pub fn new(num_train_timesteps: usize, beta_schedule: BetaSchedule) -> Self {
        Self {
            num_train_timesteps,
            beta_schedule,
            rescale_betas_zero_snr: false,
        }
    }

    /// The improved-DDPM cosine schedule with T steps.
    pub fn cosine(num_train_timesteps: usize) -> Self {
        Self::new(num_train_timesteps, BetaSchedule::cosine())
    }

    /// Builds the schedule; see [`NoiseSchedule::new`].
    ///
    /// # Errors
    /// As [`NoiseSchedule::new`].
    pub fn build(&self) -> Result<NoiseSchedule, ScheduleError> {
        NoiseSchedule::new(self)
    }
}

/// Posterior q(x_{t−1} | x_t, x₀) coefficients between two noise levels (Ho et al. 2020, Eqs. 6–7).
///
/// With β'_t = 1 − ᾱ_t/ᾱ_prev (equal to β_t for consecutive steps; the general form also serves
/// strided sampling):
///
/// - μ̃ = coef1 · x₀ + coef2 · x_t, coef1 = √ᾱ_prev · β'_t / (1 − ᾱ_t),
///   coef2 = √(1 − β'_t) · (1 − ᾱ_prev) / (1 − ᾱ_t)
/// - β̃_t = (1 − ᾱ_prev) / (1 − ᾱ_t) · β'_t
///
/// This is the one place these formulas live; the tables of [`NoiseSchedule`] and the samplers
/// both call it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PosteriorCoefficients {
    /// Coefficient of x₀ in μ̃_t.
    pub mean_coef1: f64,
    /// Coefficient of x_t in μ̃_t.
    pub mean_coef2: f64,
    /// β̃_t, the posterior variance.
    pub variance: f64,
    /// β'_t = 1 − ᾱ_t/ᾱ_prev, the effective β of the (possibly strided) step.
    pub beta: f64,
}

impl PosteriorCoefficients {
    /// Coefficients for the step from ᾱ_t = `alpha_bar_t` back to ᾱ_prev = `alpha_bar_prev`,
    /// with β'_t = 1 − ᾱ_t/ᾱ_prev.
    pub fn new(alpha_bar_t: f64, alpha_bar_prev: f64) -> Self {
        Self::from_beta(
            1.0 - alpha_bar_t / alpha_bar_prev,
            alpha_bar_t,
            alpha_bar_prev,
        )
    }

    /// Coefficients from β'_t itself (for consecutive steps the schedule's β_t, which does not
    /// cancel at small t as 1 − ᾱ_t/ᾱ_{t−1} does, as in the original code).
    pub fn from_beta(beta: f64, alpha_bar_t: f64, alpha_bar_prev: f64) -> Self {
        let one_minus_ab = 1.0 - alpha_bar_t;
        Self {
            mean_coef1: alpha_bar_prev.sqrt() * beta / one_minus_ab,
            mean_coef2: (1.0 - beta).sqrt() * (1.0 - alpha_bar_prev) / one_minus_ab,
            variance: (1.0 - alpha_bar_prev) / one_minus_ab * beta,
            beta,
        }
    }
}

/// Everything one reverse step p_θ(x_prev | x_t) needs from the schedule, on the host: ᾱ_t, the
/// posterior coefficients, and the log variances of the fixed and learned-range choices
/// (Ho et al. 2020, Eq. 7 and §3.2; Nichol & Dhariwal 2021, Eq. 15). Built by
/// [`NoiseSchedule::reverse_step`]; `ddpm-forward`'s `p_mean_variance` reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReverseStepCoefficients {
    /// ᾱ_t.
    pub alpha_bar: f64,
    /// μ̃'s coefficients, β̃ and β' of the step.
    pub posterior: PosteriorCoefficients,
    /// log β̃: clipped (log β̃₂ at t = 1) for consecutive steps, log max(β̃', 10⁻²⁰) for
    /// strided ones (diffusers' clamp). σ² of `fixed_small`, lower end of `learned_range`.
    pub log_posterior_variance: f64,
    /// log σ² of `fixed_large`: log β_t (log β̃₂ at t = 1, the original code), log β' when
    /// strided.
    pub fixed_large_log_variance: f64,
    /// log β_t (log β' when strided): the upper end of `learned_range`.
    pub log_beta: f64,
    /// μ̃'s coefficients (of x₀, of x_t) of the training chain's own step t → t − 1, whatever
    /// the step's `prev`: how a mean prediction's output is read (`PredictionType::Mean`).
    pub one_step_mean_coefs: [f64; 2],
    /// Whether the step is the training chain's own step t → t − 1 (`prev` = t − 1, or the
    /// step to the data at t = 0).
    pub consecutive: bool,
}

/// β₁..β_T and every derived table, all `f64` (Ho et al. 2020, §2 and Eqs. 4, 6, 7).
///
/// Built once by [`NoiseSchedule::new`]; valid by construction (0 < β < 1, ᾱ strictly
/// decreasing). Table entry `i` is diffusers' timestep `i`, the paper's t = i + 1.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    config: NoiseScheduleConfig,
    betas: Vec<f64>,
    alphas: Vec<f64>,
    alpha_bar: Vec<f64>,
    alpha_bar_prev: Vec<f64>,
    sqrt_alpha_bar: Vec<f64>,
    sqrt_one_minus_alpha_bar: Vec<f64>,
    log_one_minus_alpha_bar: Vec<f64>,
    sqrt_recip_alpha_bar: Vec<f64>,
    sqrt_recipm1_alpha_bar: Vec<f64>,
    posterior_variance: Vec<f64>,
    posterior_log_variance_clipped: Vec<f64>,
    posterior_mean_coef1: Vec<f64>,
    posterior_mean_coef2: Vec<f64>,
    fixed_large_log_variance: Vec<f64>,
    snr: Vec<f64>,
}

/// ᾱ_T used when zero-terminal-SNR rescaling makes it exactly 0 (as diffusers, 2⁻²⁴), so that
/// 1/√ᾱ_T stays finite.
pub const ZERO_SNR_ALPHA_BAR_T: f64 = 1.0 / 16_777_216.0;

impl NoiseSchedule {
    /// Builds β from `config` and derives every table.
    ///
    /// NOTE: with `rescale_betas_zero_snr`, β_T = 1 and ᾱ_T = 0; like diffusers we store
    /// ᾱ_T = 2⁻²⁴ ([`ZERO_SNR_ALPHA_BAR_T`]) so the ε ↔ x₀ conversions stay finite.
    ///
    /// # Errors
    /// [`ScheduleError`] naming the field at fault: T = 0, a β ∉ (0, 1), a non-finite parameter,
    /// a custom list of the wrong length.
    pub fn new(config: &NoiseScheduleConfig) -> Result<Self, ScheduleError> {
        let mut betas = config.beta_schedule.betas(config.num_train_timesteps)?;
        if config.rescale_betas_zero_snr {
            if betas.len() < 2 {
                return Err(ScheduleError::InvalidParameter {
                    field: "num_train_timesteps",
                    value: betas.len() as f64,
                    expected: "T >= 2 with rescale_betas_zero_snr",
                });
            }
            betas = rescale_zero_terminal_snr(&betas);
            validate_betas(&betas[..betas.len() - 1])?;
        }
        Ok(Self::from_validated_betas(config.clone(), betas))
    }

    /// The paper's schedule (T = 1000, linear 1e-4..0.02).
    pub fn paper() -> Self {
        Self::new(&NoiseScheduleConfig::default()).expect("the paper's schedule is valid")
    }

    fn from_validated_betas(config: NoiseScheduleConfig, betas: Vec<f64>) -> Self {
        let t = betas.len();
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let mut alpha_bar = Vec::with_capacity(t);
        let mut acc = 1.0;
        for a in &alphas {
            acc *= a;
            alpha_bar.push(acc);
        }
        if config.rescale_betas_zero_snr {
            alpha_bar[t - 1] = ZERO_SNR_ALPHA_BAR_T;
        }
        let mut alpha_bar_prev = Vec::with_capacity(t);
        alpha_bar_prev.push(1.0);
        alpha_bar_prev.extend_from_slice(&alpha_bar[..t - 1]);

        let map = |f: &dyn Fn(f64) -> f64| alpha_bar.iter().map(|&a| f(a)).collect::<Vec<_>>();
        let sqrt_alpha_bar = map(&|a| a.sqrt());
        let sqrt_one_minus_alpha_bar = map(&|a| (1.0 - a).sqrt());
        let log_one_minus_alpha_bar = map(&|a| (1.0 - a).ln());
        let sqrt_recip_alpha_bar = map(&|a| (1.0 / a).sqrt());
        let sqrt_recipm1_alpha_bar = map(&|a| (1.0 / a - 1.0).sqrt());
        let snr = map(&|a| a / (1.0 - a));

        let mut posterior_variance = Vec::with_capacity(t);
        let mut posterior_mean_coef1 = Vec::with_capacity(t);
        let mut posterior_mean_coef2 = Vec::with_capacity(t);
        for i in 0..t {
            // Consecutive steps: from β_t itself (no cancellation at small t).
            let p = PosteriorCoefficients::from_beta(betas[i], alpha_bar[i], alpha_bar_prev[i]);
            posterior_variance.push(p.variance);
            posterior_mean_coef1.push(p.mean_coef1);
            posterior_mean_coef2.push(p.mean_coef2);
        }
        // log β̃ with the first entry (β̃₁ = 0) replaced by log β̃₂, as the original code does.
        // NOTE: with T = 1 there is no β̃₂; we use log β₁ (the fixed_large value) instead.
        let first = if t > 1 {
            posterior_variance[1].ln()
        } else {
            betas[0].ln()
        };
        let posterior_log_variance_clipped = std::iter::once(first)
            .chain(posterior_variance[1..].iter().map(|v| v.ln()))
            .collect();
        // fixed_large: log β_t, with log β̃₂ in place of log β₁ (original code).
        let fixed_large_log_variance = std::iter::once(first)
            .chain(betas[1..].iter().map(|b| b.ln()))
            .collect();

        Self {
            config,
            betas,
            alphas,
            alpha_bar,
            alpha_bar_prev,
            sqrt_alpha_bar,
            sqrt_one_minus_alpha_bar,
            log_one_minus_alpha_bar,
            sqrt_recip_alpha_bar,
            sqrt_recipm1_alpha_bar,
            posterior_variance,
            posterior_log_variance_clipped,
            posterior_mean_coef1,
            posterior_mean_coef2,
            fixed_large_log_variance,
            snr,
        }
    }

    /// The config this schedule was built from.
    pub fn config(&self) -> &NoiseScheduleConfig {
        &self.config
    }

    /// T, the number of diffusion steps.
    pub fn num_train_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// β_t.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// α_t = 1 − β_t.
    pub fn alphas(&self) -> &[f64] {
        &self.alphas
    }

    /// ᾱ_t = Π_{s ≤ t} α_s ("alpha bar"; DDIM calls this α_t).
    #[doc(alias = "alphas_cumprod")]
    pub fn alpha_bar(&self) -> &[f64] {
        &self.alpha_bar
    }

    /// ᾱ_{t−1}, with ᾱ₀ = 1.
    #[doc(alias = "alphas_cumprod_prev")]
    pub fn alpha_bar_prev(&self) -> &[f64] {
        &self.alpha_bar_prev
    }

    /// √ᾱ_t, the signal scale of q(x_t | x₀) (Eq. 4).
    #[doc(alias = "sqrt_alphas_cumprod")]
    pub fn sqrt_alpha_bar(&self) -> &[f64] {
        &self.sqrt_alpha_bar
    }

    /// √(1 − ᾱ_t), the noise scale of q(x_t | x₀) (Eq. 4).
    #[doc(alias = "sqrt_one_minus_alphas_cumprod")]
    pub fn sqrt_one_minus_alpha_bar(&self) -> &[f64] {
        &self.sqrt_one_minus_alpha_bar
    }

    /// log(1 − ᾱ_t).
    #[doc(alias = "log_one_minus_alphas_cumprod")]
    pub fn log_one_minus_alpha_bar(&self) -> &[f64] {
        &self.log_one_minus_alpha_bar
    }

    /// √(1/ᾱ_t): x₀ = √(1/ᾱ_t) · x_t − √(1/ᾱ_t − 1) · ε.
    #[doc(alias = "sqrt_recip_alphas_cumprod")]
    pub fn sqrt_recip_alpha_bar(&self) -> &[f64] {
        &self.sqrt_recip_alpha_bar
    }

    /// √(1/ᾱ_t − 1).
    #[doc(alias = "sqrt_recipm1_alphas_cumprod")]
    pub fn sqrt_recipm1_alpha_bar(&self) -> &[f64] {
        &self.sqrt_recipm1_alpha_bar
    }

    /// β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t (Eq. 7); β̃₁ = 0.
    pub fn posterior_variance(&self) -> &[f64] {
        &self.posterior_variance
    }

    /// log β̃_t with the first entry replaced by log β̃₂ (the original code's clipping).
    pub fn posterior_log_variance_clipped(&self) -> &[f64] {
        &self.posterior_log_variance_clipped
    }

    /// Coefficient of x₀ in μ̃_t (Eq. 7): √ᾱ_{t−1} β_t / (1 − ᾱ_t).
    pub fn posterior_mean_coef1(&self) -> &[f64] {
        &self.posterior_mean_coef1
    }

    /// Coefficient of x_t in μ̃_t (Eq. 7): √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t).
    pub fn posterior_mean_coef2(&self) -> &[f64] {
        &self.posterior_mean_coef2
    }

    /// log σ_t² for the `fixed_large` reverse variance: log β_t, except log β̃₂ at t = 1, as in
    /// the original code (Ho et al. 2020, §3.2: σ_t² = β_t).
    pub fn fixed_large_log_variance(&self) -> &[f64] {
        &self.fixed_large_log_variance
    }

    /// Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t).
    pub fn snr(&self) -> &[f64] {
        &self.snr
    }

    /// Every table with its diffusers / original-code name (`betas`, `alphas_cumprod`,
    /// `posterior_variance`, …, `snr`), in a fixed order: what `ddpm schedule` prints.
    pub fn named_tables(&self) -> [(&'static str, &[f64]); 14] {
        [
            ("betas", self.betas()),
            ("alphas", self.alphas()),
            ("alphas_cumprod", self.alpha_bar()),
            ("alphas_cumprod_prev", self.alpha_bar_prev()),
            ("sqrt_alphas_cumprod", self.sqrt_alpha_bar()),
            (
                "sqrt_one_minus_alphas_cumprod",
                self.sqrt_one_minus_alpha_bar(),
            ),
            (
                "log_one_minus_alphas_cumprod",
                self.log_one_minus_alpha_bar(),
            ),
            ("sqrt_recip_alphas_cumprod", self.sqrt_recip_alpha_bar()),
            ("sqrt_recipm1_alphas_cumprod", self.sqrt_recipm1_alpha_bar()),
            ("posterior_variance", self.posterior_variance()),
            (
                "posterior_log_variance_clipped",
                self.posterior_log_variance_clipped(),
            ),
            ("posterior_mean_coef1", self.posterior_mean_coef1()),
            ("posterior_mean_coef2", self.posterior_mean_coef2()),
            ("snr", self.snr()),
        ]
    }

    /// log-SNR, log(ᾱ_t / (1 − ᾱ_t)).
    pub fn log_snr(&self) -> Vec<f64> {
        self.snr.iter().map(|s| s.ln()).collect()
    }

    /// Posterior coefficients from timestep `t` back to timestep `prev` (0-based; `None` means
    /// the clean data, ᾱ = 1). For `prev = Some(t − 1)` these equal the tables above up to
    /// rounding; for strided sampling they give β recomputed over the skipped steps.
    ///
    /// # Panics
    /// If `t` or `prev` is ≥ T (a programmer error: timesteps come from validated lists).
    pub fn posterior_between(&self, t: usize, prev: Option<usize>) -> PosteriorCoefficients {
        let ab_prev = prev.map_or(1.0, |p| self.alpha_bar[p]);
        PosteriorCoefficients::new(self.alpha_bar[t], ab_prev)
    }

    /// μ̃_t's coefficients [c₁ of x₀, c₂ of x_t] of the training chain's step t → t − 1
    /// (0-based `t`; Eq. 7): how a mean prediction's output is read.
    ///
    /// # Panics
    /// If `t` ≥ T.
    pub fn posterior_mean_coefs(&self, t: usize) -> [f64; 2] {
        [self.posterior_mean_coef1[t], self.posterior_mean_coef2[t]]
    }

    /// The reverse step from timestep `t` to `prev` (0-based; `None`: to the data). A
    /// consecutive step (`prev = t − 1`, or t = 0 to the data) reads the tables above, so it
    /// equals what training and the likelihood use; a strided one recomputes β' over the
    /// skipped steps ([`NoiseSchedule::posterior_between`]).
    ///
    /// # Panics
    /// If `t` or `prev` is ≥ T (a programmer error: timesteps come from validated lists).
    pub fn reverse_step(&self, t: usize, prev: Option<usize>) -> ReverseStepCoefficients {
        let one_step_mean_coefs = self.posterior_mean_coefs(t);
        if prev == t.checked_sub(1) {
            let beta = self.betas[t];
            ReverseStepCoefficients {
                alpha_bar: self.alpha_bar[t],
                posterior: PosteriorCoefficients {
                    mean_coef1: self.posterior_mean_coef1[t],
                    mean_coef2: self.posterior_mean_coef2[t],
                    variance: self.posterior_variance[t],
                    beta,
                },
                log_posterior_variance: self.posterior_log_variance_clipped[t],
                fixed_large_log_variance: self.fixed_large_log_variance[t],
                log_beta: beta.ln(),
                one_step_mean_coefs,
                consecutive: true,
            }
        } else {
            let posterior = self.posterior_between(t, prev);
            ReverseStepCoefficients {
                alpha_bar: self.alpha_bar[t],
                posterior,
                // diffusers clamps at 1e-20 (β̃' = 0 only for a step to the data).
                log_posterior_variance: posterior.variance.max(1e-20).ln(),
                fixed_large_log_variance: posterior.beta.ln(),
                log_beta: posterior.beta.ln(),
                one_step_mean_coefs,
                consecutive: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presets() -> Vec<BetaSchedule> {
        vec![
            BetaSchedule::linear(),
            BetaSchedule::ScaledLinear {
                beta_start: 0.00085,
                beta_end: 0.012,
            },
            BetaSchedule::cosine(),
            BetaSchedule::Sigmoid {
                beta_start: 1e-4,
                beta_end: 0.02,
            },
        ]
    }

    #[test]
    fn invariants_hold_for_every_preset_and_length() {
        for schedule in presets() {
            for t in [1, 2, 10, 1000] {
                let s = NoiseSchedule::new(&NoiseScheduleConfig::new(t, schedule.clone())).unwrap();
                let ctx = format!("{schedule:?} T={t}");
                assert!(s.betas().iter().all(|&b| b > 0.0 && b < 1.0), "{ctx}");
                assert!(
                    s.alpha_bar().windows(2).all(|w| w[1] < w[0]),
                    "ᾱ not strictly decreasing: {ctx}"
                );
                for table in [
                    s.posterior_variance(),
                    s.posterior_log_variance_clipped(),
                    s.posterior_mean_coef1(),
                    s.posterior_mean_coef2(),
                    s.sqrt_recipm1_alpha_bar(),
                    s.fixed_large_log_variance(),
                    s.log_one_minus_alpha_bar(),
                ] {
                    assert!(table.iter().all(|v| v.is_finite()), "non-finite: {ctx}");
                }
            }
        }
    }

    #[test]
    fn strided_posterior_matches_tables_for_consecutive_steps() {
        let s = NoiseSchedule::paper();
        for t in [1usize, 10, 500, 999] {
            let p = s.posterior_between(t, Some(t - 1));
            assert!((p.variance - s.posterior_variance()[t]).abs() < 1e-12);
            assert!((p.mean_coef1 - s.posterior_mean_coef1()[t]).abs() < 1e-9);
            assert!((p.mean_coef2 - s.posterior_mean_coef2()[t]).abs() < 1e-9);
        }
        let p = s.posterior_between(0, None);
        assert_eq!(p.variance, 0.0);
        // reverse_step: tables for consecutive steps (t = 0 to the data included), β' else.
        let r = s.reverse_step(500, Some(499));
        assert_eq!(r.posterior.mean_coef1, s.posterior_mean_coef1()[500]);
        assert_eq!(
            r.log_posterior_variance,
            s.posterior_log_variance_clipped()[500]
        );
        assert_eq!(r.fixed_large_log_variance, s.betas()[500].ln());
        let r = s.reverse_step(0, None);
        assert_eq!(r.log_posterior_variance, s.posterior_variance()[1].ln());
        let r = s.reverse_step(600, Some(10));
        let beta = 1.0 - s.alpha_bar()[600] / s.alpha_bar()[10];
        assert!((r.log_beta - beta.ln()).abs() < 1e-12);
        assert_eq!(r.fixed_large_log_variance, r.log_beta);
        // A strided step still carries the training chain's own μ̃ coefficients at t.
        assert!(!r.consecutive);
        assert_eq!(
            r.one_step_mean_coefs,
            [s.posterior_mean_coef1()[600], s.posterior_mean_coef2()[600]]
        );
        assert_ne!(r.posterior.mean_coef1, r.one_step_mean_coefs[0]);
        let r = s.reverse_step(0, None);
        assert!(r.consecutive);
        assert!((r.one_step_mean_coefs[0] - 1.0).abs() < 1e-12);
        assert_eq!(r.one_step_mean_coefs[1], 0.0);
    }

    #[test]
    fn zero_terminal_snr() {
        let cfg = NoiseScheduleConfig {
            rescale_betas_zero_snr: true,
            ..Default::default()
        };
        let s = cfg.build().unwrap();
        assert_eq!(s.alpha_bar()[999], ZERO_SNR_ALPHA_BAR_T);
        assert!(s.sqrt_recip_alpha_bar()[999].is_finite());
        assert!(s.snr()[999] < 1e-7);
    }
}
