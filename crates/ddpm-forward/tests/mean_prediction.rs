//! The paper's μ̃ prediction (Ho et al. 2020, §3.2 and Table 2): the target μ̃_t(x_t, x₀) of
//! Eq. 7, its inversion to x̂₀ and ε̂, and p_θ's mean on consecutive and strided steps, against
//! an independent float64 computation from β alone.

use burn::backend::Flex;
use burn::tensor::{Distribution, Int, Tensor};
use ddpm_forward::{ForwardProcess, NoiseLevel, ReverseCoefficients, p_mean_variance};
use ddpm_schedule::{NoiseSchedule, PredictionType, VarianceType};

type B = Flex;

fn host(t: Tensor<B, 4>) -> Vec<f64> {
    ddpm_testutil::to_vec(t)
        .into_iter()
        .map(f64::from)
        .collect()
}

/// (c₁, c₂) of μ̃_t = c₁ x₀ + c₂ x_t from β₁..β_T in float64 (Eq. 7), 0-based t.
fn coefs_f64(betas: &[f64], t: usize) -> (f64, f64) {
    let alpha_bar = |k: usize| betas[..=k].iter().map(|b| 1.0 - b).product::<f64>();
    let ab = alpha_bar(t);
    let ab_prev = if t == 0 { 1.0 } else { alpha_bar(t - 1) };
    let beta = betas[t];
    (
        ab_prev.sqrt() * beta / (1.0 - ab),
        (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab),
    )
}

#[test]
fn mean_target_and_its_inversions_match_float64() {
    let device = Default::default();
    let schedule = NoiseSchedule::paper();
    let fp = ForwardProcess::<B>::new(&schedule, &device);
    let shape = [3, 1, 4, 4];
    let x0 = Tensor::<B, 4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
    let eps = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let ts = [0usize, 400, 999];
    let t = Tensor::<B, 1, Int>::from_ints(ts, &device);
    let x_t = fp.q_sample(x0.clone(), eps.clone(), t.clone());
    let level = fp.noise_level::<4>(t);
    let target = host(level.target(PredictionType::Mean, x0.clone(), eps.clone()));
    let (hx0, hxt) = (host(x0.clone()), host(x_t.clone()));
    for (i, &ti) in ts.iter().enumerate() {
        let (c1, c2) = coefs_f64(schedule.betas(), ti);
        for j in 0..16 {
            let k = i * 16 + j;
            let expected = c1 * hx0[k] + c2 * hxt[k];
            assert!(
                (target[k] - expected).abs() < 1e-5,
                "t = {ti}: {} vs {expected}",
                target[k]
            );
        }
    }
    // x̂₀ and ε̂ back from the exact mean: c₁ is ~1e-4 at t = 999, so the f32 round trip loses
    // up to ~|x_t|·1e-7/c₁ there.
    let mean = level.target(PredictionType::Mean, x0.clone(), eps.clone());
    let back_x0 = host(level.x0_from_prediction(PredictionType::Mean, x_t.clone(), mean.clone()));
    let back_eps = host(level.eps_from_prediction(PredictionType::Mean, x_t, mean));
    let heps = host(eps);
    for (i, &ti) in ts.iter().enumerate() {
        let tol = if ti > 500 { 5e-3 } else { 1e-4 };
        for j in 0..16 {
            let k = i * 16 + j;
            assert!((back_x0[k] - hx0[k]).abs() < tol, "x0, t = {ti}");
            assert!((back_eps[k] - heps[k]).abs() < tol, "eps, t = {ti}");
        }
    }
}

#[test]
fn a_host_level_reads_a_mean_like_the_device_tables() {
    let device = Default::default();
    let schedule = NoiseSchedule::paper();
    let fp = ForwardProcess::<B>::new(&schedule, &device);
    let x_t = Tensor::<B, 4>::random([1, 1, 3, 3], Distribution::Normal(0.0, 1.0), &device);
    let mean = Tensor::<B, 4>::random([1, 1, 3, 3], Distribution::Normal(0.0, 1.0), &device);
    for t in [0usize, 1, 250, 999] {
        let a =
            NoiseLevel::<B, 4>::at_timestep(&schedule, t).x0_from_mean(x_t.clone(), mean.clone());
        let b = fp
            .noise_level::<4>(Tensor::from_ints([t as i32], &device))
            .x0_from_mean(x_t.clone(), mean.clone());
        let scale = a.clone().abs().max().into_scalar().max(1.0);
        let d = (a - b).abs().max().into_scalar();
        assert!(d <= 1e-5 * scale, "t = {t}: {d} (scale {scale})");
    }
}

#[test]
#[should_panic(expected = "a mean prediction is read with the training chain's posterior")]
fn a_bare_level_cannot_read_a_mean() {
    let device = Default::default();
    let x = Tensor::<B, 4>::zeros([1, 1, 2, 2], &device);
    NoiseLevel::<B, 4>::from_alpha_bar(0.5).x0_from_prediction(PredictionType::Mean, x.clone(), x);
}

/// On the training chain's own steps μ_θ is the output itself, clipping or not (the original
/// code's `xprev`); on a strided step it is μ̃ of the strided step at the processed x̂₀.
#[test]
fn p_mean_variance_uses_the_mean_directly_only_on_consecutive_steps() {
    let device = Default::default();
    let schedule = NoiseSchedule::paper();
    let x_t = Tensor::<B, 4>::random([2, 1, 4, 4], Distribution::Normal(0.0, 1.0), &device);
    let out = Tensor::<B, 4>::random([2, 1, 4, 4], Distribution::Normal(0.0, 1.0), &device);
    let clip = |x: Tensor<B, 4>| x.clamp(-1.0, 1.0);

    let step_to = |prev| {
        let c = ReverseCoefficients::<B, 4>::from_host(&schedule.reverse_step(700, Some(prev)));
        p_mean_variance(
            &c,
            PredictionType::Mean,
            VarianceType::FixedLarge,
            out.clone(),
            x_t.clone(),
            clip,
        )
    };
    let p = step_to(699);
    assert_eq!(host(p.mean), host(out.clone()));
    let (c1, c2) = coefs_f64(schedule.betas(), 700);
    let expected: Vec<f64> = host(out.clone())
        .iter()
        .zip(host(x_t.clone()))
        .map(|(m, x)| ((m - c2 * x) / c1).clamp(-1.0, 1.0))
        .collect();
    for (a, b) in host(p.pred_x0).iter().zip(&expected) {
        assert!((a - b).abs() < 2e-3, "{a} vs {b}");
    }

    let p = step_to(600);
    let strided = schedule.posterior_between(700, Some(600));
    let got = host(p.mean);
    for ((g, x0), x) in got.iter().zip(&expected).zip(host(x_t)) {
        let m = strided.mean_coef1 * x0 + strided.mean_coef2 * x;
        assert!((g - m).abs() < 1e-3, "{g} vs {m}");
    }
}
