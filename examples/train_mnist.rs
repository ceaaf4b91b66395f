//! Train the CPU-sized MNIST preset on the bundled digits and write a grid of samples: the library calls
//! behind `ddpm train`, in one page.
//!
//! ```sh
//! cargo run --release -p ddpm-examples --example train_mnist -- runs/example 1200
//! ```

use std::sync::Arc;

use anyhow::Result;
use burn::backend::Autodiff;
use ddpm::prelude::*;
use ddpm::train::{EmaWarmup, TrainEvent};

// The backend the crate's features select (flex by default; see lib.rs).
type Device = ddpm_examples::Backend;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "runs/example".into());
    let steps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1200);
    let device = Default::default();

    // 1. Data: 60,000 MNIST digits bundled in data/mnist, scaled to [-1, 1] (Eq. 13).
    let unet = UnetConfig::mnist_small();
    let options = LoadOptions::new(unet.in_channels, ImageSize::square(unet.sample_size));
    let data = Arc::new("mnist:data/mnist".parse::<DataSpec>()?.open(&options)?);

    // 2. The paper's recipe, shortened for a CPU (the README's main job): higher learning rate,
    //    short warmup, EMA warmup.
    let config = TrainConfig::new(unet)
        .with_steps(steps)
        .with_batch_size(64)
        .with_learning_rate(2e-3)
        .with_warmup_steps(50)
        .with_ema_warmup(EmaWarmup::Diffusers)
        .with_checkpoint_every(500)
        .with_sample_every(500);

    // 3. Train (checkpoints and previews land in `out`; `Trainer::resume` continues a run).
    let mut trainer = Trainer::<Autodiff<Device>>::new(config, &out, data, &device)?;
    trainer.run(|event| match event {
        TrainEvent::Step {
            stats,
            images_per_sec,
            log: true,
        } => println!(
            "step {:>6}  loss {:.4}  {:.1} img/s",
            stats.step, stats.loss, images_per_sec
        ),
        TrainEvent::Checkpoint(path) | TrainEvent::Preview(path) => {
            println!("wrote {}", path.display())
        }
        _ => {}
    })?;

    // 4. Sample 64 digits from the run (EMA weights of its newest checkpoint, with the run's
    //    noise schedule) with DDIM, 50 steps, and save a grid.
    let pipe = Pipeline::<Device>::from_dir(&out, &device)?;
    let samples = pipe
        .sampler(SamplerKind::Ddim)
        .steps(50)
        .seed(0)
        .sample(64)?;
    samples.save_grid(std::path::Path::new(&out).join("samples_64.png"))?;
    println!("wrote {out}/samples_64.png");
    Ok(())
}
