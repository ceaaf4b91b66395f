//! End to end: `scripts/table2.sh` (the ablation of Ho et al. 2020, Table 2) at a smoke budget
//! — two steps per row on the bundled MNIST — trains the six rows with `ddpm train
//! --prediction-type/--variance-type/--objective`, scores each with `ddpm eval fid` and `ddpm
//! eval nll`, and writes the table.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_table2_script_trains_and_scores_six_rows() {
    let out = std::env::temp_dir().join(format!("ddpm-cli-table2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new("bash")
        .arg("scripts/table2.sh")
        .current_dir(repo())
        .env("DDPM", env!("CARGO_BIN_EXE_ddpm"))
        .env("OUT", &out)
        .env("STEPS", "2")
        .env("SAMPLES", "300")
        .env("SAMPLE_STEPS", "2")
        .env("NLL_IMAGES", "2")
        .env("NLL_TIMESTEPS", "2")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let table = std::fs::read_to_string(out.join("table2.md")).unwrap();
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Table"))
        .collect();
    assert_eq!(rows.len(), 6, "{table}");
    for row in &rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | label | paper | FLD | KID | P | R | score | NLL | wall |
        let fld: f64 = cells[3].parse().unwrap_or_else(|_| panic!("FLD in {row}"));
        let nll: f64 = cells[8]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("NLL in {row}"));
        assert!(
            fld.is_finite() && fld > 0.0 && nll.is_finite() && nll > 0.0,
            "{row}"
        );
    }
    for (name, prediction, variance) in [
        ("mean-bound-learned", "mean", "learned"),
        ("mean-mse-fixed", "mean", "fixed_large"),
        ("eps-simple-fixed", "epsilon", "fixed_large"),
    ] {
        let sched =
            std::fs::read_to_string(out.join(name).join("run/scheduler_config.json")).unwrap();
        let sched: serde_json::Value = serde_json::from_str(&sched).unwrap();
        assert_eq!(sched["prediction_type"], prediction, "{name}");
        assert_eq!(sched["variance_type"], variance, "{name}");
        let train: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(name).join("run/train_config.json")).unwrap(),
        )
        .unwrap();
        let channels = if variance == "learned" { 2 } else { 1 };
        assert_eq!(train["unet"]["out_channels"], channels, "{name}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
