//! Embed a sampler in your own program with your own model: here a closure that knows the exact
//! noise predictor for Gaussian data, so the result can be checked against the truth.
//!
//! For data x₀ ~ N(m, s²) the forward process gives x_t ~ N(√ᾱ_t m, ᾱ_t s² + 1 − ᾱ_t), and the
//! optimal ε-prediction is E[ε | x_t] = √(1 − ᾱ_t) (x_t − √ᾱ_t m) / (ᾱ_t s² + 1 − ᾱ_t).
//! Sampling with it must give samples with mean m and standard deviation s.
//!
//! ```sh
//! cargo run -p ddpm-examples --example embed_sampler
//! ```

use anyhow::Result;
use burn::tensor::{Int, Tensor};
use ddpm::prelude::*;

// The backend the crate's features select (flex by default; see lib.rs).
type B = ddpm_examples::Backend;

fn main() -> Result<()> {
    let device = Default::default();
    let schedule = NoiseSchedule::paper();
    let (m, s) = (0.3f64, 0.5f64);

    // Your model: anything `Fn(x_t, t) -> prediction` is a `Denoiser`.
    let alpha_bar: Vec<f64> = schedule.alpha_bar().to_vec();
    let model = |x_t: Tensor<B, 4>, t: Tensor<B, 1, Int>| {
        // All samples share one timestep in a sampling loop; read it once.
        let t = t.into_data().convert::<i64>().to_vec::<i64>().unwrap()[0] as usize;
        let ab = alpha_bar[t];
        let scale = (1.0 - ab).sqrt() / (ab * s * s + 1.0 - ab);
        x_t.sub_scalar(ab.sqrt() * m).mul_scalar(scale)
    };

    let no_clip = ddpm::sampler::X0ProcessingConfig::new().with_clip_sample(false);
    let ddim = |steps: usize| -> Result<Box<dyn Sampler<B>>> {
        Ok(Box::new(
            DdimSamplerConfig::new()
                .with_num_inference_steps(steps)
                .with_x0_processing(no_clip.clone())
                .init(&schedule)?,
        ))
    };
    // DDIM is first order: its error in the spread shrinks with more steps; DPM-Solver++ is
    // second order and gets closer in fewer.
    for (name, mut sampler) in [
        ("DDIM, 50 steps", ddim(50)?),
        ("DDIM, 500 steps", ddim(500)?),
        (
            "DPM-Solver++(2M), 20 steps",
            Box::new(
                DpmSolverConfig::new()
                    .with_x0_processing(no_clip.clone())
                    .init::<B>(&schedule)?,
            ) as Box<dyn Sampler<B>>,
        ),
    ] {
        let mut noise = NoiseSource::<B>::seeded(0);
        let x_t = noise.standard_normal([512, 1, 8, 8], &device)?;
        let x_0 = sample_loop(sampler.as_mut(), &model, x_t, &mut noise, |_| {}, None)?;
        let mean: f64 = x_0.clone().mean().into_scalar() as f64;
        let std: f64 = (x_0.sub_scalar(mean).powi_scalar(2).mean().into_scalar() as f64).sqrt();
        println!("{name:<28} mean {mean:.3} (true {m}), std {std:.3} (true {s})");
    }
    Ok(())
}
