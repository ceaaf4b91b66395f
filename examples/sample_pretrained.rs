//! Sample from a diffusers model directory in a few lines: `Pipeline` finds the U-Net and its
//! `scheduler_config.json` (noise schedule, prediction type, clipping), draws the samples and
//! writes a grid. Any `ddpm sample --unet` path works too: a diffusers pipeline directory, a
//! native checkpoint, a `ddpm train` run or one of its checkpoints.
//!
//! ```sh
//! cargo run -p ddpm-examples --example sample_pretrained                      # the tiny fixture
//! cargo run --release -p ddpm-examples --example sample_pretrained -- ddpm-cifar10-32 cifar.png
//! ```

use ddpm::prelude::*;

// The backend the crate's features select (flex by default; see lib.rs).
type B = ddpm_examples::Backend;

/// The tiny diffusers `UNet2DModel` the CLI tests use (random weights: the grid is noise-like).
const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/ddpm-cli/tests/fixtures/unet_tiny"
);

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| TINY.into());
    let out = args
        .next()
        .unwrap_or_else(|| "sample_pretrained.png".into());

    let pipe = Pipeline::<B>::from_dir(&model, &Default::default())?;
    let samples = pipe
        .sampler(SamplerKind::Ddim)
        .steps(20)
        .seed(0)
        .sample(4)?;
    samples.save_grid(&out)?;
    println!("wrote {out}");
    Ok(())
}
