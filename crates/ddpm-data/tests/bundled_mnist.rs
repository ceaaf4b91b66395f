//! The MNIST copy bundled in the repository's `data/mnist/` loads: 60,000 + 10,000 images of
//! 28 × 28, with the pixel mean stated in `data/mnist/README.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ddpm_data::{BatchIterConfig, DataSpec, ImageSize, LoadOptions, Split};

fn bundled() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

#[test]
fn bundled_mnist_train_and_test_load() {
    let spec: DataSpec = format!("mnist:{}", bundled().display()).parse().unwrap();
    let opts = LoadOptions::new(1, ImageSize::square(28));

    let start = Instant::now();
    let train = spec.open(&opts).unwrap();
    eprintln!("MNIST train (60k, 28×28) loaded in {:.2?}", start.elapsed());
    assert_eq!(
        (train.len(), train.channels(), train.height(), train.width()),
        (60_000, 1, 28, 28)
    );
    assert!(!train.report().resized);
    let mean = train.as_bytes().iter().map(|&v| v as f64).sum::<f64>()
        / train.as_bytes().len() as f64
        / 255.0;
    assert!((mean - 0.1307).abs() < 5e-5, "train pixel mean {mean}");

    let test = spec.open(&opts.clone().with_split(Split::Test)).unwrap();
    assert_eq!((test.len(), test.height(), test.width()), (10_000, 28, 28));

    // The first batch of the main job's setup is in [-1, 1] with both ends reached.
    let mut it = BatchIterConfig::new(128, 0).init(Arc::new(test)).unwrap();
    let b = it.next().unwrap();
    assert_eq!(b.shape, [128, 1, 28, 28]);
    let (lo, hi) = b
        .images
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    assert_eq!((lo, hi), (-1.0, 1.0));
}
