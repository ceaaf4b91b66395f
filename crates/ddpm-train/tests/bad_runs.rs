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
