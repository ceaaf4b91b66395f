//! The training objectives of Ho et al. 2020, Table 2: every row (μ̃ or ε prediction; the true
//! bound, or the unweighted MSE; fixed or learned diagonal Σ) trains, records its
//! parameterization where samplers read it, and samples; mismatched settings are refused by
//! name.

mod common;

use burn::tensor::ElementConversion;
use common::{B, config, dataset, tmp_dir};
use ddpm_loss::Objective;
use ddpm_schedule::{PredictionType, VarianceType};
use ddpm_train::{TrainConfig, Trainer};

const ROWS: [(PredictionType, VarianceType, Objective); 6] = [
    (
        PredictionType::Mean,
        VarianceType::Learned,
        Objective::Bound,
    ),
    (
        PredictionType::Mean,
        VarianceType::FixedLarge,
        Objective::Bound,
    ),
    (
        PredictionType::Mean,
        VarianceType::FixedLarge,
        Objective::Simple,
    ),
    (
        PredictionType::Epsilon,
        VarianceType::Learned,
        Objective::Bound,
    ),
    (
        PredictionType::Epsilon,
        VarianceType::FixedLarge,
        Objective::Bound,
    ),
    (
        PredictionType::Epsilon,
        VarianceType::FixedLarge,
        Objective::Simple,
    ),
];

#[test]
fn every_table2_row_trains_records_its_parameterization_and_samples() {
    let device = Default::default();
    for (prediction, variance, objective) in ROWS {
        let name = format!(
            "objective-{}-{}-{}",
            prediction.diffusers_name(),
            variance.diffusers_name(),
            objective.name()
        );
        let mut c = config(3)
            .with_prediction_type(prediction)
            .with_variance_type(variance)
            .with_objective(objective);
        c.fit_output_channels();
        assert_eq!(
            c.unet.out_channels,
            if variance.is_learned() { 2 } else { 1 }
        );
        let dir = tmp_dir(&name);
        let mut t = Trainer::<B>::new(c, &dir, dataset(), &device).unwrap();
        let before = t.model().clone();
        for _ in 0..3 {
            let s = t.train_step().unwrap();
            assert!(
                s.loss.is_finite() && s.loss > 0.0,
                "{name}: loss {}",
                s.loss
            );
            assert!(s.grad_norm.is_finite() && s.grad_norm > 0.0, "{name}");
        }
        // The step moved the weights (the objective has a gradient).
        let x = burn::tensor::Tensor::<B, 4>::ones([1, 1, 8, 8], &device);
        let t0 = burn::tensor::Tensor::<B, 1, burn::tensor::Int>::from_ints([10], &device);
        let moved: f64 = (before.forward(x.clone(), t0.clone()) - t.model().forward(x, t0))
            .abs()
            .max()
            .into_scalar()
            .elem();
        assert!(moved > 0.0, "{name}: weights did not move");

        let sched: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("scheduler_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            sched["prediction_type"],
            prediction.diffusers_name(),
            "{name}"
        );
        assert_eq!(sched["variance_type"], variance.diffusers_name(), "{name}");

        // Previews read the prediction channels (a learned variance's are ignored by DDIM).
        let samples = t.sample_ema(2).unwrap();
        assert_eq!(samples.dims(), [2, 1, 8, 8], "{name}");
        let max: f64 = samples.abs().max().into_scalar().elem();
        assert!(max.is_finite(), "{name}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn settings_that_do_not_fit_are_refused_by_name() {
    // A learned variance with a U-Net of C outputs.
    let c = config(2)
        .with_variance_type(VarianceType::Learned)
        .with_objective(Objective::Bound);
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("unet.out_channels"), "{e}");
    // L_simple cannot train a learned variance.
    let mut c = config(2).with_variance_type(VarianceType::Learned);
    c.fit_output_channels();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("simple objective"), "{e}");
    // The hybrid objective needs one.
    let c = config(2).with_objective(Objective::Hybrid { lambda: 0.001 });
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("hybrid"), "{e}");
}

/// A `train_config.json` written before these settings existed keeps its meaning: L_simple with
/// the fixed small variance.
#[test]
fn old_configs_mean_the_simple_objective() {
    let mut json = serde_json::to_value(config(2)).unwrap();
    let map = json.as_object_mut().unwrap();
    map.remove("objective");
    map.remove("variance_type");
    let c = TrainConfig::from_json_str(&json.to_string()).unwrap();
    assert_eq!(c.objective, Objective::Simple);
    assert_eq!(c.variance_type, VarianceType::FixedSmall);
    let round = TrainConfig::from_json_str(
        &serde_json::to_string(
            &config(2)
                .with_prediction_type(PredictionType::Mean)
                .with_objective(Objective::Hybrid { lambda: 0.5 }),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(round.prediction_type, PredictionType::Mean);
    assert_eq!(round.objective, Objective::Hybrid { lambda: 0.5 });
}
