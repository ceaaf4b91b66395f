//! Which timesteps a sampler visits when it uses fewer steps than training did.
//!
//! The spacings are diffusers' (`timestep_spacing` in `scheduler_config.json`; Lin et al. 2023,
//! Table 2, compares them). Timesteps are 0-based like the tables of [`crate::NoiseSchedule`].

use serde::{Deserialize, Serialize};

use crate::{NoiseSchedule, ScheduleError, beta_schedule::linspace};

/// How `num_inference_steps` timesteps are picked out of 0..T.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `k · (T // n) + steps_offset` for k = n−1..0 (DDIM paper; diffusers' default).
    #[default]
    Leading,
    /// round(linspace(0, T − 1, n)), reversed; ignores `steps_offset`.
    Linspace,
    /// round(T − k · T/n) − 1 for k = 0..n−1: always starts at T − 1; ignores `steps_offset`.
    Trailing,
}

impl TimestepSpacing {
    /// diffusers' name: `"leading"`, `"linspace"` or `"trailing"`.
    pub fn diffusers_name(self) -> &'static str {
        match self {
            Self::Leading => "leading",
            Self::Linspace => "linspace",
            Self::Trailing => "trailing",
        }
    }
}

impl std::str::FromStr for TimestepSpacing {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "leading" => Ok(Self::Leading),
            "linspace" => Ok(Self::Linspace),
            "trailing" => Ok(Self::Trailing),
            other => Err(ScheduleError::UnknownValue {
                field: "timestep_spacing",
                value: other.to_string(),
                expected: "leading, linspace, trailing",
            }),
        }
    }
}

/// The timesteps (strictly decreasing, 0-based) a sampler visits with `num_inference_steps`
/// steps out of `num_train_timesteps`, as diffusers' `set_timesteps` computes them.
///
/// numpy rounds half to even, so this uses [`f64::round_ties_even`].
///
/// NOTE: diffusers' `trailing` builds the list with `np.arange(T, 0, -T/n)`, which for some n
/// (e.g. T = 1000, n = 61) yields n + 1 entries ending in −1 through floating-point rounding of
/// the length. We compute exactly n entries; where diffusers' list is well formed the two agree.
///
/// # Errors
/// [`ScheduleError::InvalidInferenceSteps`] unless 1 ≤ n ≤ T;
/// [`ScheduleError::TimestepOutOfRange`] when `steps_offset` pushes a `leading` timestep to ≥ T.
pub fn inference_timesteps(
    num_train_timesteps: usize,
    num_inference_steps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
) -> Result<Vec<usize>, ScheduleError> {
    let (t_total, n) = (num_train_timesteps, num_inference_steps);
    if n == 0 || n > t_total {
        return Err(ScheduleError::InvalidInferenceSteps {
            num_inference_steps: n,
            num_train_timesteps: t_total,
        });
    }
    let steps: Vec<i64> = match spacing {
        TimestepSpacing::Leading => {
            let ratio = (t_total / n) as i64;
            (0..n as i64)
                .rev()
                .map(|k| k * ratio + steps_offset as i64)
                .collect()
        }
        TimestepSpacing::Linspace => linspace(0.0, (t_total - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|v| v.round_ties_even() as i64)
            .collect(),
        TimestepSpacing::Trailing => {
            let step = -(t_total as f64) / n as f64;
            (0..n)
                .map(|k| (t_total as f64 + k as f64 * step).round_ties_even() as i64 - 1)
                .collect()
        }
    };
    validate_timesteps(&steps, t_total)
}

/// The timesteps diffusers' `DPMSolverMultistepScheduler.set_timesteps(n)` visits (strictly
/// decreasing, 0-based), which differ from [`inference_timesteps`] for `linspace` and
/// `leading`:
///
/// - T′ = T minus the number of timesteps whose λ_t = log(√ᾱ_t/√(1 − ᾱ_t)) is below
///   `lambda_min_clipped` (diffusers' `lambda_min_clipped`; `None`: T′ = T);
/// - `linspace`: round(linspace(0, T′ − 1, n + 1)) reversed, without its last point (0);
/// - `leading`: k · (T′ // (n + 1)) + `steps_offset` for k = n..1;
/// - `trailing`: round(T′ − k · T/n) − 1 for k = 0, 1, … while T′ − k · T/n > 0 (numpy's
///   `arange(T′, 0, −T/n)`), so n entries when T′ = T.
///
/// NOTE: where numpy's `arange` length rounds up to an entry that rounds to −1 (the
/// `trailing` corner case of [`inference_timesteps`]), that entry is dropped.
///
/// # Errors
/// [`ScheduleError::InvalidInferenceSteps`] unless 1 ≤ n ≤ T;
/// [`ScheduleError::InvalidParameter`] for a NaN `lambda_min_clipped` or one that clips every
/// timestep; [`ScheduleError::TimestepOutOfRange`] / [`ScheduleError::TimestepsNotDecreasing`]
/// for a list diffusers would also get wrong (a `steps_offset` past T − 1, `leading` with
/// n + 1 > T′).
pub fn dpm_solver_timesteps(
    schedule: &NoiseSchedule,
    num_inference_steps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    lambda_min_clipped: Option<f64>,
) -> Result<Vec<usize>, ScheduleError> {
    let (t_total, n) = (schedule.num_train_timesteps(), num_inference_steps);
    if n == 0 || n > t_total {
        return Err(ScheduleError::InvalidInferenceSteps {
            num_inference_steps: n,
            num_train_timesteps: t_total,
        });
    }
    let clipped = match lambda_min_clipped {
        None => 0,
        Some(l) if l.is_nan() => {
            return Err(ScheduleError::InvalidParameter {
                field: "lambda_min_clipped",
                value: l,
                expected: "a number (or -Infinity for no clipping)",
            });
        }
        // λ decreases with t: the clipped timesteps are the last ones.
        Some(l) => schedule
            .alpha_bar()
            .iter()
            .filter(|&&ab| 0.5 * (ab / (1.0 - ab)).ln() < l)
            .count(),
    };
    let last = t_total - clipped;
    if last == 0 {
        return Err(ScheduleError::InvalidParameter {
            field: "lambda_min_clipped",
            value: lambda_min_clipped.unwrap_or(f64::NAN),
            expected: "a value that leaves at least one timestep",
        });
    }
    let steps: Vec<i64> = match spacing {
        TimestepSpacing::Linspace => linspace(0.0, (last - 1) as f64, n + 1)
            .into_iter()
            .rev()
            .take(n)
            .map(|v| v.round_ties_even() as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (last / (n + 1)) as i64;
            (1..=n as i64)
                .rev()
                .map(|k| k * ratio + steps_offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let step = t_total as f64 / n as f64;
            let len = (last as f64 / step).ceil() as usize;
            (0..len)
                .map(|k| (last as f64 - k as f64 * step).round_ties_even() as i64 - 1)
                .filter(|&t| t >= 0)
                .collect()
        }
    };
    validate_timesteps(&steps, t_total)
}

/// Validates a user-supplied timestep list: non-empty, strictly decreasing, each in 0..T.
///
/// # Errors
/// [`ScheduleError::EmptyTimesteps`], [`ScheduleError::TimestepsNotDecreasing`] or
/// [`ScheduleError::TimestepOutOfRange`], naming the position at fault.
pub fn custom_timesteps(
    timesteps: &[i64],
    num_train_timesteps: usize,
) -> Result<Vec<usize>, ScheduleError> {
    validate_timesteps(timesteps, num_train_timesteps)
}

fn validate_timesteps(steps: &[i64], t_total: usize) -> Result<Vec<usize>, ScheduleError> {
    if steps.is_empty() {
        return Err(ScheduleError::EmptyTimesteps);
    }
    for (position, &timestep) in steps.iter().enumerate() {
        if timestep < 0 || timestep >= t_total as i64 {
            return Err(ScheduleError::TimestepOutOfRange {
                position,
                timestep,
                num_train_timesteps: t_total,
            });
        }
        if position > 0 && timestep >= steps[position - 1] {
            return Err(ScheduleError::TimestepsNotDecreasing {
                position,
                previous: steps[position - 1],
                timestep,
            });
        }
    }
    Ok(steps.iter().map(|&t| t as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_has_exactly_n_entries_where_numpy_adds_one() {
        let ts = inference_timesteps(1000, 61, TimestepSpacing::Trailing, 0).unwrap();
        assert_eq!(ts.len(), 61);
        assert_eq!(ts[0], 999);
        assert!(*ts.last().unwrap() < 1000 / 61);
    }

    #[test]
    fn full_length_is_every_step() {
        for spacing in [
            TimestepSpacing::Leading,
            TimestepSpacing::Linspace,
            TimestepSpacing::Trailing,
        ] {
            let ts = inference_timesteps(1000, 1000, spacing, 0).unwrap();
            assert_eq!(ts, (0..1000).rev().collect::<Vec<_>>(), "{spacing:?}");
        }
    }

    #[test]
    fn dpm_solver_timesteps_follow_diffusers() {
        // diffusers 0.42.1, DPMSolverMultistepScheduler.set_timesteps (linear β, T = 1000).
        let s = NoiseSchedule::paper();
        let dpm = |n, spacing, offset| dpm_solver_timesteps(&s, n, spacing, offset, None).unwrap();
        assert_eq!(
            dpm(5, TimestepSpacing::Linspace, 0),
            [999, 799, 599, 400, 200]
        );
        assert_eq!(
            dpm(8, TimestepSpacing::Leading, 0),
            [888, 777, 666, 555, 444, 333, 222, 111]
        );
        assert_eq!(
            dpm(7, TimestepSpacing::Leading, 1),
            [876, 751, 626, 501, 376, 251, 126]
        );
        for n in [10, 61] {
            assert_eq!(
                dpm(n, TimestepSpacing::Trailing, 0),
                inference_timesteps(1000, n, TimestepSpacing::Trailing, 0).unwrap()
            );
        }
        // Cosine with lambda_min_clipped = −5.1 (T′ = 996).
        let cosine = crate::NoiseScheduleConfig::cosine(1000).build().unwrap();
        let clipped = |spacing| dpm_solver_timesteps(&cosine, 8, spacing, 0, Some(-5.1)).unwrap();
        assert_eq!(
            clipped(TimestepSpacing::Linspace),
            [995, 871, 746, 622, 498, 373, 249, 124]
        );
        assert_eq!(
            clipped(TimestepSpacing::Trailing),
            [995, 870, 745, 620, 495, 370, 245, 120]
        );
        let e = dpm_solver_timesteps(&s, 5, TimestepSpacing::Linspace, 0, Some(100.0)).unwrap_err();
        assert!(e.to_string().contains("lambda_min_clipped"), "{e}");
        assert!(dpm_solver_timesteps(&s, 5, TimestepSpacing::Linspace, 0, Some(f64::NAN)).is_err());
        assert!(dpm_solver_timesteps(&s, 0, TimestepSpacing::Linspace, 0, None).is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let e = inference_timesteps(1000, 1001, TimestepSpacing::Leading, 0).unwrap_err();
        assert!(e.to_string().contains("num_inference_steps is 1001"), "{e}");
        assert!(inference_timesteps(1000, 0, TimestepSpacing::Leading, 0).is_err());
        let e = inference_timesteps(1000, 10, TimestepSpacing::Leading, 100).unwrap_err();
        assert!(matches!(
            e,
            ScheduleError::TimestepOutOfRange {
                timestep: 1000,
                position: 0,
                ..
            }
        ));
        let e = custom_timesteps(&[999, 500, 500], 1000).unwrap_err();
        assert!(
            matches!(e, ScheduleError::TimestepsNotDecreasing { position: 2, .. }),
            "{e}"
        );
        let e = custom_timesteps(&[1000, 5], 1000).unwrap_err();
        assert!(matches!(
            e,
            ScheduleError::TimestepOutOfRange { position: 0, .. }
        ));
        assert!(custom_timesteps(&[3, -1], 1000).is_err());
        assert!(matches!(
            custom_timesteps(&[], 10),
            Err(ScheduleError::EmptyTimesteps)
        ));
        assert!("middle".parse::<TimestepSpacing>().is_err());
    }
}
