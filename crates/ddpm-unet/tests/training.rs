//! Training under `Autodiff<Flex>`: per-sample timesteps, gradients reach every parameter,
//! dropout only when differentiating, and an Adam step lowers the L_simple loss.

mod common;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor};
use common::TestBackend;
use ddpm_unet::{Unet, UnetConfig};

type Ad = Autodiff<TestBackend>;

/// Counts parameters with and without a non-zero gradient.
struct GradCheck<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    with: usize,
    without: Vec<String>,
    path: Vec<String>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradCheck<'_, B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let nonzero = param
            .val()
            .grad(self.grads)
            .map(|g| g.abs().sum().into_scalar().to_f64() > 0.0)
            .unwrap_or(false);
        if nonzero {
            self.with += 1;
        } else {
            self.without.push(self.path.join("."));
        }
    }
}

trait ToF64 {
    fn to_f64(self) -> f64;
}
impl<E: burn::tensor::ElementConversion> ToF64 for E {
    fn to_f64(self) -> f64 {
        self.elem()
    }
}

fn batch(
    device: &<Ad as burn::tensor::backend::BackendTypes>::Device,
) -> (Tensor<Ad, 4>, Tensor<Ad, 1, Int>, Tensor<Ad, 4>) {
    let x = Tensor::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), device);
    let t = Tensor::from_ints([3, 700], device);
    let noise = Tensor::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), device);
    (x, t, noise)
}

#[test]
fn gradients_reach_every_parameter() {
    let device = Default::default();
    // Non-default GroupNorm affine values are not needed: every parameter enters the output.
    let unet: Unet<Ad> = UnetConfig::tiny().with_dropout(0.1).init(&device).unwrap();
    let (x, t, noise) = batch(&device);
    let loss = (unet.forward(x, t) - noise).square().mean();
    let grads = loss.backward();
    let mut check = GradCheck::<Ad> {
        grads: &grads,
        with: 0,
        without: Vec::new(),
        path: Vec::new(),
    };
    unet.visit(&mut check);
    assert!(check.without.is_empty(), "no gradient: {:?}", check.without);
    assert!(check.with > 100, "{}", check.with);
}

#[test]
fn dropout_only_under_autodiff() {
    let device = Default::default();
    let unet: Unet<Ad> = UnetConfig::tiny().with_dropout(0.5).init(&device).unwrap();
    let (x, t, _) = batch(&device);
    let a = unet.forward(x.clone(), t.clone()).into_data();
    let b = unet.forward(x.clone(), t.clone()).into_data();
    assert_ne!(a, b, "dropout should be active under autodiff");
    let valid: Unet<TestBackend> = unet.valid();
    let (x, t) = (x.inner(), t.inner());
    let a = valid.forward(x.clone(), t.clone()).into_data();
    let b = valid.forward(x, t).into_data();
    assert_eq!(a, b, "no dropout without autodiff");
}

#[test]
fn adam_steps_lower_the_loss() {
    let device = Default::default();
    let mut unet: Unet<Ad> = UnetConfig::tiny().init(&device).unwrap();
    let mut optim = AdamConfig::new().init();
    let (x, t, noise) = batch(&device);
    let mut losses = Vec::new();
    for _ in 0..4 {
        let loss = (unet.forward(x.clone(), t.clone()) - noise.clone())
            .square()
            .mean();
        losses.push(loss.clone().into_scalar().to_f64());
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        unet = optim.step(1e-3, unet, grads);
    }
    assert!(losses[3] < losses[0], "{losses:?}");
    assert_eq!(unet.num_params(), 702_499);
}
