//! `Pipeline` across crates: it gives bit for bit the samples of a hand-built `sample_loop`
//! at every batch size; a checkpoint directory of a cosine-β run samples exactly like its run;
//! non-finite inputs and models fail naming the input or the step; cancellation, progress,
//! previews and image files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Int, Tensor, TensorData};
use ddpm::pipeline::layout::{SCHEDULER_CONFIG_FILE, checkpoint_dir};
use ddpm::pipeline::{PipelineError, SamplerOverrides, step_noise_seed};
use ddpm::prelude::*;
use ddpm::sampler::sampler_from_config;
use ddpm::schedule::SchedulerClass;
use ddpm::unet::BlockType;

const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ddpm-cli/tests/fixtures/unet_tiny"
);

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ddpm-facade-pipeline-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn values(x: &Tensor<Flex, 4>) -> Vec<u32> {
    x.clone()
        .into_data()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// DDPM ancestral (4 steps) and DDIM with η = 0.5: both draw fresh noise at every step.
fn stochastic_configs() -> Vec<(SamplingConfig, SamplerOverrides)> {
    let ddpm = SamplingConfig::class_defaults(SchedulerClass::Ddpm);
    let ddim = SamplingConfig::class_defaults(SchedulerClass::Ddim);
    vec![
        (
            ddpm,
            SamplerOverrides {
                num_inference_steps: Some(4),
                ..Default::default()
            },
        ),
        (
            ddim,
            SamplerOverrides {
                num_inference_steps: Some(3),
                eta: Some(0.5),
                ..Default::default()
            },
        ),
    ]
}

#[test]
fn pipeline_equals_a_hand_built_sample_loop_at_every_batch_size() {
    let device = Default::default();
    let (n, seed) = (3, 11);
    for (config, overrides) in stochastic_configs() {
        let pipe = Pipeline::<Flex>::from_dir(TINY, &device)
            .unwrap()
            .with_scheduler_config(config.clone());

        // By hand: x_T from the seeded host RNG, step noise from one stream per sample.
        let (_, mut sampler) = sampler_from_config::<Flex>(&config, &overrides).unwrap();
        let x_t = NoiseSource::<Flex>::seeded(seed)
            .standard_normal([n, 3, 16, 16], &device)
            .unwrap();
        let mut noise = NoiseSource::per_sample((0..n).map(|i| step_noise_seed(seed, i)));
        let unet = pipe.unet();
        let model = |x: Tensor<Flex, 4>, t: Tensor<Flex, 1, Int>| unet.forward(x, t);
        let by_hand = sample_loop(sampler.as_mut(), &model, x_t, &mut noise, |_| {}, None).unwrap();
        let by_hand = values(&by_hand);
        assert!(by_hand.iter().all(|b| f32::from_bits(*b).is_finite()));

        for batch_size in [1, 2, 3] {
            let samples = pipe
                .sampling()
                .overrides(overrides.clone())
                .seed(seed)
                .batch_size(batch_size)
                .sample(n)
                .unwrap();
            assert_eq!(
                values(samples.tensor()),
                by_hand,
                "{:?} at batch size {batch_size}",
                overrides
            );
        }
        // Another seed gives other samples (the comparison above can fail).
        let other = pipe
            .sampling()
            .overrides(overrides.clone())
            .seed(seed + 1)
            .sample(n)
            .unwrap();
        assert_ne!(values(other.tensor()), by_hand);
    }
}

#[test]
fn given_noise_replaces_the_seed() {
    let device = Default::default();
    let pipe = Pipeline::<Flex>::from_dir(TINY, &device).unwrap();
    let n = 2;
    let x_t = Tensor::<Flex, 4>::from_data(
        TensorData::new(
            (0..n * 768)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect::<Vec<_>>(),
            [n, 3, 16, 16],
        ),
        &device,
    );
    let z = Tensor::<Flex, 5>::from_data(
        TensorData::new(
            (0..4 * n * 768)
                .map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0)
                .collect::<Vec<_>>(),
            [4, n, 3, 16, 16],
        ),
        &device,
    );
    let run = |seed: u64, batch_size: usize| {
        let s = pipe
            .sampler(SamplerKind::Ddpm)
            .steps(4)
            .seed(seed)
            .batch_size(batch_size)
            .init_noise(x_t.clone())
            .noise_replay(z.clone())
            .sample(n)
            .unwrap();
        values(s.tensor())
    };
    let a = run(1, 2);
    assert_eq!(a, run(2, 1));
}

/// 8×8 gray U-Net for a fast training run.
fn small_unet() -> UnetConfig {
    UnetConfig::new()
        .with_sample_size(8)
        .with_in_channels(1)
        .with_out_channels(1)
        .with_block_out_channels(vec![16, 32])
        .with_down_block_types(vec![BlockType::Plain, BlockType::Attention])
        .with_up_block_types(vec![BlockType::Attention, BlockType::Plain])
        .with_layers_per_block(1)
        .with_norm_num_groups(8)
}

fn dataset() -> Arc<ddpm::data::Dataset> {
    let data: Vec<u8> = (0..16 * 64).map(|i| ((i * 29) % 251) as u8).collect();
    Arc::new(ddpm::data::Dataset::from_raw(data, 16, 1, 8, 8).unwrap())
}

fn grid_bytes(samples: &Samples<Flex>, dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    samples.save_grid(&path).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn a_checkpoint_dir_of_a_cosine_run_samples_exactly_like_the_run() {
    let root = tmp("cosine");
    let run = root.join("run");
    let device = Default::default();
    let config = TrainConfig::new(small_unet())
        .with_schedule(NoiseScheduleConfig::cosine(1000))
        .with_steps(2)
        .with_batch_size(4)
        .with_warmup_steps(1)
        .with_checkpoint_every(1000)
        .with_sample_every(0)
        .with_num_preview_samples(1)
        .with_preview_steps(2);
    let mut trainer = Trainer::<Autodiff<Flex>>::new(config, &run, dataset(), &device).unwrap();
    trainer.run(|_| {}).unwrap();
    drop(trainer);
    let ckpt = checkpoint_dir(&run, 2);
    assert!(ckpt.join(SCHEDULER_CONFIG_FILE).is_file());

    let draw = |path: &Path| {
        let pipe = Pipeline::<Flex>::from_dir(path, &device).unwrap();
        assert!(
            matches!(
                pipe.scheduler_config().schedule.beta_schedule,
                BetaSchedule::Cosine { .. }
            ),
            "{}: {:?}",
            path.display(),
            pipe.scheduler_config().schedule
        );
        let s = pipe
            .sampler(SamplerKind::Ddim)
            .steps(5)
            .seed(3)
            .sample(2)
            .unwrap();
        values(s.tensor())
    };
    let from_run = draw(&run);
    assert_eq!(draw(&ckpt), from_run);
    // The checkpoint directory copied out of its run carries its schedule.
    let copy = root.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&ckpt).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    assert_eq!(draw(&copy), from_run);
    // A checkpoint written before checkpoints carried the file uses its run's...
    std::fs::remove_file(ckpt.join(SCHEDULER_CONFIG_FILE)).unwrap();
    assert_eq!(draw(&ckpt), from_run);
    // ... and one out of its run without the file is refused, not sampled with linear β.
    std::fs::remove_file(copy.join(SCHEDULER_CONFIG_FILE)).unwrap();
    let e = Pipeline::<Flex>::from_dir(&copy, &device).unwrap_err();
    assert!(
        matches!(e, PipelineError::MissingSchedulerConfig { .. }),
        "{e}"
    );
    // The linear schedule gives other samples: the comparisons above can fail.
    let linear = Pipeline::<Flex>::from_dir(&run, &device)
        .unwrap()
        .with_scheduler_config(SamplingConfig::default());
    let s = linear
        .sampler(SamplerKind::Ddim)
        .steps(5)
        .seed(3)
        .sample(2)
        .unwrap();
    assert_ne!(values(s.tensor()), from_run);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn non_finite_init_noise_is_refused_naming_it() {
    let device = Default::default();
    let pipe = Pipeline::<Flex>::from_dir(TINY, &device).unwrap();
    let mut v = vec![0.5f32; 2 * 768];
    v[700] = f32::NAN;
    v[900] = f32::INFINITY;
    let x_t = Tensor::<Flex, 4>::from_data(TensorData::new(v, [2, 3, 16, 16]), &device);
    let e = pipe
        .sampler(SamplerKind::Ddim)
        .steps(2)
        .init_noise(x_t)
        .sample(2)
        .unwrap_err();
    assert!(matches!(e, PipelineError::NonFiniteInput { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("init noise (x_T)"), "{msg}");
    assert!(
        msg.contains("2 of 1536") && msg.contains("index 700"),
        "{msg}"
    );
}

/// Multiplies every float parameter by `factor`.
struct Scale(f32);

impl<B: burn::tensor::backend::Backend> ModuleMapper<B> for Scale {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let factor = self.0;
        param.map(|t| t.mul_scalar(factor))
    }
}

#[test]
fn a_model_that_goes_non_finite_fails_naming_the_step() {
    let device = Default::default();
    let unet = Pipeline::<Flex>::from_dir(TINY, &device)
        .unwrap()
        .unet()
        .clone()
        .map(&mut Scale(f32::NAN));
    let pipe = Pipeline::new(unet, SamplingConfig::default(), &device);
    let e = pipe
        .sampler(SamplerKind::Ddim)
        .steps(4)
        .batch_size(2)
        .sample(3)
        .unwrap_err();
    assert!(
        matches!(e, PipelineError::NonFiniteSamples { step: 1, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("step 1 of 4") && msg.contains("model output"),
        "{msg}"
    );
    assert!(msg.contains("samples 0..2"), "{msg}");
}

#[test]
fn cancel_progress_and_previews() {
    let device = Default::default();
    let pipe = Pipeline::<Flex>::from_dir(TINY, &device).unwrap();
    let mut seen = Vec::new();
    let mut previews = Vec::new();
    let samples = pipe
        .sampler(SamplerKind::Ddim)
        .steps(4)
        .batch_size(2)
        .on_progress(|p| seen.push((p.batch, p.step, p.steps_done(), p.total_steps())))
        .previews(3, |p| previews.push((p.progress.step, p.pred_x0.dims())))
        .sample(3)
        .unwrap();
    assert_eq!(samples.shape(), [3, 3, 16, 16]);
    assert_eq!(seen.len(), 8);
    assert_eq!(seen[5], (1, 1, 6, 8));
    assert_eq!(
        previews,
        [
            (2, [2, 3, 16, 16]),
            (3, [2, 3, 16, 16]),
            (2, [1, 3, 16, 16]),
            (3, [1, 3, 16, 16])
        ]
    );

    // Raised during the second step: the run stops before the third.
    let flag = AtomicBool::new(false);
    let e = pipe
        .sampler(SamplerKind::Ddim)
        .steps(4)
        .cancel(&flag)
        .on_progress(|p| {
            if p.step == 1 {
                flag.store(true, Ordering::Relaxed)
            }
        })
        .sample(1)
        .unwrap_err();
    assert!(matches!(e, PipelineError::Cancelled { step: 3, .. }), "{e}");
}

#[test]
fn images_and_files() {
    let dir = tmp("files");
    let device = Default::default();
    let pipe = Pipeline::<Flex>::from_dir(TINY, &device).unwrap();
    let samples = pipe.sampler(SamplerKind::Ddim).steps(2).sample(3).unwrap();
    let images = samples.to_images().unwrap();
    assert_eq!(images.len(), 3);
    assert_eq!((images[0].width(), images[0].height()), (16, 16));
    let png = grid_bytes(&samples, &dir, "grid.png");
    assert_eq!(&png[..4], b"\x89PNG");
    let jpg = grid_bytes(&samples, &dir, "grid.JPG");
    assert_eq!(&jpg[..3], &[0xFF, 0xD8, 0xFF]);
    let e = samples.save_grid(dir.join("grid.webp")).unwrap_err();
    assert!(e.to_string().contains("webp"), "{e}");
    let each = samples.save_each(dir.join("each")).unwrap();
    assert_eq!(each.len(), 3);
    assert!(each[2].ends_with("sample_00002.png"));
    samples.save_tensor(dir.join("s.safetensors")).unwrap();
    let back: Tensor<Flex, 4> =
        ddpm::pipeline::tensor_file::load_tensor(dir.join("s.safetensors"), &["samples"], &device)
            .unwrap();
    assert_eq!(values(&back), values(samples.tensor()));
    let _ = std::fs::remove_dir_all(dir);
}
