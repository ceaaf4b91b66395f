//! What the network predicts and which reverse-process variance a sampler uses.

use serde::{Deserialize, Serialize};

use crate::ScheduleError;

/// What the denoiser's output means (diffusers `prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The noise ε (Ho et al. 2020, Eq. 11; the paper's choice).
    #[default]
    Epsilon,
    /// The clean sample x₀ directly.
    Sample,
    /// v = √ᾱ_t · ε − √(1 − ᾱ_t) · x₀ (Salimans & Ho 2022, arXiv:2202.00512).
    #[serde(rename = "v_prediction")]
    VPrediction,
    /// The posterior mean μ̃_t(x_t, x₀) of the training chain's step t → t − 1 directly, the
    /// paper's "μ̃ prediction" (Ho et al. 2020, §3.2 and Table 2; Eq. 8 is its loss; the
    /// original code's `xprev`). A DDPM sampler on the training chain's own steps uses the
    /// output as μ_θ; every other step reads x̂₀ = (μ − c₂ · x_t) / c₁ from it (Eq. 7's
    /// coefficients c₁, c₂ at t).
    ///
    /// NOTE: not one of diffusers' prediction types: a `scheduler_config.json` with
    /// `"prediction_type": "mean"` loads here, not in diffusers.
    #[serde(alias = "xprev")]
    Mean,
}

impl PredictionType {
    /// The names [`PredictionType::from_str`](std::str::FromStr) accepts first (aliases aside).
    pub const NAMES: &'static [&'static str] = &["epsilon", "sample", "v_prediction", "mean"];

    /// diffusers' name: `"epsilon"`, `"sample"`, `"v_prediction"`; `"mean"` for
    /// [`PredictionType::Mean`], which diffusers does not have.
    pub fn diffusers_name(self) -> &'static str {
        match self {
            Self::Epsilon => "epsilon",
            Self::Sample => "sample",
            Self::VPrediction => "v_prediction",
            Self::Mean => "mean",
        }
    }
}

impl std::str::FromStr for PredictionType {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "epsilon" | "eps" => Ok(Self::Epsilon),
            "sample" | "x0" => Ok(Self::Sample),
            "v_prediction" | "v" => Ok(Self::VPrediction),
            "mean" | "xprev" => Ok(Self::Mean),
            other => Err(ScheduleError::UnknownValue {
                field: "prediction_type",
                value: other.to_string(),
                expected: "epsilon, sample, v_prediction, mean",
            }),
        }
    }
}

/// The variance Σ_θ(x_t, t) = σ_t² I of the reverse step (Ho et al. 2020, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    /// σ_t² = β̃_t, the posterior variance (diffusers' default).
    #[default]
    FixedSmall,
    /// σ_t² = β_t, with β̃₂ in place of β₁ in the log as in the original code (better NLL).
    FixedLarge,
    /// The network outputs log σ_t² in its second half of channels (2·C outputs).
    Learned,
    /// The network outputs v ∈ [−1, 1] interpolating log β̃_t and log β_t
    /// (Nichol & Dhariwal 2021, Eq. 15).
    LearnedRange,
}

impl VarianceType {
    /// diffusers' name.
    pub fn diffusers_name(self) -> &'static str {
        match self {
            Self::FixedSmall => "fixed_small",
            Self::FixedLarge => "fixed_large",
            Self::Learned => "learned",
            Self::LearnedRange => "learned_range",
        }
    }

    /// Whether the model must output 2·C channels (mean and variance).
    pub fn is_learned(self) -> bool {
        matches!(self, Self::Learned | Self::LearnedRange)
    }
}

impl std::str::FromStr for VarianceType {
    type Err = ScheduleError;

    /// Parses diffusers' names. `fixed_small_log` is the same distribution as `fixed_small`;
    /// `fixed_large_log` maps to our `FixedLarge`, which computes the original code's log
    /// variance correctly (diffusers' `fixed_large_log` returns NaN).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fixed_small" | "fixed_small_log" => Ok(Self::FixedSmall),
            "fixed_large" | "fixed_large_log" => Ok(Self::FixedLarge),
            "learned" => Ok(Self::Learned),
            "learned_range" => Ok(Self::LearnedRange),
            other => Err(ScheduleError::UnknownValue {
                field: "variance_type",
                value: other.to_string(),
                expected: "fixed_small, fixed_small_log, fixed_large, fixed_large_log, learned, learned_range",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_type_names_round_trip() {
        for &name in PredictionType::NAMES {
            let p: PredictionType = name.parse().unwrap();
            assert_eq!(p.diffusers_name(), name);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<PredictionType>(&json).unwrap(), p);
        }
        // The original code's name for the mean prediction.
        assert_eq!(
            "xprev".parse::<PredictionType>().unwrap(),
            PredictionType::Mean
        );
        assert_eq!(
            serde_json::from_str::<PredictionType>("\"xprev\"").unwrap(),
            PredictionType::Mean
        );
        let e = "mu".parse::<PredictionType>().unwrap_err().to_string();
        assert!(e.contains("prediction_type") && e.contains("mean"), "{e}");
    }
}
