//! DPM-Solver++: the multistep solver of the diffusion ODE in data (x̂₀) prediction, first or
//! second order (2M), Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models" (arXiv:2211.01095v2, Algorithm 2), for 10–25-step sampling; step for
//! step diffusers' `DPMSolverMultistepScheduler` with `algorithm_type = "dpmsolver++"`.
//!
//! With α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), λ_t = log(α_t/σ_t) and h = λ_t − λ_s:
//! - first order (= DDIM, η = 0): x_t = (σ_t/σ_s) · x_s − α_t (e^{−h} − 1) · x̂₀(s)
//! - 2M, midpoint (Algorithm 2): x_t = … − α_t (e^{−h} − 1) · (x̂₀(s) + ½ D₁),
//!   D₁ = (x̂₀(s) − x̂₀(s′)) / r, r = h_prev/h
//! - 2M, heun (diffusers' variant): x_t = … − α_t (e^{−h} − 1) · x̂₀(s)
//!   + α_t ((e^{−h} − 1)/h + 1) · D₁
//!
//! The first step is first order (no history). The last step goes to σ = 0 (x₀ = x̂₀;
//! diffusers' `final_sigmas_type = "zero"`, the default) or to ᾱ₀, timestep 0's level
//! (`"sigma_min"`); it is first order when `final_sigmas_type` is zero, with
//! `euler_at_final`, or with `lower_order_final` and fewer than 15 steps (diffusers' rule).
//!
//! Timesteps ([`DpmSolverTimesteps`]): by default diffusers' construction for this scheduler,
//! which differs from DDPM/DDIM's for `linspace` (n + 1 points, last dropped) and `leading`
//! (step ratio T // (n + 1)), and honours `lambda_min_clipped`; the DDPM/DDIM lists
//! ([`ddpm_schedule::inference_timesteps`]) are available explicitly.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};
use ddpm_forward::NoiseLevel;
use ddpm_schedule::{
    FinalSigmasType, NoiseSchedule, PredictionType, SolverType, TimestepSpacing, custom_timesteps,
    dpm_solver_timesteps,
};
use serde::{Deserialize, Serialize};

use crate::sampler::{check_shapes, select_timesteps, step_index};
use crate::{Sampler, SamplerError, StepOutput, X0ProcessingConfig};

/// How [`DpmSolver`] picks its timesteps from `num_inference_steps`, the spacing and
/// `steps_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DpmSolverTimesteps {
    /// diffusers' `DPMSolverMultistepScheduler.set_timesteps`
    /// ([`ddpm_schedule::dpm_solver_timesteps`]): `linspace` is round(linspace(0, T′ − 1,
    /// n + 1)) reversed without its last point, `leading` uses the step ratio T′ // (n + 1),
    /// T′ = T minus the timesteps whose λ is below `lambda_min_clipped`.
    #[default]
    Diffusers,
    /// The DDPM/DDIM lists ([`ddpm_schedule::inference_timesteps`]), as this crate did before
    /// following diffusers; `trailing` gives the same list either way.
    InferenceTimesteps,
}

/// Settings of [`DpmSolver`]; defaults are diffusers' `DPMSolverMultistepScheduler` with
/// `algorithm_type = "dpmsolver++"`, `solver_order = 2`, except the spacing (see
/// `timestep_spacing`).
#[derive(Config, Debug)]
#[doc(alias = "DPMSolverMultistepScheduler")]
pub struct DpmSolverConfig {
    /// What the model predicts (ε).
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// x̂₀ processing (diffusers: none; dynamic thresholding helps guided sampling).
    #[config(default = "X0ProcessingConfig::none()")]
    pub x0_processing: X0ProcessingConfig,
    /// Number of steps (10–25 is the solver's range).
    #[config(default = 20)]
    pub num_inference_steps: usize,
    /// How the steps are picked. NOTE: trailing (999, 949, …, 49 for n = 20), where diffusers'
    /// class default is linspace (…, 50): trailing starts at T − 1 and is the same list under
    /// both [`DpmSolverTimesteps`] rules. A diffusers config's own spacing is used by
    /// [`crate::sampler_from_config`].
    #[config(default = "TimestepSpacing::Trailing")]
    pub timestep_spacing: TimestepSpacing,
    /// Offset added to `leading` timesteps.
    #[config(default = 0)]
    pub steps_offset: usize,
    /// Which timestep construction (diffusers' for this scheduler, or the DDPM/DDIM lists).
    #[config(default = "DpmSolverTimesteps::Diffusers")]
    pub timestep_rule: DpmSolverTimesteps,
    /// 1 (DDIM-equivalent) or 2 (2M).
    #[config(default = 2)]
    pub solver_order: usize,
    /// The second-order rule (midpoint, as Lu et al. and diffusers' default).
    #[config(default = "SolverType::Midpoint")]
    pub solver_type: SolverType,
    /// First order at the last step when there are fewer than 15 steps (diffusers: true).
    #[config(default = true)]
    pub lower_order_final: bool,
    /// First order at the last step, always (diffusers: false).
    #[config(default = false)]
    pub euler_at_final: bool,
    /// Where the last step lands: σ = 0 (x̂₀; diffusers' default) or ᾱ₀'s level.
    #[config(default = "FinalSigmasType::Zero")]
    pub final_sigmas_type: FinalSigmasType,
    /// Skip the timesteps whose λ_t = log(α_t/σ_t) is below this (diffusers'
    /// `lambda_min_clipped`; −5.1 helps the cosine schedule). `None`: no clipping. Applies to
    /// [`DpmSolverTimesteps::Diffusers`] only.
    pub lambda_min_clipped: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Level {
    alpha_bar: f64,
    alpha: f64,
    sigma: f64,
    lambda: f64,
    /// μ̃'s coefficients of the training chain's step from this level (a mean prediction's
    /// reading).
    posterior_mean: [f64; 2],
}

impl Level {
    /// The level of training timestep `t`.
    fn at_timestep(schedule: &NoiseSchedule, t: usize) -> Self {
        let alpha_bar = schedule.alpha_bar()[t];
        let (alpha, sigma) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        Self {
            alpha_bar,
            alpha,
            sigma,
            lambda: alpha.ln() - sigma.ln(),
            posterior_mean: schedule.posterior_mean_coefs(t),
        }
    }
}

/// DPM-Solver++ (Lu et al. 2022, Algorithm 2), first order or 2M. Keeps the previous x̂₀
/// between steps; [`Sampler::reset`] (or stepping the first timestep) clears it.
#[derive(Debug, Clone)]
#[doc(alias = "DPMSolverMultistepScheduler")]
pub struct DpmSolver<B: Backend> {
    config: DpmSolverConfig,
    timesteps: Vec<usize>,
    levels: Vec<Level>,
    /// The level after the last step: `None` for σ = 0, ᾱ₀'s for `sigma_min`.
    final_level: Option<Level>,
    /// (step index, x̂₀) of the last step.
    previous: Option<(usize, Tensor<B, 4>)>,
}

impl DpmSolverConfig {
    /// Builds the solver for `schedule`.
    ///
    /// # Errors
    /// [`SamplerError::InvalidParameter`] for an order other than 1 or 2, bad x̂₀ processing,
    /// or `lambda_min_clipped` with [`DpmSolverTimesteps::InferenceTimesteps`];
    /// [`SamplerError::Schedule`] for 0 or more than T steps, or a list that is not strictly
    /// decreasing (`leading` with n + 1 > T′).
    pub fn init<B: Backend>(&self, schedule: &NoiseSchedule) -> Result<DpmSolver<B>, SamplerError> {
        let n = self.num_inference_steps;
        let ts = match self.timestep_rule {
            DpmSolverTimesteps::Diffusers => dpm_solver_timesteps(
                schedule,
                n,
                self.timestep_spacing,
                self.steps_offset,
                self.lambda_min_clipped,
            )?,
            DpmSolverTimesteps::InferenceTimesteps => {
                if let Some(value) = self.lambda_min_clipped {
                    return Err(SamplerError::InvalidParameter {
                        field: "lambda_min_clipped",
                        value,
                        expected: "none with the inference-timesteps rule (clipping is part of \
                                   diffusers' DPM-Solver timesteps)",
                    });
                }
                select_timesteps(schedule, Some(n), self.timestep_spacing, self.steps_offset)?
            }
        };
        DpmSolver::new(schedule, self.clone(), ts)
    }

    /// Builds the solver over a custom, strictly decreasing list of 0-based timesteps.
    ///
    /// # Errors
    /// As [`DpmSolverConfig::init`], plus an empty, unsorted or out-of-range list.
    pub fn init_with_timesteps<B: Backend>(
        &self,
        schedule: &NoiseSchedule,
        timesteps: &[i64],
    ) -> Result<DpmSolver<B>, SamplerError> {
        let ts = custom_timesteps(timesteps, schedule.num_train_timesteps())?;
        DpmSolver::new(schedule, self.clone(), ts)
    }
}

impl<B: Backend> DpmSolver<B> {
    fn new(
        schedule: &NoiseSchedule,
        config: DpmSolverConfig,
        timesteps: Vec<usize>,
    ) -> Result<Self, SamplerError> {
        if !(1..=2).contains(&config.solver_order) {
            return Err(SamplerError::InvalidParameter {
                field: "solver_order",
                value: config.solver_order as f64,
                expected: "1 or 2",
            });
        }
        config.x0_processing.validate()?;
        let levels = timesteps
            .iter()
            .map(|&t| Level::at_timestep(schedule, t))
            .collect();
        let final_level = match config.final_sigmas_type {
            FinalSigmasType::Zero => None,
            FinalSigmasType::SigmaMin => Some(Level::at_timestep(schedule, 0)),
        };
        Ok(Self {
            config,
            timesteps,
            levels,
            final_level,
            previous: None,
        })
    }

    /// The settings this solver was built with.
    pub fn config(&self) -> &DpmSolverConfig {
        &self.config
    }

    /// Whether step `i` (0-based) is first order: order 1, no previous step, or the last step
    /// under diffusers' rule (σ = 0 at the end, `euler_at_final`, or `lower_order_final` with
    /// fewer than 15 steps).
    fn first_order(&self, i: usize, has_previous: bool) -> bool {
        let n = self.timesteps.len();
        let c = &self.config;
        let lower_order_final = i + 1 == n
            && (c.euler_at_final
                || (c.lower_order_final && n < 15)
                || c.final_sigmas_type == FinalSigmasType::Zero);
        c.solver_order == 1 || !has_previous || lower_order_final
    }
}

impl<B: Backend> Sampler<B> for DpmSolver<B> {
    fn name(&self) -> &'static str {
        "DPM-Solver++"
    }

    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn needs_noise(&self, t: usize) -> bool {
        step_index(&self.timesteps, t, "DPM-Solver++");
        false
    }

    fn reset(&mut self) {
        self.previous = None;
    }

    /// One multistep update: second order when the previous step of the list was just taken
    /// and [`DpmSolverConfig`]'s last-step rule allows, else first order. `noise` is ignored.
    ///
    /// # Panics
    /// As [`Sampler::step`]: unknown `t`, mismatched shapes.
    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        t: usize,
        x_t: Tensor<B, 4>,
        _noise: Option<Tensor<B, 4>>,
    ) -> StepOutput<B> {
        check_shapes(&model_output, &x_t, None, 1);
        let i = step_index(&self.timesteps, t, "DPM-Solver++");
        if i == 0 {
            self.previous = None;
        }
        let source = self.levels[i];
        let level = NoiseLevel::<B, 4>::from_alpha_bar(source.alpha_bar)
            .with_posterior_mean(source.posterior_mean);
        let x_0 = self.config.x0_processing.apply(level.x0_from_prediction(
            self.config.prediction_type,
            x_t.clone(),
            model_output,
        ));
        let previous = self.previous.replace((i, x_0.clone()));
        let Some(target) = self.levels.get(i + 1).copied().or(self.final_level) else {
            // Last step, to σ = 0, λ = ∞: the first-order update's limit is x̂₀ itself.
            return StepOutput {
                prev_sample: x_0.clone(),
                pred_x0: x_0,
            };
        };
        let h = target.lambda - source.lambda;
        // α_t (e^{−h} − 1), with expm1 for accuracy at small h.
        let phi = target.alpha * (-h).exp_m1();
        let x_scaled = x_t.mul_scalar(target.sigma / source.sigma);
        let previous = previous.filter(|(j, _)| j + 1 == i);
        let first_order = self.first_order(i, previous.is_some());
        let prev_sample = match previous {
            Some((j, x_0_prev)) if !first_order => {
                let h_prev = source.lambda - self.levels[j].lambda;
                // D₁ = (x̂₀ − x̂₀′) / r, r = h_prev / h.
                let d1 = (x_0.clone() - x_0_prev).mul_scalar(h / h_prev);
                let d1_coef = match self.config.solver_type {
                    SolverType::Midpoint => -0.5 * phi,
                    SolverType::Heun => target.alpha * ((-h).exp_m1() / h + 1.0),
                };
                x_scaled - x_0.clone().mul_scalar(phi) + d1.mul_scalar(d1_coef)
            }
            _ => x_scaled - x_0.clone().mul_scalar(phi),
        };
        StepOutput {
            prev_sample,
            pred_x0: x_0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn diffusers_and_inference_timestep_rules() {
        let schedule = NoiseSchedule::paper();
        let config = DpmSolverConfig::new()
            .with_num_inference_steps(5)
            .with_timestep_spacing(TimestepSpacing::Linspace);
        let diffusers = config.init::<B>(&schedule).unwrap();
        assert_eq!(diffusers.timesteps, [999, 799, 599, 400, 200]);
        let ours = config
            .clone()
            .with_timestep_rule(DpmSolverTimesteps::InferenceTimesteps)
            .init::<B>(&schedule)
            .unwrap();
        assert_eq!(ours.timesteps, [999, 749, 500, 250, 0]);
        let e = config
            .with_timestep_rule(DpmSolverTimesteps::InferenceTimesteps)
            .with_lambda_min_clipped(Some(-5.1))
            .init::<B>(&schedule)
            .unwrap_err();
        assert!(e.to_string().contains("lambda_min_clipped"), "{e}");
    }

    #[test]
    fn last_step_order_follows_diffusers() {
        let schedule = NoiseSchedule::paper();
        let build = |n, lower_order_final, euler_at_final, final_sigmas_type| {
            DpmSolverConfig::new()
                .with_num_inference_steps(n)
                .with_lower_order_final(lower_order_final)
                .with_euler_at_final(euler_at_final)
                .with_final_sigmas_type(final_sigmas_type)
                .init::<B>(&schedule)
                .unwrap()
        };
        use FinalSigmasType::{SigmaMin, Zero};
        for (n, lof, euler, fin, last_first_order) in [
            (6, true, false, Zero, true),
            (6, false, false, Zero, true),
            (6, true, false, SigmaMin, true),
            (6, false, false, SigmaMin, false),
            (6, false, true, SigmaMin, true),
            (20, true, false, SigmaMin, false),
        ] {
            let s = build(n, lof, euler, fin);
            assert_eq!(
                s.first_order(n - 1, true),
                last_first_order,
                "{n} {lof} {euler} {fin:?}"
            );
            assert!(!s.first_order(n - 2, true));
            assert!(s.first_order(1, false));
        }
    }

    #[test]
    fn bad_order_is_rejected() {
        let e = DpmSolverConfig::new()
            .with_solver_order(3)
            .init::<B>(&NoiseSchedule::paper())
            .unwrap_err();
        assert!(e.to_string().contains("solver_order is 3"), "{e}");
    }
}
