//! Loads a `--data` spec once and prints its shape, load time and report, then times a few
//! batches: `cargo run --release -p ddpm-data --example load -- mnist:data/mnist 32 1 128`
//! (spec, size, channels, batch size).

use std::sync::Arc;
use std::time::Instant;

use ddpm_data::{BatchIterConfig, DataSpec, ImageSize, LoadOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec: DataSpec = args
        .first()
        .map_or("mnist:data/mnist", String::as_str)
        .parse()?;
    let size: usize = args.get(1).map_or(Ok(28), |s| s.parse())?;
    let channels: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let batch_size: usize = args.get(3).map_or(Ok(128), |s| s.parse())?;

    let start = Instant::now();
    let opts = LoadOptions::new(channels, ImageSize::square(size)).with_skip_bad(true);
    let dataset = Arc::new(spec.open(&opts)?);
    println!(
        "{spec}: {} images of {}x{}x{} in {:.2?}",
        dataset.len(),
        dataset.channels(),
        dataset.height(),
        dataset.width(),
        start.elapsed()
    );
    let report = dataset.report();
    println!(
        "resized: {}, skipped: {}, ignored non-images: {}",
        report.resized,
        report.skipped.len(),
        report.ignored_non_images
    );
    for s in &report.skipped {
        println!("  skipped {}: {}", s.path.display(), s.reason);
    }

    let config = BatchIterConfig::new(batch_size.min(dataset.len()), 0).with_random_flip(true);
    let it = config.init(Arc::clone(&dataset))?;
    let steps = it.batches_per_epoch().min(200);
    let start = Instant::now();
    let mut checksum = 0.0f64;
    for batch in it.take(steps) {
        checksum += batch.images[0] as f64;
    }
    let per = start.elapsed() / steps as u32;
    println!("{steps} batches of {batch_size}: {per:.2?} per batch (checksum {checksum})");
    Ok(())
}
