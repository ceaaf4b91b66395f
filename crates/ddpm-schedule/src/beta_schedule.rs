//! β schedules: how much noise each forward step adds.
//!
//! Ho et al. 2020 (arXiv:2006.11239v2) use a linear schedule from β₁ = 1e-4 to β_T = 0.02;
//! the other shapes are the ones diffusers' `DDPMScheduler` accepts under the same names.
//! Everything here is computed in `f64` on the host.

use serde::{Deserialize, Serialize};

use crate::ScheduleError;

/// The shape of β₁..β_T.
///
/// The default is the paper's: linear from 1e-4 to 0.02 (Ho et al. 2020, §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[doc(alias = "beta_schedule")]
pub enum BetaSchedule {
    /// β linearly spaced from `beta_start` to `beta_end` (Ho et al. 2020; diffusers `"linear"`).
    Linear {
        /// β₁ (paper: 1e-4).
        beta_start: f64,
        /// β_T (paper: 0.02).
        beta_end: f64,
    },
    /// β = linspace(√β_start, √β_end, T)² (latent diffusion; diffusers `"scaled_linear"`).
    ScaledLinear {
        /// β₁.
        beta_start: f64,
        /// β_T.
        beta_end: f64,
    },
    /// Cosine ᾱ (Nichol & Dhariwal 2021, Eq. 17; diffusers `"squaredcos_cap_v2"`):
    /// ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s)) · π/2), β_t = min(1 − ᾱ_t/ᾱ_{t−1}, max_beta).
    ///
    /// NOTE: β is capped at `max_beta` (0.999) as in the improved-DDPM code, so the last
    /// steps do not reach β = 1.
    Cosine {
        /// Offset s that keeps β small near t = 0 (0.008).
        s: f64,
        /// Upper bound on β (0.999).
        max_beta: f64,
    },
    /// β = sigmoid(linspace(−6, 6, T)) · (β_end − β_start) + β_start (diffusers `"sigmoid"`, GeoDiff).
    Sigmoid {
        /// Lower asymptote.
        beta_start: f64,
        /// Upper asymptote.
        beta_end: f64,
    },
    /// β given explicitly (diffusers `trained_betas`); its length must be T.
    Custom {
        /// β₁..β_T.
        betas: Vec<f64>,
    },
}

impl Default for BetaSchedule {
    fn default() -> Self {
        Self::linear()
    }
}

impl BetaSchedule {
    /// The paper's schedule: linear from 1e-4 to 0.02.
    pub fn linear() -> Self {
        Self::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }

    /// The improved-DDPM cosine schedule with s = 0.008 and β capped at 0.999.
    pub fn cosine() -> Self {
        Self::Cosine {
            s: 0.008,
            max_beta: 0.999,
        }
    }

    /// The diffusers name of this shape (`"linear"`, `"scaled_linear"`, `"squaredcos_cap_v2"`,
    /// `"sigmoid"`), or `"trained_betas"` for a custom list.
    pub fn diffusers_name(&self) -> &'static str {
        match self {
            Self::Linear { .. } => "linear",
            Self::ScaledLinear { .. } => "scaled_linear",
            Self::Cosine { .. } => "squaredcos_cap_v2",
            Self::Sigmoid { .. } => "sigmoid",
            Self::Custom { .. } => "trained_betas",
        }
    }

    /// (β_start, β_end) of the shapes that have a range; diffusers' defaults (1e-4, 0.02) for
    /// cosine and custom lists, which ignore them.
    pub fn range(&self) -> (f64, f64) {
        match self {
            Self::Linear {
                beta_start,
                beta_end,
            }
            | Self::ScaledLinear {
                beta_start,
                beta_end,
            }
            | Self::Sigmoid {
                beta_start,
                beta_end,
            } => (*beta_start, *beta_end),
            Self::Cosine { .. } | Self::Custom { .. } => (1e-4, 0.02),
        }
    }

    /// Builds the schedule from diffusers' `beta_schedule` name and range.
    ///
    /// # Errors
    /// [`ScheduleError::UnknownValue`] for a name diffusers' DDPM/DDIM schedulers do not accept.
    pub fn from_diffusers_name(
        name: &str,
        beta_start: f64,
        beta_end: f64,
    ) -> Result<Self, ScheduleError> {
        Ok(match name {
            "linear" => Self::Linear {
                beta_start,
                beta_end,
            },
            "scaled_linear" => Self::ScaledLinear {
                beta_start,
                beta_end,
            },
            "squaredcos_cap_v2" | "cosine" => Self::cosine(),
            "sigmoid" => Self::Sigmoid {
                beta_start,
                beta_end,
            },
            other => {
                return Err(ScheduleError::UnknownValue {
                    field: "beta_schedule",
                    value: other.to_string(),
                    expected: "linear, scaled_linear, squaredcos_cap_v2, sigmoid",
                });
            }
        })
    }

    /// β₁..β_T for `num_train_timesteps` = T steps (index i holds β_{i+1}).
    ///
    /// # Errors
    /// [`ScheduleError::ZeroTimesteps`] for T = 0, [`ScheduleError::InvalidParameter`] for a
    /// non-finite or out-of-range parameter, [`ScheduleError::BetaLengthMismatch`] for a custom
    /// list of the wrong length, and [`ScheduleError::BetaOutOfRange`] when any β ∉ (0, 1).
    pub fn betas(&self, num_train_timesteps: usize) -> Result<Vec<f64>, ScheduleError> {
        let t = num_train_timesteps;
        if t == 0 {
            return Err(ScheduleError::ZeroTimesteps);
        }
        if t > MAX_TRAIN_TIMESTEPS {
            return Err(ScheduleError::TooManyTimesteps {
                num_train_timesteps: t,
                max: MAX_TRAIN_TIMESTEPS,
            });
        }
        let betas = match self {
            Self::Linear {
                beta_start,
                beta_end,
            } => {
                check_range(*beta_start, *beta_end)?;
                linspace(*beta_start, *beta_end, t)
            }
            Self::ScaledLinear {
                beta_start,
                beta_end,
            } => {
                check_range(*beta_start, *beta_end)?;
                linspace(beta_start.sqrt(), beta_end.sqrt(), t)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            Self::Cosine { s, max_beta } => {
                check_finite("s", *s, "a finite offset >= 0", *s >= 0.0)?;
                check_finite(
                    "max_beta",
                    *max_beta,
                    "0 < max_beta < 1",
                    *max_beta > 0.0 && *max_beta < 1.0,
                )?;
                // NOTE: float division t/T, never integer division (candle and diffusers-rs
                // once shipped β = [0, …, 0, 0.999] from `i / T` on integers).
                let f = |u: f64| {
                    (((u + s) / (1.0 + s)) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..t)
                    .map(|i| {
                        let t1 = i as f64 / t as f64;
                        let t2 = (i + 1) as f64 / t as f64;
                        (1.0 - f(t2) / f(t1)).min(*max_beta)
                    })
                    .collect()
            }
            Self::Sigmoid {
                beta_start,
                beta_end,
            } => {
                check_range(*beta_start, *beta_end)?;
                linspace(-6.0, 6.0, t)
                    .into_iter()
                    .map(|x| 1.0 / (1.0 + (-x).exp()) * (beta_end - beta_start) + beta_start)
                    .collect()
            }
            Self::Custom { betas } => {
                if betas.len() != t {
                    return Err(ScheduleError::BetaLengthMismatch {
                        len: betas.len(),
                        num_train_timesteps: t,
                    });
                }
                betas.clone()
            }
        };
        validate_betas(&betas)?;
        Ok(betas)
    }
}

/// Checks 0 < β < 1 and finiteness for every entry.
///
/// # Errors
/// [`ScheduleError::BetaOutOfRange`] naming the first offending index and value.
pub fn validate_betas(betas: &[f64]) -> Result<(), ScheduleError> {
    for (index, &value) in betas.iter().enumerate() {
        if !(value.is_finite() && value > 0.0 && value < 1.0) {
            return Err(ScheduleError::BetaOutOfRange { index, value });
        }
    }
    Ok(())
}

/// Rescales β so that the terminal SNR is exactly zero (Lin et al. 2023, arXiv:2305.08891,
/// Algorithm 1): √ᾱ is shifted so √ᾱ_T = 0 and scaled so √ᾱ₁ is unchanged.
///
/// The returned β_T is exactly 1; [`crate::NoiseSchedule`] accepts that only through this path.
pub fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut cumprod = 1.0;
    let mut sqrt_ab: Vec<f64> = betas
        .iter()
        .map(|b| {
            cumprod *= 1.0 - b;
            cumprod.sqrt()
        })
        .collect();
    let first = sqrt_ab[0];
    let last = *sqrt_ab.last().expect("non-empty betas");
    for v in &mut sqrt_ab {
        *v = (*v - last) * first / (first - last);
    }
    let ab: Vec<f64> = sqrt_ab.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(ab.len());
    out.push(1.0 - ab[0]);
    for i in 1..ab.len() {
        out.push(1.0 - ab[i] / ab[i - 1]);
    }
    out
}

/// numpy's `linspace(start, end, n)`: `start + i·step`, with the last entry exactly `end`.
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
    v[n - 1] = end;
    v
}

fn check_finite(
    field: &'static str,
    value: f64,
    expected: &'static str,
    ok: bool,
) -> Result<(), ScheduleError> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(ScheduleError::InvalidParameter {
            field,
            value,
            expected,
        })
    }
}

fn check_range(beta_start: f64, beta_end: f64) -> Result<(), ScheduleError> {
    let unit = |v: f64| v > 0.0 && v < 1.0;
    check_finite(
        "beta_start",
        beta_start,
        "0 < beta_start < 1",
        unit(beta_start),
    )?;
    check_finite("beta_end", beta_end, "0 < beta_end < 1", unit(beta_end))?;
    // The forward process adds noise at a rate that grows with t (Sec. 2, Sec. 4); a
    // decreasing β is almost always swapped fields. diffusers would take it silently.
    check_finite(
        "beta_end",
        beta_end,
        ">= beta_start (β grows with t)",
        beta_end >= beta_start,
    )
}

/// The largest `num_train_timesteps` a schedule accepts: far above any diffusion model's
/// (T <= 4000), low enough that its tables (a few f64 per step) fit in memory.
pub const MAX_TRAIN_TIMESTEPS: usize = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreasonable_inputs_are_refused_before_allocating() {
        let err = BetaSchedule::linear().betas(100_000_000_000).unwrap_err();
        assert!(
            matches!(
                err,
                ScheduleError::TooManyTimesteps {
                    num_train_timesteps: 100_000_000_000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(BetaSchedule::linear().betas(MAX_TRAIN_TIMESTEPS).is_ok());
        let swapped = BetaSchedule::Linear {
            beta_start: 0.02,
            beta_end: 1e-4,
        };
        let err = swapped.betas(1000).unwrap_err().to_string();
        assert!(
            err.contains("beta_end") && err.contains(">= beta_start"),
            "{err}"
        );
    }

    #[test]
    fn linear_endpoints_are_exact() {
        let b = BetaSchedule::linear().betas(1000).unwrap();
        assert_eq!(b[0], 1e-4);
        assert_eq!(b[999], 0.02);
    }

    #[test]
    fn cosine_is_not_integer_divided() {
        let b = BetaSchedule::cosine().betas(1000).unwrap();
        assert!(b[0] > 1e-5 && b[0] < 1e-4, "β₁ = {}", b[0]);
        assert_eq!(b[999], 0.999);
        assert!(b.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn rejects_bad_parameters() {
        let err = BetaSchedule::Linear {
            beta_start: 0.0,
            beta_end: 0.02,
        }
        .betas(10)
        .unwrap_err();
        assert!(err.to_string().contains("beta_start is 0"), "{err}");
        let err = BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: f64::NAN,
        }
        .betas(10)
        .unwrap_err();
        assert!(err.to_string().contains("beta_end is NaN"), "{err}");
        let err = BetaSchedule::Custom {
            betas: vec![0.1, 1.5],
        }
        .betas(2)
        .unwrap_err();
        assert!(matches!(err, ScheduleError::BetaOutOfRange { index: 1, value } if value == 1.5));
        assert!(matches!(
            BetaSchedule::linear().betas(0),
            Err(ScheduleError::ZeroTimesteps)
        ));
        assert!(matches!(
            BetaSchedule::Custom { betas: vec![0.1] }.betas(2),
            Err(ScheduleError::BetaLengthMismatch {
                len: 1,
                num_train_timesteps: 2
            })
        ));
        assert!(BetaSchedule::from_diffusers_name("quadratic", 1e-4, 0.02).is_err());
    }

    #[test]
    fn zero_terminal_snr_keeps_first_and_zeroes_last() {
        let b = BetaSchedule::linear().betas(1000).unwrap();
        let r = rescale_zero_terminal_snr(&b);
        assert!((r[0] - b[0]).abs() < 1e-15);
        assert_eq!(r[999], 1.0);
    }
}
