//! End-to-end: `ddpm sample` on the fixture tiny U-Net (a diffusers `UNet2DModel` directory,
//! 3×16×16) writes a PNG grid, per-sample PNGs and the raw samples; reproduces runs from a seed
//! or from noise files; and rejects bad input before sampling with a message naming it.

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
    assert!(dev > 0.0 && dev < 2e-2, "max |f16 − f32| = {dev}");
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
        e.contains("expected [steps, num_samples, C, H, W] = [5, 2, 3, 16, 16]"),
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
