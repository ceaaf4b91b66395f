//! Shared body of the `loglik` parity tests (f32 and f64).

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use ddpm_forward::ForwardProcess;
use ddpm_loss::{
    VlbConfig, approx_standard_normal_cdf, discretized_gaussian_log_likelihood, normal_kl,
};
use ddpm_schedule::{BetaSchedule, NoiseSchedule, NoiseScheduleConfig, VarianceType};
use ddpm_testutil::{json_f64s, load_json};
use serde_json::Value;

/// Tolerances: |ours − ref| ≤ atol + rtol · |ref|.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // each test binary uses one variant
pub enum Tolerances {
    F32,
    F64,
}

impl Tolerances {
    fn rtol(self) -> f64 {
        match self {
            Self::F32 => 1e-5,
            Self::F64 => 1e-9,
        }
    }

    /// Float32 only: log-probabilities also inherit the rounding of the standardized bin edges
    /// (x − μ)/σ, |x − μ|/σ up to ~10 in the fixture: an absolute floor of 64 ulps.
    fn input_rounding(self) -> f64 {
        match self {
            Self::F32 => 64.0 * f32::EPSILON as f64,
            Self::F64 => 0.0,
        }
    }

    /// Machine epsilon of the float type the reference or our code is limited by: the
    /// reference's own rounding in f64, ours in f32.
    fn eps(self) -> f64 {
        match self {
            Self::F32 => f32::EPSILON as f64,
            Self::F64 => f64::EPSILON,
        }
    }
}

fn fixture() -> Value {
    load_json(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loglik.json"))
}

fn tensor<B: Backend, const D: usize>(v: &Value, device: &B::Device) -> Tensor<B, D> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap() as usize)
        .collect();
    Tensor::from_data(TensorData::new(json_f64s(v), shape), device)
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// Checks |ours − ref| ≤ atol(i) + rtol · |ref| elementwise; returns (name, max relative
/// deviation, max absolute deviation, violations).
fn check(
    tol: Tolerances,
    what: &str,
    ours: &[f64],
    reference: &[f64],
    atol: impl Fn(usize) -> f64,
) -> (String, f64, f64, usize) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let rtol = tol.rtol();
    let mut max_rel = 0.0f64;
    let mut max_abs = 0.0f64;
    let mut bad = 0;
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let d = (a - b).abs();
        let atol = atol(i);
        // NaN counts as a violation.
        let within = d <= atol + rtol * b.abs();
        if !within {
            bad += 1;
            eprintln!(
                "{what}[{i}]: ours {a:e} vs reference {b:e} (|Δ| {d:e}, atol {atol:e}, rtol {rtol:e})"
            );
        }
        max_abs = max_abs.max(d);
        if b.abs() > 0.0 {
            max_rel = max_rel.max(d / b.abs());
        }
    }
    (what.to_string(), max_rel, max_abs, bad)
}

fn schedule_from(v: &Value) -> NoiseSchedule {
    let t = v["num_train_timesteps"].as_u64().unwrap() as usize;
    let beta_schedule = match v["beta_schedule"].as_str().unwrap() {
        "linear" => BetaSchedule::Linear {
            beta_start: v["beta_start"].as_f64().unwrap(),
            beta_end: v["beta_end"].as_f64().unwrap(),
        },
        "squaredcos_cap_v2" => BetaSchedule::cosine(),
        other => panic!("unexpected schedule {other}"),
    };
    NoiseScheduleConfig::new(t, beta_schedule).build().unwrap()
}

/// Runs every fixture section; returns the deviations seen.
pub fn run_all<B: Backend>(device: &B::Device, tol: Tolerances) -> Vec<(String, f64, f64, usize)> {
    let f = fixture();
    let mut seen = vec![];

    let cdf = &f["approx_standard_normal_cdf"];
    let y = approx_standard_normal_cdf(tensor::<B, 1>(&cdf["x"], device));
    // The reference's ½(1 + tanh z) has absolute rounding error ~ε (ulp of 1).
    let e = tol.eps();
    seen.push(check(tol, "cdf", &host(y), &json_f64s(&cdf["y"]), |_| {
        2.0 * e
    }));

    let g = &f["discretized_gaussian_log_likelihood"];
    let lp = discretized_gaussian_log_likelihood(
        tensor::<B, 4>(&g["x"], device),
        tensor::<B, 4>(&g["means"], device),
        tensor::<B, 4>(&g["log_scales"], device),
    );
    // A bin probability p computed as a difference of CDFs carries an absolute error ~2ε, so
    // log p carries ~2ε/p (the reference's in f64, ours in f32).
    let reference = json_f64s(&g["log_probs"]);
    let r = tol.input_rounding();
    let cond = |lp: &[f64]| {
        lp.iter()
            .map(|l| 2.0 * e * (-l).exp() + r)
            .collect::<Vec<_>>()
    };
    let atol = cond(&reference);
    seen.push(check(tol, "log_probs", &host(lp), &reference, |i| atol[i]));

    let k = &f["normal_kl"];
    let kl = normal_kl(
        tensor::<B, 4>(&k["mean1"], device),
        tensor::<B, 4>(&k["logvar1"], device),
        tensor::<B, 4>(&k["mean2"], device),
        tensor::<B, 4>(&k["logvar2"], device),
    );
    seen.push(check(
        tol,
        "normal_kl",
        &host(kl),
        &json_f64s(&k["kl"]),
        |_| 0.0,
    ));
    let m1 = tensor::<B, 4>(&k["mean1"], device);
    let zeros = m1.zeros_like();
    let kl0 = normal_kl(
        m1,
        tensor::<B, 4>(&k["logvar1"], device),
        zeros.clone(),
        zeros,
    );
    seen.push(check(
        tol,
        "kl_vs_standard_normal",
        &host(kl0),
        &json_f64s(&k["kl_vs_standard_normal"]),
        |_| 0.0,
    ));

    let p = &f["prior_bpd"];
    for case in p["cases"].as_array().unwrap() {
        let fp = ForwardProcess::<B>::new(&schedule_from(&case["schedule"]), device);
        let bpd = VlbConfig::new()
            .init(&fp)
            .prior_bpd(tensor::<B, 4>(&p["x0"], device));
        let name = format!("prior_bpd[{}]", case["schedule"]["beta_schedule"]);
        // The reference's −1 − ℓ + e^ℓ cancels to ~1e-9 with an absolute error ~ε.
        seen.push(check(
            tol,
            &name,
            &host(bpd),
            &json_f64s(&case["bpd"]),
            |_| e,
        ));
    }

    let v = &f["vb_terms_bpd"];
    let fp = ForwardProcess::<B>::new(&schedule_from(&v["schedule"]), device);
    let x0 = tensor::<B, 4>(&v["x0"], device);
    let noise = tensor::<B, 4>(&v["noise"], device);
    let eps_pred = tensor::<B, 4>(&v["eps_pred"], device);
    for case in v["cases"].as_array().unwrap() {
        let ts: Vec<i64> = case["t"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect();
        let t = Tensor::<B, 1, Int>::from_data(TensorData::new(ts.clone(), [ts.len()]), device);
        let variance_type = match case["var_type"].as_str().unwrap() {
            "fixed_small" => VarianceType::FixedSmall,
            "fixed_large" => VarianceType::FixedLarge,
            other => panic!("{other}"),
        };
        let clip = case["clip_denoised"].as_bool().unwrap();
        let label = format!("t={ts:?} {} clip={clip}", case["var_type"]);
        // x_t: ours from q_sample must match the fixture's, then the fixture's is used.
        let x_t_ours = fp.q_sample(x0.clone(), noise.clone(), t.clone());
        seen.push(check(
            tol,
            &format!("x_t[{label}]"),
            &host(x_t_ours),
            &json_f64s(&case["x_t"]),
            |_| e,
        ));
        let x_t = tensor::<B, 4>(&case["x_t"], device);
        let vlb = VlbConfig::new()
            .with_variance_type(variance_type)
            .with_clip_denoised(clip)
            .init(&fp);
        let terms = vlb.terms(eps_pred.clone(), x0.clone(), x_t, t);
        // Conditioning of the decoder NLL (bits/dim): the mean over the image of 2ε/p per
        // pixel (see log_probs); large only where the decoder is evaluated far from its t = 0
        // (the fixture's t = 500 and 999 cases, where the bound uses the KL instead).
        let lp = host(discretized_gaussian_log_likelihood(
            x0.clone(),
            terms.p.mean.clone(),
            terms.p.log_variance.clone().mul_scalar(0.5),
        ));
        let per_image = lp.len() / ts.len();
        let dec_atol: Vec<f64> = cond(&lp)
            .chunks(per_image)
            .map(|c| c.iter().sum::<f64>() / per_image as f64 / std::f64::consts::LN_2)
            .collect();
        let decoder_at_zero: Vec<f64> = ts
            .iter()
            .zip(&dec_atol)
            .map(|(&t, &a)| if t == 0 { a } else { 0.0 })
            .collect();
        for (name, ours, key, atol) in [
            ("term_bpd", terms.term, "term_bpd", &decoder_at_zero),
            ("kl_bpd", terms.kl, "kl_bpd", &vec![0.0; ts.len()]),
            (
                "decoder_nll_bpd",
                terms.decoder_nll,
                "decoder_nll_bpd",
                &dec_atol,
            ),
        ] {
            // KL terms are differences of O(1) means: an absolute ε floor.
            seen.push(check(
                tol,
                &format!("{name}[{label}]"),
                &host(ours),
                &json_f64s(&case[key]),
                |i| atol[i] + e,
            ));
        }
    }
    for (what, rel, abs, _) in &seen {
        eprintln!("{what}: max rel {rel:.2e}, max abs {abs:.2e}");
    }
    let bad: Vec<_> = seen.iter().filter(|s| s.3 > 0).map(|s| &s.0).collect();
    assert!(bad.is_empty(), "out of tolerance ({tol:?}): {bad:?}");
    seen
}
