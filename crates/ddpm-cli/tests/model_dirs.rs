//! End-to-end: every model directory `ddpm sample`, `eval nll` and `convert` accept resolves the
//! same way (one resolver, `ddpm_pipeline::ModelDir`) and carries its noise schedule: a
//! checkpoint directory of a cosine-β run samples exactly like its run, `convert` keeps the
//! schedule, a diffusers pipeline directory brings its scheduler; `convert` on a full disk keeps
//! the previous model.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use ddpm_schedule::NoiseScheduleConfig;
use ddpm_train::{TrainConfig, Trainer};
use ddpm_unet::{BlockType, UnetConfig};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/unet_tiny");

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .output()
        .expect("run ddpm")
}

fn ok(args: &[&str]) -> String {
    let out = ddpm(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?} failed:\n{stderr}");
    stderr + &String::from_utf8_lossy(&out.stdout)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-dirs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ddpm sample --unet <model>` (DDIM, 4 steps, 2 samples) → the raw samples' bits.
fn sample(model: &Path, out: &Path, extra: &[&str]) -> Vec<u8> {
    let tensor = out.with_extension("safetensors");
    let mut args = vec![
        "sample",
        "--unet",
        s(model),
        "--sampler",
        "ddim",
        "--steps",
        "4",
        "--num-samples",
        "2",
        "--seed",
        "9",
        "--output",
        s(out),
        "--save-tensor",
        s(&tensor),
    ];
    args.extend(extra);
    ok(&args);
    std::fs::read(tensor).unwrap()
}

/// A 2-step cosine-β run of an 8×8 gray U-Net, trained through the library.
fn cosine_run(dir: &Path) -> PathBuf {
    let unet = UnetConfig::new()
        .with_sample_size(8)
        .with_in_channels(1)
        .with_out_channels(1)
        .with_block_out_channels(vec![16, 32])
        .with_down_block_types(vec![BlockType::Plain, BlockType::Attention])
        .with_up_block_types(vec![BlockType::Attention, BlockType::Plain])
        .with_layers_per_block(1)
        .with_norm_num_groups(8);
    let config = TrainConfig::new(unet)
        .with_schedule(NoiseScheduleConfig::cosine(1000))
        .with_steps(2)
        .with_batch_size(4)
        .with_warmup_steps(1)
        .with_checkpoint_every(1000)
        .with_sample_every(0)
        .with_num_preview_samples(1)
        .with_preview_steps(2);
    let data: Vec<u8> = (0..16 * 64).map(|i| ((i * 29) % 251) as u8).collect();
    let data = Arc::new(ddpm_data::Dataset::from_raw(data, 16, 1, 8, 8).unwrap());
    let run = dir.join("run");
    let mut t = Trainer::<Autodiff<Flex>>::new(config, &run, data, &Default::default()).unwrap();
    t.run(|_| {}).unwrap();
    run
}

#[test]
fn runs_checkpoints_and_conversions_keep_the_schedule() {
    let dir = tmp("cosine");
    let run = cosine_run(&dir);
    let ckpt = run.join("checkpoints").join("step-00000002");
    let from_run = sample(&run, &dir.join("run.png"), &[]);
    assert_eq!(sample(&ckpt, &dir.join("ckpt.png"), &[]), from_run);
    let raw = sample(&ckpt, &dir.join("raw.png"), &["--weights", "raw"]);
    assert_ne!(raw, from_run, "raw and EMA weights differ after 2 steps");
    // The linear schedule gives other samples: the comparisons can fail.
    let linear = dir.join("linear.json");
    std::fs::write(&linear, r#"{"_class_name": "DDPMScheduler"}"#).unwrap();
    let with_linear = sample(&ckpt, &dir.join("lin.png"), &["--scheduler", s(&linear)]);
    assert_ne!(with_linear, from_run);

    for (to, name) in [("burn", "native"), ("diffusers", "diffusers")] {
        let dst = dir.join(name);
        let out = ok(&["convert", s(&run), s(&dst), "--to", to]);
        assert!(out.contains("with its scheduler_config.json"), "{out}");
        let config = std::fs::read_to_string(dst.join("scheduler_config.json")).unwrap();
        assert!(config.contains("squaredcos_cap_v2"), "{config}");
        assert_eq!(
            sample(&dst, &dir.join(format!("{name}.png")), &[]),
            from_run
        );
    }
    let e = ddpm(&[
        "convert",
        TINY,
        s(&dir.join("x")),
        "--to",
        "burn",
        "--weights",
        "raw",
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("applies to training runs"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_diffusers_pipeline_dir_brings_its_scheduler() {
    let dir = tmp("pipe");
    let pipe = dir.join("ddpm-tiny");
    std::fs::create_dir_all(pipe.join("unet")).unwrap();
    std::fs::create_dir_all(pipe.join("scheduler")).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(Path::new(TINY).join(f), pipe.join("unet").join(f)).unwrap();
    }
    std::fs::write(
        pipe.join("model_index.json"),
        r#"{"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DModel"]}"#,
    )
    .unwrap();
    std::fs::write(
        pipe.join("scheduler").join("scheduler_config.json"),
        r#"{"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "steps_offset": 1, "my_key": 3}"#,
    )
    .unwrap();
    let out = ok(&[
        "sample",
        "--unet",
        s(&pipe),
        "--steps",
        "3",
        "--num-samples",
        "1",
        "--output",
        s(&dir.join("g.png")),
    ]);
    assert!(out.contains("DDIM sampler, 3 steps"), "{out}");
    assert!(out.contains("scheduler/scheduler_config.json"), "{out}");
    assert!(out.contains("keys not used: my_key"), "{out}");
    // convert takes the pipeline's unet/ and keeps its scheduler config.
    let dst = dir.join("native");
    ok(&["convert", s(&pipe), s(&dst), "--to", "burn"]);
    assert!(
        std::fs::read_to_string(dst.join("scheduler_config.json"))
            .unwrap()
            .contains("DDIMScheduler")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(target_os = "linux")]
#[test]
fn convert_force_on_a_full_disk_keeps_the_previous_model() {
    let dir = tmp("full");
    let dst = dir.join("model");
    ok(&["convert", TINY, s(&dst), "--to", "diffusers"]);
    let files = ["config.json", "diffusion_pytorch_model.safetensors"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dst.join(f)).unwrap())
        .collect();
    // The file-size limit at 0: every write fails (EFBIG), as on a full disk.
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 0; exec \"$0\" convert \"$@\" --to diffusers --force")
        .arg(env!("CARGO_BIN_EXE_ddpm"))
        .args([TINY, s(&dst)])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("File too large"), "{e}");
    for (f, old) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(dst.join(f)).unwrap(), old, "{f} changed");
    }
    let names: Vec<String> = std::fs::read_dir(&dst)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "files left behind: {names:?}");
    let _ = std::fs::remove_dir_all(dir);
}
