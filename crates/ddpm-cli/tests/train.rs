//! End-to-end: `ddpm train` on a small image folder writes a run directory that `--resume`
//! continues and that `ddpm sample` and `ddpm convert` accept; bad input fails clearly.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ddpm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .output()
        .expect("run ddpm")
}

fn ok(args: &[&str]) -> String {
    let out = ddpm(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?} failed:\n{stderr}");
    stderr
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Eight 16×16 RGB PNGs with a colored square at different places.
fn image_folder(dir: &Path) {
    for i in 0..8u32 {
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            let inside = (x + i) % 16 < 8 && (y + 2 * i) % 16 < 8;
            if inside {
                image::Rgb([200, 40 + 20 * i as u8, 30])
            } else {
                image::Rgb([10, 10, 60])
            }
        });
        img.save(dir.join(format!("img{i}.png"))).unwrap();
    }
}

#[test]
fn train_resume_sample_convert() {
    let root = tmp("e2e");
    let data = root.join("images");
    std::fs::create_dir_all(&data).unwrap();
    image_folder(&data);
    let run = root.join("run");
    let (data_s, run_s) = (data.to_str().unwrap(), run.to_str().unwrap());
    let common = [
        "--data",
        data_s,
        "--preset",
        "tiny",
        "--out",
        run_s,
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--warmup-steps",
        "2",
        "--seed",
        "3",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "0",
    ];
    let mut args = vec!["train", "--steps", "3"];
    args.extend(common);
    let log = ok(&args);
    assert!(log.contains("data: 8 images 3x16x16"), "{log}");
    for f in [
        "train_config.json",
        "scheduler_config.json",
        "samples.png",
        "metrics.jsonl",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(run.join("checkpoints/step-00000003/state.json").is_file());

    // A second plain run into the same directory is refused; --resume continues to 5 steps.
    let out = ddpm(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    let mut resume = vec!["train", "--steps", "5", "--resume"];
    resume.extend(common);
    let log = ok(&resume);
    assert!(
        log.contains("resuming") && log.contains("at step 3"),
        "{log}"
    );
    assert!(run.join("checkpoints/step-00000005/state.json").is_file());

    // The run directory is a model for `sample` (EMA weights) and `convert`.
    let grid = root.join("grid.png");
    ok(&[
        "sample",
        "--unet",
        run_s,
        "--sampler",
        "ddim",
        "--steps",
        "3",
        "--num-samples",
        "2",
        "--seed",
        "1",
        "--output",
        grid.to_str().unwrap(),
    ]);
    assert!(grid.is_file());
    let exported = root.join("exported");
    ok(&[
        "convert",
        run_s,
        exported.to_str().unwrap(),
        "--to",
        "diffusers",
        "--weights",
        "raw",
    ]);
    assert!(exported.join("config.json").is_file());
    assert!(
        exported
            .join("diffusion_pytorch_model.safetensors")
            .is_file()
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn bad_training_input_is_named() {
    let root = tmp("bad");
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out_dir = root.join("run");
    for (args, needle) in [
        (
            vec!["--data", empty.to_str().unwrap(), "--preset", "tiny"],
            "empty",
        ),
        (
            vec!["--data", "minst:data/mnist", "--preset", "tiny"],
            "minst",
        ),
        (
            vec!["--data", "mnist:data/mnist", "--preset", "huge"],
            "huge",
        ),
    ] {
        let mut full = vec!["train", "--out", out_dir.to_str().unwrap(), "--steps", "1"];
        full.extend(args.iter().copied());
        let out = ddpm(&full);
        assert!(!out.status.success(), "{full:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.to_lowercase().contains(needle), "{full:?}: {stderr}");
    }
    let out = ddpm(&[
        "train",
        "--data",
        "x",
        "--out",
        root.join("none").to_str().unwrap(),
        "--resume",
    ]);
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(root);
}

/// `--resume` refuses what it cannot honour, naming it (issue #14 item 6): fewer steps than
/// the checkpoint's, a changed learning rate, other images of the same count and size.
#[test]
fn resume_refuses_changed_settings_data_and_fewer_steps() {
    let root = tmp("resume-hostile");
    let data = root.join("images");
    std::fs::create_dir_all(&data).unwrap();
    image_folder(&data);
    let run = root.join("run");
    let (data_s, run_s) = (data.to_str().unwrap(), run.to_str().unwrap());
    let base = [
        "train",
        "--data",
        data_s,
        "--out",
        run_s,
        "--sample-every",
        "0",
    ];
    let mut first = base.to_vec();
    first.extend(["--preset", "tiny", "--steps", "2", "--batch-size", "4"]);
    ok(&first);

    let fail = |extra: &[&str], needles: &[&str]| {
        let mut args = base.to_vec();
        args.push("--resume");
        args.extend(extra);
        let out = ddpm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{args:?}:\n{stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: no {n:?} in\n{stderr}");
        }
    };
    fail(&["--steps", "1"], &["already at step 2", "at least 2"]);
    fail(
        &["--steps", "4", "--lr", "5e-3"],
        &["learning_rate = 0.005", "learning_rate = 0.0002"],
    );
    fail(&["--steps", "4", "--batch-size", "8"], &["batch_size = 8"]);

    // Same count and size, one image different.
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    image_folder(&other);
    image::RgbImage::from_pixel(16, 16, image::Rgb([255, 255, 255]))
        .save(other.join("img3.png"))
        .unwrap();
    let mut args = vec!["train", "--data", other.to_str().unwrap(), "--out", run_s];
    args.extend(["--resume", "--steps", "4"]);
    let out = ddpm(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("training data differ"), "{stderr}");
    assert!(stderr.contains(other.to_str().unwrap()), "{stderr}");

    // The run's own total: nothing to do, said so.
    let mut same = base.to_vec();
    same.extend(["--resume", "--steps", "2"]);
    let log = ok(&same);
    assert!(log.contains("nothing to train"), "{log}");
    let _ = std::fs::remove_dir_all(root);
}
