//! The GPU test set: the same checks the Flex tests make, run on a GPU backend (`--features
//! vulkan` in CI, on Mesa's lavapipe; `--features cuda` in `scripts/gpu_check.sh`).
//!
//! - the tiny U-Net against diffusers, block by block (atol 1e-4, the fixture tolerance);
//! - diffusers' 10-step DDIM and 1000-step DDPM loops (rtol 1e-4);
//! - the tiny U-Net in a DDIM loop on the GPU against the same loop on Flex;
//! - 3 training steps (dropout 0.1) whose losses match Flex's within 1e-3 relative, from the
//!   same seed, then a checkpoint written and loaded back on the GPU;
//! - two data-parallel peers on the GPU against one trainer of their whole batch (2e-4);
//! - f16 (and bf16 where the device supports it) against f32: the deviation is printed (run
//!   with `--nocapture`) and bounded.
//!
//! Fixtures come from the other crates' `tests/fixtures` (diffusers 0.42.1, PyTorch 2.15).
#![cfg(any(
    feature = "cuda",
    feature = "vulkan",
    feature = "wgpu",
    feature = "metal"
))]

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use ddpm_data::Dataset;
use ddpm_gpu_tests::{Cpu, Gpu, device, fixture, max_rel_dev, tmp_dir};
use ddpm_sampler::{
    DdimSamplerConfig, DdpmSamplerConfig, NoiseSource, X0ProcessingConfig, sample_loop,
};
use ddpm_schedule::{BetaSchedule, NoiseSchedule, NoiseScheduleConfig};
use ddpm_testutil::{HostTensor, load_json, load_safetensors, to_vec};
use ddpm_train::{TrainConfig, Trainer, Weights, load_unet};
use ddpm_unet::{Precision, Unet, UnetConfig, UnetError};
use serde_json::Value;

/// The tiny diffusers U-Net (fixture `unet_tiny`) on backend `B`.
fn tiny_unet<B: Backend>(device: &B::Device) -> Unet<B> {
    Unet::from_diffusers(fixture("ddpm-unet", "unet_tiny"), device).unwrap()
}

/// The `unet_tiny_io` fixture: x, t and every recorded activation.
fn unet_io<B: Backend>(
    device: &B::Device,
) -> (
    Tensor<B, 4>,
    Tensor<B, 1, Int>,
    std::collections::HashMap<String, HostTensor>,
) {
    let tensors = load_safetensors(fixture("ddpm-unet", "unet_tiny_io.safetensors"));
    let x = tensors["case0/x"].to_tensor(device);
    let ts: Vec<i64> = tensors["case0/timesteps"]
        .values
        .iter()
        .map(|&v| v as i64)
        .collect();
    let n = ts.len();
    let t = Tensor::from_data(TensorData::new(ts, [n]), device);
    (x, t, tensors)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

#[test]
fn unet_matches_diffusers_block_by_block() {
    const ATOL: f32 = 1e-4;
    let device = device();
    let unet = tiny_unet::<Gpu>(&device);
    let (x, t, want) = unet_io::<Gpu>(&device);
    let acts = unet.forward_with_intermediates(x, t);
    let mut checks = vec![
        ("time_proj".to_string(), to_vec(acts.time_proj)),
        ("time_embedding".to_string(), to_vec(acts.time_embedding)),
        ("conv_in".to_string(), to_vec(acts.conv_in)),
    ];
    for (i, a) in acts.down_blocks.into_iter().enumerate() {
        checks.push((format!("down_blocks.{i}"), to_vec(a)));
    }
    checks.push(("mid_block".to_string(), to_vec(acts.mid_block)));
    for (i, a) in acts.up_blocks.into_iter().enumerate() {
        checks.push((format!("up_blocks.{i}"), to_vec(a)));
    }
    checks.push(("conv_norm_out".to_string(), to_vec(acts.conv_norm_out)));
    checks.push(("conv_out".to_string(), to_vec(acts.conv_out)));
    for (name, got) in checks {
        let diff = max_abs_diff(&got, &want[&format!("case0/act/{name}")].values);
        eprintln!("{name:>16}: max |gpu − diffusers| = {diff:.2e}");
        assert!(
            diff <= ATOL,
            "{name}: max |gpu − diffusers| = {diff:e} > {ATOL:e}"
        );
    }
    let out = &want["case0/output"].values;
    let got = to_vec(unet.forward(unet_io::<Gpu>(&device).0, unet_io::<Gpu>(&device).1));
    assert!(max_abs_diff(&got, out) <= ATOL);
}

/// diffusers' schedule of a loop fixture.
fn schedule(sc: &Value) -> NoiseSchedule {
    NoiseSchedule::new(&NoiseScheduleConfig::new(
        sc["num_train_timesteps"].as_u64().unwrap() as usize,
        BetaSchedule::from_diffusers_name(
            sc["beta_schedule"].as_str().unwrap(),
            sc["beta_start"].as_f64().unwrap(),
            sc["beta_end"].as_f64().unwrap(),
        )
        .unwrap(),
    ))
    .unwrap()
}

fn loop_fixture(name: &str) -> (Value, std::collections::HashMap<String, HostTensor>) {
    (
        load_json(fixture("ddpm-sampler", &format!("{name}.json"))),
        load_safetensors(fixture("ddpm-sampler", &format!("{name}.safetensors"))),
    )
}

#[test]
fn ddim_loop_matches_diffusers() {
    let (fx, tensors) = loop_fixture("ddim_loop_simple");
    let device = device();
    let sc = &fx["scheduler_config"];
    let mut sampler = DdimSamplerConfig::new()
        .with_x0_processing(X0ProcessingConfig::none())
        .with_eta(fx["eta"].as_f64().unwrap())
        .with_num_inference_steps(fx["num_inference_steps"].as_u64().unwrap() as usize)
        .with_steps_offset(sc["steps_offset"].as_u64().unwrap() as usize)
        .with_set_alpha_to_one(sc["set_alpha_to_one"].as_bool().unwrap())
        .init(&schedule(sc))
        .unwrap();
    let x_t: Tensor<Gpu, 4> = tensors["x_T"].to_tensor(&device);
    let model = |x: Tensor<Gpu, 4>, _t: Tensor<Gpu, 1, Int>| x.mul_scalar(0.1);
    let mut noise = NoiseSource::<Gpu>::seeded(0); // η = 0: never drawn
    let out = sample_loop(&mut sampler, &model, x_t, &mut noise, |_| {}, None).unwrap();
    let dev = max_rel_dev(&to_vec(out), &tensors["final_sample"].values);
    eprintln!("ddim_loop_simple on the GPU: max |Δ|/max(1, |b|) = {dev:.2e}");
    assert!(dev <= 1e-4, "{dev:e}");
}

#[test]
fn ddpm_loop_matches_diffusers_with_replayed_noise() {
    let (fx, tensors) = loop_fixture("ddpm_loop_simple");
    let device = device();
    let sc = &fx["scheduler_config"];
    let mut sampler = DdpmSamplerConfig::new()
        .with_variance_type(sc["variance_type"].as_str().unwrap().parse().unwrap())
        .with_x0_processing(
            X0ProcessingConfig::new().with_clip_sample(sc["clip_sample"].as_bool().unwrap()),
        )
        .init(&schedule(sc))
        .unwrap();
    let x_t: Tensor<Gpu, 4> = tensors["x_T"].to_tensor(&device);
    let mut noise = NoiseSource::replay(tensors["variance_noise"].to_tensor(&device));
    let model = |x: Tensor<Gpu, 4>, _t: Tensor<Gpu, 1, Int>| x.mul_scalar(0.1);
    let out = sample_loop(&mut sampler, &model, x_t, &mut noise, |_| {}, None).unwrap();
    let dev = max_rel_dev(&to_vec(out), &tensors["final_sample"].values);
    eprintln!("ddpm_loop_simple (1000 steps) on the GPU: max |Δ|/max(1, |b|) = {dev:.2e}");
    assert!(dev <= 1e-4, "{dev:e}");
}

/// A 10-step DDIM sample of the tiny U-Net from a seeded x_T (host RNG: the same on every
/// backend), the model converted to `precision`.
fn unet_ddim_sample<B: Backend>(precision: Precision, device: &B::Device) -> Vec<f32> {
    let unet = tiny_unet::<B>(device).with_precision(precision).unwrap();
    let mut sampler = DdimSamplerConfig::new()
        .with_num_inference_steps(10)
        .init(&NoiseSchedule::paper())
        .unwrap();
    let mut noise = NoiseSource::<B>::seeded(5);
    let x_t = noise.standard_normal([2, 3, 16, 16], device).unwrap();
    let model = |x: Tensor<B, 4>, t: Tensor<B, 1, Int>| unet.forward(x, t);
    to_vec(sample_loop(&mut sampler, &model, x_t, &mut noise, |_| {}, None).unwrap())
}

#[test]
fn unet_ddim_sample_matches_flex() {
    let flex = unet_ddim_sample::<Cpu>(Precision::F32, &Default::default());
    let gpu = unet_ddim_sample::<Gpu>(Precision::F32, &device());
    let dev = max_rel_dev(&gpu, &flex);
    eprintln!("tiny U-Net, 10 DDIM steps, GPU vs Flex: max |Δ|/max(1, |b|) = {dev:.2e}");
    assert!(dev <= 3e-4, "{dev:e}"); // lavapipe vs Flex direct AVX2 kernels: 1.08e-4 measured
}

#[test]
fn half_precision_stays_close_to_f32() {
    let device = device();
    let f32_sample = unet_ddim_sample::<Gpu>(Precision::F32, &device);
    let (x, t, want) = unet_io::<Gpu>(&device);
    let reference = &want["case0/output"].values;
    for precision in [Precision::F16, Precision::Bf16] {
        if !precision.is_supported::<Gpu>(&device) {
            let err = tiny_unet::<Gpu>(&device)
                .with_precision(precision)
                .unwrap_err();
            assert!(
                matches!(err, UnetError::UnsupportedPrecision { .. }),
                "{err}"
            );
            eprintln!(
                "{precision}: not supported by {} ({err})",
                Gpu::name(&device)
            );
            continue;
        }
        let unet = tiny_unet::<Gpu>(&device).with_precision(precision).unwrap();
        let out = to_vec(unet.forward(x.clone(), t.clone()));
        let forward_dev = max_abs_diff(&out, reference);
        let sample = unet_ddim_sample::<Gpu>(precision, &device);
        let sample_dev = max_rel_dev(&sample, &f32_sample);
        let sample_mean_dev = sample
            .iter()
            .zip(&f32_sample)
            .map(|(a, b)| f64::from((a - b).abs()))
            .sum::<f64>()
            / sample.len() as f64;
        eprintln!(
            "{precision} on {}: U-Net output max |Δ| vs diffusers f32 = {forward_dev:.2e} \
             (|out| ≤ {:.2}); 10-step DDIM sample vs f32: max |Δ|/max(1, |b|) = {sample_dev:.2e}, \
             mean |Δ| = {sample_mean_dev:.2e}",
            Gpu::name(&device),
            reference.iter().fold(0.0f32, |m, v| m.max(v.abs())),
        );
        // One forward pass: ~1e-3 relative rounding per operation (f16: 2⁻¹¹, bf16: 2⁻⁸ per
        // value), and GPU kernels may accumulate in the half type (lavapipe f16: 1.3e-2).
        // Ten DDIM steps from x_T amplify the network's error: the first steps divide ε̂'s error
        // by √ᾱ_t ≈ 0.006 in x̂₀ (then clipped), so single values move a lot (lavapipe f16:
        // max 0.64) while the sample as a whole stays close (mean |Δ| 0.067). The mean bound
        // is what a wrong cast (say the time embedding rounded in f16) would break.
        let (forward_bound, sample_max_bound, sample_mean_bound) = match precision {
            Precision::F16 => (2e-2, 1.0, 0.15),
            _ => (6e-2, 1.5, 0.3),
        };
        assert!(
            forward_dev > 0.0,
            "{precision}: the model did not change type"
        );
        assert!(forward_dev <= forward_bound, "{precision}: {forward_dev:e}");
        assert!(
            sample.iter().all(|v| v.is_finite()),
            "{precision}: non-finite sample"
        );
        assert!(
            sample_dev <= sample_max_bound,
            "{precision}: {sample_dev:e}"
        );
        assert!(
            sample_mean_dev <= sample_mean_bound,
            "{precision}: mean |Δ| {sample_mean_dev:e}"
        );
    }
}

/// A small synthetic RGB 16×16 dataset (squares at varying places).
fn dataset() -> Arc<Dataset> {
    let n = 16;
    let mut data = vec![0u8; n * 3 * 256];
    for i in 0..n {
        for c in 0..3 {
            for y in 0..16 {
                for x in 0..16 {
                    let on = (x + 3 * i + c) % 16 < 8 && (y + i) % 16 < 8;
                    data[((i * 3 + c) * 16 + y) * 16 + x] = if on { 220 } else { 30 };
                }
            }
        }
    }
    Arc::new(Dataset::from_raw(data, n, 3, 16, 16).unwrap())
}

/// The tiny U-Net with the CIFAR preset's dropout, 3 steps of batch 4.
fn train_config() -> TrainConfig {
    TrainConfig::new(UnetConfig::tiny().with_dropout(0.1))
        .with_steps(3)
        .with_batch_size(4)
        .with_learning_rate(1e-3)
        .with_warmup_steps(0)
        .with_ema_decay(0.9)
        .with_seed(11)
        .with_checkpoint_every(1000)
        .with_sample_every(0)
        .with_num_preview_samples(2)
        .with_preview_steps(2)
}

fn params<B: Backend>(m: &Unet<B>) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.extend(to_vec(p.val()));
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

#[test]
fn training_matches_flex_and_checkpoints_load_on_the_gpu() {
    // Flex: the reference losses.
    let cpu_dir = tmp_dir("train-flex");
    let mut cpu =
        Trainer::<Autodiff<Cpu>>::new(train_config(), &cpu_dir, dataset(), &Default::default())
            .unwrap();
    let cpu_init = params(&cpu.model().clone());
    let cpu_losses: Vec<f64> = (0..3).map(|_| cpu.train_step().unwrap().loss).collect();

    let device = device();
    let dir = tmp_dir("train-gpu");
    let mut gpu = Trainer::<Autodiff<Gpu>>::new(train_config(), &dir, dataset(), &device).unwrap();
    // The seed alone decides the initial weights: bit for bit the same as on Flex.
    assert_eq!(params(&gpu.model().clone()), cpu_init);
    let mut losses = Vec::new();
    gpu.run(|event| {
        if let ddpm_train::TrainEvent::Step { stats, .. } = event {
            losses.push(stats.loss);
        }
    })
    .unwrap();
    eprintln!("losses, Flex: {cpu_losses:?}");
    eprintln!("losses, GPU:  {losses:?}");
    assert_eq!(losses.len(), 3);
    for (step, (g, c)) in losses.iter().zip(&cpu_losses).enumerate() {
        let rel = (g - c).abs() / c.abs();
        assert!(
            rel <= 1e-3,
            "step {}: GPU {g} vs Flex {c} (rel {rel:e})",
            step + 1
        );
    }

    // run() wrote a checkpoint at step 3 and a preview grid sampled on the GPU.
    assert!(dir.join("samples.png").is_file());
    let ema: Unet<Gpu> = load_unet(&dir, Weights::Ema, &device).unwrap();
    assert_eq!(params(&ema), params(gpu.ema()));
    let raw: Unet<Gpu> = load_unet(&dir, Weights::Raw, &device).unwrap();
    use burn::module::AutodiffModule;
    assert_eq!(params(&raw), params(&gpu.model().valid()));
    // And a resumed run continues from it on the GPU.
    drop(gpu); // releases the run directory lock
    let mut resumed = Trainer::<Autodiff<Gpu>>::resume(&dir, dataset(), Some(4), &device).unwrap();
    assert_eq!(resumed.step(), 3);
    let loss = resumed.train_step().unwrap().loss;
    assert!(loss.is_finite());
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(cpu_dir);
}

#[test]
fn two_data_parallel_peers_on_the_gpu_train_the_single_device_model() {
    // Two peers on the same GPU device, 2 images each, against one trainer of batch 4: the
    // same model up to the rounding of the gradient mean (dropout off: peer 1 draws its own
    // masks), and both peers hold the same weights.
    use ddpm_train::parallel::{ParallelTraining, PeerGroup, Start};
    let config = || {
        let mut c = train_config();
        c.unet = UnetConfig::tiny().with_dropout(0.0);
        c
    };
    let device = device();
    let dir = tmp_dir("dp-single");
    let mut single = Trainer::<Autodiff<Gpu>>::new(config(), &dir, dataset(), &device).unwrap();
    let init = params(&single.model().clone());
    for _ in 0..3 {
        single.train_step().unwrap();
    }
    use burn::module::AutodiffModule;
    let want = params(&single.model().valid());

    let dir2 = tmp_dir("dp-two");
    let peers = ParallelTraining::<Autodiff<Gpu>>::new(
        Start::New(config()),
        &dir2,
        dataset(),
        vec![device.clone(); 2],
        PeerGroup::local(2).with_timeout(std::time::Duration::from_secs(600)),
    )
    .unwrap()
    .run(|_| {})
    .unwrap();
    let got = params(&peers[0].model().valid());
    assert_eq!(got, params(&peers[1].model().valid()), "peers agree");
    let moved = init
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("data parallel on the GPU: weights moved {moved}, 2 peers vs 1 differ by {diff}");
    assert!(moved > 1e-3, "training moved the weights ({moved})");
    // 5.6e-5 on lavapipe; a wrong shard moves the weights by ~1e-3.
    assert!(diff < 2e-4, "2 peers vs 1: {diff}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}
