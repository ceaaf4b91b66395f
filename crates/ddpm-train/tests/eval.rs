//! Evaluation during training (`eval_every`, `save_best`): the metric sees samples of the EMA
//! weights, its values reach `metrics.jsonl`, the best checkpoint is kept (and survives a
//! resume), and a run that asks for evaluation without a metric is refused before any step.

mod common;

use std::sync::{Arc, Mutex};

use burn::backend::Flex;
use burn::tensor::Tensor;
use ddpm_pipeline::Pipeline;
use ddpm_train::{MetricValues, SampleMetric, TrainError, TrainEvent, Trainer, read_best};

use common::{B, config, dataset, tmp_dir};

/// Returns scripted values in turn and records the shapes it was given.
struct Scripted {
    values: Vec<f64>,
    seen: Arc<Mutex<Vec<[usize; 4]>>>,
}

impl SampleMetric<Flex> for Scripted {
    fn name(&self) -> String {
        "scripted".into()
    }

    fn score(
        &mut self,
        samples: Tensor<Flex, 4>,
    ) -> Result<MetricValues, Box<dyn std::error::Error + Send + Sync>> {
        let values = samples.clone().into_data().to_vec::<f32>()?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err("non-finite sample".into());
        }
        let mut seen = self.seen.lock().unwrap();
        seen.push(samples.dims());
        let value = self.values[seen.len() - 1];
        Ok(MetricValues {
            primary: value,
            extra: vec![("twice".into(), 2.0 * value)],
        })
    }
}

fn eval_lines(run: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("eval").is_some())
        .collect()
}

#[test]
fn evaluations_are_logged_and_the_best_checkpoint_is_kept_across_a_resume() {
    let dir = tmp_dir("eval-best");
    let cfg = config(6)
        .with_eval_every(2)
        .with_eval_samples(5)
        .with_eval_steps(2)
        .with_eval_batch_size(2)
        .with_save_best(true);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let metric = Scripted {
        values: vec![2.0, 1.0, 1.5],
        seen: seen.clone(),
    };
    let device = Default::default();
    let mut trainer = Trainer::<B>::new(cfg, &dir, dataset(), &device)
        .unwrap()
        .with_metric(Box::new(metric));
    let mut evals = Vec::new();
    trainer
        .run(|e| {
            if let TrainEvent::Eval(r) = e {
                evals.push((r.step, r.values.primary, r.best));
            }
        })
        .unwrap();
    assert_eq!(evals, vec![(2, 2.0, true), (4, 1.0, true), (6, 1.5, false)]);
    assert_eq!(*seen.lock().unwrap(), vec![[5, 1, 8, 8]; 3]);

    let lines = eval_lines(&dir);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["step"], 4);
    assert_eq!(lines[1]["scripted"], 1.0);
    assert_eq!(lines[1]["twice"], 2.0);
    assert_eq!(lines[1]["best"], true);
    assert_eq!(lines[2]["best"], false);

    // best.json points at a complete copy of step 4's checkpoint; step 2's copy is gone.
    let best = read_best(&dir).unwrap().unwrap();
    assert_eq!((best.step, best.value), (4, 1.0));
    let best_dir = dir.join(&best.checkpoint);
    assert!(best_dir.join("state.json").is_file());
    assert!(!dir.join("checkpoints/best-step-00000002").exists());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(best_dir.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], 4);
    // The copy is a checkpoint directory every sampler entry point takes.
    let samples = Pipeline::<Flex>::from_dir(&best_dir, &device)
        .unwrap()
        .sampling()
        .steps(2)
        .seed(0)
        .sample(2)
        .unwrap();
    assert_eq!(samples.shape(), [2, 1, 8, 8]);
    drop(trainer);

    // A resumed run compares against the saved best: 1.2 does not replace 1.0, 0.5 does.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let metric = Scripted {
        values: vec![1.2, 0.5],
        seen,
    };
    let mut trainer = Trainer::<B>::resume(&dir, dataset(), Some(10), &device)
        .unwrap()
        .with_metric(Box::new(metric));
    assert_eq!(trainer.best().map(|b| b.step), Some(4));
    trainer.run(|_| {}).unwrap();
    let best = read_best(&dir).unwrap().unwrap();
    assert_eq!((best.step, best.value), (10, 0.5));
    assert!(!dir.join("checkpoints/best-step-00000004").exists());
    assert!(
        dir.join("checkpoints/best-step-00000010/state.json")
            .is_file()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn evaluation_without_a_metric_is_refused_before_training() {
    let dir = tmp_dir("eval-no-metric");
    let cfg = config(4).with_eval_every(2);
    let mut trainer = Trainer::<B>::new(cfg, &dir, dataset(), &Default::default()).unwrap();
    let err = trainer.run(|_| {}).unwrap_err();
    assert!(
        matches!(err, TrainError::NoMetric { eval_every: 2 }),
        "{err}"
    );
    assert_eq!(trainer.step(), 0);
    assert!(!dir.join("checkpoints").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_best_needs_evaluations_and_a_failing_metric_names_the_step() {
    let err = config(4).with_save_best(true).validate().unwrap_err();
    assert!(err.to_string().contains("save_best"), "{err}");

    let dir = tmp_dir("eval-nan");
    let cfg = config(2)
        .with_eval_every(1)
        .with_eval_samples(2)
        .with_eval_steps(2);
    let metric = Scripted {
        values: vec![f64::NAN],
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let mut trainer = Trainer::<B>::new(cfg, &dir, dataset(), &Default::default())
        .unwrap()
        .with_metric(Box::new(metric));
    let err = trainer.run(|_| {}).unwrap_err();
    assert!(
        matches!(&err, TrainError::Eval { step: 1, .. }) && err.to_string().contains("NaN"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
