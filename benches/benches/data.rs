//! The data pipeline on the bundled MNIST (`data/mnist`, 60,000 training images): decoding
//! the gzipped IDX file into a `Dataset`, and batching it (shuffle, scale to [−1, 1], random
//! flips, on the prefetch thread) into batches of 64, in images/s.
//!
//! `cargo bench -p ddpm-benches --bench data`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ddpm::data::{BatchIterConfig, ImageSize, LoadOptions, load_mnist_dir};

const BATCH: usize = 64;
/// Batches per timed iteration of the batching benchmark.
const BATCHES: usize = 100;

fn mnist_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

fn data(c: &mut Criterion) {
    let opts = LoadOptions::new(1, ImageSize::square(28));
    let mut group = c.benchmark_group("mnist_data");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    let dataset = load_mnist_dir(mnist_dir(), &opts).expect("the bundled MNIST in data/mnist");
    group.throughput(Throughput::Elements(dataset.len() as u64));
    group.bench_function("decode_idx_gz", |b| {
        b.iter(|| load_mnist_dir(mnist_dir(), &opts).expect("MNIST").len())
    });

    let dataset = Arc::new(dataset);
    let mut batches = BatchIterConfig::new(BATCH, 0)
        .with_random_flip(true)
        .init(dataset)
        .expect("batch iterator");
    group.throughput(Throughput::Elements((BATCH * BATCHES) as u64));
    group.bench_function(format!("batches/b{BATCH}"), |b| {
        b.iter(|| {
            (0..BATCHES)
                .map(|_| batches.next().expect("endless").images.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, data);
criterion_main!(benches);
