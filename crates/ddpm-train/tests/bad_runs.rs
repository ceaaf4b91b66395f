//! Bad training runs fail with errors that name what is wrong.

mod common;

use std::sync::Arc;

use common::{B, config, dataset, tmp_dir};
use ddpm_data::Dataset;
use ddpm_train::{TrainError, Trainer};

#[test]
fn bad_runs_fail_clearly() {
    let device = Default::default();
    let dir = tmp_dir("bad");
    // Dataset of the wrong size for the model.
    let wrong = Arc::new(Dataset::from_raw(vec![0; 16 * 16], 1, 1, 16, 16).unwrap());
    let err = Trainer::<B>::new(config(2), &dir, wrong, &device)
        .err()
        .unwrap();
    assert!(matches!(err, TrainError::DataShape { .. }), "{err}");
    // Accumulation that does not divide the batch.
    let err = Trainer::<B>::new(
        config(2).with_grad_accumulation(4),
        &dir,
        dataset(),
        &device,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("grad_accumulation is 4"), "{err}");
    // Resume without a checkpoint.
    let empty = tmp_dir("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = Trainer::<B>::resume(&empty, dataset(), None, &device)
        .err()
        .unwrap();
    assert!(err.to_string().contains("train_config.json"), "{err}");
    // A learning rate that makes the loss blow up stops with the step named.
    let mut t = Trainer::<B>::new(
        config(50)
            .with_learning_rate(1e30)
            .with_warmup_steps(0)
            .with_grad_clip_norm(None),
        &dir,
        dataset(),
        &device,
    )
    .unwrap();
    let err = t.run(|_| {}).unwrap_err();
    match err {
        TrainError::NonFiniteLoss { step, .. } => assert!(step >= 2, "step {step}"),
        other => panic!("expected NonFiniteLoss, got {other}"),
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(empty);
}

/// A step can overflow the weights while its own loss (computed before the update) is finite:
/// with a learning rate beyond f32's range, step 1's loss is fine and its update turns the
/// weights into ±inf/NaN. No checkpoint of those weights may be written (before the check, one
/// was, and step 2's NaN loss then named it "the last good checkpoint").
#[test]
fn non_finite_weights_are_never_checkpointed() {
    let device = Default::default();
    let dir = tmp_dir("nonfinite-weights");
    let mut t = Trainer::<B>::new(
        config(3)
            .with_learning_rate(1e39)
            .with_warmup_steps(0)
            .with_grad_clip_norm(None)
            .with_checkpoint_every(1),
        &dir,
        dataset(),
        &device,
    )
    .unwrap();
    let err = t.run(|_| {}).unwrap_err();
    match &err {
        TrainError::NonFiniteWeights {
            step,
            which,
            key,
            count,
            last_checkpoint,
            ..
        } => {
            assert_eq!((*step, *which), (1, "model"), "{err}");
            assert!(!key.is_empty() && *count > 0, "{err}");
            assert_eq!(*last_checkpoint, None, "{err}");
        }
        other => panic!("expected NonFiniteWeights, got {other}"),
    }
    let written = std::fs::read_dir(dir.join("checkpoints"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("step-"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert!(
        written.is_empty(),
        "checkpoints of overflowed weights: {written:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
