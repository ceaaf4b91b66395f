//! End to end: the paper's other experiments as commands, on the fixture tiny U-Net
//! (3×16×16, random weights) and the bundled MNIST test digits — `sample --progressive`
//! (Fig. 6), `shared-latent` (Fig. 7), `interpolate` (Fig. 8) and `eval rate-distortion`
//! (Fig. 5, Table 4), each deterministic given its seed, its files and shapes checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNET: &str = "crates/ddpm-cli/tests/fixtures/unet_tiny";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run ddpm")
}

/// stdout of a successful run.
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// stderr of a failed run.
fn err(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn tmp(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-paper-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap()
}

/// One cell of a grid is 16 pixels plus 2 of padding; 2 more close the grid.
fn grid(cols: u32, rows: u32) -> (u32, u32) {
    (cols * 18 + 2, rows * 18 + 2)
}

#[test]
fn progressive_sampling_writes_x0_columns_and_keeps_the_samples() {
    let dir = tmp("progressive");
    let (fig, a, b) = (dir.join("fig6.png"), dir.join("a.st"), dir.join("b.st"));
    let common = [
        "sample",
        "--unet",
        UNET,
        "--sampler",
        "ddpm",
        "--steps",
        "8",
        "--num-samples",
        "3",
        "--seed",
        "4",
    ];
    let mut args = common.to_vec();
    args.extend([
        "--progressive",
        "4",
        "--output",
        s(&fig),
        "--save-tensor",
        s(&a),
    ]);
    let stdout = ok(&ddpm(&args));
    // DDPM with 8 of 1000 steps (leading): 875, 750, ..., 0; columns at steps 0, 2, 5, 7.
    assert!(
        stdout.contains("columns: x̂₀ at t = 875, 625, 250, 0"),
        "{stdout}"
    );
    assert_eq!(png_size(&fig), grid(4, 3));
    let mut plain = common.to_vec();
    let plain_png = dir.join("plain.png");
    plain.extend(["--output", s(&plain_png), "--save-tensor", s(&b)]);
    ok(&ddpm(&plain));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let mut too_many = common.to_vec();
    too_many.extend(["--progressive", "9", "--output", s(&fig)]);
    let e = err(&ddpm(&too_many));
    assert!(e.contains("progressive columns (K) is 9"), "{e}");
}

#[test]
fn interpolate_writes_one_row_and_is_reproducible() {
    let dir = tmp("interpolate");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "interpolate",
            "--unet",
            UNET,
            "--image-a",
            "mnist:data/mnist#0",
            "--image-b",
            "mnist:data/mnist#1",
            "--steps",
            "10",
            "--lambdas",
            "5",
            "--output",
            s(out),
        ];
        args.extend(extra);
        ddpm(&args)
    };
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    let stdout = ok(&run(&a, &["--t", "900"]));
    assert!(
        stdout.contains("λ = 0.00, 0.25, 0.50, 0.75, 1.00"),
        "{stdout}"
    );
    assert_eq!(png_size(&a), grid(7, 1));
    ok(&run(&b, &["--t", "900"]));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let c = dir.join("c.png");
    ok(&run(&c, &["--t", "900", "--seed", "1"]));
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());

    // A timestep the sampler skips, an image past the end of the split, a bad output.
    let e = err(&run(&dir.join("x.png"), &["--t", "450"]));
    assert!(
        e.contains("does not visit t = 450") && e.contains("400 and 500"),
        "{e}"
    );
    let e = err(&ddpm(&[
        "interpolate",
        "--unet",
        UNET,
        "--image-a",
        "mnist:data/mnist#10000",
        "--image-b",
        "mnist:data/mnist#1",
        "--output",
        s(&dir.join("y.png")),
    ]));
    assert!(e.contains("#10000") && e.contains("10000 images"), "{e}");
    let e = err(&run(&dir.join("z.gif"), &["--t", "900"]));
    assert!(e.contains("z.gif"), "{e}");
}

#[test]
fn shared_latent_writes_one_row_per_timestep() {
    let dir = tmp("shared");
    let out = dir.join("fig7.png");
    let stdout = ok(&ddpm(&[
        "shared-latent",
        "--unet",
        UNET,
        "--image",
        "mnist:data/mnist#2",
        "--timesteps",
        "900,500,0",
        "--per-t",
        "2",
        "--steps",
        "10",
        "--output",
        s(&out),
    ]));
    assert!(stdout.contains("rows: t = [900, 500, 0]"), "{stdout}");
    // Columns: the image, x_t, 2 samples.
    assert_eq!(png_size(&out), grid(4, 3));
}

/// The total rate of `eval rate-distortion` is the bits/dim `eval nll` reports for the same
/// images, seed and timesteps.
#[test]
fn rate_distortion_ends_at_the_bound_of_eval_nll() {
    let dir = tmp("rd");
    let (report, plot) = (dir.join("rd.json"), dir.join("rd.png"));
    let common = [
        "--unet",
        UNET,
        "--data",
        "mnist:data/mnist",
        "--num-images",
        "4",
        "--batch-size",
        "2",
        "--timesteps",
        "6",
        "--seed",
        "3",
    ];
    let mut nll = vec!["eval", "nll"];
    nll.extend(common);
    let nll_out = ok(&ddpm(&nll));
    let mut rd = vec!["eval", "rate-distortion"];
    rd.extend(common);
    rd.extend(["--report", s(&report), "--plot", s(&plot)]);
    let rd_out = ok(&ddpm(&rd));
    let bpd_line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("bits/dim:"))
            .unwrap_or_else(|| panic!("no bits/dim line in {out}"))
            .to_string()
    };
    assert_eq!(bpd_line(&nll_out), bpd_line(&rd_out));
    assert!(rd_out.contains("rate-distortion"), "{rd_out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let curve = r["rate_distortion"].as_array().unwrap();
    // 6 terms (t = 0 and 5 strata) give 7 points, from x_T (t = 1000) to x_0 (t = 0).
    assert_eq!(curve.len(), 7);
    assert_eq!(curve[0]["t"], 1000);
    assert_eq!(curve[6]["t"], 0);
    let last = curve[6]["rate_bpd"].as_f64().unwrap();
    let bpd = r["bits_per_dim"].as_f64().unwrap();
    assert!((last - bpd).abs() < 1e-9, "{last} vs {bpd}");
    assert_eq!(curve[6]["distortion_rmse"].as_f64().unwrap(), 0.0);
    let first = curve[0]["rate_bpd"].as_f64().unwrap();
    assert!((first - r["prior_bpd"].as_f64().unwrap()).abs() < 1e-12);
    assert!(std::fs::metadata(&plot).unwrap().len() > 1000);
}
