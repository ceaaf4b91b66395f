//! Statistics and metrics against independent computations: pytorch-fid, torch-fidelity, numpy
//! and 40-digit mpmath values (fixtures made by `tests/fixtures/metrics/make_fixtures.py`), closed
//! forms computed here in f64, and properties.

use ddpm_eval::linalg::{matmul, spectral_function, symmetric_eigen};
use ddpm_eval::prd::{knn_radii_squared, manifold_coverage, subsample};
use ddpm_eval::{
    EvalError, FeatureSet, FeatureStats, KidConfig, PrdConfig, ReferenceStats, StatsAccumulator,
    cache_file_name, cache_key, frechet_distance, kernel_inception_distance, kid_with_subsets,
    load_stats, mmd2_unbiased, precision_recall, save_stats,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Helpers

struct Fixture {
    json: Value,
    x: FeatureSet,
    y: FeatureSet,
}

fn fixture(name: &str) -> Fixture {
    let text = match name {
        "fd_d8" => include_str!("fixtures/metrics/fd_d8.json"),
        "fd_d64" => include_str!("fixtures/metrics/fd_d64.json"),
        "fd_rank_deficient" => include_str!("fixtures/metrics/fd_rank_deficient.json"),
        other => panic!("no fixture {other}"),
    };
    let json: Value = serde_json::from_str(text).unwrap();
    let dim = json["dim"].as_u64().unwrap() as usize;
    let rows = |key: &str| {
        let data: Vec<f32> = json[key]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        FeatureSet::new(dim, data).unwrap()
    };
    let (x, y) = (rows("x"), rows("y"));
    Fixture { json, x, y }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// A splitmix64 stream of uniform numbers in [−1, 1) for test matrices (independent of the
/// crate's RNG use).
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A random n×n orthogonal matrix (row-major) by modified Gram–Schmidt on random rows,
/// re-orthogonalised twice.
fn random_orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut u = Uniform(seed);
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| u.next()).collect();
        for _ in 0..2 {
            for b in &q {
                let dot: f64 = v.iter().zip(b).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(b).for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        v.iter_mut().for_each(|a| *a /= norm);
        q.push(v);
    }
    q.concat()
}

fn transpose(m: &[f64], r: usize, c: usize) -> Vec<f64> {
    let mut t = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = m[i * c + j];
        }
    }
    t
}

/// Q·diag(values)·Qᵀ.
fn with_spectrum(q: &[f64], values: &[f64]) -> Vec<f64> {
    let n = values.len();
    let mut scaled = q.to_vec();
    for i in 0..n {
        for j in 0..n {
            scaled[i * n + j] *= values[j];
        }
    }
    matmul(&scaled, &transpose(q, n, n), n, n, n)
}

fn stats_from(mean: Vec<f64>, cov: Vec<f64>) -> FeatureStats {
    FeatureStats {
        count: 100,
        mean,
        cov,
    }
}

fn max_abs(m: &[f64]) -> f64 {
    m.iter().fold(0.0, |a, &b| a.max(b.abs()))
}

// ---------------------------------------------------------------------------------------------
// Eigendecomposition

#[test]
fn eigen_recovers_known_spectrum() {
    let n = 48;
    let q = random_orthogonal(n, 1);
    // Repeated, zero, negative and widely spread eigenvalues.
    let mut values: Vec<f64> = (0..n).map(|i| (i as f64 - 10.0) * 0.75).collect();
    values[20] = 0.0;
    values[21] = 0.0;
    values[30] = 7.0;
    values[31] = 7.0;
    values[32] = 7.0;
    values[47] = 1e4;
    let a = with_spectrum(&q, &values);
    let eig = symmetric_eigen(&a, n, true).unwrap();
    let mut expected = values.clone();
    expected.sort_by(f64::total_cmp);
    let scale = 1e4;
    for (got, want) in eig.values.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-12 * scale, "{got} vs {want}");
    }
    // Reconstruction V·Λ·Vᵀ = A.
    let rebuilt = spectral_function(&eig, |l| l);
    let err: Vec<f64> = rebuilt.iter().zip(&a).map(|(r, a)| r - a).collect();
    assert!(
        max_abs(&err) < 1e-11 * scale,
        "reconstruction {}",
        max_abs(&err)
    );
    // Orthonormal eigenvectors: Vᵀ·V = I.
    let vt = &eig.vectors_t;
    let gram = matmul(vt, &transpose(vt, n, n), n, n, n);
    for i in 0..n {
        for j in 0..n {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((gram[i * n + j] - want).abs() < 1e-13, "VᵀV[{i},{j}]");
        }
    }
    // A·v = λ·v for each pair.
    for i in 0..n {
        let v = &vt[i * n..(i + 1) * n];
        let av = matmul(&a, v, n, n, 1);
        for (x, y) in av.iter().zip(v) {
            assert!((x - eig.values[i] * y).abs() < 1e-11 * scale);
        }
    }
    // Eigenvalues only: the same values.
    let values_only = symmetric_eigen(&a, n, false).unwrap();
    assert!(values_only.vectors_t.is_empty());
    for (a, b) in values_only.values.iter().zip(&eig.values) {
        assert!((a - b).abs() < 1e-12 * scale);
    }
}

#[test]
fn eigen_rank_one_and_reads_lower_triangle() {
    // u·uᵀ: one eigenvalue ‖u‖², the rest 0.
    let n = 30;
    let mut rng = Uniform(5);
    let u: Vec<f64> = (0..n).map(|_| rng.next()).collect();
    let norm2: f64 = u.iter().map(|x| x * x).sum();
    let mut a = matmul(&u, &u, n, 1, n);
    // Garbage in the strict upper triangle must be ignored.
    for i in 0..n {
        for j in i + 1..n {
            a[i * n + j] = 1e3;
        }
    }
    let eig = symmetric_eigen(&a, n, true).unwrap();
    assert!((eig.values[n - 1] - norm2).abs() < 1e-13 * norm2);
    assert!(eig.values[..n - 1].iter().all(|l| l.abs() < 1e-14 * norm2));
    let v = &eig.vectors_t[(n - 1) * n..];
    let cos: f64 = v.iter().zip(&u).map(|(a, b)| a * b).sum::<f64>() / norm2.sqrt();
    assert!((cos.abs() - 1.0).abs() < 1e-13);
}

#[test]
fn eigen_of_a_gram_matrix_of_size_260() {
    // A = B·Bᵀ (PSD): trace and Frobenius norm are spectral invariants computed without eigen.
    // n = 260 takes the threaded paths of the reduction's Q accumulation and of `matmul`.
    let n = 260;
    let mut rng = Uniform(9);
    let b: Vec<f64> = (0..n * n).map(|_| rng.next()).collect();
    let a = matmul(&b, &transpose(&b, n, n), n, n, n);
    let eig = symmetric_eigen(&a, n, true).unwrap();
    let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
    let frob2: f64 = a.iter().map(|x| x * x).sum();
    let lmax = eig.values[n - 1];
    assert!((eig.values.iter().sum::<f64>() - trace).abs() < 1e-12 * n as f64 * lmax);
    let sum_sq: f64 = eig.values.iter().map(|l| l * l).sum();
    assert!(rel_err(sum_sq, frob2) < 1e-12);
    assert!(eig.values[0] > -1e-12 * lmax, "PSD: {}", eig.values[0]);
    let rebuilt = spectral_function(&eig, |l| l);
    let err: Vec<f64> = rebuilt.iter().zip(&a).map(|(r, a)| r - a).collect();
    assert!(max_abs(&err) < 1e-12 * lmax);
}

#[test]
#[should_panic(expected = "symmetric_eigen: matrix is not 3×3")]
fn eigen_panics_on_a_wrong_size() {
    let _ = symmetric_eigen(&[1.0; 8], 3, false);
}

#[test]
#[should_panic(expected = "matmul: B is not 3×2")]
fn matmul_panics_on_a_wrong_size() {
    let _ = matmul(&[1.0; 6], &[1.0; 5], 2, 3, 2);
}

#[test]
#[should_panic(expected = "dot: lengths differ")]
fn dot_panics_on_different_lengths() {
    let _ = ddpm_eval::linalg::dot(&[1.0; 3], &[1.0; 4]);
}

#[test]
fn matmul_against_the_definition() {
    let (r, k, c) = (7, 13, 5);
    let mut rng = Uniform(3);
    let a: Vec<f64> = (0..r * k).map(|_| rng.next()).collect();
    let b: Vec<f64> = (0..k * c).map(|_| rng.next()).collect();
    let got = matmul(&a, &b, r, k, c);
    for i in 0..r {
        for j in 0..c {
            let want: f64 = (0..k).map(|t| a[i * k + t] * b[t * c + j]).sum();
            assert!((got[i * c + j] - want).abs() < 1e-14);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Feature statistics

#[test]
fn stats_match_numpy_mean_and_cov() {
    let f = fixture("fd_d8");
    let s = FeatureStats::from_features(&f.x).unwrap();
    assert_eq!(s.count, 50);
    for (a, b) in s.mean.iter().zip(f64s(&f.json["mean_x"])) {
        assert!((a - b).abs() < 1e-14 * (1.0 + b.abs()), "{a} vs {b}");
    }
    for (a, b) in s.cov.iter().zip(f64s(&f.json["cov_x"])) {
        assert!((a - b).abs() < 1e-13, "{a} vs {b}");
    }
    for name in ["fd_d64", "fd_rank_deficient"] {
        let f = fixture(name);
        let s = FeatureStats::from_features(&f.y).unwrap();
        let d = s.dim();
        for (a, b) in s.mean.iter().zip(f64s(&f.json["mean_y"])) {
            assert!((a - b).abs() < 1e-14 * (1.0 + b.abs()));
        }
        for e in f.json["cov_y_entries"].as_array().unwrap() {
            let (i, j, v) = (
                e[0].as_u64().unwrap() as usize,
                e[1].as_u64().unwrap() as usize,
                e[2].as_f64().unwrap(),
            );
            assert!((s.cov[i * d + j] - v).abs() < 1e-13, "{name} cov[{i},{j}]");
            assert_eq!(s.cov[i * d + j], s.cov[j * d + i], "symmetric");
        }
        let trace: f64 = (0..d).map(|i| s.cov[i * d + i]).sum();
        assert!(rel_err(trace, f.json["trace_cov_y"].as_f64().unwrap()) < 1e-14);
    }
}

#[test]
fn stats_streaming_equals_one_batch() {
    let f = fixture("fd_d64");
    let all = FeatureStats::from_features(&f.x).unwrap();
    let d = f.x.dim();
    let data = f.x.as_slice();
    let mut acc = StatsAccumulator::new(d);
    // Uneven batches, including a single row.
    for (lo, hi) in [(0, 1), (1, 8), (8, 61), (61, 120)] {
        acc.add(&FeatureSet::new(d, data[lo * d..hi * d].to_vec()).unwrap())
            .unwrap();
    }
    acc.add(&FeatureSet::empty(d)).unwrap();
    assert_eq!(acc.count(), 120);
    let streamed = acc.finish().unwrap();
    for (a, b) in streamed.mean.iter().zip(&all.mean) {
        assert!((a - b).abs() < 1e-14);
    }
    for (a, b) in streamed.cov.iter().zip(&all.cov) {
        assert!((a - b).abs() < 1e-13);
    }
}

#[test]
fn stats_of_a_wide_set_match_a_two_pass_computation() {
    // 300 × 160 is large enough for the threaded, blocked cross-product path (≥ 2²¹
    // multiply-adds per 256-row chunk); the reference is the textbook two-pass formula.
    let (n, d) = (300, 160);
    let mut rng = Uniform(17);
    let data: Vec<f32> = (0..n * d)
        .map(|i| (rng.next() * 4.0 + (i % d) as f64 * 0.01) as f32)
        .collect();
    let s = FeatureStats::from_features(&FeatureSet::new(d, data.clone()).unwrap()).unwrap();
    let x: Vec<f64> = data.iter().map(|&v| f64::from(v)).collect();
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64)
        .collect();
    for a in 0..d {
        assert!((s.mean[a] - mean[a]).abs() < 1e-14);
        for b in 0..d {
            let c: f64 = (0..n)
                .map(|i| (x[i * d + a] - mean[a]) * (x[i * d + b] - mean[b]))
                .sum::<f64>()
                / (n - 1) as f64;
            assert!((s.cov[a * d + b] - c).abs() < 1e-13, "cov[{a},{b}]");
        }
    }
}

#[test]
fn stats_survive_a_large_offset() {
    // Values 1e6 + k/16 are exact in f32. A one-pass E[xxᵀ] − μμᵀ in f64 loses ~1e12·ε ≈ 1e−4
    // of the unit-scale covariance; centring keeps it at rounding level.
    let (n, d) = (300, 4);
    let mut rng = Uniform(11);
    let small: Vec<f32> = (0..n * d)
        .map(|_| (rng.next() * 64.0).round() as f32 / 16.0)
        .collect();
    let shifted: Vec<f32> = small.iter().map(|v| v + 1.0e6).collect();
    let a = FeatureStats::from_features(&FeatureSet::new(d, small).unwrap()).unwrap();
    let b = FeatureStats::from_features(&FeatureSet::new(d, shifted).unwrap()).unwrap();
    for (x, y) in a.cov.iter().zip(&b.cov) {
        assert!((x - y).abs() < 1e-9, "{x} vs {y}");
    }
    for (x, y) in a.mean.iter().zip(&b.mean) {
        assert!((x + 1.0e6 - y).abs() < 1e-9);
    }
}

#[test]
fn stats_refuse_bad_input() {
    let mut acc = StatsAccumulator::new(3);
    let wrong = FeatureSet::new(2, vec![0.0; 4]).unwrap();
    assert!(matches!(
        acc.add(&wrong),
        Err(EvalError::DimensionMismatch { left: 3, right: 2 })
    ));
    assert!(matches!(
        StatsAccumulator::new(3).finish(),
        Err(EvalError::TooFewSamples { got: 0, .. })
    ));
    acc.add(&FeatureSet::new(3, vec![1.0, 2.0, 3.0]).unwrap())
        .unwrap();
    assert!(matches!(
        acc.finish(),
        Err(EvalError::TooFewSamples { got: 1, .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Fréchet distance

/// Reference: the 40-digit mpmath FD of the same (exact, dyadic) features. Measured at fixture
/// generation (numpy 2.4.6, scipy 1.17.1, pytorch-fid 0.3.0), relative to it: pytorch-fid
/// 1e−14 (d = 8), 6e−14 (d = 64) and 1.7e−8 on the rank-deficient case (n = 30, 40 < d = 64),
/// where `sqrtm` of the singular product loses ~√ε; a plain eigh route 1.2e−8 there. Measured
/// here: 1e−15, 8e−14 and 6e−16. Tolerances are ~10× the measured error against mpmath (the
/// rank-deficient one would catch a return of the √-of-noise error), and against pytorch-fid
/// its own error plus margin.
#[test]
fn fd_matches_mpmath_and_pytorch_fid() {
    for (name, tol_truth, tol_pytorch_fid) in [
        ("fd_d8", 1e-14, 1e-13),
        ("fd_d64", 1e-12, 1e-12),
        ("fd_rank_deficient", 1e-13, 3e-8),
    ] {
        let f = fixture(name);
        let s1 = FeatureStats::from_features(&f.x).unwrap();
        let s2 = FeatureStats::from_features(&f.y).unwrap();
        let fd = frechet_distance(&s1, &s2).unwrap();
        let truth = f.json["fd_mpmath"].as_f64().unwrap();
        let pytorch_fid = f.json["fd_pytorch_fid"].as_f64().unwrap();
        // Symmetric in its arguments (a different computation path: √Σ₂ instead of √Σ₁).
        let back = frechet_distance(&s2, &s1).unwrap();
        eprintln!(
            "{name}: fd {fd:.15} mpmath {truth:.15} (rel {:.2e}, reversed {:.2e}) pytorch-fid \
             {pytorch_fid:.15} (rel {:.2e})",
            rel_err(fd, truth),
            rel_err(back, truth),
            rel_err(fd, pytorch_fid)
        );
        assert!(
            rel_err(fd, truth) < tol_truth,
            "{name}: {fd} vs mpmath {truth}"
        );
        assert!(
            rel_err(back, truth) < tol_truth,
            "{name}: {back} vs mpmath {truth}"
        );
        assert!(
            rel_err(fd, pytorch_fid) < tol_pytorch_fid,
            "{name}: {fd} vs pytorch-fid {pytorch_fid}"
        );
    }
}

#[test]
fn fd_of_identical_sets_is_zero() {
    for name in ["fd_d8", "fd_d64", "fd_rank_deficient"] {
        let f = fixture(name);
        let s = FeatureStats::from_features(&f.x).unwrap();
        let fd = frechet_distance(&s, &s).unwrap();
        let trace: f64 = (0..s.dim()).map(|i| s.cov[i * s.dim() + i]).sum();
        eprintln!("{name}: FD(x, x) = {fd:e}, tr Σ = {trace:.3}");
        // pytorch-fid gives |FD| = 2e−6 on the rank-deficient set (fixture), this crate ~1e−13.
        assert!(fd < 1e-12 * trace, "{name}: {fd}");
    }
}

#[test]
fn fd_closed_form_diagonal_covariances() {
    // Diagonal Σ₁ = diag(a), Σ₂ = diag(b): d² = ‖μ₁ − μ₂‖² + Σ (√aᵢ − √bᵢ)².
    let d = 24;
    let mut rng = Uniform(21);
    let a: Vec<f64> = (0..d).map(|_| 0.1 + 2.0 * (rng.next() + 1.0)).collect();
    let b: Vec<f64> = (0..d).map(|_| 0.1 + 3.0 * (rng.next() + 1.0)).collect();
    let m1: Vec<f64> = (0..d).map(|_| rng.next()).collect();
    let m2: Vec<f64> = (0..d).map(|_| rng.next()).collect();
    let diag = |v: &[f64]| {
        let mut m = vec![0.0; d * d];
        v.iter().enumerate().for_each(|(i, x)| m[i * d + i] = *x);
        m
    };
    let want: f64 = (0..d)
        .map(|i| (m1[i] - m2[i]).powi(2) + (a[i].sqrt() - b[i].sqrt()).powi(2))
        .sum();
    let got = frechet_distance(
        &stats_from(m1.clone(), diag(&a)),
        &stats_from(m2.clone(), diag(&b)),
    )
    .unwrap();
    assert!(rel_err(got, want) < 1e-12, "{got} vs {want}");
}

#[test]
fn fd_closed_form_commuting_covariances() {
    // Σ₁ = Q·diag(a)·Qᵀ, Σ₂ = Q·diag(b)·Qᵀ commute: tr √(Σ₁Σ₂) = Σ √(aᵢbᵢ), so
    // d² = ‖μ₁ − μ₂‖² + Σ (√aᵢ − √bᵢ)². One aᵢ is 0 (singular Σ₁).
    let d = 40;
    let q = random_orthogonal(d, 77);
    let mut rng = Uniform(22);
    let mut a: Vec<f64> = (0..d).map(|_| 2.0 * (rng.next() + 1.0)).collect();
    a[5] = 0.0;
    let b: Vec<f64> = (0..d).map(|_| 0.5 + (rng.next() + 1.0)).collect();
    let m1: Vec<f64> = (0..d).map(|_| 3.0 * rng.next()).collect();
    let m2 = vec![0.0; d];
    let want: f64 = m1.iter().map(|x| x * x).sum::<f64>()
        + (0..d)
            .map(|i| (a[i].sqrt() - b[i].sqrt()).powi(2))
            .sum::<f64>();
    let got = frechet_distance(
        &stats_from(m1, with_spectrum(&q, &a)),
        &stats_from(m2, with_spectrum(&q, &b)),
    )
    .unwrap();
    assert!(rel_err(got, want) < 1e-11, "{got} vs {want}");
}

#[test]
fn fd_refuses_bad_statistics() {
    let good = stats_from(vec![0.0; 2], vec![1.0, 0.0, 0.0, 1.0]);
    let other_dim = stats_from(vec![0.0; 3], vec![0.0; 9]);
    assert!(matches!(
        frechet_distance(&good, &other_dim),
        Err(EvalError::DimensionMismatch { left: 2, right: 3 })
    ));
    let mut one = good.clone();
    one.count = 1;
    assert!(matches!(
        frechet_distance(&good, &one),
        Err(EvalError::TooFewSamples { got: 1, .. })
    ));
    let mut nan = good.clone();
    nan.cov[3] = f64::NAN;
    assert!(matches!(
        frechet_distance(&nan, &good),
        Err(EvalError::NonFinite { index: 3, .. })
    ));
    let mut inf = good.clone();
    inf.mean[1] = f64::INFINITY;
    assert!(matches!(
        frechet_distance(&good, &inf),
        Err(EvalError::NonFinite { index: 1, .. })
    ));
    let mut short = good.clone();
    short.cov.pop();
    assert!(matches!(
        frechet_distance(&good, &short),
        Err(EvalError::BadStats { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// KID

fn fixture_subsets(kid: &Value) -> Vec<(Vec<usize>, Vec<usize>)> {
    kid["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let idx = |v: &Value| -> Vec<usize> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as usize)
                    .collect()
            };
            (idx(&pair[0]), idx(&pair[1]))
        })
        .collect()
}

#[test]
fn kid_matches_torch_fidelity_on_its_subsets() {
    for name in ["fd_d8", "fd_d64"] {
        let f = fixture(name);
        let k = &f.json["kid"];
        let out = kid_with_subsets(&f.x, &f.y, &fixture_subsets(k)).unwrap();
        let mean = k["torch_fidelity_mean"].as_f64().unwrap();
        let std = k["torch_fidelity_std"].as_f64().unwrap();
        eprintln!(
            "{name}: KID {} ± {} vs torch-fidelity {mean} ± {std}",
            out.mean, out.std
        );
        assert!(
            rel_err(out.mean, mean) < 1e-12,
            "{name}: {} vs {mean}",
            out.mean
        );
        assert!(
            rel_err(out.std, std) < 1e-10,
            "{name}: {} vs {std}",
            out.std
        );
        for (a, b) in out.per_subset.iter().zip(f64s(&k["numpy_per_subset"])) {
            assert!(rel_err(*a, b) < 1e-12);
        }
        assert_eq!(out.subset_size, k["subset_size"].as_u64().unwrap() as usize);
    }
}

#[test]
fn polynomial_kernel_by_hand() {
    // (xᵀy/d + 1)³ with xᵀy = 1·3 + 2·4 = 11, d = 2: 6.5³ = 274.625.
    assert_eq!(
        ddpm_eval::kid::polynomial_kernel(&[1.0, 2.0], &[3.0, 4.0]),
        274.625
    );
}

#[test]
#[should_panic(expected = "polynomial_kernel: lengths differ")]
fn polynomial_kernel_panics_on_different_lengths() {
    let _ = ddpm_eval::kid::polynomial_kernel(&[1.0], &[1.0, 2.0]);
}

#[test]
fn kid_full_sets_of_different_sizes_match_numpy() {
    let f = fixture("fd_d64");
    let all_x: Vec<usize> = (0..f.x.len()).collect();
    let all_y: Vec<usize> = (0..f.y.len()).collect();
    let got = mmd2_unbiased(&f.x, &f.y, &all_x, &all_y).unwrap();
    let want = f.json["kid"]["full_sets_mmd2"].as_f64().unwrap();
    assert!(rel_err(got, want) < 1e-12, "{got} vs {want}");
}

#[test]
fn kid_properties() {
    let f = fixture("fd_d8");
    let config = KidConfig::default().with_subsets(20).with_subset_size(40);
    // Two independent samples of one distribution (the halves of a fixture set): the unbiased
    // estimate averages to 0 within its spread.
    let big = fixture("fd_d64");
    let d = big.x.dim();
    let half = |lo: usize| FeatureSet::new(d, big.x.as_slice()[lo * d..(lo + 60) * d].to_vec());
    let halves = kernel_inception_distance(
        &half(0).unwrap(),
        &half(60).unwrap(),
        &KidConfig::default().with_subsets(20).with_subset_size(30),
    )
    .unwrap();
    eprintln!("KID(x[..60], x[60..]) = {} ± {}", halves.mean, halves.std);
    assert!(
        halves.mean.abs() <= halves.std,
        "{} ± {}",
        halves.mean,
        halves.std
    );
    // One set against itself: overlapping subsets put k(x, x) into the cross term, so the
    // estimate is biased negative (documented on `kid`).
    let same = kernel_inception_distance(&f.x, &f.x, &config).unwrap();
    assert!(same.mean < 0.0, "{} ± {}", same.mean, same.std);
    // Different distributions: clearly positive.
    let diff = kernel_inception_distance(&f.x, &f.y, &config).unwrap();
    eprintln!("KID(x, y) = {} ± {}", diff.mean, diff.std);
    assert!(diff.mean > 5.0 * diff.std, "{} ± {}", diff.mean, diff.std);
    // Seeded: reproducible, and another seed draws other subsets.
    assert_eq!(
        kernel_inception_distance(&f.x, &f.y, &config).unwrap(),
        diff
    );
    let reseeded = kernel_inception_distance(&f.x, &f.y, &config.clone().with_seed(1)).unwrap();
    assert_ne!(reseeded.per_subset, diff.per_subset);
    // The subset size is capped at the smaller set (50 here), as clean-fid does.
    let capped =
        kernel_inception_distance(&f.x, &f.y, &KidConfig::default().with_subsets(2)).unwrap();
    assert_eq!(capped.subset_size, 50);
    assert_eq!(capped.per_subset.len(), 2);
}

#[test]
fn kid_refuses_bad_settings() {
    let f = fixture("fd_d8");
    let bad = |c: KidConfig| kernel_inception_distance(&f.x, &f.y, &c);
    assert!(matches!(
        bad(KidConfig::default().with_subsets(0)),
        Err(EvalError::BadSetting { .. })
    ));
    assert!(matches!(
        bad(KidConfig::default().with_subset_size(1)),
        Err(EvalError::BadSetting { .. })
    ));
    let other = FeatureSet::new(4, vec![0.0; 40]).unwrap();
    assert!(matches!(
        kernel_inception_distance(&f.x, &other, &KidConfig::default()),
        Err(EvalError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        mmd2_unbiased(&f.x, &f.y, &[0, 50], &[0, 1]),
        Err(EvalError::BadSetting { .. })
    ));
    assert!(matches!(
        mmd2_unbiased(&f.x, &f.y, &[0], &[0, 1]),
        Err(EvalError::TooFewSamples { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Precision and recall

#[test]
fn prd_matches_numpy() {
    for name in ["fd_d8", "fd_d64", "fd_rank_deficient"] {
        let f = fixture(name);
        for case in f.json["prd"].as_array().unwrap() {
            let k = case["k"].as_u64().unwrap() as usize;
            let config = PrdConfig::default().with_k(k).with_max_samples(None);
            let got = precision_recall(&f.x, &f.y, &config).unwrap();
            let (p, r) = (
                case["precision"].as_f64().unwrap(),
                case["recall"].as_f64().unwrap(),
            );
            assert!(
                (got.precision - p).abs() < 1e-12,
                "{name} k={k}: {got:?} vs {p}"
            );
            assert!(
                (got.recall - r).abs() < 1e-12,
                "{name} k={k}: {got:?} vs {r}"
            );
            assert_eq!((got.real_used, got.generated_used), (f.x.len(), f.y.len()));
            let radii = knn_radii_squared(&f.x, k).unwrap();
            for (a, b) in radii.iter().zip(f64s(&case["real_radii_sq"])) {
                assert!(rel_err(*a, b) < 1e-13, "{name} k={k}: radius {a} vs {b}");
            }
        }
    }
}

#[test]
fn prd_properties() {
    let f = fixture("fd_d8");
    let config = PrdConfig::default();
    let same = precision_recall(&f.x, &f.x, &config).unwrap();
    assert_eq!((same.precision, same.recall), (1.0, 1.0));
    // Far apart: nothing of one set lies in the other's manifold.
    let far: Vec<f32> = f.x.as_slice().iter().map(|v| v + 1000.0).collect();
    let far = FeatureSet::new(f.x.dim(), far).unwrap();
    let apart = precision_recall(&f.x, &far, &config).unwrap();
    assert_eq!((apart.precision, apart.recall), (0.0, 0.0));
    // A generated set inside the real one (its first 20 points): precision 1, recall < 1.
    let inside = FeatureSet::new(f.x.dim(), f.x.as_slice()[..20 * f.x.dim()].to_vec()).unwrap();
    let part = precision_recall(&f.x, &inside, &config).unwrap();
    assert_eq!(part.precision, 1.0);
    assert!(part.recall < 1.0);
    // The subsampling cap: seeded, in-order subsets of the requested size.
    let capped = PrdConfig::default().with_max_samples(Some(30));
    let a = precision_recall(&f.x, &f.y, &capped).unwrap();
    assert_eq!((a.real_used, a.generated_used), (30, 30));
    assert_eq!(precision_recall(&f.x, &f.y, &capped).unwrap(), a);
    let sub = subsample(&f.y, 30, 4);
    assert_eq!(sub, subsample(&f.y, 30, 4));
    assert_ne!(sub, subsample(&f.y, 30, 5));
    assert_eq!(sub.len(), 30);
    // Every subsampled row is a row of the original, in the original order.
    let mut next = 0;
    for i in 0..sub.len() {
        let pos = (next..f.y.len())
            .find(|&j| f.y.row(j) == sub.row(i))
            .unwrap();
        next = pos + 1;
    }
    assert_eq!(subsample(&f.y, 1000, 4), f.y);
}

#[test]
fn prd_refuses_bad_settings() {
    let f = fixture("fd_d8");
    assert!(matches!(
        precision_recall(&f.x, &f.y, &PrdConfig::default().with_k(0)),
        Err(EvalError::BadSetting { .. })
    ));
    assert!(matches!(
        precision_recall(&f.x, &f.y, &PrdConfig::default().with_max_samples(Some(3))),
        Err(EvalError::BadSetting { .. })
    ));
    let tiny = FeatureSet::new(8, vec![0.0; 24]).unwrap();
    assert!(matches!(
        precision_recall(&tiny, &f.y, &PrdConfig::default()),
        Err(EvalError::TooFewSamples { got: 3, .. })
    ));
    let other = FeatureSet::new(4, vec![0.0; 40]).unwrap();
    assert!(matches!(
        precision_recall(&f.x, &other, &PrdConfig::default()),
        Err(EvalError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        manifold_coverage(&f.y, &f.x, &[1.0; 3]),
        Err(EvalError::BadSetting { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Reference-statistics cache

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ddpm-eval-metrics-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn reference() -> ReferenceStats {
    let f = fixture("fd_d8");
    ReferenceStats {
        extractor_id: "digits-mnist-v1".into(),
        dataset_key: "mnist-train".into(),
        stats: FeatureStats::from_features(&f.x).unwrap(),
        features: Some(subsample(&f.x, 20, 0)),
    }
}

#[test]
fn cache_round_trip() {
    let dir = TempDir::new("round-trip");
    let r = reference();
    let path = dir.0.join(cache_file_name(&r.dataset_key, &r.extractor_id));
    save_stats(&path, &r).unwrap();
    assert_eq!(
        load_stats(&path, "digits-mnist-v1", "mnist-train").unwrap(),
        r
    );
    // Without features.
    let bare = ReferenceStats {
        features: None,
        ..r.clone()
    };
    save_stats(&path, &bare).unwrap();
    assert_eq!(
        load_stats(&path, "digits-mnist-v1", "mnist-train").unwrap(),
        bare
    );
    // Overwriting left no temporary files behind.
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn cache_file_names_are_deterministic_and_distinct() {
    let a = cache_file_name("mnist-train", "digits-mnist-v1");
    assert_eq!(a, cache_file_name("mnist-train", "digits-mnist-v1"));
    assert!(a.starts_with("ref-mnist-train-digits-mnist-v1-") && a.ends_with(".safetensors"));
    assert_ne!(a, cache_file_name("mnist-test", "digits-mnist-v1"));
    assert_ne!(a, cache_file_name("mnist-train", "digits-mnist-v2"));
    // Separator-aware: moving a character between the two keys changes the key.
    assert_ne!(cache_key("ab", "c"), cache_key("a", "bc"));
    // Names that sanitise to the same slug still differ by the hash.
    let p = cache_file_name("data/set a", "x");
    let q = cache_file_name("data_set_a", "x");
    assert!(p.starts_with("ref-data_set_a-x-"));
    assert_ne!(p, q);
    assert!(!cache_file_name("../../etc/passwd", "x").contains('/'));
}

#[test]
fn cache_refuses_mismatches() {
    let dir = TempDir::new("mismatch");
    let r = reference();
    let path = dir.0.join("ref.safetensors");
    save_stats(&path, &r).unwrap();
    let reason = |res: Result<ReferenceStats, EvalError>| match res {
        Err(EvalError::BadFile { path: p, reason }) => {
            assert_eq!(p, path);
            reason
        }
        other => panic!("expected BadFile, got {other:?}"),
    };
    let why = reason(load_stats(&path, "inception-v3", "mnist-train"));
    assert!(
        why.contains("extractor_id") && why.contains("inception-v3"),
        "{why}"
    );
    let why = reason(load_stats(&path, "digits-mnist-v1", "fashion-train"));
    assert!(
        why.contains("dataset_key") && why.contains("fashion-train"),
        "{why}"
    );
    std::fs::write(&path, b"definitely not safetensors").unwrap();
    let why = reason(load_stats(&path, "digits-mnist-v1", "mnist-train"));
    assert!(why.contains("safetensors"), "{why}");
    assert!(matches!(
        load_stats(dir.0.join("missing.safetensors"), "a", "b"),
        Err(EvalError::Read { .. })
    ));
}

/// A tensor to write by hand: name, dtype, shape, little-endian bytes.
type RawTensor = (&'static str, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// The key an error must name, the tensors and the metadata of a malformed file.
type MalformedCase = (
    &'static str,
    Vec<RawTensor>,
    Vec<(&'static str, &'static str)>,
);

/// Writes a safetensors file by hand: `tensors`, and metadata `meta` pairs.
fn write_raw(path: &std::path::Path, tensors: &[RawTensor], meta: &[(&str, &str)]) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, dt, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

#[test]
fn cache_refuses_malformed_files() {
    use safetensors::Dtype::{F32, F64};
    let dir = TempDir::new("malformed");
    let path = dir.0.join("bad.safetensors");
    let f64s = |v: &[f64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let mean = f64s(&[0.0, 1.0]);
    let cov = f64s(&[1.0, 0.0, 0.0, 1.0]);
    let good_meta = [
        ("format", "ddpm-eval-reference-stats"),
        ("format_version", "1"),
        ("extractor_id", "e"),
        ("dataset_key", "k"),
        ("count", "10"),
        ("dim", "2"),
    ];
    let with = |key: &str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        good_meta
            .iter()
            .map(|&(k, v)| (k, if k == key { value } else { v }))
            .collect()
    };
    let ok = vec![
        ("mean", F64, vec![2], mean.clone()),
        ("cov", F64, vec![2, 2], cov.clone()),
    ];
    // The well-formed file loads (so each refusal below is due to its one defect).
    write_raw(&path, &ok, &good_meta);
    assert!(load_stats(&path, "e", "k").is_ok());
    let cases: Vec<MalformedCase> = vec![
        ("format", ok.clone(), with("format", "something-else")),
        ("format_version", ok.clone(), with("format_version", "2")),
        ("count", ok.clone(), with("count", "1")),
        ("count", ok.clone(), with("count", "many")),
        ("dim", ok.clone(), with("dim", "3")),
        (
            "format",
            ok.clone(),
            good_meta
                .iter()
                .copied()
                .filter(|(k, _)| *k != "format")
                .collect(),
        ),
        ("cov", vec![ok[0].clone()], good_meta.to_vec()),
        (
            "cov",
            vec![ok[0].clone(), ("cov", F64, vec![4], cov.clone())],
            good_meta.to_vec(),
        ),
        (
            "mean",
            vec![("mean", F32, vec![2], vec![0u8; 8]), ok[1].clone()],
            good_meta.to_vec(),
        ),
        (
            "cov",
            vec![
                ok[0].clone(),
                ("cov", F64, vec![2, 2], f64s(&[1.0, f64::NAN, 0.0, 1.0])),
            ],
            good_meta.to_vec(),
        ),
        (
            "features",
            vec![
                ok[0].clone(),
                ok[1].clone(),
                ("features", F32, vec![2, 3], vec![0u8; 24]),
            ],
            good_meta.to_vec(),
        ),
        (
            "features",
            vec![
                ok[0].clone(),
                ok[1].clone(),
                (
                    "features",
                    F32,
                    vec![1, 2],
                    [0.0f32, f32::INFINITY]
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                ),
            ],
            good_meta.to_vec(),
        ),
        (
            "extra",
            vec![
                ok[0].clone(),
                ok[1].clone(),
                ("extra", F64, vec![1], f64s(&[0.0])),
            ],
            good_meta.to_vec(),
        ),
    ];
    for (key, tensors, meta) in cases {
        write_raw(&path, &tensors, &meta);
        match load_stats(&path, "e", "k") {
            Err(EvalError::BadFile { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(reason.contains(key), "expected `{key}` in: {reason}");
            }
            other => panic!("{key}: expected BadFile, got {other:?}"),
        }
    }
}

#[test]
fn cache_save_refuses_bad_stats_and_keeps_the_old_file() {
    let dir = TempDir::new("save");
    let r = reference();
    let path = dir.0.join("ref.safetensors");
    save_stats(&path, &r).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut nan = r.clone();
    nan.stats.cov[0] = f64::NAN;
    assert!(matches!(
        save_stats(&path, &nan),
        Err(EvalError::NonFinite { .. })
    ));
    let mut wrong_dim = r.clone();
    wrong_dim.features = Some(FeatureSet::new(3, vec![0.0; 6]).unwrap());
    assert!(matches!(
        save_stats(&path, &wrong_dim),
        Err(EvalError::DimensionMismatch { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A missing parent directory is an error, not a created directory.
    let nested = dir.0.join("no-such-dir").join("ref.safetensors");
    assert!(matches!(save_stats(&nested, &r), Err(EvalError::Write(_))));
    assert!(!dir.0.join("no-such-dir").exists());
}
