//! End to end: `ddpm eval nll` on the tiny diffusers U-Net fixture and on a preset, with the
//! bundled MNIST test images, a few stratified timesteps, a JSON report and a plot.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ddpm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("ddpm runs")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-eval-nll-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn eval_nll_on_the_tiny_unet_writes_report_and_plot() {
    let report = tmp("report.json");
    let plot = tmp("terms.png");
    let out = ddpm(&[
        "eval",
        "nll",
        "--unet",
        "crates/ddpm-unet/tests/fixtures/unet_tiny",
        "--data",
        "mnist:data/mnist",
        "--num-images",
        "4",
        "--batch-size",
        "2",
        "--timesteps",
        "4",
        "--report",
        report.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("bits/dim:"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let bpd = r["bits_per_dim"].as_f64().unwrap();
    assert!(bpd.is_finite() && bpd > 1.0, "bits/dim {bpd}");
    assert!(r["stderr"].as_f64().unwrap() >= 0.0);
    assert_eq!(r["num_images"], 4);
    let terms = r["terms"].as_array().unwrap();
    assert_eq!(terms.len(), 4);
    let weights: u64 = terms.iter().map(|t| t["weight"].as_u64().unwrap()).sum();
    assert_eq!(weights, 1000, "strata cover all T timesteps");
    for key in ["vb_bpd", "x0_mse", "eps_mse"] {
        assert!(
            terms.iter().all(|t| t[key].as_f64().unwrap().is_finite()),
            "{key}"
        );
    }
    assert!(r["prior_bpd"].as_f64().unwrap() > 0.0);
    assert!(
        std::fs::metadata(&plot).unwrap().len() > 1000,
        "plot written"
    );
}

#[test]
fn eval_nll_names_a_variance_type_the_model_does_not_fit() {
    let out = ddpm(&[
        "eval",
        "nll",
        "--unet",
        "preset:tiny",
        "--data",
        "mnist:data/mnist",
        "--num-images",
        "2",
        "--timesteps",
        "2",
        "--variance-type",
        "learned_range",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("learned_range") && stderr.contains("needs 6"),
        "{stderr}"
    );
}

#[test]
fn eval_nll_rejects_bad_timesteps() {
    let out = ddpm(&[
        "eval",
        "nll",
        "--unet",
        "preset:tiny",
        "--data",
        "mnist:data/mnist",
        "--timesteps",
        "1",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("K >= 2"), "{stderr}");
}
