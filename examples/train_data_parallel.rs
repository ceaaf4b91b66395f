//! Train on several devices at once (data parallel): the library calls behind `ddpm train
//! --devices`, in one page. Each device trains on its share of every batch; the gradients are
//! averaged over the devices before one identical optimizer step on each (docs/guides/scaling.md).
//!
//! ```sh
//! # Two peers on the CPU (no speed-up on one CPU; it shows the calls and the overhead):
//! cargo run --release -p ddpm-examples --example train_data_parallel -- runs/dp 200 2
//! # Two GPUs:
//! cargo run --release -p ddpm-examples --no-default-features --features cuda,collective \
//!   --example train_data_parallel -- runs/dp 2000 2
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::{Device, DeviceId, DeviceOps as _};
use ddpm::prelude::*;
use ddpm::train::TrainEvent;
use ddpm::train::parallel::{ParallelTraining, PeerGroup, Start};

type Backend = ddpm_examples::Backend;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "runs/dp".into());
    let steps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let peers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);

    // Devices 0..peers of the default device's kind (on the CPU, all peers share it).
    let first = burn::tensor::Device::<Backend>::default().id();
    let devices: Vec<burn::tensor::Device<Backend>> = (0..peers)
        .map(|i| Device::from_id(DeviceId::new(first.type_id, i as u16)))
        .collect();

    let unet = UnetConfig::mnist_small();
    let options = LoadOptions::new(unet.in_channels, ImageSize::square(unet.sample_size));
    let data = Arc::new("mnist:data/mnist".parse::<DataSpec>()?.open(&options)?);

    // The global batch: 64 images per step, 64 / peers on each device (it must divide).
    let config = TrainConfig::new(unet)
        .with_steps(steps)
        .with_batch_size(64)
        .with_learning_rate(2e-3)
        .with_warmup_steps(50)
        .with_checkpoint_every(500);

    // Rank 0 (the first device) writes the run directory; the others write nothing. A peer that
    // fails or stops answering stops the others within the timeout, with an error naming it.
    let group = PeerGroup::local(peers).with_timeout(Duration::from_secs(600));
    let run =
        ParallelTraining::<Autodiff<Backend>>::new(Start::New(config), &out, data, devices, group)?;
    let trainers = run.run(|event| {
        if let TrainEvent::Step {
            stats,
            images_per_sec,
            log: true,
        } = event
        {
            println!(
                "step {:>6}  loss {:.4}  {:.1} img/s",
                stats.step, stats.loss, images_per_sec
            );
        }
    })?;
    println!(
        "{} peers finished at step {}; the run is in {out} (`ddpm sample --unet {out}`)",
        trainers.len(),
        trainers[0].step()
    );
    Ok(())
}
