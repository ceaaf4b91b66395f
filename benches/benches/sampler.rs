//! Whole samples of the `mnist-small` U-Net (random weights) at batch 16, in images/s:
//! deterministic DDIM with 50 steps and DPM-Solver++(2M) with 20, from the paper's schedule.
//! Per-step sampler overhead alone is `ddpm-sampler`'s own benchmark.
//!
//! `cargo bench -p ddpm-benches --bench sampler`

use std::time::Duration;

use burn::tensor::{Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ddpm::sampler::{DdimSamplerConfig, DpmSolverConfig, NoiseSource, Sampler, sample_loop};
use ddpm::schedule::NoiseSchedule;
use ddpm_benches::{Backend, inputs, preset};

const PRESET: &str = "mnist-small";
const BATCH: usize = 16;

fn bench_sampler(c: &mut Criterion, name: &str, mut sampler: impl Sampler<Backend>) {
    let device = Default::default();
    let config = preset(PRESET);
    let unet = config.init::<Backend>(&device).expect("valid preset");
    let (x_t, _, _) = inputs::<Backend>(&config, BATCH, &device);
    let model = |x: Tensor<Backend, 4>, t: Tensor<Backend, 1, Int>| unet.forward(x, t);
    let mut group = c.benchmark_group(format!("{PRESET}_sample"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("{name}/b{BATCH}"), |b| {
        b.iter(|| {
            let mut noise = NoiseSource::<Backend>::seeded(0);
            sample_loop(&mut sampler, &model, x_t.clone(), &mut noise, |_| {}, None)
                .expect("sampling")
                .into_data()
        })
    });
    group.finish();
}

fn samplers(c: &mut Criterion) {
    let schedule = NoiseSchedule::paper();
    let ddim = DdimSamplerConfig::new()
        .with_num_inference_steps(50)
        .init(&schedule)
        .expect("DDIM-50");
    bench_sampler(c, "ddim50", ddim);
    let dpm = DpmSolverConfig::new()
        .with_num_inference_steps(20)
        .init(&schedule)
        .expect("DPM-Solver++ 20");
    bench_sampler(c, "dpm_solver_pp20", dpm);
}

criterion_group!(benches, samplers);
criterion_main!(benches);
