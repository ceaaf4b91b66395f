//! From images to a quality report (`ddpm_eval::quality`): real MNIST test digits against the
//! training set score close to 0 and a classifier score near 10, noise moves every figure the
//! right way, quantization is what a PNG holds, the reference cache round-trips, and a metric
//! refuses statistics of another extractor.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use ddpm_data::{Dataset, ImageSize, LoadOptions, Split, load_mnist_dir};
use ddpm_eval::{
    DigitClassifier, EvalError, KidConfig, PrdConfig, QualityConfig, QualityMetric,
    cached_reference_stats, compare, dataset_tensor, extract, quantize, reference_stats,
};

type B = Flex;

fn mnist(split: Split, n: usize) -> Dataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let all = load_mnist_dir(
        dir,
        &LoadOptions::new(1, ImageSize::square(28)).with_split(split),
    )
    .unwrap();
    let len = all.image_len();
    Dataset::from_raw(all.as_bytes()[..n * len].to_vec(), n, 1, 28, 28).unwrap()
}

fn config() -> QualityConfig {
    QualityConfig {
        kid: Some(KidConfig::default().with_subsets(20).with_subset_size(300)),
        precision_recall: Some(PrdConfig::default()),
        reference_features: 2000,
        ..QualityConfig::default()
    }
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-eval-quality-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn real_digits_score_near_the_ideal_and_noise_moves_every_figure() {
    let device = Default::default();
    let digits = DigitClassifier::<B>::pretrained(&device).unwrap();
    let reference = reference_stats(
        &digits,
        &mnist(Split::Train, 2000),
        "mnist#train[:2000]",
        None,
        &config(),
        &device,
    )
    .unwrap();
    assert_eq!(reference.stats.count, 2000);

    let test = mnist(Split::Test, 600);
    let clean = dataset_tensor::<B>(&test, 0, 600, &device);
    let real = compare(
        &extract(&digits, clean.clone(), 200).unwrap(),
        &reference,
        &config(),
    )
    .unwrap();
    let noisy_images = quantize(
        clean.clone()
            + Tensor::<B, 4>::random(clean.dims(), Distribution::Normal(0.0, 0.5), &device),
    );
    let noisy = compare(
        &extract(&digits, noisy_images, 200).unwrap(),
        &reference,
        &config(),
    )
    .unwrap();

    let (kid, pr, score) = (
        real.kid.as_ref().unwrap(),
        real.precision_recall.as_ref().unwrap(),
        real.classifier_score.unwrap(),
    );
    let (nkid, npr, nscore) = (
        noisy.kid.as_ref().unwrap(),
        noisy.precision_recall.as_ref().unwrap(),
        noisy.classifier_score.unwrap(),
    );
    eprintln!(
        "real: FLD {:.3} KID {:.5}±{:.5} P {:.3} R {:.3} score {:.3}; noisy σ=0.5: FLD {:.3} \
         KID {:.5} P {:.3} R {:.3} score {:.3}",
        real.frechet_distance,
        kid.mean,
        kid.std,
        pr.precision,
        pr.recall,
        score.mean,
        noisy.frechet_distance,
        nkid.mean,
        npr.precision,
        npr.recall,
        nscore.mean
    );
    // Held-out real digits (measured: FLD 14.8, KID 14.5 ± 11.4, P 0.87, R 0.88, score 8.75;
    // the features are unnormalised, so FLD's scale is the classifier's own; 600 vs 2,000
    // images leave a finite-sample bias): KID within its spread of 0, most samples inside
    // each other's manifold, a score near 10 (60 images per split bias it low).
    assert!(kid.mean.abs() < 3.0 * kid.std, "{kid:?}");
    assert!(pr.precision > 0.75 && pr.recall > 0.75, "{pr:?}");
    assert!(score.mean > 8.0, "{score:?}");
    // Heavy noise (measured: FLD 108, KID 178, P 0.71, R 0.30, score 6.8): every figure
    // worse, by far.
    assert!(noisy.frechet_distance > 4.0 * real.frechet_distance);
    assert!(nkid.mean > kid.mean + 5.0 * kid.std);
    assert!(npr.precision < pr.precision);
    assert!(nscore.mean < score.mean);
    assert_eq!((real.generated, real.reference), (600, 2000));
}

#[test]
fn quantization_is_what_a_png_holds() {
    let device = Default::default();
    let data = mnist(Split::Test, 8);
    let images = dataset_tensor::<B>(&data, 0, 8, &device);
    // Images that came from 8-bit data are fixed points.
    let again = quantize(images.clone());
    assert_eq!(
        again.into_data().to_vec::<f32>().unwrap(),
        images.clone().into_data().to_vec::<f32>().unwrap()
    );
    // Out-of-range values clamp; in-between values land on the 8-bit grid.
    let x = Tensor::<B, 1>::from_floats([-3.0, -1.0, 0.0, 0.001, 1.0, 7.0], &device)
        .reshape([1, 1, 1, 6]);
    let q = quantize(x).into_data().to_vec::<f32>().unwrap();
    let grid = |v: f32| 2.0 * (v / 255.0) - 1.0;
    assert_eq!(q, vec![-1.0, -1.0, grid(128.0), grid(128.0), 1.0, 1.0]);
}

#[test]
fn reference_statistics_are_cached_and_checked() {
    let device = Default::default();
    let digits = DigitClassifier::<B>::pretrained(&device).unwrap();
    let data = mnist(Split::Train, 300);
    let dir = temp_dir("cache");
    let (first, path, cached) = cached_reference_stats(
        &dir,
        &digits,
        &data,
        "mnist#train",
        None,
        &config(),
        &device,
    )
    .unwrap();
    assert!(!cached && path.is_file());
    let (second, path2, cached) = cached_reference_stats(
        &dir,
        &digits,
        &data,
        "mnist#train",
        None,
        &config(),
        &device,
    )
    .unwrap();
    assert!(cached);
    assert_eq!((first, path), (second, path2.clone()));
    // A limit is part of the key: another file.
    let (_, path3, cached) = cached_reference_stats(
        &dir,
        &digits,
        &data,
        "mnist#train",
        Some(100),
        &config(),
        &device,
    )
    .unwrap();
    assert!(!cached && path3 != path2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_metric_refuses_another_extractors_statistics() {
    let device = Default::default();
    let digits = DigitClassifier::<B>::pretrained(&device).unwrap();
    let mut reference = reference_stats(
        &digits,
        &mnist(Split::Train, 50),
        "mnist",
        None,
        &config(),
        &device,
    )
    .unwrap();
    reference.extractor_id = "inception-pytorch-fid-0000".into();
    let err = QualityMetric::new("fld", Box::new(digits), reference, config())
        .err()
        .unwrap();
    assert!(matches!(err, EvalError::BadSetting { .. }), "{err}");
    assert!(
        err.to_string().contains("inception-pytorch-fid-0000"),
        "{err}"
    );

    // Scoring through a metric equals extract + compare on quantized samples.
    let digits = DigitClassifier::<B>::pretrained(&device).unwrap();
    let reference = reference_stats(
        &digits,
        &mnist(Split::Train, 200),
        "mnist",
        None,
        &config(),
        &device,
    )
    .unwrap();
    let samples =
        Tensor::<B, 4>::random([40, 1, 28, 28], Distribution::Uniform(-1.0, 1.0), &device);
    let by_hand = compare(
        &extract(&digits, quantize(samples.clone()), config().batch_size).unwrap(),
        &reference,
        &config(),
    )
    .unwrap();
    let metric = QualityMetric::new("fld", Box::new(digits), reference, config()).unwrap();
    assert_eq!(metric.name(), "fld");
    let report = metric.score(samples).unwrap();
    assert_eq!(report.frechet_distance, by_hand.frechet_distance);
    assert!(report.to_json()["frechet_distance"].as_f64().is_some());
}
