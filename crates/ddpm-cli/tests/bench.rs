//! End-to-end: `ddpm bench` times the tiny preset and prints one JSON object per case, and
//! rejects an unknown preset with a message naming it.

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
