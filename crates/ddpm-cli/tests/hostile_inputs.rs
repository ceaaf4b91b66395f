//! Hostile input to the `ddpm` binary (issue #14): damaged and foreign model files, absurd
//! numbers, paths of the wrong kind, malformed JSON, conflicting flags and closed pipes.
//!
//! Every probe that must fail asserts a clean refusal: exit status 1 (never 0, never 101 — a
//! panic — and never a signal), no panic message, and an error naming the file, field or flag
//! at fault; where a refusal must come before the work, that nothing was sampled or loaded.
//! The probes that must succeed (f16/bf16/f64 weights, a JPEG output, a closed pipe) check the
//! result. Add a probe here for every bug found.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use burn::tensor::{DType, TensorData};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/unet_tiny");
const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .output()
        .expect("run ddpm")
}

/// Asserts that `ddpm args` was refused cleanly — exit 1 (an error) or 2 (clap's usage error),
/// never 0, 101 (a panic) or a signal — naming every string of `names`; returns stderr.
fn refused(args: &[&str], names: &[&str]) -> String {
    let out = ddpm(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{args:?}: expected a refusal (exit 1 or 2), got {:?}:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    for name in names {
        assert!(
            stderr.contains(name),
            "{args:?}: the error does not name {name:?}:\n{stderr}"
        );
    }
    stderr
}

/// Asserts that `ddpm args` succeeded; returns stderr.
fn succeeded(args: &[&str]) -> String {
    let out = ddpm(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?} failed:\n{stderr}");
    stderr
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of the tiny fixture model in `dir/model`.
fn model_copy(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", WEIGHTS] {
        std::fs::copy(Path::new(TINY).join(f), model.join(f)).unwrap();
    }
    model
}

/// `encode(key, f32 tensor) -> (dtype, bytes)`: how [`reencode`] writes each tensor.
type Encode<'a> = &'a dyn Fn(&str, TensorData) -> (safetensors::Dtype, Vec<u8>);

/// Rewrites the model's weights with `encode` per tensor.
fn reencode(model: &Path, encode: Encode<'_>) {
    let bytes = std::fs::read(model.join(WEIGHTS)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32);
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let (dtype, data) = encode(&name, TensorData::new(values, view.shape().to_vec()));
        tensors.push((name, dtype, view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(
        model.join(WEIGHTS),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
}

/// The quick sampling run of these probes (DDIM, 2 steps, 2 samples) on `model`.
fn sample_args<'a>(model: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "sample",
        "--unet",
        model,
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--num-samples",
        "2",
        "--output",
        out,
    ]
}

/// [`sample_args`] on the fixture with `extra` replacing its `--sampler`, `--steps` and
/// `--num-samples` where given.
fn quick_sample<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["sample", "--unet", TINY, "--output", out];
    for (flag, value) in [
        ("--sampler", "ddim"),
        ("--steps", "2"),
        ("--num-samples", "2"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend(extra);
    args
}

/// Asserts a refusal came before sampling (the sampler's banner was not printed).
fn before_sampling(stderr: &str) {
    assert!(
        !stderr.contains("sampler,"),
        "sampled before refusing:\n{stderr}"
    );
}

/// (shape, values) of the raw samples `--save-tensor` wrote.
fn read_samples(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("samples")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Model files: configs and weights.

/// Issue #14 item 10: a `config.json` of `[]` was read as diffusers' default config and the
/// error then blamed a tensor shape.
#[test]
fn config_json_that_is_not_an_object() {
    let dir = tmp("config-array");
    let model = model_copy(&dir);
    let out = dir.join("g.png");
    for (json, found) in [
        ("[]", "an array"),
        ("null", "null"),
        ("\"unet\"", "a string"),
    ] {
        std::fs::write(model.join("config.json"), json).unwrap();
        let e = refused(
            &sample_args(s(&model), s(&out)),
            &["config.json", "expected a JSON object", found],
        );
        assert!(!e.contains("shape"), "blames a shape: {e}");
    }
    std::fs::write(model.join("config.json"), "[]").unwrap();
    refused(&["unet", "info", s(&model)], &["config.json", "an array"]);
    refused(
        &["convert", s(&model), s(&dir.join("dst")), "--to", "burn"],
        &["config.json", "an array"],
    );
    assert!(!out.exists());
}

#[test]
fn config_json_malformed() {
    let dir = tmp("config-bad");
    let model = model_copy(&dir);
    let good = std::fs::read_to_string(model.join("config.json")).unwrap();
    let cases = [
        ("", "EOF"),
        ("{", "EOF"),
        (
            &good.replace("\"norm_eps\": 1e-06", "\"norm_eps\": NaN") as &str,
            "line",
        ),
        (
            &good.replace("\"sample_size\": 16", "\"sample_size\": -16"),
            "-16",
        ),
        (
            &good.replace("\"sample_size\": 16", "\"sample_size\": 0"),
            "sample_size",
        ),
        (
            &good.replace("\"norm_num_groups\": 8", "\"norm_num_groups\": 0"),
            "norm_num_groups",
        ),
        (
            &good.replace("\"layers_per_block\": 1", "\"layers_per_block\": \"one\""),
            "line",
        ),
    ];
    for (json, name) in cases {
        std::fs::write(model.join("config.json"), json).unwrap();
        // JSON errors name the file and line; validation errors the model and the field.
        refused(&["unet", "info", s(&model)], &[s(&model), name]);
    }
}

/// Sizes that made the process abort on allocation are refused by name before allocating.
#[test]
fn config_json_with_absurd_sizes() {
    let dir = tmp("config-huge");
    let model = model_copy(&dir);
    let good = std::fs::read_to_string(model.join("config.json")).unwrap();
    let out = dir.join("g.png");
    let cases = [
        (
            good.replace(
                "\"block_out_channels\": [\n    32,\n    64\n  ]",
                "\"block_out_channels\": [1073741824, 1073741824]",
            ),
            "block_out_channels[0]",
        ),
        (
            good.replace("\"sample_size\": 16", "\"sample_size\": 1099511627776"),
            "sample_size",
        ),
        (
            good.replace("\"layers_per_block\": 1", "\"layers_per_block\": 1000000"),
            "layers_per_block",
        ),
        (
            good.replace(
                "\"block_out_channels\": [\n    32,\n    64\n  ]",
                "\"block_out_channels\": [8192, 8192]",
            )
            .replace("\"layers_per_block\": 1", "\"layers_per_block\": 16"),
            "parameters",
        ),
    ];
    for (json, field) in &cases {
        assert_ne!(json, &good, "the probe did not change the config ({field})");
        std::fs::write(model.join("config.json"), json).unwrap();
        refused(&["unet", "info", s(&model)], &[field, "exceeds the limit"]);
        let e = refused(&sample_args(s(&model), s(&out)), &[field]);
        before_sampling(&e);
    }
}

#[test]
fn model_paths_of_the_wrong_kind() {
    let dir = tmp("paths");
    let out = dir.join("g.png");
    // Missing, empty directory, a regular file that is not in a model directory.
    let missing = dir.join("no-such-model");
    refused(&sample_args(s(&missing), s(&out)), &["no-such-model"]);
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    refused(
        &sample_args(s(&empty), s(&out)),
        &["empty", "not a model directory"],
    );
    refused(&["unet", "info", s(&empty)], &["empty"]);
    // config.json is a directory.
    let cfg_dir = dir.join("cfgdir");
    std::fs::create_dir_all(cfg_dir.join("config.json")).unwrap();
    refused(&sample_args(s(&cfg_dir), s(&out)), &["cfgdir"]);
    // The weights file is a directory, or absent.
    let model = model_copy(&dir);
    std::fs::remove_file(model.join(WEIGHTS)).unwrap();
    refused(&["unet", "info", s(&model)], &["no weights"]);
    std::fs::create_dir_all(model.join(WEIGHTS)).unwrap();
    refused(&sample_args(s(&model), s(&out)), &["no weights"]);
}

/// Issue #14 item 10: a safetensors file cut in half reported "incomplete metadata".
#[test]
fn damaged_weights_files() {
    let dir = tmp("weights");
    let model = model_copy(&dir);
    let out = dir.join("g.png");
    let whole = std::fs::read(model.join(WEIGHTS)).unwrap();
    let n = whole.len();
    let half = (n / 2).to_string();
    let full = n.to_string();
    let cases: [(&[u8], &[&str]); 4] = [
        (&whole[..n / 2], &[WEIGHTS, "is truncated", &half, &full]),
        (&whole[..n - 1], &[WEIGHTS, "is truncated"]),
        (&[], &[WEIGHTS, "is truncated", "has 0 bytes"]),
        (
            b"\x89PNG\r\n\x1a\nnot a model at all",
            &[WEIGHTS, "not a valid safetensors file"],
        ),
    ];
    for (bytes, names) in cases {
        std::fs::write(model.join(WEIGHTS), bytes).unwrap();
        refused(&sample_args(s(&model), s(&out)), names);
        refused(&["unet", "info", s(&model)], names);
    }
    let mut long = whole.clone();
    long.extend(b"junk");
    std::fs::write(model.join(WEIGHTS), &long).unwrap();
    refused(
        &["unet", "info", s(&model)],
        &[WEIGHTS, "after the last tensor"],
    );
    // Framed correctly, but a tensor's bytes disagree with its shape, or its dtype is one no
    // reader knows, or one burn-store cannot hold (F8).
    for header in [
        r#"{"conv_in.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
        r#"{"conv_in.bias":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#,
        r#"{"conv_in.bias":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}"#,
    ] {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 4]);
        std::fs::write(model.join(WEIGHTS), &bytes).unwrap();
        refused(&["unet", "info", s(&model)], &[WEIGHTS]);
    }
    assert!(!out.exists());
}

/// Issue #14 item 5: an I32 tensor panicked, then segfaulted.
#[test]
fn integer_and_bool_weights_are_refused_by_name() {
    let dir = tmp("int-weights");
    let out = dir.join("g.png");
    for (key, dtype) in [("conv_in.bias", "I32"), ("conv_norm_out.weight", "BOOL")] {
        let model = model_copy(&dir.join(dtype));
        reencode(&model, &|name, t| {
            let bytes = t.as_bytes().to_vec();
            match (name == key, dtype) {
                (false, _) => (safetensors::Dtype::F32, bytes),
                (true, "I32") => (safetensors::Dtype::I32, bytes),
                (true, _) => (safetensors::Dtype::BOOL, vec![1u8; t.num_elements()]),
            }
        });
        let names = [key, dtype, WEIGHTS, "floating point"];
        refused(&sample_args(s(&model), s(&out)), &names);
        refused(&["unet", "info", s(&model)], &names);
        refused(
            &["convert", s(&model), s(&dir.join("dst")), "--to", "burn"],
            &names,
        );
    }
    assert!(!out.exists());
}

/// Issue #14 item 5: f16/bf16/f64 weights passed `unet info` and `convert`, then `sample`
/// panicked ("matmul: dtype mismatch"). Now they are converted at load and sample like the f32
/// model, within the dtype's rounding.
#[test]
fn half_and_double_precision_weights_sample_like_f32() {
    let dir = tmp("float-weights");
    let run = |model: &Path, name: &str| {
        let out = dir.join(format!("{name}.png"));
        let tensor = dir.join(format!("{name}.safetensors"));
        let mut args = sample_args(s(model), s(&out));
        args.extend(["--seed", "3", "--save-tensor", s(&tensor)]);
        succeeded(&args);
        read_samples(&tensor)
    };
    let want = run(Path::new(TINY), "f32");
    for (dtype, st_dtype, tolerance) in [
        (DType::F64, safetensors::Dtype::F64, 0.0),
        (DType::F16, safetensors::Dtype::F16, 2e-2),
        (DType::BF16, safetensors::Dtype::BF16, 1e-1),
    ] {
        let name = format!("{dtype:?}");
        let model = model_copy(&dir.join(&name));
        reencode(&model, &|_, t| {
            (st_dtype, t.convert_dtype(dtype).as_bytes().to_vec())
        });
        let got = run(&model, &name);
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= tolerance, "{name}: max |diff| {diff} > {tolerance}");
        let info = ddpm(&["unet", "info", s(&model)]);
        assert!(info.status.success(), "{name}: unet info failed");
        let converted = dir.join(format!("{name}-native"));
        succeeded(&["convert", s(&model), s(&converted), "--to", "burn"]);
        assert_eq!(run(&converted, &format!("{name}-native")), got, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// `ddpm sample`: numbers, flags and output paths.

#[test]
fn sample_absurd_numbers() {
    let dir = tmp("numbers");
    let out = dir.join("g.png");
    let with = |extra: &[&'static str]| quick_sample(s(&out), extra);
    let cases: [(&[&str], &[&str]); 10] = [
        (&["--steps", "0"], &["num_inference_steps is 0"]),
        (
            &["--steps", "1000000000000"],
            &["num_inference_steps is 1000000000000"],
        ),
        (&["--num-samples", "0"], &["number of samples"]),
        (
            &["--num-samples", "1000000000000"],
            &["1000000000000 samples", "limit"],
        ),
        (
            &["--num-samples", "18446744073709551615"],
            &["samples", "limit"],
        ),
        (&["--batch-size", "0"], &["batch size"]),
        (&["--eta", "nan"], &["eta", "NaN"]),
        (&["--eta", "-1"], &["eta"]),
        (&["--eta", "inf"], &["eta"]),
        (&["--steps", "-3"], &["-3"]),
    ];
    for (extra, names) in cases {
        let e = refused(&with(extra), names);
        before_sampling(&e);
    }
    assert!(!out.exists());
}

/// Issue #14 item 10: `--weights raw` on a diffusers directory and `--diffusers-compat` with the
/// DDPM sampler were silently ignored.
#[test]
fn sample_conflicting_or_inapplicable_flags() {
    let dir = tmp("flags");
    let out = dir.join("g.png");
    let with = |extra: &[&'static str]| quick_sample(s(&out), extra);
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["--weights", "raw"],
            &["--weights raw", "training runs", "unet_tiny"],
        ),
        (
            &["--sampler", "ddpm", "--diffusers-compat"],
            &["diffusers_compat", "ddpm"],
        ),
        (&["--sampler", "ddpm", "--eta", "0.5"], &["eta", "ddpm"]),
        (&["--precision", "f64"], &["f64"]),
        (&["--device", "tpu"], &["tpu"]),
        (&["--timestep-spacing", "sideways"], &["sideways"]),
    ];
    for (extra, names) in cases {
        let e = refused(&with(extra), names);
        before_sampling(&e);
    }
    assert!(!out.exists());
}

#[test]
fn sample_output_paths_of_the_wrong_kind() {
    let dir = tmp("outputs");
    let file = dir.join("a-file.txt");
    std::fs::write(&file, b"keep me").unwrap();
    let good = dir.join("g.png");
    let in_file = file.join("g.png");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // A directory where the grid goes; a file where a directory goes.
        (sample_args(TINY, s(&dir)), vec!["--output", "directory"]),
        (
            sample_args(TINY, s(&in_file)),
            vec!["--output", "a-file.txt", "not a directory"],
        ),
        (
            [sample_args(TINY, s(&good)), vec!["--output-dir", s(&file)]].concat(),
            vec!["--output-dir", "a-file.txt", "not a directory"],
        ),
        (
            [sample_args(TINY, s(&good)), vec!["--save-tensor", s(&dir)]].concat(),
            vec!["--save-tensor", "directory"],
        ),
        (sample_args(TINY, ""), vec!["--output"]),
        // Issue #14 item 10: `--output x.gif` must not get PNG bytes.
        (
            sample_args(TINY, "x.gif"),
            vec!["x.gif", ".png, .jpg or .jpeg"],
        ),
    ];
    for (args, names) in cases {
        let e = refused(&args, &names);
        before_sampling(&e);
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    assert!(!good.exists());
    // `.jpg` gets JPEG bytes (the extension picks the format).
    let jpg = dir.join("g.jpg");
    succeeded(&sample_args(TINY, s(&jpg)));
    assert_eq!(&std::fs::read(&jpg).unwrap()[..3], &[0xFF, 0xD8, 0xFF]);
}

/// The x_T and step-noise files: empty, a directory, the wrong shape, not a safetensors file.
#[test]
fn sample_noise_files() {
    let dir = tmp("noise");
    let out = dir.join("g.png");
    let empty = dir.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let wrong = dir.join("wrong.safetensors");
    let bytes = vec![0u8; 4 * 3 * 8 * 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 3, 8, 8], &bytes)
            .unwrap();
    std::fs::write(
        &wrong,
        safetensors::serialize([("x_T", view)], None).unwrap(),
    )
    .unwrap();
    let missing = dir.join("missing.safetensors");
    let cut = dir.join("cut.safetensors");
    let whole = std::fs::read(&wrong).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let cases: [(&str, &Path, &[&str]); 6] = [
        (
            "--init-noise",
            cut.as_path(),
            &["cut.safetensors", "is truncated"],
        ),
        ("--init-noise", empty.as_path(), &["empty.safetensors"]),
        ("--init-noise", dir.as_path(), &["--init-noise"]),
        (
            "--init-noise",
            wrong.as_path(),
            &["init noise", "[1, 3, 8, 8]"],
        ),
        ("--init-noise", missing.as_path(), &["missing.safetensors"]),
        ("--noise-file", empty.as_path(), &["empty.safetensors"]),
    ];
    for (flag, path, names) in cases {
        let mut args = sample_args(TINY, s(&out));
        args.extend([flag, s(path)]);
        let e = refused(&args, names);
        before_sampling(&e);
    }
}

/// scheduler_config.json given with `--scheduler`: not an object, NaN, absurd T, missing.
#[test]
fn sample_and_schedule_scheduler_files() {
    let dir = tmp("scheduler");
    let out = dir.join("g.png");
    let cases = [
        ("array.json", "[]"),
        ("nan.json", r#"{"beta_start": NaN}"#),
        ("huge.json", r#"{"num_train_timesteps": 100000000000}"#),
        ("negative.json", r#"{"num_train_timesteps": -5}"#),
        ("empty.json", ""),
    ];
    for (name, json) in cases {
        let path = dir.join(name);
        std::fs::write(&path, json).unwrap();
        let mut args = sample_args(TINY, s(&out));
        args.extend(["--scheduler", s(&path)]);
        let e = refused(&args, &[name]);
        before_sampling(&e);
        refused(&["schedule", "--scheduler", s(&path)], &[name]);
    }
    refused(
        &["schedule", "--scheduler", s(&dir.join("missing.json"))],
        &["missing.json"],
    );
}

// ---------------------------------------------------------------------------------------------
// `ddpm schedule`, `unet info`, `convert`, `eval nll`, `bench`, `train`.

#[test]
fn schedule_absurd_numbers() {
    let cases: [(&[&str], &[&str]); 7] = [
        (&["--num-inference-steps", "0"], &["0"]),
        (&["--num-inference-steps", "5000"], &["5000"]),
        (&["--num-train-timesteps", "0"], &["num_train_timesteps"]),
        (
            &["--num-train-timesteps", "100000000000"],
            &["num_train_timesteps"],
        ),
        (&["--beta-start", "nan"], &["beta"]),
        (&["--beta-start", "0.5", "--beta-end", "0.1"], &["beta_end"]),
        (&["--timestep-spacing", "sideways"], &["sideways"]),
    ];
    for (extra, names) in cases {
        refused(&[&["schedule"][..], extra].concat(), names);
    }
}

#[test]
fn unet_info_and_convert() {
    let dir = tmp("convert");
    let file = dir.join("a-file");
    std::fs::write(&file, b"keep me").unwrap();
    refused(&["unet", "info", "--preset", "huge"], &["huge", "tiny"]);
    refused(
        &["convert", TINY, s(&file), "--to", "burn"],
        &["a-file", "not a directory"],
    );
    refused(
        &[
            "convert",
            TINY,
            s(&dir.join("x")),
            "--to",
            "burn",
            "--weights",
            "raw",
        ],
        &["--weights raw"],
    );
    refused(
        &[
            "convert",
            s(&dir.join("nothing")),
            s(&dir.join("x")),
            "--to",
            "burn",
        ],
        &["nothing"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn eval_nll_bad_arguments() {
    let dir = tmp("eval");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..2u8 {
        image::RgbImage::from_pixel(16, 16, image::Rgb([i * 100, 50, 50]))
            .save(images.join(format!("{i}.png")))
            .unwrap();
    }
    let base = [
        "eval",
        "nll",
        "--unet",
        TINY,
        "--data",
        s(&images),
        "--timesteps",
        "2",
    ];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    let report_dir = s(&dir).to_string();
    let no_images = dir.join("no-images");
    let cases: [(Vec<&str>, &[&str]); 8] = [
        (with(&["--num-images", "0"]), &["--num-images"]),
        (with(&["--batch-size", "0"]), &["--batch-size"]),
        (
            [&base[..6], &["--timesteps", "0"][..]].concat(),
            &["timesteps"],
        ),
        (
            [&base[..6], &["--timesteps", "lots"][..]].concat(),
            &["--timesteps", "lots"],
        ),
        (with(&["--split", "sideways"]), &["sideways"]),
        (
            ["eval", "nll", "--unet", "preset:huge", "--data", s(&images)].to_vec(),
            &["huge"],
        ),
        (
            ["eval", "nll", "--unet", TINY, "--data", s(&no_images)].to_vec(),
            &["no-images"],
        ),
        (
            [&base[..], &["--report", report_dir.as_str()][..]].concat(),
            &["--report", "directory"],
        ),
    ];
    for (args, names) in cases {
        let e = refused(&args, names);
        assert!(
            !e.contains("model calls per batch"),
            "evaluated first:\n{e}"
        );
    }
}

#[test]
fn bench_absurd_numbers() {
    let base = ["bench", "--preset", "tiny", "--mode", "forward"];
    let cases: [(&[&str], &[&str]); 8] = [
        (&["--batch", "0"], &["--batch"]),
        (&["--repeats", "0"], &["--repeats"]),
        (&["--steps", "0"], &["--steps"]),
        (&["--sample-size", "0"], &["sample_size"]),
        (&["--sample-size", "17"], &["sample_size"]),
        (&["--sample-size", "1000000"], &["sample_size", "limit"]),
        (&["--batch", "1000000000000"], &["--batch", "limit"]),
        (&["--precision", "f8"], &["f8"]),
    ];
    for (extra, names) in cases {
        refused(&[&base[..], extra].concat(), names);
    }
    refused(&["bench", "--preset", "huge"], &["huge"]);
}

/// Issue #14 item 10: `train --out <existing file>` said only "File exists", after loading all
/// the data.
#[test]
fn train_out_is_a_file() {
    let dir = tmp("train");
    let file = dir.join("run.txt");
    std::fs::write(&file, b"keep me").unwrap();
    let e = refused(
        &[
            "train",
            "--data",
            "mnist:no-such-dir",
            "--preset",
            "tiny",
            "--out",
            s(&file),
            "--steps",
            "1",
        ],
        &["--out", "run.txt", "not a directory"],
    );
    assert!(!e.contains("data:"), "loaded the data first:\n{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    refused(
        &[
            "train",
            "--data",
            s(&dir.join("none")),
            "--preset",
            "tiny",
            "--out",
            s(&dir.join("run")),
            "--steps",
            "1",
        ],
        &["none"],
    );
}

// ---------------------------------------------------------------------------------------------
// Closed pipes.

/// Runs `ddpm args` with stdout (or stderr) a pipe whose reader is already gone.
fn with_closed_pipe(args: &[&str], stderr: bool) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ddpm"));
    cmd.args(args);
    if stderr {
        cmd.stderr(writer).stdout(Stdio::piped());
    } else {
        cmd.stdout(writer).stderr(Stdio::piped());
    }
    cmd.output().unwrap()
}

/// Issue #14 item 10: `ddpm ... | head -1` panicked with "Broken pipe" (exit 101).
#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [
        &["schedule"][..],
        &[
            "schedule",
            "--format",
            "table",
            "--num-inference-steps",
            "10",
        ][..],
        &["unet", "info", "--preset", "tiny"][..],
        &["unet", "info", "--preset", "tiny", "--json"][..],
    ] {
        let out = with_closed_pipe(args, false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {:?}\n{stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// With nobody reading stderr, `sample` still writes its image and exits 0.
#[test]
fn a_closed_stderr_does_not_stop_sampling() {
    let dir = tmp("stderr");
    let out = dir.join("g.png");
    let result = with_closed_pipe(&sample_args(TINY, s(&out)), true);
    assert_eq!(result.status.code(), Some(0), "{:?}", result.status);
    assert!(out.exists());
    // An error still gives exit 1 with nobody to read it.
    let result = with_closed_pipe(&sample_args(s(&dir.join("none")), s(&out)), true);
    assert_eq!(result.status.code(), Some(1), "{:?}", result.status);
}
