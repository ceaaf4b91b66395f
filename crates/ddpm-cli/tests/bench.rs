//! End-to-end: `ddpm bench` times the tiny preset and prints one JSON object per case, lists
//! the cases its flags select (`--list`: the standard set, the filters, the scaling set), and
//! rejects an unknown preset, a resolution that does not fit and an unknown device by name.

use std::process::Command;

fn ddpm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .output()
        .expect("run ddpm")
}

#[test]
fn json_line_has_every_field() {
    let out = ddpm(&[
        "bench",
        "--preset",
        "tiny",
        "--mode",
        "forward",
        "--batch",
        "1",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one case, one line: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["preset"], "tiny");
    assert_eq!(v["mode"], "forward");
    assert_eq!(v["batch"], 1);
    assert_eq!(v["device"], "flex");
    assert_eq!(v["repeats"], 2);
    assert_eq!(v["precision"], "f32");
    let median = v["median_ms"].as_f64().unwrap();
    let min = v["min_ms"].as_f64().unwrap();
    let max = v["max_ms"].as_f64().unwrap();
    assert!(median > 0.0, "{v}");
    assert!(min <= median && median <= max, "{v}");
    // A number on Linux, null elsewhere; present either way.
    let rss = v.get("peak_rss_mb").expect("peak_rss_mb present");
    if cfg!(target_os = "linux") {
        assert!(rss.as_f64().unwrap() > 0.0, "{v}");
    }
}

#[test]
fn half_precision_times_forward_and_refuses_training() {
    // f16 on the CPU backend works (Burn's generic ops), so the flag is exercised here too.
    let out = ddpm(&[
        "bench",
        "--preset",
        "tiny",
        "--mode",
        "forward",
        "--batch",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--precision",
        "f16",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(v["precision"], "f16");
    let out = ddpm(&[
        "bench",
        "--preset",
        "tiny",
        "--mode",
        "train",
        "--precision",
        "f16",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("f32 only"), "{stderr}");
    let out = ddpm(&["bench", "--preset", "tiny", "--precision", "f8"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown precision `f8`"), "{stderr}");
}

#[test]
fn unknown_preset_is_named() {
    let out = ddpm(&[
        "bench", "--preset", "nope", "--mode", "forward", "--batch", "1",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(stderr.contains("tiny"), "lists the known presets: {stderr}");
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr_of_failure(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn list_shows_the_standard_set_and_the_filters() {
    let list = |extra: &[&str]| {
        let mut args = vec!["bench", "--preset", "tiny", "--list"];
        args.extend_from_slice(extra);
        stdout_of(&ddpm(&args))
    };
    assert_eq!(
        list(&[]),
        "tiny 16 forward 1\ntiny 16 forward 8\ntiny 16 train 8\ntiny 16 sample 8\n"
    );
    assert_eq!(
        list(&["--mode", "forward"]),
        "tiny 16 forward 1\ntiny 16 forward 8\n"
    );
    assert_eq!(
        list(&["--batch", "2"]),
        "tiny 16 forward 2\ntiny 16 train 2\ntiny 16 sample 2\n"
    );
    assert_eq!(
        list(&["--mode", "train", "--batch", "4,64"]),
        "tiny 16 train 4\ntiny 16 train 64\n"
    );
    assert_eq!(
        list(&["--sample-size", "32", "--mode", "sample"]),
        "tiny 32 sample 8\n"
    );
    // Half precision: no training cases.
    assert_eq!(
        list(&["--precision", "f16"]),
        "tiny 16 forward 1\ntiny 16 forward 8\ntiny 16 sample 8\n"
    );
}

#[test]
fn scaling_set_is_valid_and_covers_the_resolutions() {
    // --list checks every preset at its resolution before printing.
    let out = stdout_of(&ddpm(&["bench", "--scaling", "--list"]));
    let mut resolutions = Vec::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 4, "{line}");
        resolutions.push(fields[1].parse::<usize>().unwrap());
        assert!(fields[3].parse::<usize>().unwrap() >= 1, "{line}");
    }
    for size in [28, 32, 64, 256] {
        assert!(resolutions.contains(&size), "{size} missing from {out}");
    }
    assert!(out.contains("mnist-small 28 train 64\n"), "{out}");
}

#[test]
fn sample_size_must_fit_the_levels() {
    // ddpm-cifar10 halves the resolution three times: 36 is not a multiple of 8.
    let err = stderr_of_failure(&ddpm(&[
        "bench",
        "--preset",
        "ddpm-cifar10",
        "--sample-size",
        "36",
        "--list",
    ]));
    assert!(err.contains("36"), "{err}");
    let out = stdout_of(&ddpm(&[
        "bench",
        "--preset",
        "ddpm-cifar10",
        "--sample-size",
        "64",
        "--mode",
        "forward",
        "--batch",
        "1",
        "--list",
    ]));
    assert_eq!(out, "ddpm-cifar10 64 forward 1\n");
}

#[test]
fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
    let out = stdout_of(&ddpm(&[
        "bench",
        "--preset",
        "tiny",
        "--mode",
        "forward",
        "--batch",
        "1",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (median, min, max) = (
        v["median_ms"].as_f64().unwrap(),
        v["min_ms"].as_f64().unwrap(),
        v["max_ms"].as_f64().unwrap(),
    );
    assert!((median - 0.5 * (min + max)).abs() <= 1e-9 * max, "{v}");
}

#[test]
fn device_names_are_checked() {
    let bench = |device: &str| {
        ddpm(&[
            "bench",
            "--preset",
            "tiny",
            "--mode",
            "forward",
            "--batch",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--device",
            device,
        ])
    };
    let err = stderr_of_failure(&bench("tpu"));
    assert!(err.contains("\"tpu\" is not a backend"), "{err}");
    assert!(err.contains("flex, wgpu[:N]"), "lists the backends: {err}");
    let err = stderr_of_failure(&bench("cuda:x"));
    assert!(err.contains("\"x\" is not a device index"), "{err}");
    // `cpu` is an alias of `flex`.
    stdout_of(&bench("cpu"));
    #[cfg(not(feature = "cuda"))]
    {
        let err = stderr_of_failure(&bench("cuda:1"));
        assert!(err.contains("without the `cuda` feature"), "{err}");
    }
    #[cfg(not(feature = "metal"))]
    {
        let err = stderr_of_failure(&bench("metal"));
        assert!(err.contains("without the `metal` feature"), "{err}");
    }
}
