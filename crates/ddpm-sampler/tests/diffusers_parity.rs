//! Parity with huggingface diffusers 0.42.1 (fixtures in `tests/fixtures`, copied from
//! `shared/fixtures`; see its README): `DDPMScheduler.step`, `DDIMScheduler.step`, and the
//! 10-step DDIM and 1000-step DDPM loops with model = 0.1 · x, replaying diffusers' noise.
//!
//! Step tolerance (fixture README): |a − b| ≤ max(2e-5 · error_amplification,
//! 3 · f32_vs_f64_formula_max_rel_dev) · max(1, |b|); loops: rtol 1e-4.

use burn::backend::Flex;
use burn::tensor::{Int, Tensor};
use ddpm_sampler::{
    DdimSamplerConfig, DdimTimestepMode, DdpmSamplerConfig, NoiseSource, Sampler,
    X0ProcessingConfig, sample_loop,
};
use ddpm_schedule::{BetaSchedule, NoiseSchedule, NoiseScheduleConfig, TimestepSpacing};
use ddpm_testutil::{HostTensor, load_json, load_safetensors, to_vec};
use serde_json::Value;

type B = Flex;

fn fixture(name: &str) -> (Value, std::collections::HashMap<String, HostTensor>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    (
        load_json(format!("{dir}/{name}.json")),
        load_safetensors(format!("{dir}/{name}.safetensors")),
    )
}

fn schedule(sc: &Value) -> NoiseSchedule {
    NoiseSchedule::new(&NoiseScheduleConfig::new(
        sc["num_train_timesteps"].as_u64().unwrap() as usize,
        BetaSchedule::from_diffusers_name(
            sc["beta_schedule"].as_str().unwrap(),
            sc["beta_start"].as_f64().unwrap(),
            sc["beta_end"].as_f64().unwrap(),
        )
        .unwrap(),
    ))
    .unwrap()
}

fn x0_processing(sc: &Value) -> X0ProcessingConfig {
    X0ProcessingConfig::new()
        .with_clip_sample(sc["clip_sample"].as_bool().unwrap())
        .with_clip_sample_range(sc["clip_sample_range"].as_f64().unwrap_or(1.0))
}

/// Checks the README's step tolerance; returns the largest |a − b| / max(1, |b|) relative to
/// the allowed bound (≤ 1 passes) and the largest absolute deviation.
fn check_step(what: &str, case: &Value, ours: &[f32], reference: &[f32]) -> (f64, f64) {
    let amp = case["error_amplification"].as_f64().unwrap();
    let dev = case["f32_vs_f64_formula_max_rel_dev"].as_f64().unwrap();
    let bound = (2e-5 * amp).max(3.0 * dev);
    let (mut worst_ratio, mut worst_abs) = (0.0f64, 0.0f64);
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let d = (a as f64 - b as f64).abs();
        let allowed = bound * (b.abs() as f64).max(1.0);
        assert!(
            d <= allowed,
            "{what} {}: index {i}: ours {a} vs diffusers {b} (|Δ| = {d:e}, allowed {allowed:e})",
            case["id"]
        );
        worst_ratio = worst_ratio.max(d / allowed);
        worst_abs = worst_abs.max(d);
    }
    (worst_ratio, worst_abs)
}

#[test]
fn ddpm_step_matches_diffusers() {
    let (fx, tensors) = fixture("ddpm_step");
    let device = Default::default();
    let sample: Tensor<B, 4> = tensors["sample"].to_tensor(&device);
    let model_output: Tensor<B, 4> = tensors["model_output"].to_tensor(&device);
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 60);
    let (mut worst_ratio, mut worst_abs) = (0.0f64, 0.0f64);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let sc = &case["scheduler_config"];
        assert!(case["num_inference_steps"].is_null());
        let config = DdpmSamplerConfig::new()
            .with_prediction_type(sc["prediction_type"].as_str().unwrap().parse().unwrap())
            .with_variance_type(sc["variance_type"].as_str().unwrap().parse().unwrap())
            .with_x0_processing(x0_processing(sc));
        let mut sampler = config.init(&schedule(sc)).unwrap();
        let t = case["timestep"].as_u64().unwrap() as usize;
        assert_eq!(
            Sampler::<B>::needs_noise(&sampler, t),
            case["noise_drawn"].as_bool().unwrap(),
            "{id}"
        );
        let noise: Tensor<B, 4> = tensors[&format!("{id}/variance_noise")].to_tensor(&device);
        let out = sampler.step(model_output.clone(), t, sample.clone(), Some(noise));
        for (key, ours) in [
            ("prev_sample", out.prev_sample),
            ("pred_original_sample", out.pred_x0),
        ] {
            let reference = &tensors[&format!("{id}/{key}")].values;
            let (r, a) = check_step(key, case, &to_vec(ours), reference);
            worst_ratio = worst_ratio.max(r);
            worst_abs = worst_abs.max(a);
        }
    }
    eprintln!("ddpm_step: max |Δ| {worst_abs:e}, max |Δ|/bound {worst_ratio:.3}");
}

fn ddim_step_cases(mode: DdimTimestepMode) -> (f64, f64) {
    let (fx, tensors) = fixture("ddim_step");
    let device = Default::default();
    let sample: Tensor<B, 4> = tensors["sample"].to_tensor(&device);
    let model_output: Tensor<B, 4> = tensors["model_output"].to_tensor(&device);
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 108);
    let (mut worst_ratio, mut worst_abs) = (0.0f64, 0.0f64);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let sc = &case["scheduler_config"];
        let eta = case["eta"].as_f64().unwrap();
        let spacing: TimestepSpacing = sc["timestep_spacing"].as_str().unwrap().parse().unwrap();
        let config = DdimSamplerConfig::new()
            .with_prediction_type(sc["prediction_type"].as_str().unwrap().parse().unwrap())
            .with_x0_processing(x0_processing(sc))
            .with_eta(eta)
            .with_num_inference_steps(case["num_inference_steps"].as_u64().unwrap() as usize)
            .with_timestep_spacing(spacing)
            .with_steps_offset(sc["steps_offset"].as_u64().unwrap() as usize)
            .with_set_alpha_to_one(sc["set_alpha_to_one"].as_bool().unwrap())
            .with_timestep_mode(mode);
        let mut sampler = config.init(&schedule(sc)).unwrap();
        let expected_ts: Vec<usize> = case["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            Sampler::<B>::timesteps(&sampler),
            expected_ts.as_slice(),
            "{id}"
        );
        let t = case["timestep"].as_u64().unwrap() as usize;
        let noise: Tensor<B, 4> = tensors[&format!("{id}/variance_noise")].to_tensor(&device);
        let out = sampler.step(model_output.clone(), t, sample.clone(), Some(noise));
        for (key, ours) in [
            ("prev_sample", out.prev_sample),
            ("pred_original_sample", out.pred_x0),
        ] {
            let reference = &tensors[&format!("{id}/{key}")].values;
            let (r, a) = check_step(key, case, &to_vec(ours), reference);
            worst_ratio = worst_ratio.max(r);
            worst_abs = worst_abs.max(a);
        }
    }
    (worst_ratio, worst_abs)
}

#[test]
fn ddim_step_matches_diffusers_in_compat_mode() {
    let (r, a) = ddim_step_cases(DdimTimestepMode::DiffusersCompat);
    eprintln!("ddim_step (compat): max |Δ| {a:e}, max |Δ|/bound {r:.3}");
}

/// For these lists (leading, and trailing with n = 50 dividing T) diffusers' `t − T // n` is
/// the next entry of the list, so the default mode agrees too.
#[test]
fn ddim_step_matches_diffusers_in_default_mode_where_rules_coincide() {
    let (r, a) = ddim_step_cases(DdimTimestepMode::NextInList);
    eprintln!("ddim_step (default): max |Δ| {a:e}, max |Δ|/bound {r:.3}");
}

fn assert_rtol(what: &str, ours: &[f32], reference: &[f32], rtol: f64) -> f64 {
    let mut worst = 0.0f64;
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let d = (a as f64 - b as f64).abs();
        assert!(
            d <= rtol * (b.abs() as f64).max(1.0),
            "{what}: index {i}: ours {a} vs diffusers {b} (|Δ| = {d:e})"
        );
        worst = worst.max(d / (b.abs() as f64).max(1.0));
    }
    worst
}

#[test]
fn ddim_loop_matches_diffusers() {
    let (fx, tensors) = fixture("ddim_loop_simple");
    let device = Default::default();
    let sc = &fx["scheduler_config"];
    let mut sampler = DdimSamplerConfig::new()
        .with_x0_processing(X0ProcessingConfig::none())
        .with_eta(fx["eta"].as_f64().unwrap())
        .with_num_inference_steps(fx["num_inference_steps"].as_u64().unwrap() as usize)
        .with_steps_offset(sc["steps_offset"].as_u64().unwrap() as usize)
        .with_set_alpha_to_one(sc["set_alpha_to_one"].as_bool().unwrap())
        .init(&schedule(sc))
        .unwrap();
    assert_eq!(
        Sampler::<B>::timesteps(&sampler),
        &[901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    );
    let x_t: Tensor<B, 4> = tensors["x_T"].to_tensor(&device);
    let trajectory: Tensor<B, 5> = tensors["trajectory"].to_tensor(&device);
    let pred_traj: Tensor<B, 5> = tensors["pred_original_trajectory"].to_tensor(&device);
    let model = |x: Tensor<B, 4>, _t: Tensor<B, 1, Int>| x.mul_scalar(0.1);
    let mut noise = NoiseSource::<B>::seeded(0); // η = 0: never used
    let mut worst = 0.0f64;
    let final_sample = sample_loop(
        &mut sampler,
        &model,
        x_t,
        &mut noise,
        |p| {
            let i = p.step;
            let reference = to_vec(pred_traj.clone().narrow(0, i, 1).reshape([2, 3, 8, 8]));
            worst = worst.max(assert_rtol(
                &format!("pred_x0 at step {i}"),
                &to_vec(p.pred_x0.clone()),
                &reference,
                1e-4,
            ));
        },
        None,
    )
    .unwrap();
    let last = to_vec(trajectory.narrow(0, 9, 1).reshape([2, 3, 8, 8]));
    worst = worst.max(assert_rtol(
        "trajectory[9]",
        &to_vec(final_sample.clone()),
        &last,
        1e-4,
    ));
    worst = worst.max(assert_rtol(
        "final_sample",
        &to_vec(final_sample),
        &tensors["final_sample"].values,
        1e-4,
    ));
    eprintln!("ddim_loop_simple: max |Δ|/max(1, |b|) {worst:e}");
}

#[test]
fn ddpm_loop_matches_diffusers_with_replayed_noise() {
    let (fx, tensors) = fixture("ddpm_loop_simple");
    let device = Default::default();
    let sc = &fx["scheduler_config"];
    let mut sampler = DdpmSamplerConfig::new()
        .with_variance_type(sc["variance_type"].as_str().unwrap().parse().unwrap())
        .with_x0_processing(
            X0ProcessingConfig::new().with_clip_sample(sc["clip_sample"].as_bool().unwrap()),
        )
        .init(&schedule(sc))
        .unwrap();
    assert_eq!(Sampler::<B>::timesteps(&sampler).len(), 1000);
    let x_t: Tensor<B, 4> = tensors["x_T"].to_tensor(&device);
    let mut noise = NoiseSource::replay(tensors["variance_noise"].to_tensor(&device));
    let model = |x: Tensor<B, 4>, _t: Tensor<B, 1, Int>| x.mul_scalar(0.1);
    let out = sample_loop(&mut sampler, &model, x_t, &mut noise, |_| {}, None).unwrap();
    let worst = assert_rtol(
        "final_sample",
        &to_vec(out),
        &tensors["final_sample"].values,
        1e-4,
    );
    eprintln!("ddpm_loop_simple: max |Δ|/max(1, |b|) {worst:e}");
}
