//! Parity of `InceptionV3` with pytorch-fid 0.3.0 (torch 2.15.0, torchvision 0.29.2).
//!
//! pytorch-fid's real weights cannot be shipped, so `fixtures/inception/make_fixture.py` fills
//! every tensor of the state dict pytorch-fid loads from a deterministic generator, runs
//! pytorch-fid's own `InceptionV3([3])` on three images (in float64) and stores the images, the
//! 2048-d features and the fc logits. This test rebuilds the same tensors by name with the same
//! generator (`fixture_value`), writes them to a safetensors file and loads it like a real
//! converted file, so the name mapping and the BatchNorm folding are tested too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use ddpm_eval::inception::resize_bilinear;
use ddpm_eval::{EvalError, FeatureExtractor, InceptionV3};
use safetensors::{Dtype, tensor::TensorView};
use serde::Deserialize;

type B = burn::backend::Flex;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/inception/inception.json"
);

#[derive(Deserialize)]
struct Image {
    shape: [usize; 4],
    pixels: Vec<u8>,
}

#[derive(Deserialize)]
struct ResizeCase {
    size: [usize; 2],
    #[serde(default)]
    rows: Option<Vec<usize>>,
    #[serde(default)]
    cols: Option<Vec<usize>>,
    output: Vec<f64>,
}

#[derive(Deserialize)]
struct Resize {
    input_shape: [usize; 4],
    input: Vec<f64>,
    cases: Vec<ResizeCase>,
}

#[derive(Deserialize)]
struct Fixture {
    state_dict: Vec<(String, Vec<usize>)>,
    images: HashMap<String, Image>,
    features: HashMap<String, Vec<Vec<f64>>>,
    logits: HashMap<String, Vec<Vec<f64>>>,
    float32_vs_float64: HashMap<String, f64>,
    resize: Resize,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let text = std::fs::read_to_string(FIXTURE).expect("read the fixture");
        serde_json::from_str(&text).expect("parse the fixture")
    })
}

// ---- The generator of make_fixture.py, re-implemented -------------------------------------

fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's output function over `fnv(name) + (i + 1) · φ`, to a uniform in [0, 1).
fn uniform(name: &str, n: usize) -> impl Iterator<Item = f64> {
    let h = fnv1a64(name);
    (1..=n as u64).map(move |i| {
        let mut z = h.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 * 2f64.powi(-53)
    })
}

fn fixture_value(name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product();
    let map: Box<dyn Fn(f64) -> f64> = if name.ends_with(".conv.weight") {
        let fan_in: usize = shape[1..].iter().product();
        let k = (6.0 / fan_in as f64).sqrt();
        Box::new(move |u| (2.0 * u - 1.0) * k)
    } else if name.ends_with(".bn.weight") || name.ends_with(".bn.running_var") {
        Box::new(|u| 0.5 + u)
    } else if name.ends_with(".bn.bias") || name.ends_with(".bn.running_mean") {
        Box::new(|u| 0.2 * (2.0 * u - 1.0))
    } else if name == "fc.weight" {
        let k = (3.0f64 / 2048.0).sqrt();
        Box::new(move |u| (2.0 * u - 1.0) * k)
    } else if name == "fc.bias" {
        Box::new(|u| 0.1 * (2.0 * u - 1.0))
    } else {
        panic!("no fixture rule for {name}")
    };
    uniform(name, n).map(|u| map(u) as f32).collect()
}

/// A state-dict entry: name, shape, row-major values.
type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The fixture's state dict (names and shapes from pytorch-fid's module, values generated here),
/// built once per test binary.
fn fixture_tensors() -> &'static [NamedTensor] {
    static T: OnceLock<Vec<NamedTensor>> = OnceLock::new();
    T.get_or_init(|| {
        fixture()
            .state_dict
            .iter()
            .map(|(name, shape)| (name.clone(), shape.clone(), fixture_value(name, shape)))
            .collect()
    })
}

/// A file in the temp directory, removed when dropped (also when a test fails).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let name = format!("ddpm-eval-inception-{}-{name}", std::process::id());
        Self(std::env::temp_dir().join(name))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Best effort: a leftover file in the temp directory harms nothing.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes f32 tensors (and optionally other raw ones) as a safetensors file.
fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    raw: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
) {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let b = d.iter().flat_map(|v| v.to_le_bytes()).collect();
            (n.clone(), b, s.clone(), Dtype::F32)
        })
        .chain(
            raw.iter()
                .map(|(n, dt, s, b)| (n.to_string(), b.clone(), s.clone(), *dt)),
        )
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s, dt)| (n.clone(), TensorView::new(*dt, s.clone(), b).expect("view")))
        .collect();
    let file = safetensors::serialize(views, None).expect("serialize");
    ddpm_io::write_atomic(path, file).expect("write the weights file");
}

/// The fixture's weights as a safetensors file.
fn fixture_file(name: &str) -> TempFile {
    let file = TempFile::new(name);
    write_safetensors(&file.0, fixture_tensors(), &[]);
    file
}

fn images(key: &str) -> Tensor<B, 4> {
    let img = &fixture().images[key];
    // pytorch-fid saw k / 255 in [0, 1]; the model range is 2 · k/255 − 1.
    let x: Vec<f32> = img.pixels.iter().map(|&k| k as f32 / 127.5 - 1.0).collect();
    Tensor::from_data(TensorData::new(x, img.shape), &Default::default())
}

fn max_abs_diff(got: &[f32], want: &[Vec<f64>]) -> f64 {
    let want: Vec<f64> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(&g, &w)| (f64::from(g) - w).abs())
        .fold(0.0, f64::max)
}

/// Features and logits of a grey 28×28 image and two colour 32×32 images against pytorch-fid
/// (float64 reference), ≤ 1e-4. The fixture's features are O(1)–O(30).
#[test]
fn features_match_pytorch_fid() {
    let device = Default::default();
    let t = Instant::now();
    let file = fixture_file("parity.safetensors");
    let model = InceptionV3::<B>::from_file(&file.0, &device).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    for key in ["grey", "colour"] {
        let t = Instant::now();
        let out = model.extract(images(key)).expect("extract");
        let feats = out.features.into_data().to_vec::<f32>().unwrap();
        let logits = out
            .logits
            .expect("logits")
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let df = max_abs_diff(&feats, &fixture().features[key]);
        let dl = max_abs_diff(&logits, &fixture().logits[key]);
        eprintln!(
            "{key}: features max |Δ| {df:.3e}, logits max |Δ| {dl:.3e} \
             (pytorch-fid float32 vs float64: {:.3e}); {:.2} s (load {load_s:.2} s)",
            fixture().float32_vs_float64[key],
            t.elapsed().as_secs_f64()
        );
        assert!(
            df <= 1e-4,
            "{key}: features differ from pytorch-fid by {df}"
        );
        assert!(dl <= 1e-4, "{key}: logits differ from pytorch-fid by {dl}");
    }
}

/// The resize alone against `F.interpolate(bilinear, align_corners=False)`: a non-square batch
/// upsampled to 11×13, downsampled to 4×3, and to 299×299 (a strided sample of it).
#[test]
fn resize_matches_torch_interpolate() {
    let r = &fixture().resize;
    let x: Vec<f32> = r.input.iter().map(|&v| v as f32).collect();
    let x = Tensor::<B, 4>::from_data(TensorData::new(x, r.input_shape), &Default::default());
    for case in &r.cases {
        let y = resize_bilinear(x.clone(), case.size);
        let [n, c, oh, ow] = y.dims();
        assert_eq!([oh, ow], case.size);
        let y = y.into_data().to_vec::<f32>().unwrap();
        let rows = case.rows.clone().unwrap_or_else(|| (0..oh).collect());
        let cols = case.cols.clone().unwrap_or_else(|| (0..ow).collect());
        let mut got = Vec::new();
        for b in 0..n * c {
            for &i in &rows {
                for &j in &cols {
                    got.push(y[(b * oh + i) * ow + j]);
                }
            }
        }
        let d = max_abs_diff(&got, std::slice::from_ref(&case.output));
        eprintln!("resize to {:?}: max |Δ| {d:.3e}", case.size);
        assert!(
            d <= 1e-6,
            "resize to {:?} differs from torch by {d}",
            case.size
        );
    }
}

fn load_err(path: &Path) -> EvalError {
    match InceptionV3::<B>::from_file(path, &Default::default()) {
        Ok(_) => panic!("{}: loaded, expected an error", path.display()),
        Err(e) => e,
    }
}

fn assert_bad_weights(err: EvalError, tensor: &str, reason: &str) {
    match &err {
        EvalError::BadWeights {
            tensor: t,
            reason: r,
            ..
        } if t == tensor && r.contains(reason) => {}
        _ => panic!("expected BadWeights({tensor}: {reason}), got {err}"),
    }
}

/// Missing, unexpected, mis-shaped and non-finite tensors, a negative variance and a wrong dtype
/// are refused, naming the tensor; counters are ignored only where a BatchNorm owns them, and
/// the id follows the weights' contents, not the file.
#[test]
fn weights_are_checked_by_name() {
    let mut tensors = fixture_tensors().to_vec();
    let find = |ts: &[NamedTensor], name: &str| ts.iter().position(|(n, _, _)| n == name).unwrap();

    // Small files: everything up to the first conv.
    let first: Vec<_> = tensors
        .iter()
        .filter(|(n, _, _)| n.starts_with("Conv2d_1a_3x3."))
        .cloned()
        .collect();
    let file = TempFile::new("first.safetensors");
    let path = file.0.as_path();
    write_safetensors(path, &first, &[]);
    assert_bad_weights(load_err(path), "Conv2d_2a_3x3.conv.weight", "missing");

    let mut bad = first.clone();
    let i = find(&bad, "Conv2d_1a_3x3.conv.weight");
    bad[i].1 = vec![32, 3, 9];
    write_safetensors(path, &bad, &[]);
    assert_bad_weights(
        load_err(path),
        "Conv2d_1a_3x3.conv.weight",
        "has shape [32, 3, 9]",
    );

    let mut bad = first.clone();
    let i = find(&bad, "Conv2d_1a_3x3.conv.weight");
    bad[i].2[17] = f32::NAN;
    write_safetensors(path, &bad, &[]);
    assert_bad_weights(
        load_err(path),
        "Conv2d_1a_3x3.conv.weight",
        "non-finite value (NaN) at flat index 17",
    );

    let mut bad = first.clone();
    let i = find(&bad, "Conv2d_1a_3x3.bn.running_var");
    bad[i].2[5] = -0.25;
    write_safetensors(path, &bad, &[]);
    assert_bad_weights(
        load_err(path),
        "Conv2d_1a_3x3.bn.running_var",
        "negative (-0.25) at index 5",
    );

    let mut bad = first.clone();
    let i = find(&bad, "Conv2d_1a_3x3.bn.bias");
    let (name, shape, _) = bad.remove(i);
    let f64_bytes: Vec<u8> = (0..shape[0]).flat_map(|_| 0.5f64.to_le_bytes()).collect();
    write_safetensors(path, &bad, &[(&name, Dtype::F64, shape, f64_bytes)]);
    assert_bad_weights(load_err(path), "Conv2d_1a_3x3.bn.bias", "dtype F64");

    // Full files: one tensor missing in the middle; one extra; counters.
    let counter = |name: &'static str| (name, Dtype::I64, vec![], 7i64.to_le_bytes().to_vec());
    let file = TempFile::new("full.safetensors");
    let path = file.0.as_path();
    let i = find(&tensors, "Mixed_6c.branch7x7_2.bn.running_var");
    let removed = tensors.remove(i);
    write_safetensors(path, &tensors, &[]);
    assert_bad_weights(
        load_err(path),
        "Mixed_6c.branch7x7_2.bn.running_var",
        "missing",
    );
    tensors.insert(i, removed);

    tensors.push((
        "Mixed_5b.branch9x9.conv.weight".into(),
        vec![2],
        vec![0.0, 1.0],
    ));
    write_safetensors(path, &tensors, &[]);
    assert_bad_weights(
        load_err(path),
        "Mixed_5b.branch9x9.conv.weight",
        "unexpected",
    );
    tensors.pop();

    write_safetensors(
        path,
        &tensors,
        &[counter("AuxLogits.conv0.bn.num_batches_tracked")],
    );
    assert_bad_weights(
        load_err(path),
        "AuxLogits.conv0.bn.num_batches_tracked",
        "unexpected",
    );

    let device = Default::default();
    write_safetensors(path, &tensors, &[]);
    let reference = InceptionV3::<B>::from_file(path, &device).expect("load");
    write_safetensors(
        path,
        &tensors,
        &[
            counter("Mixed_7c.branch_pool.bn.num_batches_tracked"),
            counter("Conv2d_1a_3x3.bn.num_batches_tracked"),
        ],
    );
    let with_counters = InceptionV3::<B>::from_file(path, &device).expect("counters are ignored");
    assert_eq!(with_counters.id(), reference.id());
    assert!(
        reference.id().starts_with("inception-pytorch-fid-"),
        "{}",
        reference.id()
    );

    let i = find(&tensors, "Mixed_6e.branch7x7dbl_3.conv.weight");
    tensors[i].2[1000] += 1e-3;
    write_safetensors(path, &tensors, &[]);
    let changed = InceptionV3::<B>::from_file(path, &device).expect("load");
    assert_ne!(changed.id(), reference.id());
}

/// Channel counts other than 1 and 3, empty batches and non-finite pixels are refused.
#[test]
fn bad_images_are_refused() {
    let device = Default::default();
    let file = fixture_file("images.safetensors");
    let model = InceptionV3::<B>::from_file(&file.0, &device).expect("load");
    for shape in [[1, 2, 8, 8], [0, 3, 8, 8], [1, 3, 0, 8]] {
        let x = Tensor::<B, 4>::zeros(shape, &device);
        match model.extract(x) {
            Err(EvalError::BadImages { shape: s, .. }) => assert_eq!(s, shape),
            other => panic!("{shape:?}: expected BadImages, got {:?}", other.map(|_| ())),
        }
    }
    let mut x = vec![0.0f32; 3 * 8 * 8];
    x[70] = f32::INFINITY;
    let x = Tensor::<B, 4>::from_data(TensorData::new(x, [1, 3, 8, 8]), &device);
    match model.extract(x) {
        Err(EvalError::NonFinite { index, .. }) => assert_eq!(index, 70),
        other => panic!("expected NonFinite, got {:?}", other.map(|_| ())),
    }
    let err = load_err(Path::new("weights.npz"));
    assert!(matches!(err, EvalError::BadFile { .. }), "{err}");
}

/// A real PyTorch pickle (the first `BasicConv2d` of the fixture, as `torch.save` wrote it, its
/// int64 counter included): read by name (shapes checked, values finite), then the next tensor is
/// reported missing.
#[cfg(feature = "pytorch")]
#[test]
fn pytorch_pickle_is_read() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inception/first_conv.pth");
    assert_bad_weights(load_err(&path), "Conv2d_2a_3x3.conv.weight", "missing");
}

/// Without the `pytorch` feature a `.pth` is refused with a pointer to the conversion.
#[cfg(not(feature = "pytorch"))]
#[test]
fn pytorch_pickle_needs_the_feature() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inception/first_conv.pth");
    match load_err(&path) {
        EvalError::BadFile { reason, .. } => {
            assert!(reason.contains("`pytorch` feature"), "{reason}")
        }
        err => panic!("expected BadFile, got {err}"),
    }
}
