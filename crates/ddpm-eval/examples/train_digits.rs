//! Trains the bundled digit classifier (`ddpm_eval::digits`) on the Flex CPU backend, reports its
//! test accuracy and classifier score, and writes its weights.
//!
//! ```text
//! cargo run -p ddpm-eval --example train_digits -- --data mnist:data/mnist \
//!     --out crates/ddpm-eval/weights/digits-mnist.safetensors [--seed 0] [--epochs 3] \
//!     [--batch-size 64] [--lr 0.001] [--max-shift 2]
//! ```
//!
//! `--data` is `mnist:<dir>` or `fashion-mnist:<dir>` (IDX images and labels, `.gz` or raw).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use ddpm_data::{DataSpec, ImageSize, LoadOptions, Split};
use ddpm_eval::digits::{
    DigitTrainConfig, evaluate_digit_classifier, parse_idx_labels, train_digit_classifier_with,
};
use ddpm_eval::{DEFAULT_SPLITS, classifier_score};

type Error = Box<dyn std::error::Error>;

/// Reads `<dir>/<prefix>-labels-idx1-ubyte(.gz)`, gunzipping it if it starts with the gzip magic.
fn read_labels(dir: &Path, prefix: &str) -> Result<Vec<u8>, Error> {
    let base = dir.join(format!("{prefix}-labels-idx1-ubyte"));
    let path = [
        PathBuf::from(format!("{}.gz", base.display())),
        base.clone(),
    ]
    .into_iter()
    .find(|p| p.exists())
    .ok_or_else(|| format!("no {prefix} labels in {}", dir.display()))?;
    let raw = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out
    } else {
        raw
    };
    Ok(parse_idx_labels(&path, &bytes)?)
}

fn main() -> Result<(), Error> {
    let mut data: Option<DataSpec> = None;
    let mut out: Option<PathBuf> = None;
    let mut config = DigitTrainConfig::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => data = Some(value()?.parse()?),
            "--out" => out = Some(value()?.into()),
            "--seed" => config.seed = value()?.parse()?,
            "--epochs" => config.epochs = value()?.parse()?,
            "--batch-size" => config.batch_size = value()?.parse()?,
            "--lr" => config.learning_rate = value()?.parse()?,
            "--max-shift" => config.max_shift = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let data = data.ok_or("--data mnist:<dir> is required")?;
    let out = out.ok_or("--out <file.safetensors> is required")?;
    let dir = match &data {
        DataSpec::Mnist(p) | DataSpec::FashionMnist(p) => p.clone(),
        other => {
            return Err(format!(
                "{other}: labels are needed, use mnist:<dir> or fashion-mnist:<dir>"
            )
            .into());
        }
    };
    let options = LoadOptions::new(1, ImageSize::square(28));
    let train = data.open(&options)?;
    let test = data.open(&options.clone().with_split(Split::Test))?;
    let train_labels = read_labels(&dir, "train")?;
    let test_labels = read_labels(&dir, "t10k")?;
    println!(
        "training on {} images ({}), testing on {}; {config}",
        train.len(),
        data,
        test.len()
    );
    let device = Default::default();
    let (model, report) = train_digit_classifier_with::<Autodiff<Flex>>(
        &config,
        &train,
        &train_labels,
        &device,
        |s| {
            if s.step % 100 == 0 || s.step == s.total_steps {
                println!(
                    "step {:>5}/{} epoch {} loss {:.4} lr {:.2e}",
                    s.step, s.total_steps, s.epoch, s.loss, s.learning_rate
                );
            }
        },
    )?;
    println!("trained {} steps in {:.1} s", report.steps, report.seconds);
    let start = Instant::now();
    let eval = evaluate_digit_classifier(&model, &test, &test_labels, 500, &device)?;
    let score = classifier_score(&eval.logits, 10, DEFAULT_SPLITS)?;
    println!(
        "test accuracy {:.2} % ({}/{}), classifier score {:.3} ± {:.3} ({} splits), {:.1} s",
        100.0 * eval.accuracy(),
        eval.correct,
        eval.total,
        score.mean,
        score.std,
        score.splits,
        start.elapsed().as_secs_f64()
    );
    model.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
