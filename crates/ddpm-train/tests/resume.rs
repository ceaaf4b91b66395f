//! A run interrupted halfway and resumed from its checkpoint ends with the same raw and EMA
//! weights, bit for bit, as the same run done in one go.
//!
//! NOTE: this file holds a single test on purpose, so it runs alone in its process. With
//! another trainer training concurrently in the same process we have seen the results differ
//! (Burn's backend state is process-global); one run per process is bit-exact.

mod common;

use burn::backend::Flex;
use burn::module::{AutodiffModule, Module};
use burn::tensor::Tensor;
use common::{B, config, dataset, tmp_dir};
use ddpm_train::{Trainer, Weights, load_unet};

fn params(m: impl Module<Flex>) -> Vec<f32> {
    let mut out = Vec::new();
    struct V<'a>(&'a mut Vec<f32>);
    impl burn::module::ModuleVisitor<Flex> for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<Flex, D>>) {
            self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    m.visit(&mut V(&mut out));
    out
}

#[test]
fn resume_is_bit_exact() {
    const N: usize = 24;
    let device = Default::default();

    let straight = tmp_dir("straight");
    let mut t = Trainer::<B>::new(config(N), &straight, dataset(), &device).unwrap();
    t.run(|_| {}).unwrap();
    let (raw_a, ema_a) = (params(t.model().valid()), params(t.ema().clone()));

    let split = tmp_dir("split");
    let mut t = Trainer::<B>::new(config(N / 2), &split, dataset(), &device).unwrap();
    t.run(|_| {}).unwrap();
    drop(t);
    let mut t = Trainer::<B>::resume(&split, dataset(), Some(N), &device).unwrap();
    assert_eq!(t.step(), N / 2);
    t.run(|_| {}).unwrap();
    let (raw_b, ema_b) = (params(t.model().valid()), params(t.ema().clone()));

    assert_eq!(raw_a.len(), raw_b.len());
    let raw_diff = raw_a
        .iter()
        .zip(&raw_b)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let ema_diff = ema_a
        .iter()
        .zip(&ema_b)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        raw_diff,
        0,
        "raw weights differ in {raw_diff} of {} values",
        raw_a.len()
    );
    assert_eq!(
        ema_diff,
        0,
        "EMA weights differ in {ema_diff} of {} values",
        ema_a.len()
    );
    // Training moved the weights, and the EMA lags behind them.
    assert_ne!(raw_a, ema_a);

    // The run directory is usable by samplers: the EMA loads from it on the inference backend.
    let ema: ddpm_unet::Unet<Flex> = load_unet(&split, Weights::Ema, &device).unwrap();
    assert_eq!(params(ema), ema_b);
    assert!(split.join("samples.png").is_file());
    assert!(split.join("metrics.jsonl").is_file());
    assert!(split.join("train_config.json").is_file());
    // keep_checkpoints = 3: steps 12 and 24 are both there.
    let ckpts = ddpm_train::checkpoint::list_checkpoints(&split).unwrap();
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), [N / 2, N]);
    let _ = std::fs::remove_dir_all(straight);
    let _ = std::fs::remove_dir_all(split);
}
