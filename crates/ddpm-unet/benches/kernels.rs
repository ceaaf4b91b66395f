//! The Flex kernels of `ddpm_unet::kernels` one by one, against each other and against Burn's
//! own ops: a 3×3 convolution forward and training step (forward + backward of Σ y·r) at the
//! U-Nets' shapes, through the direct (AVX-512) kernels, im2col + gemm, and Burn; GroupNorm +
//! SiLU fused against Burn's composite. Whole-model benchmarks live in the workspace's
//! `benches/` member (`cargo bench -p ddpm-benches`).
//!
//! `cargo bench -p ddpm-unet --bench kernels` (release build). Filter with e.g. `-- conv3x3`.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Distribution, Tensor};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ddpm_unet::kernels;

type Ad = Autodiff<Flex>;

/// How a convolution runs: this crate's direct kernels, its im2col + gemm, or Burn's op.
#[derive(Clone, Copy, Debug)]
enum Path {
    Direct,
    Im2col,
    Burn,
}

impl Path {
    fn select(self) {
        kernels::set_fast_kernels(!matches!(self, Path::Burn));
        kernels::set_direct_conv(matches!(self, Path::Direct));
    }
}

const PATHS: [Path; 3] = [Path::Direct, Path::Im2col, Path::Burn];

/// (name, batch, channels in, channels out, side): the 3×3 convs of `mnist-small` (b64),
/// `mnist` (b8) and `ddpm-cifar10` (b8) at their widest level.
const CONVS: [(&str, usize, usize, usize, usize); 4] = [
    ("mnist-small_b64_16x28", 64, 16, 16, 28),
    ("mnist_b8_32x28", 8, 32, 32, 28),
    ("mnist_b8_64x14", 8, 64, 64, 14),
    ("cifar10_b8_128x32", 8, 128, 128, 32),
];

fn conv3x3(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("conv3x3");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (name, n, ci, co, side) in CONVS {
        let config =
            Conv2dConfig::new([ci, co], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
        let conv = config.init::<Flex>(&device);
        let conv_ad = config.init::<Ad>(&device);
        let x = Tensor::<Flex, 4>::random([n, ci, side, side], Distribution::Default, &device);
        let r = Tensor::<Flex, 4>::random([n, co, side, side], Distribution::Default, &device);
        for path in PATHS {
            group.bench_function(
                BenchmarkId::new(format!("{name}_forward"), format!("{path:?}")),
                |b| {
                    path.select();
                    b.iter(|| kernels::conv2d(&conv, x.clone()).into_data())
                },
            );
            group.bench_function(
                BenchmarkId::new(format!("{name}_train"), format!("{path:?}")),
                |b| {
                    path.select();
                    b.iter(|| {
                        let xa = Tensor::<Ad, 4>::from_inner(x.clone()).require_grad();
                        let y = kernels::conv2d(&conv_ad, xa.clone());
                        let grads = (y * Tensor::from_inner(r.clone())).sum().backward();
                        xa.grad(&grads).map(|g| g.into_data())
                    })
                },
            );
        }
    }
    Path::Direct.select();
    group.finish();
}

fn norm(groups: usize, channels: usize) -> GroupNorm<Ad> {
    GroupNormConfig::new(groups, channels).init(&Default::default())
}

fn group_norm_silu(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("group_norm_silu");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (name, n, ch, side, groups) in [
        ("mnist-small_b64_16x28", 64, 16, 28, 8),
        ("cifar10_b8_128x32", 8, 128, 32, 32),
    ] {
        let gn = norm(groups, ch);
        let x = Tensor::<Flex, 4>::random([n, ch, side, side], Distribution::Default, &device);
        for fast in [true, false] {
            let label = if fast { "fused" } else { "Burn" };
            group.bench_function(BenchmarkId::new(format!("{name}_train"), label), |b| {
                kernels::set_fast_kernels(fast);
                b.iter(|| {
                    let xa = Tensor::<Ad, 4>::from_inner(x.clone()).require_grad();
                    let y = if fast {
                        kernels::group_norm(&gn, xa.clone(), true)
                    } else {
                        silu(gn.forward(xa.clone()))
                    };
                    let grads = y.sum().backward();
                    xa.grad(&grads).map(|g| g.into_data())
                })
            });
        }
    }
    kernels::set_fast_kernels(true);
    group.finish();
}

criterion_group!(benches, conv3x3, group_norm_silu);
criterion_main!(benches);
