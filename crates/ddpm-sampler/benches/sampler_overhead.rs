//! Sampler overhead per step, to compare with one U-Net forward pass (issue #4: goal < 1% of a
//! `ddpm_cifar10` forward at batch 64). The model is a trivial closure (`0.1 · x`), batch 64 of
//! 3×32×32, on the `flex` CPU backend; the figure is the time of `step` alone (plus the
//! noise draw for DDPM), measured in a release build.
//!
//! `cargo bench -p ddpm-sampler`; compare with `cargo bench -p ddpm-unet -- cifar10`.

use std::time::Duration;

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use ddpm_sampler::{DdimSamplerConfig, DdpmSamplerConfig, DpmSolverConfig, NoiseSource, Sampler};
use ddpm_schedule::NoiseSchedule;

type B = Flex;

const SHAPE: [usize; 4] = [64, 3, 32, 32];

fn bench_step<S: Sampler<B>>(c: &mut Criterion, name: &str, mut sampler: S, noise: bool) {
    let device = Default::default();
    let x = Tensor::<B, 4>::random(SHAPE, Distribution::Normal(0.0, 1.0), &device);
    let out = x.clone().mul_scalar(0.1);
    let mut source = NoiseSource::<B>::device();
    let ts = sampler.timesteps().to_vec();
    let t = ts[ts.len() / 2];
    c.bench_function(name, |b| {
        b.iter(|| {
            let z = noise.then(|| source.step_noise(0, SHAPE, &device).unwrap());
            let step = sampler.step(out.clone(), t, x.clone(), z);
            // Force the computation (the backend may be lazy).
            step.prev_sample.into_data()
        })
    });
}

fn benches(c: &mut Criterion) {
    let schedule = NoiseSchedule::paper();
    bench_step(
        c,
        "ddpm_step_b64_3x32x32",
        DdpmSamplerConfig::new().init(&schedule).unwrap(),
        true,
    );
    bench_step(
        c,
        "ddim_step_b64_3x32x32",
        DdimSamplerConfig::new().init(&schedule).unwrap(),
        false,
    );
    let mut dpm = DpmSolverConfig::new().init::<B>(&schedule).unwrap();
    // Give the solver its history so the timed step is second order.
    let device = Default::default();
    let x = Tensor::<B, 4>::zeros(SHAPE, &device);
    let ts = Sampler::<B>::timesteps(&dpm).to_vec();
    let first = ts[ts.len() / 2 - 1];
    dpm.step(x.clone(), first, x, None);
    bench_step(c, "dpm_solver_step_b64_3x32x32", dpm, false);
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(group);
