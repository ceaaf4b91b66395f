//! Oracle tests: a denoiser that knows x₀ and returns the true ε (or v) for any x_t. DDIM with
//! η = 0 and DDPM (whose last step returns x̂₀) must then land exactly on x₀; DDIM inversion
//! followed by DDIM sampling returns the input; DPM-Solver++ of order 1 equals DDIM. Plus the
//! loop's contract: reproducible seeds, cancellation, progress, early shape errors.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Flex;
use burn::tensor::{Distribution, Int, Tensor};
use ddpm_forward::ForwardProcess;
use ddpm_sampler::{
    DdimSamplerConfig, DdpmSamplerConfig, Denoiser, DpmSolverConfig, NoiseSource, SampleError,
    Sampler, X0ProcessingConfig, sample_loop,
};
use ddpm_schedule::{
    FinalSigmasType, NoiseSchedule, PredictionType, TimestepSpacing, VarianceType,
};
use ddpm_testutil::{max_abs_diff, to_vec};

type B = Flex;

const SHAPE: [usize; 4] = [2, 3, 8, 8];

/// The true ε (or v) for x_t, given the one x₀ the "data set" holds.
struct Oracle {
    fp: ForwardProcess<B>,
    x_0: Tensor<B, 4>,
    prediction: PredictionType,
}

impl Denoiser<B> for Oracle {
    fn predict(&self, x_t: Tensor<B, 4>, t: Tensor<B, 1, Int>) -> Tensor<B, 4> {
        let eps = self
            .fp
            .predict_eps_from_x0(x_t.clone(), self.x_0.clone(), t.clone());
        match self.prediction {
            PredictionType::Epsilon => eps,
            PredictionType::Sample => self.x_0.clone(),
            PredictionType::VPrediction => self.fp.velocity(self.x_0.clone(), eps, t),
            PredictionType::Mean => self
                .fp
                .noise_level::<4>(t)
                .mean_from_x0(x_t, self.x_0.clone()),
        }
    }
}

fn setup(prediction: PredictionType) -> (NoiseSchedule, Oracle, Tensor<B, 4>) {
    let device = Default::default();
    let schedule = NoiseSchedule::paper();
    let x_0 = NoiseSource::<B>::seeded(1)
        .standard_normal(SHAPE, &device)
        .unwrap()
        .clamp(-1.0, 1.0);
    let oracle = Oracle {
        fp: ForwardProcess::new(&schedule, &device),
        x_0: x_0.clone(),
        prediction,
    };
    (schedule, oracle, x_0)
}

fn run<S: Sampler<B> + ?Sized>(
    sampler: &mut S,
    model: &impl Denoiser<B>,
    x_t: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let mut noise = NoiseSource::seeded(3);
    sample_loop(sampler, model, x_t, &mut noise, |_| {}, None).unwrap()
}

fn x_t(seed: u64) -> Tensor<B, 4> {
    NoiseSource::<B>::seeded(seed)
        .standard_normal(SHAPE, &Default::default())
        .unwrap()
}

#[test]
fn ddim_eta0_recovers_x0_with_the_true_eps() {
    for prediction in [PredictionType::Epsilon, PredictionType::VPrediction] {
        let (schedule, oracle, x_0) = setup(prediction);
        for (spacing, n) in [
            (TimestepSpacing::Leading, 50),
            (TimestepSpacing::Trailing, 7),
            (TimestepSpacing::Linspace, 13),
        ] {
            let mut sampler = DdimSamplerConfig::new()
                .with_prediction_type(prediction)
                .with_num_inference_steps(n)
                .with_timestep_spacing(spacing)
                .init(&schedule)
                .unwrap();
            let out = run(&mut sampler, &oracle, x_t(2));
            let (d, _) = max_abs_diff(&to_vec(out), &to_vec(x_0.clone()));
            assert!(d < 1e-4, "{prediction:?} {spacing:?} n={n}: |Δ| = {d:e}");
        }
    }
}

/// DPM-Solver++ of order 1 is DDIM with η = 0 (Lu et al. 2022, §3.1): on the same timesteps
/// and a non-oracle model, every step agrees. (Midpoint vs heun and the second-order steps are
/// checked against diffusers in `diffusers_parity.rs`; an oracle cannot tell them apart, since
/// x̂₀ is then the same at every step and the second-order term vanishes.)
#[test]
fn dpm_solver_order_one_is_ddim() {
    let (schedule, _, _) = setup(PredictionType::VPrediction);
    let model = |x: Tensor<B, 4>, t: Tensor<B, 1, Int>| {
        let b = t.dims()[0];
        x.mul_scalar(0.3) + t.float().mul_scalar(1e-3).reshape([b, 1, 1, 1])
    };
    let ts = [999i64, 800, 555, 300, 120, 40];
    // A mean prediction's x̂₀ is (μ − c₂ x_t)/c₁, large for this model: compare relatively.
    for prediction in [PredictionType::VPrediction, PredictionType::Mean] {
        let mut dpm = DpmSolverConfig::new()
            .with_prediction_type(prediction)
            .with_solver_order(1)
            .with_final_sigmas_type(FinalSigmasType::SigmaMin)
            .init_with_timesteps::<B>(&schedule, &ts)
            .unwrap();
        let mut ddim = DdimSamplerConfig::new()
            .with_prediction_type(prediction)
            .with_x0_processing(X0ProcessingConfig::none())
            .with_set_alpha_to_one(false)
            .init_with_timesteps(&schedule, &ts)
            .unwrap();
        let a = to_vec(run(&mut dpm, &model, x_t(4)));
        let b = to_vec(run(&mut ddim, &model, x_t(4)));
        let (d, _) = max_abs_diff(&a, &b);
        let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
        assert!(
            d < 1e-4 * scale,
            "{prediction:?}: |Δ| = {d:e} (scale {scale})"
        );
    }
}

#[test]
fn ddpm_recovers_x0_with_the_true_eps_for_every_variance() {
    for variance in [VarianceType::FixedSmall, VarianceType::FixedLarge] {
        let (schedule, oracle, x_0) = setup(PredictionType::Epsilon);
        let mut sampler = DdpmSamplerConfig::new()
            .with_variance_type(variance)
            .with_num_inference_steps(Some(50))
            .with_x0_processing(X0ProcessingConfig::none())
            .init(&schedule)
            .unwrap();
        let out = run(&mut sampler, &oracle, x_t(5));
        let (d, _) = max_abs_diff(&to_vec(out), &to_vec(x_0.clone()));
        assert!(d < 1e-4, "{variance:?}: |Δ| = {d:e}");
    }
}

/// The paper's μ̃ prediction (Table 2): with the true μ̃_t(x_t, x₀), DDPM over all T steps (μ_θ
/// is the output itself), strided DDPM and DDIM (x̂₀ read from the output) land on x₀; DDIM
/// inversion refuses it.
#[test]
fn mean_prediction_recovers_x0_in_every_sampler() {
    let (schedule, oracle, x_0) = setup(PredictionType::Mean);
    for steps in [None, Some(50)] {
        for variance in [VarianceType::FixedSmall, VarianceType::FixedLarge] {
            let mut sampler = DdpmSamplerConfig::new()
                .with_prediction_type(PredictionType::Mean)
                .with_variance_type(variance)
                .with_num_inference_steps(steps)
                .with_x0_processing(X0ProcessingConfig::none())
                .init(&schedule)
                .unwrap();
            let out = run(&mut sampler, &oracle, x_t(5));
            let (d, _) = max_abs_diff(&to_vec(out), &to_vec(x_0.clone()));
            assert!(d < 1e-4, "DDPM {steps:?} {variance:?}: |Δ| = {d:e}");
        }
    }
    let mut ddim = DdimSamplerConfig::new()
        .with_prediction_type(PredictionType::Mean)
        .with_num_inference_steps(25)
        .init(&schedule)
        .unwrap();
    let out = run(&mut ddim, &oracle, x_t(2));
    let (d, _) = max_abs_diff(&to_vec(out), &to_vec(x_0.clone()));
    assert!(d < 1e-4, "DDIM: |Δ| = {d:e}");

    let e = ddim.inversion().unwrap_err().to_string();
    assert!(e.contains("DDIM inversion") && e.contains("Mean"), "{e}");
}

#[test]
fn ddim_inversion_then_sampling_returns_the_input() {
    // The true-ε oracle: exact.
    let (schedule, oracle, x_0) = setup(PredictionType::Epsilon);
    let mut sampler = DdimSamplerConfig::new()
        .with_num_inference_steps(50)
        .with_x0_processing(X0ProcessingConfig::none())
        .init(&schedule)
        .unwrap();
    let mut inversion = sampler.inversion().unwrap();
    assert_eq!(Sampler::<B>::timesteps(&inversion)[..2], [0, 20]);
    let x_big_t = run(&mut inversion, &oracle, x_0.clone());
    let back = run(&mut sampler, &oracle, x_big_t);
    let (d, _) = max_abs_diff(&to_vec(back), &to_vec(x_0.clone()));
    assert!(d < 1e-4, "oracle: |Δ| = {d:e}");

    // A smooth model (ε = 0.1 · x) is not an oracle: inversion is exact only as the steps
    // shrink, so the error falls with n.
    let model = |x: Tensor<B, 4>, _t: Tensor<B, 1, Int>| x.mul_scalar(0.1);
    let mut errors = vec![];
    for n in [25, 250] {
        let mut sampler = DdimSamplerConfig::new()
            .with_num_inference_steps(n)
            .with_x0_processing(X0ProcessingConfig::none())
            .init(&schedule)
            .unwrap();
        let mut inversion = sampler.inversion().unwrap();
        let x_big_t = run(&mut inversion, &model, x_0.clone());
        let back = run(&mut sampler, &model, x_big_t);
        errors.push(max_abs_diff(&to_vec(back), &to_vec(x_0.clone())).0);
    }
    assert!(errors[1] < errors[0] && errors[1] < 0.05, "{errors:?}");
}

#[test]
fn same_seed_same_samples() {
    let (schedule, _, _) = setup(PredictionType::Epsilon);
    let model = |x: Tensor<B, 4>, _t: Tensor<B, 1, Int>| x.mul_scalar(0.1);
    let sample = |seed| {
        let mut sampler = DdpmSamplerConfig::new()
            .with_num_inference_steps(Some(20))
            .init(&schedule)
            .unwrap();
        let mut noise = NoiseSource::<B>::seeded(seed);
        let x = noise.standard_normal(SHAPE, &Default::default()).unwrap();
        to_vec(sample_loop(&mut sampler, &model, x, &mut noise, |_| {}, None).unwrap())
    };
    assert_eq!(sample(9), sample(9));
    assert_ne!(sample(9), sample(10));
}

#[test]
fn progress_and_cancellation() {
    let (schedule, _, _) = setup(PredictionType::Epsilon);
    let model = |x: Tensor<B, 4>, _t: Tensor<B, 1, Int>| x.mul_scalar(0.1);
    let mut sampler = DdimSamplerConfig::new()
        .with_num_inference_steps(10)
        .init(&schedule)
        .unwrap();
    let cancel = AtomicBool::new(false);
    let mut seen = vec![];
    let mut noise = NoiseSource::seeded(0);
    let err = sample_loop(
        &mut sampler,
        &model,
        x_t(0),
        &mut noise,
        |p| {
            seen.push((p.step, p.t, p.num_steps));
            assert_eq!(p.pred_x0.dims(), SHAPE);
            if p.step == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
        Some(&cancel),
    )
    .unwrap_err();
    assert!(
        matches!(err, SampleError::Cancelled { step: 4, t: 500 }),
        "{err}"
    );
    assert_eq!(
        seen,
        [(0, 900, 10), (1, 800, 10), (2, 700, 10), (3, 600, 10)]
    );
}

#[test]
fn wrong_noise_file_fails_before_the_model_runs() {
    let (schedule, _, _) = setup(PredictionType::Epsilon);
    let device = Default::default();
    let calls = std::cell::Cell::new(0);
    let model = |x: Tensor<B, 4>, _t: Tensor<B, 1, Int>| {
        calls.set(calls.get() + 1);
        x
    };
    let mut sampler = DdpmSamplerConfig::new()
        .with_num_inference_steps(Some(10))
        .init(&schedule)
        .unwrap();
    let short = Tensor::<B, 5>::random([9, 2, 3, 8, 8], Distribution::Default, &device);
    let mut noise = NoiseSource::replay(short);
    let err = sample_loop(&mut sampler, &model, x_t(0), &mut noise, |_| {}, None).unwrap_err();
    assert!(
        err.to_string().contains("expected [10, 2, 3, 8, 8]"),
        "{err}"
    );
    assert_eq!(calls.get(), 0);
}

#[test]
fn model_output_of_the_wrong_shape_is_an_error() {
    let (schedule, _, _) = setup(PredictionType::Epsilon);
    let mut sampler = DdpmSamplerConfig::new()
        .with_variance_type(VarianceType::Learned)
        .with_num_inference_steps(Some(10))
        .init(&schedule)
        .unwrap();
    let model = |x: Tensor<B, 4>, _t: Tensor<B, 1, Int>| x;
    let mut noise = NoiseSource::seeded(0);
    let err = sample_loop(&mut sampler, &model, x_t(0), &mut noise, |_| {}, None).unwrap_err();
    assert!(
        matches!(&err, SampleError::ModelOutputShape { t: 900, expected, .. } if expected == &[2, 6, 8, 8]),
        "{err}"
    );
}

#[test]
fn dynamic_thresholding_keeps_samples_in_range() {
    let (schedule, _, _) = setup(PredictionType::Epsilon);
    // A model that predicts x₀ far out of range.
    let model = |x: Tensor<B, 4>, _t: Tensor<B, 1, Int>| x.mul_scalar(5.0);
    let mut sampler = DdimSamplerConfig::new()
        .with_prediction_type(PredictionType::Sample)
        .with_num_inference_steps(10)
        .with_x0_processing(X0ProcessingConfig::dynamic_threshold(0.995, 1.0))
        .init(&schedule)
        .unwrap();
    let out = run(&mut sampler, &model, x_t(6));
    let max = to_vec(out).iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max <= 1.0 + 1e-6, "{max}");
}
