//! The U-Net per preset and batch: one forward pass ε_θ(x_t, t), and one training step
//! (forward + MSE against ε + backward + Adam, optimizer state kept across steps), reported
//! in images/s. Presets: `mnist-small` (the README's main job), `mnist`, `ddpm-cifar10`.
//!
//! `cargo bench -p ddpm-benches --bench unet [-- FILTER]`, e.g. `-- mnist-small/train`.

use std::time::Duration;

use burn::backend::Autodiff;
use burn::optim::{GradientsParams, Optimizer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ddpm::train::optim::FusedAdam;
use ddpm_benches::{Backend, inputs, preset};

type Ad = Autodiff<Backend>;

/// (preset, forward batches, training-step batches).
const CASES: [(&str, &[usize], &[usize]); 3] = [
    ("mnist-small", &[1, 8, 64], &[64]),
    ("mnist", &[1, 8, 64], &[8, 64]),
    ("ddpm-cifar10", &[1, 8], &[8]),
];

fn unet(c: &mut Criterion) {
    let device = Default::default();
    for (name, forward_batches, train_batches) in CASES {
        let config = preset(name);
        let mut group = c.benchmark_group(name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        let unet = config.init::<Backend>(&device).expect("valid preset");
        for &batch in forward_batches {
            let (x, t, _) = inputs::<Backend>(&config, batch, &device);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("forward/b{batch}"), |b| {
                b.iter(|| unet.forward(x.clone(), t.clone()).into_data())
            });
        }
        for &batch in train_batches {
            let mut model = Some(config.init::<Ad>(&device).expect("valid preset"));
            let mut optim = FusedAdam::default().init();
            let (x, t, eps) = inputs::<Ad>(&config, batch, &device);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("train/b{batch}"), |b| {
                b.iter(|| {
                    let unet = model.take().expect("the model is put back after each step");
                    let loss = (unet.forward(x.clone(), t.clone()) - eps.clone())
                        .square()
                        .mean();
                    let grads = GradientsParams::from_grads(loss.backward(), &unet);
                    model = Some(optim.step(2e-4, unet, grads));
                    loss.into_data()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, unet);
criterion_main!(benches);
