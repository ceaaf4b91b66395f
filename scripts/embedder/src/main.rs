//! Samples from a diffusers `UNet2DModel` directory through the `ddpm` library alone: load the
//! U-Net, build the sampler its scheduler config asks for, run the loop, check the result.
//!
//! ```sh
//! cargo run -- [MODEL_DIR] [STEPS]     # default: the tiny fixture of the CLI tests, 5 steps
//! ```

use ddpm::burn::tensor::{Int, Tensor};
use ddpm::prelude::*;
use ddpm::sampler::{SamplerOverrides, sampler_from_config};

#[cfg(feature = "flex")]
type B = ddpm::burn::backend::Flex;
#[cfg(all(feature = "wgpu", not(feature = "flex")))]
type B = ddpm::burn::backend::Wgpu;

/// The tiny random-weight diffusers model the CLI tests use.
const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../crates/ddpm-cli/tests/fixtures/unet_tiny"
);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| TINY.into());
    let steps: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    let device = Default::default();

    let unet = Unet::<B>::from_diffusers(&dir, &device)?;
    // The tiny fixture ships no scheduler_config.json: diffusers' DDIMScheduler defaults.
    let config = SamplingConfig::from_json_str(r#"{"_class_name": "DDIMScheduler"}"#)?.config;
    let overrides = SamplerOverrides::new().with_num_inference_steps(steps);
    let (kind, mut sampler) = sampler_from_config::<B>(&config, &overrides)?;

    let (c, s) = (unet.config().in_channels, unet.config().sample_size);
    let mut noise = NoiseSource::<B>::seeded(0);
    let x_t = noise.standard_normal([2, c, s, s], &device)?;
    let model = |x: Tensor<B, 4>, t: Tensor<B, 1, Int>| unet.forward(x, t);
    let x_0 = sample_loop(sampler.as_mut(), &model, x_t, &mut noise, |_| {}, None)?;

    let values = x_0.into_data().convert::<f32>().to_vec::<f32>()?;
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("sample value {bad} is not finite").into());
    }
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    println!(
        "{kind:?}, {steps} steps: 2 samples of {c}×{s}×{s} from {dir}, values in [{lo:.3}, {hi:.3}]"
    );
    Ok(())
}
