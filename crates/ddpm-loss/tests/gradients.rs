//! Gradients of every loss through the tiny U-Net under `Autodiff<Flex>`: finite and nonzero
//! for every parameter, and the hybrid loss's stop-gradient honoured.

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor};
use ddpm_forward::ForwardProcess;
use ddpm_loss::{HybridLossConfig, LossWeighting, SimpleLossConfig, VlbConfig};
use ddpm_schedule::{NoiseSchedule, PredictionType, VarianceType};
use ddpm_unet::{Unet, UnetConfig};

type B = Autodiff<Flex>;

/// Per parameter: (path-ish index, max |grad|, all finite); `None` grad is recorded as NaN.
struct GradStats<'a> {
    grads: &'a <B as AutodiffBackend>::Gradients,
    stats: Vec<(usize, f32, bool)>,
}

impl ModuleVisitor<B> for GradStats<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let i = self.stats.len();
        match param.val().grad(self.grads) {
            Some(g) => {
                let v = g.into_data().to_vec::<f32>().unwrap();
                let finite = v.iter().all(|x| x.is_finite());
                let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                self.stats.push((i, max, finite));
            }
            None => self.stats.push((i, f32::NAN, false)),
        }
    }
}

fn grad_stats(
    model: &Unet<B>,
    grads: &<B as AutodiffBackend>::Gradients,
) -> Vec<(usize, f32, bool)> {
    let mut v = GradStats {
        grads,
        stats: vec![],
    };
    model.visit(&mut v);
    v.stats
}

fn assert_all_finite_nonzero(what: &str, stats: &[(usize, f32, bool)]) {
    assert!(!stats.is_empty());
    for &(i, max, finite) in stats {
        assert!(
            finite,
            "{what}: parameter {i} has a missing or non-finite gradient"
        );
        assert!(max > 0.0, "{what}: parameter {i} has an all-zero gradient");
    }
}

/// The model, the forward process, x₀, ε and t.
type Setup = (
    Unet<B>,
    ForwardProcess<B>,
    Tensor<B, 4>,
    Tensor<B, 4>,
    Tensor<B, 1, Int>,
);

fn setup(out_channels: usize) -> Setup {
    let device = Default::default();
    let unet = UnetConfig::tiny()
        .with_out_channels(out_channels)
        .init::<B>(&device)
        .unwrap();
    let fp = ForwardProcess::new(&NoiseSchedule::paper(), &device);
    let x0 = Tensor::<B, 4>::random([2, 3, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
    let eps = Tensor::<B, 4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<B, 1, Int>::from_ints([0, 537], &device);
    (unet, fp, x0, eps, t)
}

#[test]
fn simple_loss_gradients_reach_every_parameter() {
    let (unet, fp, x0, eps, t) = setup(3);
    for (pt, w) in [
        (PredictionType::Epsilon, LossWeighting::None),
        (PredictionType::VPrediction, LossWeighting::min_snr()),
        (PredictionType::Sample, LossWeighting::TrueBound),
    ] {
        let loss = SimpleLossConfig::new()
            .with_prediction_type(pt)
            .with_weighting(w)
            .init(&fp)
            .unwrap();
        let l = loss
            .forward_with(
                |x, t| unet.forward(x, t),
                x0.clone(),
                eps.clone(),
                t.clone(),
            )
            .mean();
        let grads = l.backward();
        assert_all_finite_nonzero(
            &format!("L_simple {pt:?} {w:?}"),
            &grad_stats(&unet, &grads),
        );
    }
}

#[test]
fn vlb_gradients_reach_every_parameter() {
    let (unet, fp, x0, eps, t) = setup(3);
    let vlb = VlbConfig::new()
        .with_variance_type(VarianceType::FixedLarge)
        .init(&fp);
    let x_t = fp.q_sample(x0.clone(), eps, t.clone());
    let out = unet.forward(x_t.clone(), t.clone());
    let l = vlb.terms(out, x0, x_t, t).term.mean();
    let grads = l.backward();
    assert_all_finite_nonzero("L_vlb", &grad_stats(&unet, &grads));
}

#[test]
fn hybrid_loss_trains_everything_but_its_vlb_part_only_the_variance() {
    let (unet, fp, x0, eps, t) = setup(6);
    let hybrid = HybridLossConfig::new().init(&fp).unwrap();
    let x_t = fp.q_sample(x0.clone(), eps.clone(), t.clone());

    let out = unet.forward(x_t.clone(), t.clone());
    let parts = hybrid.forward(out, x0.clone(), x_t.clone(), eps.clone(), t.clone());
    let grads = parts.loss.mean().backward();
    assert_all_finite_nonzero("L_hybrid", &grad_stats(&unet, &grads));

    // λ·L_vlb alone: conv_out's rows for the mean channels (0..3) get no gradient, the
    // variance rows (3..6) do.
    let out = unet.forward(x_t.clone(), t.clone());
    let parts = hybrid.forward(out, x0, x_t, eps, t);
    let grads = parts
        .vlb
        .mul_scalar(hybrid.lambda() * 1000.0)
        .mean()
        .backward();
    let w = unet
        .conv_out
        .weight
        .val()
        .grad(&grads)
        .expect("conv_out weight gradient");
    let mean_rows = w.clone().narrow(0, 0, 3).abs().max().into_scalar();
    let var_rows = w.narrow(0, 3, 3).abs().max().into_scalar();
    assert_eq!(
        mean_rows, 0.0,
        "stop-gradient: the VLB term must not reach the mean channels"
    );
    assert!(
        var_rows > 0.0 && var_rows.is_finite(),
        "variance channels: {var_rows}"
    );
    let b = unet
        .conv_out
        .bias
        .as_ref()
        .expect("conv_out has a bias")
        .val()
        .grad(&grads)
        .unwrap();
    assert_eq!(b.clone().narrow(0, 0, 3).abs().max().into_scalar(), 0.0);
    assert!(b.narrow(0, 3, 3).abs().max().into_scalar() > 0.0);
}
