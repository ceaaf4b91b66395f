//! Global gradient-norm clipping, as `tf.clip_by_global_norm` in the paper's code (Ho et al.
//! 2020, Appendix B: "gradient norm clipping at 1").
//!
//! NOTE: Burn's optimizer-level `GradientClipping::Norm` clips each parameter's gradient on its
//! own; the paper clips the norm of all gradients together, which keeps their direction.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{ElementConversion, Tensor, backend::AutodiffBackend};

/// Scales every gradient by min(1, max_norm / ‖g‖₂) where ‖g‖₂ is the norm over all parameters
/// of `module`; returns ‖g‖₂ before clipping (one device → host read).
pub fn clip_global_norm<B, M>(grads: &mut GradientsParams, module: &M, max_norm: f64) -> f64
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let norm = global_norm::<B, M>(grads, module);
    if norm > max_norm && norm.is_finite() {
        let scale = max_norm / norm;
        module.visit(&mut Scale::<B> {
            grads,
            scale,
            _b: Default::default(),
        });
    }
    norm
}

/// ‖g‖₂ over all gradients of `module`'s parameters.
pub fn global_norm<B, M>(grads: &GradientsParams, module: &M) -> f64
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let mut sum = SumSquares::<B> { grads, total: None };
    module.visit(&mut sum);
    match sum.total {
        Some(t) => t.into_scalar().elem::<f64>().sqrt(),
        None => 0.0,
    }
}

struct SumSquares<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    scale: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.scale));
        }
    }
}
