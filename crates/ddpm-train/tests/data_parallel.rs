//! Data-parallel training on Burn's collectives, several peers (threads) on Flex: the same
//! model as one trainer of the whole batch, bit-identical when repeated, bit-exact on resume,
//! and peers that fail or never arrive stop the others with a clear error instead of a hang.
#![cfg(feature = "collective")]

mod common;

use std::time::Duration;

use burn::backend::Flex;
use burn::module::{AutodiffModule, Module};
use burn::tensor::Tensor;
use common::{B, config, dataset, small_unet, tmp_dir};
use ddpm_train::parallel::{ParallelTraining, PeerGroup, Start};
use ddpm_train::{TrainConfig, TrainError, Trainer};

fn params(m: impl Module<Flex>) -> Vec<f32> {
    struct V<'a>(&'a mut Vec<f32>);
    impl burn::module::ModuleVisitor<Flex> for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<Flex, D>>) {
            self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut out = Vec::new();
    m.visit(&mut V(&mut out));
    out
}

/// 12 images per step in 2 micro-batches of 6: shards of 6, 3 or 2 for 1, 2 or 3 peers.
fn dp_config(steps: usize) -> TrainConfig {
    config(steps)
        .with_batch_size(12)
        .with_grad_accumulation(2)
        .with_warmup_steps(0)
}

fn group(peers: usize) -> PeerGroup {
    PeerGroup::local(peers).with_timeout(Duration::from_secs(120))
}

/// Trains `peers` peers from `start` in `dir`; the raw and EMA weights of every peer.
fn train(start: Start, dir: &std::path::Path, peers: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    let devices = vec![Default::default(); peers];
    let run = ParallelTraining::<B>::new(start, dir, dataset(), devices, group(peers)).unwrap();
    run.run(|_| {})
        .unwrap()
        .iter()
        .map(|t| (params(t.model().valid()), params(t.ema().clone())))
        .collect()
}

fn count_bit_differences(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

#[test]
fn two_peers_train_the_model_of_one_trainer_with_the_whole_batch() {
    // Without dropout: peer 1 draws its own masks, so only then are the two runs the same.
    let mut c = dp_config(3);
    c.unet = small_unet().with_dropout(0.0);
    let device = Default::default();

    let dir = tmp_dir("dp-single");
    let mut single = Trainer::<B>::new(c.clone(), &dir, dataset(), &device).unwrap();
    let initial = params(single.model().valid());
    let mut single_losses = Vec::new();
    for _ in 0..3 {
        single_losses.push(single.train_step().unwrap().loss);
    }
    let want = params(single.model().valid());

    let dir2 = tmp_dir("dp-two");
    let run =
        ParallelTraining::<B>::new(Start::New(c), &dir2, dataset(), vec![device; 2], group(2))
            .unwrap();
    let peers = run.run(|_| {}).unwrap();
    assert_eq!(peers.len(), 2);
    let got = params(peers[0].model().valid());
    assert_eq!(
        count_bit_differences(&got, &params(peers[1].model().valid())),
        0,
        "the two peers hold the same weights"
    );
    // Three Adam steps at lr 1e-3 move weights by ~3e-3; a wrong shard (both peers on the same
    // rows, or rows missing) moves them differently by that order.
    let moved = initial
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "training moved the weights ({moved})");
    let (diff, at) = ddpm_testutil::max_abs_diff(&got, &want);
    assert!(
        diff < 2e-5,
        "2 peers × 6 vs 1 × 12: weights differ by {diff} at {at}"
    );
    // Rank 0 wrote the run: its metrics carry the mean loss of the whole batch.
    let metrics = std::fs::read_to_string(dir2.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(metrics.lines().rfind(|l| l.contains("\"loss\"")).unwrap()).unwrap();
    let loss = last["loss"].as_f64().unwrap();
    assert!(
        (loss - single_losses[2]).abs() < 1e-5 * single_losses[2].abs().max(1.0),
        "loss {loss} vs {}",
        single_losses[2]
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[test]
fn three_peers_are_bit_identical_run_to_run_and_resume_bit_exactly() {
    // Dropout on: every peer's masks come from the run's seed too.
    let a = tmp_dir("dp3-a");
    let b = tmp_dir("dp3-b");
    let first = train(Start::New(dp_config(4)), &a, 3);
    let second = train(Start::New(dp_config(4)), &b, 3);
    for (p, (run1, run2)) in first.iter().zip(&second).enumerate() {
        assert_eq!(count_bit_differences(&run1.0, &run2.0), 0, "peer {p}, raw");
        assert_eq!(count_bit_differences(&run1.1, &run2.1), 0, "peer {p}, EMA");
        assert_eq!(
            count_bit_differences(&run1.0, &first[0].0),
            0,
            "peer {p} vs 0"
        );
    }

    // The same run in two halves: stopped at step 2, resumed to 4 (the checkpoint is the
    // final one of the first half).
    let split = tmp_dir("dp3-split");
    train(Start::New(dp_config(2)), &split, 3);
    let resumed = train(Start::Resume(dp_config(4)), &split, 3);
    assert_eq!(count_bit_differences(&resumed[0].0, &first[0].0), 0, "raw");
    assert_eq!(count_bit_differences(&resumed[0].1, &first[0].1), 0, "EMA");
    assert_eq!(
        count_bit_differences(&resumed[2].0, &first[0].0),
        0,
        "peer 2, raw"
    );
    // Only rank 0 wrote: one checkpoint directory per checkpoint step.
    let ckpts = ddpm_train::checkpoint::list_checkpoints(&split).unwrap();
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), [2, 4]);

    for d in [a, b, split] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_run_resumed_on_another_number_of_peers_continues_it() {
    // Without dropout (peer r > 0 draws its own masks, so their shards' masks change with the
    // number of peers); the data, timesteps and noise are the run's whatever the split.
    let c = |steps| {
        let mut c = dp_config(steps);
        c.unet = small_unet().with_dropout(0.0);
        c
    };
    let straight = tmp_dir("dp-n-straight");
    let want = train(Start::New(c(4)), &straight, 3);
    let split = tmp_dir("dp-n-split");
    train(Start::New(c(2)), &split, 3);
    let got = train(Start::Resume(c(4)), &split, 2);
    let (diff, at) = ddpm_testutil::max_abs_diff(&got[0].0, &want[0].0);
    assert!(
        diff < 2e-5,
        "3 peers then 2 vs 3 throughout: {diff} at {at}"
    );
    for d in [straight, split] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_batch_that_does_not_split_is_refused_by_name() {
    let dir = tmp_dir("dp-split-refused");
    let err = ParallelTraining::<B>::new(
        Start::New(dp_config(1)),
        &dir,
        dataset(),
        vec![Default::default(); 5],
        group(5),
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("batch_size") && msg.contains("5 peers"),
        "{msg}"
    );
    assert!(!dir.join("train_config.json").exists(), "nothing written");
}

#[test]
fn a_peer_that_cannot_start_stops_the_others_at_once() {
    // The first peer resumes from the step-2 checkpoint; then its optimizer record is damaged,
    // so the second peer cannot load it. It tells the first through the start-up check, well
    // before the 60 s timeout, and its own error is the one reported.
    let dir = tmp_dir("dp-follower-fails");
    train(Start::New(dp_config(2)), &dir, 2);
    let run = ParallelTraining::<B>::new(
        Start::Resume(dp_config(4)),
        &dir,
        dataset(),
        vec![Default::default(); 2],
        PeerGroup::local(2).with_timeout(Duration::from_secs(60)),
    )
    .unwrap();
    let ckpt = dir.join("checkpoints/step-00000002");
    let damaged = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("optimizer")
        })
        .inspect(|p| std::fs::write(p, b"damaged").unwrap())
        .count();
    assert_eq!(damaged, 1, "one optimizer record in {}", ckpt.display());
    let err = run.run(|_| {}).err().unwrap();
    assert!(
        matches!(err, TrainError::NoIntactCheckpoint { .. }),
        "the second peer's own error: {err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_peer_that_fails_on_its_own_stops_the_others_with_its_error() {
    // Rank 0 cannot write its checkpoint at step 2 (a file stands where the directory goes);
    // peer 1 learns it at its next all-reduce and stops too, long before its timeout.
    let dir = tmp_dir("dp-write-fails");
    let c = dp_config(4).with_checkpoint_every(2);
    let run = ParallelTraining::<B>::new(
        Start::New(c),
        &dir,
        dataset(),
        vec![Default::default(); 2],
        PeerGroup::local(2).with_timeout(Duration::from_secs(60)),
    )
    .unwrap();
    std::fs::write(dir.join("checkpoints"), b"not a directory").unwrap();
    let err = run.run(|_| {}).err().unwrap();
    assert!(
        !err.is_consequence_of_a_peer(),
        "rank 0's own error is the one reported: {err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
