//! `FusedAdam` is Burn's `Adam` bit for bit, and their optimizer records (as the trainer writes
//! them, with the checkpoint recorder) load into each other: checkpoints written before the
//! trainer used `FusedAdam` resume exactly.

mod common;

use burn::backend::Flex;
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::Recorder;
use burn::tensor::{Int, Tensor, TensorData};
use common::{B, small_unet, tmp_dir};
use ddpm_pipeline::layout::checkpoint_recorder;
use ddpm_train::optim::FusedAdam;
use ddpm_unet::Unet;

fn bits(m: impl Module<Flex>) -> Vec<u32> {
    struct V<'a>(&'a mut Vec<u32>);
    impl burn::module::ModuleVisitor<Flex> for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<Flex, D>>) {
            let v = p.val().into_data().to_vec::<f32>().unwrap();
            self.0.extend(v.into_iter().map(f32::to_bits));
        }
    }
    let mut out = Vec::new();
    m.visit(&mut V(&mut out));
    out
}

/// The gradients of an MSE on fixed inputs (a different batch per step).
fn grads(model: &Unet<B>, step: usize) -> GradientsParams {
    let device = Default::default();
    let wave = |phase: usize| -> Tensor<B, 4> {
        let v: Vec<f32> = (0..3 * 64)
            .map(|i| ((i * 7 + phase * 13) % 31) as f32 / 15.0 - 1.0)
            .collect();
        Tensor::from_data(TensorData::new(v, [3, 1, 8, 8]), &device)
    };
    let (x, eps) = (wave(step), wave(step + 5));
    let t = Tensor::<B, 1, Int>::from_ints([5, 400, 999], &device);
    let loss = (model.forward(x, t) - eps).square().mean();
    GradientsParams::from_grads(loss.backward(), model)
}

fn burns_adam() -> AdamConfig {
    AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
}

/// Steps `from..to` of `optim` on `model` (learning rate changing per step).
fn train<O: Optimizer<Unet<B>, B>>(
    mut model: Unet<B>,
    optim: &mut O,
    steps: std::ops::Range<usize>,
) -> Unet<B> {
    for step in steps {
        let g = grads(&model, step);
        model = optim.step(1e-3 * (step + 1) as f64, model, g);
    }
    model
}

#[test]
fn fused_adam_is_burns_adam_and_their_records_are_interchangeable() {
    let device = Default::default();
    let init = || small_unet().with_dropout(0.0).init::<B>(&device).unwrap();
    let dir = tmp_dir("optim-records");
    std::fs::create_dir_all(&dir).unwrap();
    let rec = checkpoint_recorder();

    // Three steps of Burn's Adam, and of ours.
    let mut burn_optim = burns_adam().init::<B, Unet<B>>();
    let burn3 = train(init(), &mut burn_optim, 0..3);
    let mut ours = FusedAdam::default().init::<B, Unet<B>>();
    let ours3 = train(init(), &mut ours, 0..3);
    let want = bits(burn3.valid());
    assert_ne!(want, bits(init().valid()), "the steps moved the weights");
    assert_eq!(
        bits(ours3.valid()),
        want,
        "FusedAdam differs from Burn's Adam"
    );

    // Two steps of Burn's Adam, its record written as a checkpoint's, read back by ours.
    let mut burn_optim = burns_adam().init::<B, Unet<B>>();
    let burn2 = train(init(), &mut burn_optim, 0..2);
    let path = dir.join("burn-optimizer");
    Recorder::<B>::record(&rec, burn_optim.to_record(), path.clone()).unwrap();
    let record = Recorder::<B>::load(&rec, path.clone(), &device).unwrap();
    let mut ours = FusedAdam::default()
        .init::<B, Unet<B>>()
        .load_record(record);
    let resumed = train(burn2.clone(), &mut ours, 2..3);
    assert_eq!(
        bits(resumed.valid()),
        want,
        "resuming Burn's Adam record with FusedAdam"
    );

    // And the other way round.
    let mut ours = FusedAdam::default().init::<B, Unet<B>>();
    let ours2 = train(init(), &mut ours, 0..2);
    let path = dir.join("fused-optimizer");
    Recorder::<B>::record(&rec, ours.to_record(), path.clone()).unwrap();
    let record = Recorder::<B>::load(&rec, path, &device).unwrap();
    let mut burn_optim = burns_adam().init::<B, Unet<B>>().load_record(record);
    let resumed = train(ours2, &mut burn_optim, 2..3);
    assert_eq!(
        bits(resumed.valid()),
        want,
        "resuming FusedAdam's record with Burn's Adam"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
