//! The paper's sampling experiments through the facade (Ho et al. 2020, Figs. 6–8):
//! progressive x̂₀ recorded from the same loop as the samples, runs started from a given x_t,
//! samples sharing a latent, and interpolation with the noise fixed across λ.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use ddpm::pipeline::experiments::{even_lambdas, interpolate, progressive_steps, shared_latent};
use ddpm::pipeline::{PipelineError, Sampling};
use ddpm::prelude::*;
use ddpm::sampler::SamplerError;

/// The tiny diffusers U-Net: 3 × 16 × 16, random weights.
const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ddpm-cli/tests/fixtures/unet_tiny"
);

fn pipe() -> Pipeline<Flex> {
    Pipeline::<Flex>::from_dir(TINY, &Default::default()).unwrap()
}

fn bits(x: &Tensor<Flex, 4>) -> Vec<u32> {
    x.clone()
        .into_data()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn values(x: &Tensor<Flex, 4>) -> Vec<f32> {
    x.clone().into_data().to_vec::<f32>().unwrap()
}

/// A deterministic image in [−1, 1], `[1, 3, 16, 16]`.
fn image(k: usize) -> Tensor<Flex, 4> {
    let v: Vec<f32> = (0..768)
        .map(|i| (((i * (7 + 2 * k) + 13 * k) % 97) as f32 / 48.0) - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(v, [1, 3, 16, 16]), &Default::default())
}

#[test]
fn progressive_records_x0_at_k_steps_and_keeps_the_samples() {
    let pipe = pipe();
    let run = || pipe.sampler(SamplerKind::Ddpm).steps(6).seed(5);
    let plain = run().sample(3).unwrap();
    let mut previews = 0;
    let prog = run()
        .previews(2, |_| previews += 1)
        .batch_size(2)
        .sample_progressive(3, 3)
        .unwrap();
    // The same loop: the samples are those of a plain run, whatever the batch size.
    assert_eq!(bits(prog.samples().tensor()), bits(plain.tensor()));
    // The caller's own previews still run (steps 2, 4, 6 of each of the 2 batches).
    assert_eq!(previews, 6);
    assert_eq!(prog.steps(), &[0, 3, 5]);
    let plan = run().plan(3).unwrap();
    let expected: Vec<usize> = [0, 3, 5].iter().map(|&s| plan.timesteps[s]).collect();
    assert_eq!(prog.timesteps(), expected.as_slice());
    assert_eq!(prog.pred_x0().len(), 3);
    for x in prog.pred_x0() {
        assert_eq!(x.dims(), [3, 3, 16, 16]);
    }
    // DDPM's last step returns x̂₀ itself (ᾱ_prev = 1, no noise).
    let last = values(&prog.pred_x0()[2]);
    let samples = values(plain.tensor());
    let diff = last
        .iter()
        .zip(&samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "{diff}");
    // The first column (x̂₀ from x_T) is far from the samples.
    assert_ne!(bits(&prog.pred_x0()[0]), bits(plain.tensor()));
    let grid = prog.grid().unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 18 + 2, 3 * 18 + 2));
    assert!(matches!(
        run().sample_progressive(3, 7),
        Err(PipelineError::InvalidArgument { .. })
    ));
    assert_eq!(progressive_steps(6, 3).unwrap(), vec![0, 3, 5]);
}

#[test]
fn start_at_needs_an_x_t_and_a_timestep_the_sampler_visits() {
    let pipe = pipe();
    let err = pipe.sampler(SamplerKind::Ddpm).start_at(10).sample(1);
    assert!(
        matches!(&err, Err(PipelineError::InvalidArgument { name, .. }) if *name == "start timestep"),
        "{err:?}"
    );
    let err = pipe
        .sampler(SamplerKind::Ddim)
        .steps(10)
        .init_noise(image(0))
        .start_at(450)
        .sample(1)
        .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Sampler(SamplerError::TimestepNotVisited { t: 450, .. })
        ),
        "{err:?}"
    );
    let ok = pipe
        .sampler(SamplerKind::Ddim)
        .steps(10)
        .init_noise(image(0))
        .start_at(400)
        .plan(1)
        .unwrap();
    assert_eq!(ok.timesteps, vec![400, 300, 200, 100, 0]);
}

#[test]
fn samples_sharing_a_latent_keep_the_image_at_small_t() {
    let pipe = pipe();
    fn ddpm10(s: Sampling<'_, Flex>) -> Sampling<'_, Flex> {
        s.kind(SamplerKind::Ddpm).steps(10).seed(2)
    }
    let fig = shared_latent(&pipe, image(1), &[900, 0], 2, 7, ddpm10).unwrap();
    assert_eq!(fig.timesteps(), &[900, 0]);
    assert_eq!(fig.samples().len(), 2);
    let (far, near) = (&fig.samples()[0], &fig.samples()[1]);
    assert_eq!(far.shape(), [2, 3, 16, 16]);
    // From t = 900 the two draws differ (each its own step noise)...
    let far0 = far.tensor().clone().narrow(0, 0, 1);
    let far1 = far.tensor().clone().narrow(0, 1, 1);
    assert_ne!(bits(&far0), bits(&far1));
    // ...from t = 0 (one noiseless step) they are the same and close to the image.
    let near0 = near.tensor().clone().narrow(0, 0, 1);
    let near1 = near.tensor().clone().narrow(0, 1, 1);
    assert_eq!(bits(&near0), bits(&near1));
    let x0 = values(&image(1));
    let err = values(&near0)
        .iter()
        .zip(&x0)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < 0.1, "max |x̂₀ − x₀| from t = 0: {err}");
    // x_t is Eq. 4 with the schedule's ᾱ_t.
    let schedule = pipe.scheduler_config().schedule.build().unwrap();
    let eps = NoiseSource::<Flex>::seeded(7)
        .standard_normal([1, 3, 16, 16], &Default::default())
        .unwrap();
    let expected =
        NoiseLevel::<Flex, 4>::from_alpha_bar(schedule.alpha_bar()[900]).q_sample(image(1), eps);
    assert_eq!(bits(&fig.x_t()[0]), bits(&expected));
    // Reproducible.
    let again = shared_latent(&pipe, image(1), &[900, 0], 2, 7, ddpm10).unwrap();
    assert_eq!(bits(again.samples()[0].tensor()), bits(far.tensor()));
    let grid = fig.grid().unwrap();
    assert_eq!((grid.width(), grid.height()), (4 * 18 + 2, 2 * 18 + 2));
    // Bad input is named.
    assert!(matches!(
        shared_latent(&pipe, image(1), &[1000], 2, 7, ddpm10),
        Err(PipelineError::InvalidArgument { .. })
    ));
    let wrong = Tensor::<Flex, 4>::zeros([2, 3, 16, 16], &Default::default());
    assert!(matches!(
        shared_latent(&pipe, wrong, &[10], 2, 7, ddpm10),
        Err(PipelineError::InputShape { .. })
    ));
}

#[test]
fn interpolation_fixes_the_noise_across_lambda() {
    let pipe = pipe();
    fn ddpm10(s: Sampling<'_, Flex>) -> Sampling<'_, Flex> {
        s.kind(SamplerKind::Ddpm).steps(10).seed(3)
    }
    let lambdas = even_lambdas(3).unwrap();
    // The same image twice: every λ has the same x̄_t, and with the noise fixed across λ the
    // decoded images are identical (per-sample noise would make them differ).
    let same = interpolate(&pipe, image(2), image(2), 500, &lambdas, 1, ddpm10).unwrap();
    let s = same.samples().tensor();
    let first = bits(&s.clone().narrow(0, 0, 1));
    for i in 1..3 {
        assert_eq!(bits(&s.clone().narrow(0, i, 1)), first, "λ index {i}");
    }
    // Two images: λ = 0 decodes the same whether or not other λ are decoded with it.
    let fig = interpolate(&pipe, image(2), image(3), 500, &lambdas, 1, ddpm10).unwrap();
    let alone = interpolate(&pipe, image(2), image(3), 500, &[0.0], 1, ddpm10).unwrap();
    let ends = fig.samples().tensor();
    assert_eq!(
        bits(&ends.clone().narrow(0, 0, 1)),
        bits(alone.samples().tensor())
    );
    assert_ne!(
        bits(&ends.clone().narrow(0, 0, 1)),
        bits(&ends.clone().narrow(0, 2, 1))
    );
    // x̄_t is the mix of the two encodings.
    let x_t = values(fig.x_t());
    let n = 768;
    for j in 0..n {
        let mid = 0.5 * x_t[j] + 0.5 * x_t[2 * n + j];
        assert!((x_t[n + j] - mid).abs() < 1e-5);
    }
    assert_eq!(fig.lambdas(), &[0.0, 0.5, 1.0]);
    let grid = fig.grid().unwrap();
    assert_eq!((grid.width(), grid.height()), (5 * 18 + 2, 18 + 2));
    assert!(matches!(
        interpolate(&pipe, image(2), image(3), 500, &[f64::NAN], 1, ddpm10),
        Err(PipelineError::InvalidArgument { .. })
    ));
    assert!(matches!(
        interpolate(&pipe, image(2), image(3), 450, &lambdas, 1, ddpm10),
        Err(PipelineError::Sampler(
            SamplerError::TimestepNotVisited { .. }
        ))
    ));
}
