//! DPM-Solver++(2M): the multistep second-order solver of the diffusion ODE in data
//! (x̂₀) prediction, Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models" (arXiv:2211.01095v2, Algorithm 2), for 10–25-step sampling.
//!
//! With α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), λ_t = log(α_t/σ_t) and h = λ_t − λ_s:
//! - first order (= DDIM, η = 0): x_t = (σ_t/σ_s) · x_s − α_t (e^{−h} − 1) · x̂₀(s)
//! - 2M: D = x̂₀(s) + (1/(2r)) (x̂₀(s) − x̂₀(s′)), r = h_prev/h, in place of x̂₀(s)
//!   (the midpoint rule; `heun` uses diffusers' variant)
//!
//! The first step is first order (no history) and so is the last, which goes to σ = 0
//! (x₀ = x̂₀; diffusers' `final_sigmas_type = "zero"`).
//!
//! NOTE: diffusers' `linspace` spacing for this solver is `linspace(0, T − 1, n + 1)` without
//! its last point; our default `trailing` gives nearly the same list (999, 949, …, 49 for
//! n = 20 vs diffusers' …, 50).

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};
use ddpm_forward::NoiseLevel;
use ddpm_schedule::{NoiseSchedule, PredictionType, SolverType, TimestepSpacing, custom_timesteps};

use crate::sampler::{check_shapes, select_timesteps, step_index};
use crate::{Sampler, SamplerError, StepOutput, X0ProcessingConfig};

/// Settings of [`DpmSolver`]; defaults are diffusers' `DPMSolverMultistepScheduler` with
/// `algorithm_type = "dpmsolver++"`, `solver_order = 2`.
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
    /// How the steps are picked (see the module note).
    #[config(default = "TimestepSpacing::Trailing")]
    pub timestep_spacing: TimestepSpacing,
    /// Offset added to `leading` timesteps.
    #[config(default = 0)]
    pub steps_offset: usize,
    /// 1 (DDIM-equivalent) or 2 (2M).
    #[config(default = 2)]
    pub solver_order: usize,
    /// The second-order rule (midpoint, as Lu et al. and diffusers' default).
    #[config(default = "SolverType::Midpoint")]
    pub solver_type: SolverType,
}

#[derive(Debug, Clone, Copy)]
struct Level {
    alpha: f64,
    sigma: f64,
    lambda: f64,
}

impl Level {
    fn new(alpha_bar: f64) -> Self {
        let (alpha, sigma) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        Self {
            alpha,
            sigma,
            lambda: alpha.ln() - sigma.ln(),
        }
    }
}

/// DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2). Keeps the previous x̂₀ between steps;
/// [`Sampler::reset`] (or stepping the first timestep) clears it.
#[derive(Debug, Clone)]
#[doc(alias = "DPMSolverMultistepScheduler")]
pub struct DpmSolver<B: Backend> {
    config: DpmSolverConfig,
    timesteps: Vec<usize>,
    alpha_bars: Vec<f64>,
    levels: Vec<Level>,
    /// (step index, x̂₀) of the last step.
    previous: Option<(usize, Tensor<B, 4>)>,
}

impl DpmSolverConfig {
    /// Builds the solver for `schedule`.
    ///
    /// # Errors
    /// [`SamplerError::InvalidParameter`] for an order other than 1 or 2 or bad x̂₀
    /// processing; [`SamplerError::Schedule`] for 0 or more than T steps.
    pub fn init<B: Backend>(&self, schedule: &NoiseSchedule) -> Result<DpmSolver<B>, SamplerError> {
        let ts = select_timesteps(
            schedule,
            Some(self.num_inference_steps),
            self.timestep_spacing,
            self.steps_offset,
        )?;
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
        let alpha_bars: Vec<f64> = timesteps.iter().map(|&t| schedule.alpha_bar()[t]).collect();
        let levels = alpha_bars.iter().map(|&a| Level::new(a)).collect();
        Ok(Self {
            config,
            timesteps,
            alpha_bars,
            levels,
            previous: None,
        })
    }

    /// The settings this solver was built with.
    pub fn config(&self) -> &DpmSolverConfig {
        &self.config
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

    /// One multistep update; second order when the previous step of the list was just taken
    /// and this is not the last step, else first order. `noise` is ignored.
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
        let level = NoiseLevel::<B, 4>::from_alpha_bar(self.alpha_bars[i]);
        let x_0 = self.config.x0_processing.apply(level.x0_from_prediction(
            self.config.prediction_type,
            x_t.clone(),
            model_output,
        ));
        let previous = self.previous.replace((i, x_0.clone()));
        let Some(&target) = self.levels.get(i + 1) else {
            // Last step, to σ = 0, λ = ∞: the first-order update's limit is x̂₀ itself.
            return StepOutput {
                prev_sample: x_0.clone(),
                pred_x0: x_0,
            };
        };
        let source = self.levels[i];
        let h = target.lambda - source.lambda;
        // α_t (e^{−h} − 1), with expm1 for accuracy at small h.
        let phi = target.alpha * (-h).exp_m1();
        let x_scaled = x_t.mul_scalar(target.sigma / source.sigma);
        let second_order = match previous {
            Some((j, x_0_prev)) if self.config.solver_order == 2 && j + 1 == i => {
                let h_prev = source.lambda - self.levels[j].lambda;
                Some((x_0.clone() - x_0_prev).mul_scalar(h / h_prev))
            }
            _ => None,
        };
        let prev_sample = match (second_order, self.config.solver_type) {
            (None, _) => x_scaled - x_0.clone().mul_scalar(phi),
            // D1 = (x̂₀ − x̂₀′)/r0; x_t = … − φ x̂₀ − ½ φ D1
            (Some(d1), SolverType::Midpoint) => {
                x_scaled - x_0.clone().mul_scalar(phi) - d1.mul_scalar(0.5 * phi)
            }
            // x_t = … − φ x̂₀ + α_t ((e^{−h} − 1)/h + 1) D1
            (Some(d1), SolverType::Heun) => {
                x_scaled - x_0.clone().mul_scalar(phi)
                    + d1.mul_scalar(target.alpha * ((-h).exp_m1() / h + 1.0))
            }
        };
        StepOutput {
            prev_sample,
            pred_x0: x_0,
        }
    }
}
