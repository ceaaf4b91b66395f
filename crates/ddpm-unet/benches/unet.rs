//! Speed of the DDPM U-Net on the `flex` CPU backend, for comparison with PyTorch's figures in
//! `bench/README.md` (same configs, random weights, dropout 0): forward at batch 1 and 8, and
//! a training step (forward + MSE + backward + Adam) at batch 8.
//!
//! `cargo bench -p ddpm-unet` (release build). Filter with e.g. `-- cifar10`.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use ddpm_unet::UnetConfig;

type B = Flex;
type Ad = Autodiff<Flex>;

fn inputs<Bk: burn::tensor::backend::Backend>(
    config: &UnetConfig,
    batch: usize,
    device: &Bk::Device,
) -> (Tensor<Bk, 4>, Tensor<Bk, 1, Int>, Tensor<Bk, 4>) {
    let shape = [
        batch,
        config.in_channels,
        config.sample_size,
        config.sample_size,
    ];
    let x = Tensor::random(shape, Distribution::Normal(0.0, 1.0), device);
    let noise = Tensor::random(shape, Distribution::Normal(0.0, 1.0), device);
    let t = Tensor::<Bk, 1, Int>::from_data(
        burn::tensor::TensorData::new(
            (0..batch as i64)
                .map(|i| (i * 127 + 3) % 1000)
                .collect::<Vec<_>>(),
            [batch],
        ),
        device,
    );
    (x, t, noise)
}

fn bench_model(c: &mut Criterion, name: &str, config: UnetConfig) {
    let device = Default::default();
    let config = config.with_dropout(0.0);
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));

    let unet = config.init::<B>(&device).expect("valid preset");
    for batch in [1, 8] {
        let (x, t, _) = inputs::<B>(&config, batch, &device);
        group.bench_function(format!("forward_b{batch}"), |b| {
            b.iter(|| unet.forward(x.clone(), t.clone()).into_data())
        });
    }

    let mut model = Some(config.init::<Ad>(&device).expect("valid preset"));
    let mut optim = AdamConfig::new().init();
    let (x, t, noise) = inputs::<Ad>(&config, 8, &device);
    group.bench_function("train_step_b8", |b| {
        b.iter(|| {
            let unet = model.take().expect("model");
            let loss = (unet.forward(x.clone(), t.clone()) - noise.clone())
                .square()
                .mean();
            let grads = GradientsParams::from_grads(loss.backward(), &unet);
            let unet = optim.step(2e-4, unet, grads);
            model = Some(unet);
        })
    });
    group.finish();
}

fn cifar10(c: &mut Criterion) {
    bench_model(c, "ddpm_cifar10", UnetConfig::ddpm_cifar10());
}

fn mnist(c: &mut Criterion) {
    bench_model(c, "mnist", UnetConfig::mnist());
}

criterion_group!(benches, cifar10, mnist);
criterion_main!(benches);
