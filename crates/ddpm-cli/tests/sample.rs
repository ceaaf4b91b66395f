//! End-to-end: `ddpm sample` on the fixture tiny U-Net (a diffusers `UNet2DModel` directory,
//! 3×16×16) writes a PNG grid, per-sample PNGs and the raw samples; gives bit for bit the
//! samples of the library's `Pipeline` at every batch size; reproduces runs from a seed or from
//! noise files; rejects bad input before sampling with a message naming it; and on a full disk
//! fails with the OS error, leaving the previous files intact.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/unet_tiny");

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .arg("sample")
        .args(["--unet", UNET])
        .args(args)
        .output()
        .expect("run ddpm")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn tmp(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-sample-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// (shape, values) of the `samples` tensor.
fn read_samples(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.names(), ["samples"]);
    let view = st.tensor("samples").unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    let values = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (view.shape().to_vec(), values)
}

fn write_tensor(path: &Path, key: &str, shape: &[usize], values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)
            .unwrap();
    std::fs::write(path, safetensors::serialize([(key, view)], None).unwrap()).unwrap();
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn ddim_writes_grid_pngs_and_tensor() {
    let dir = tmp("ddim");
    let (grid, each, tensor) = (
        dir.join("grid.png"),
        dir.join("each"),
        dir.join("out.safetensors"),
    );
    let stderr = ok(&ddpm(&[
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--num-samples",
        "2",
        "--seed",
        "3",
        "--output",
        s(&grid),
        "--output-dir",
        s(&each),
        "--save-tensor",
        s(&tensor),
    ]));
    assert!(
        stderr.contains("DDIM sampler, 5 steps, 2 samples of 3×16×16"),
        "{stderr}"
    );
    // 2 samples → 2 columns × 1 row of 16 px with 2-px gaps.
    assert_eq!(png_size(&grid), (2 * 18 + 2, 18 + 2));
    assert_eq!(png_size(&each.join("sample_00000.png")), (16, 16));
    assert_eq!(png_size(&each.join("sample_00001.png")), (16, 16));
    let (shape, values) = read_samples(&tensor);
    assert_eq!(shape, [2, 3, 16, 16]);
    assert!(values.iter().all(|v| v.is_finite()));
    // Model space, not quantized to 8 bits (x̂₀ is clipped to [−1, 1] by default).
    assert!(values.iter().all(|v| v.abs() <= 1.0));
    assert!(values.iter().any(|v| {
        let level = (v + 1.0) * 127.5;
        (level - level.round()).abs() > 1e-3
    }));

    // Same seed → same samples, whatever the batch size (η = 0 is deterministic given x_T).
    let again = dir.join("again.safetensors");
    ok(&ddpm(&[
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--num-samples",
        "2",
        "--seed",
        "3",
        "--batch-size",
        "1",
        "--output",
        s(&dir.join("g2.png")),
        "--save-tensor",
        s(&again),
    ]));
    assert_eq!(read_samples(&again).1, values);

    // --precision f16: the U-Net in half precision (Burn's generic ops on Flex), the sampler
    // in f32; the same seed gives samples close to the f32 ones, not equal.
    let half = dir.join("half.safetensors");
    ok(&ddpm(&[
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--num-samples",
        "2",
        "--seed",
        "3",
        "--precision",
        "f16",
        "--output",
        s(&dir.join("g3.png")),
        "--save-tensor",
        s(&half),
    ]));
    let half = read_samples(&half).1;
    let dev = half
        .iter()
        .zip(&values)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    // Measured 0.03 (5 DDIM steps amplify the network's ~1e-2 relative f16 error, see
    // ddpm-gpu-tests' half_precision_stays_close_to_f32); a sample from another model or seed
    // would differ by O(1).
    assert!(dev > 0.0 && dev < 0.1, "max |f16 − f32| = {dev}");
}

#[test]
fn ddpm_replays_init_noise_and_step_noise() {
    let dir = tmp("replay");
    let n = 2 * 3 * 16 * 16;
    let x_t: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let z: Vec<f32> = (0..4 * n)
        .map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0)
        .collect();
    let (init, noise) = (dir.join("x_T.safetensors"), dir.join("noise.safetensors"));
    write_tensor(&init, "x_T", &[2, 3, 16, 16], &x_t);
    write_tensor(&noise, "variance_noise", &[4, 2, 3, 16, 16], &z);
    let run = |seed: &str, out: &Path| {
        ok(&ddpm(&[
            "--sampler",
            "ddpm",
            "--steps",
            "4",
            "--num-samples",
            "2",
            "--batch-size",
            "1",
            "--seed",
            seed,
            "--init-noise",
            s(&init),
            "--noise-file",
            s(&noise),
            "--output",
            s(&dir.join("grid.png")),
            "--save-tensor",
            s(out),
        ]))
    };
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    run("1", &a);
    run("2", &b);
    // With every random number given, the seed does not matter.
    assert_eq!(read_samples(&a).1, read_samples(&b).1);
}

#[test]
fn bad_input_is_rejected_before_sampling() {
    let dir = tmp("bad");
    let out = dir.join("never.png");
    let e = err(&ddpm(&["--steps", "1001", "--output", s(&out)]));
    assert!(e.contains("num_inference_steps is 1001"), "{e}");
    let e = err(&ddpm(&[
        "--sampler",
        "ddim",
        "--eta",
        "-0.5",
        "--output",
        s(&out),
    ]));
    assert!(e.contains("eta is -0.5"), "{e}");
    let e = err(&ddpm(&["--precision", "f8", "--output", s(&out)]));
    assert!(e.contains("unknown precision `f8`"), "{e}");

    let noise = dir.join("short.safetensors");
    write_tensor(&noise, "noise", &[4, 2, 3, 16, 16], &vec![0.0; 4 * 2 * 768]);
    let e = err(&ddpm(&[
        "--steps",
        "5",
        "--num-samples",
        "2",
        "--noise-file",
        s(&noise),
        "--output",
        s(&out),
    ]));
    assert!(
        e.contains("[4, 2, 3, 16, 16]")
            && e.contains("expected [5, 2, 3, 16, 16]")
            && e.contains("[steps, num_samples, C, H, W]"),
        "{e}"
    );

    let init = dir.join("x_T.safetensors");
    write_tensor(&init, "x_T", &[2, 1, 16, 16], &vec![0.0; 2 * 256]);
    let e = err(&ddpm(&[
        "--steps",
        "5",
        "--num-samples",
        "2",
        "--init-noise",
        s(&init),
        "--output",
        s(&out),
    ]));
    assert!(
        e.contains("[2, 1, 16, 16]") && e.contains("[2, 3, 16, 16]"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn scheduler_config_class_picks_the_sampler() {
    let dir = tmp("config");
    let config = dir.join("scheduler_config.json");
    std::fs::write(
        &config,
        r#"{"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "steps_offset": 1}"#,
    )
    .unwrap();
    let stderr = ok(&ddpm(&[
        "--scheduler",
        s(&config),
        "--steps",
        "3",
        "--num-samples",
        "1",
        "--output",
        s(&dir.join("g.png")),
    ]));
    assert!(stderr.contains("DDIM sampler, 3 steps"), "{stderr}");
    let stderr = ok(&ddpm(&[
        "--scheduler",
        s(&config),
        "--sampler",
        "dpm-solver++",
        "--steps",
        "3",
        "--num-samples",
        "1",
        "--output",
        s(&dir.join("g.png")),
    ]));
    assert!(stderr.contains("DPM-Solver++ sampler, 3 steps"), "{stderr}");
}

/// The samples of `ddpm sample` with these arguments (written with --save-tensor).
fn cli_samples(dir: &Path, name: &str, args: &[&str]) -> Vec<u32> {
    let tensor = dir.join(format!("{name}.safetensors"));
    let grid = dir.join(format!("{name}.png"));
    let mut all = args.to_vec();
    all.extend(["--output", s(&grid), "--save-tensor", s(&tensor)]);
    ok(&ddpm(&all));
    read_samples(&tensor)
        .1
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn cli_gives_the_pipelines_samples_at_every_batch_size() {
    use burn::backend::Flex;
    use ddpm_pipeline::{Pipeline, SamplerKind};
    let dir = tmp("same");
    let device = Default::default();
    let pipe = Pipeline::<Flex>::from_dir(UNET, &device).unwrap();
    // DDPM draws fresh noise at every step: batching must not change which noise a sample gets.
    let lib = pipe
        .sampler(SamplerKind::Ddpm)
        .steps(4)
        .seed(5)
        .batch_size(2)
        .sample(3)
        .unwrap();
    let lib: Vec<u32> = lib
        .into_tensor()
        .into_data()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let common = [
        "--sampler",
        "ddpm",
        "--steps",
        "4",
        "--num-samples",
        "3",
        "--seed",
        "5",
    ];
    for batch in ["1", "3"] {
        let mut args = common.to_vec();
        args.extend(["--batch-size", batch]);
        assert_eq!(cli_samples(&dir, batch, &args), lib, "--batch-size {batch}");
    }
    let mut other = common.to_vec();
    other[7] = "6";
    assert_ne!(cli_samples(&dir, "other", &other), lib);
}

#[test]
fn output_format_follows_the_extension() {
    let dir = tmp("format");
    let jpg = dir.join("grid.jpg");
    ok(&ddpm(&[
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--num-samples",
        "2",
        "--output",
        s(&jpg),
    ]));
    let bytes = std::fs::read(&jpg).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "not a JPEG");
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 2 * 18 + 2);
    // An unknown extension is refused before sampling, naming what is accepted.
    let bmp = dir.join("grid.bmp");
    let e = err(&ddpm(&[
        "--steps",
        "2",
        "--num-samples",
        "1",
        "--output",
        s(&bmp),
    ]));
    assert!(
        e.contains("grid.bmp") && e.contains(".png, .jpg or .jpeg"),
        "{e}"
    );
    assert!(!e.contains("sampler,"), "sampled before refusing: {e}");
    assert!(!bmp.exists());
}

#[test]
fn weights_on_a_diffusers_dir_is_an_error() {
    let dir = tmp("weights");
    let e = err(&ddpm(&[
        "--weights",
        "raw",
        "--steps",
        "2",
        "--output",
        s(&dir.join("g.png")),
    ]));
    assert!(
        e.contains("--weights raw applies to training runs") && e.contains("unet_tiny"),
        "{e}"
    );
}

#[test]
fn non_finite_init_noise_is_refused() {
    let dir = tmp("nan");
    let init = dir.join("x_T.safetensors");
    write_tensor(&init, "x_T", &[1, 3, 16, 16], &vec![f32::NAN; 768]);
    let out = dir.join("g.png");
    let e = err(&ddpm(&[
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--num-samples",
        "1",
        "--init-noise",
        s(&init),
        "--output",
        s(&out),
    ]));
    assert!(
        e.contains("init noise (x_T) holds non-finite values"),
        "{e}"
    );
    assert!(!out.exists());
}

/// Runs `ddpm sample` with the file-size limit at 0: every write to a regular file fails
/// (EFBIG, as on a full disk); SIGXFSZ is ignored so the write returns the error.
#[cfg(target_os = "linux")]
fn ddpm_no_space(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 0; exec \"$0\" sample --unet \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ddpm"))
        .arg(UNET)
        .args(args)
        .output()
        .expect("run ddpm under sh")
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_fails_loudly_and_keeps_the_previous_files() {
    let dir = tmp("full");
    let quick = ["--sampler", "ddim", "--steps", "2", "--num-samples", "2"];
    // /dev/full: every write fails with ENOSPC.
    let mut args = quick.to_vec();
    args.extend(["--output", "/dev/full"]);
    let e = err(&ddpm(&args));
    assert!(
        e.contains("/dev/full") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(!e.contains("wrote"), "{e}");

    // A previous grid, tensor and per-sample PNG survive a failed overwrite, and no partial
    // file is left under any name.
    let (grid, tensor, each) = (
        dir.join("grid.png"),
        dir.join("s.safetensors"),
        dir.join("each"),
    );
    std::fs::create_dir_all(&each).unwrap();
    let old = b"previous contents".to_vec();
    for p in [&grid, &tensor, &each.join("sample_00000.png")] {
        std::fs::write(p, &old).unwrap();
    }
    let listing = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = (listing(&dir), listing(&each));
    for extra in [
        vec!["--output", s(&grid)],
        vec!["--output", s(&grid), "--save-tensor", s(&tensor)],
        vec!["--output", "/dev/null", "--output-dir", s(&each)],
    ] {
        let mut args = quick.to_vec();
        args.extend(extra.iter().copied());
        let out = ddpm_no_space(&args);
        let e = err(&out);
        assert_eq!(out.status.code(), Some(1), "{e}");
        assert!(e.contains("File too large"), "{e}");
        for p in [&grid, &tensor, &each.join("sample_00000.png")] {
            assert_eq!(std::fs::read(p).unwrap(), old, "{} changed", p.display());
        }
        assert_eq!((listing(&dir), listing(&each)), before, "files left behind");
    }
}
