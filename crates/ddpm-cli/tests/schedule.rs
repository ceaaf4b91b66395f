//! End-to-end: `ddpm schedule` prints the paper's tables and diffusers' timesteps, reads a
//! `scheduler_config.json`, plots, and rejects bad flags with a message naming them.

use std::process::Command;

fn ddpm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .output()
        .expect("run ddpm")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-schedule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn json_has_diffusers_tables_and_timesteps() {
    let out = ddpm(&[
        "schedule",
        "--num-inference-steps",
        "10",
        "--timestep-spacing",
        "leading",
        "--steps-offset",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let betas = v["betas"].as_array().unwrap();
    assert_eq!(betas.len(), 1000);
    assert_eq!(betas[0].as_f64().unwrap(), 1e-4);
    assert_eq!(betas[999].as_f64().unwrap(), 0.02);
    for key in [
        "alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    ] {
        assert_eq!(v[key].as_array().unwrap().len(), 1000, "{key}");
    }
    // Same value as diffusers' float64 reference (schedules_T1000 fixture).
    let lv = v["posterior_log_variance_clipped"][0].as_f64().unwrap();
    assert!((lv - -9.81672513529567).abs() < 1e-12, "{lv}");
    let ts: Vec<u64> = v["timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(ts, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
}

#[test]
fn reads_scheduler_config_and_flags_override_it() {
    let cfg = tmp("scheduler_config.json");
    std::fs::write(
        &cfg,
        r#"{"_class_name": "DDIMScheduler", "beta_schedule": "squaredcos_cap_v2",
            "num_train_timesteps": 500, "timestep_spacing": "trailing", "tensor_format": "pt"}"#,
    )
    .unwrap();
    let out = ddpm(&[
        "schedule",
        "--scheduler",
        cfg.to_str().unwrap(),
        "--num-inference-steps",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tensor_format"),
        "ignored key not reported: {stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["beta_schedule"], "squaredcos_cap_v2");
    assert_eq!(v["betas"].as_array().unwrap().len(), 500);
    assert_eq!(v["timesteps"][0], 499);

    let out = ddpm(&[
        "schedule",
        "--scheduler",
        cfg.to_str().unwrap(),
        "--num-train-timesteps",
        "100",
        "--beta-schedule",
        "linear",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["betas"].as_array().unwrap().len(), 100);
    assert_eq!(v["beta_schedule"], "linear");
}

#[test]
fn plots_and_prints_a_table() {
    let png = tmp("schedule.png");
    let out = ddpm(&[
        "schedule",
        "--format",
        "table",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(String::from_utf8_lossy(&out.stdout).contains("linear schedule, T = 1000"));
}

#[test]
fn bad_input_names_the_field() {
    for (args, needle) in [
        (
            vec!["schedule", "--beta-schedule", "quadratic"],
            "beta_schedule",
        ),
        (
            vec!["schedule", "--num-train-timesteps", "0"],
            "num_train_timesteps is 0",
        ),
        (vec!["schedule", "--beta-end", "1.5"], "beta_end is 1.5"),
        (
            vec!["schedule", "--num-inference-steps", "2000"],
            "num_inference_steps is 2000",
        ),
        (
            vec!["schedule", "--timestep-spacing", "middle"],
            "timestep_spacing",
        ),
        (
            vec!["schedule", "--scheduler", "/nonexistent/x.json"],
            "/nonexistent/x.json",
        ),
    ] {
        let out = ddpm(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
