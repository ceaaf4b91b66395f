//! Exponential moving average of the weights (Ho et al. 2020, Appendix B: decay 0.9999; samples
//! and reported metrics use the EMA weights).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, backend::Backend};

/// θ_ema ← decay · θ_ema + (1 − decay) · θ, parameter by parameter (matched by [`ParamId`]).
///
/// `ema` must be a copy of `model` (e.g. `model.valid()` at initialisation, or a loaded record
/// of one), so that their parameter ids agree; parameters of `model` absent from `ema` are left
/// alone.
pub fn ema_update<B: Backend, M: Module<B>>(ema: M, model: &M, decay: f64) -> M {
    let mut collect = Collect::<B> {
        params: HashMap::new(),
    };
    model.visit(&mut collect);
    let mut update = Update::<B> {
        params: collect.params,
        decay,
    };
    ema.map(&mut update)
}

struct Collect<B: Backend> {
    params: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.params.insert(param.id, param.val().flatten(0, D - 1));
    }
}

struct Update<B: Backend> {
    params: HashMap<ParamId, Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Update<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.params.remove(&id) {
            Some(new) => {
                let new: Tensor<B, D> = new.reshape(tensor.dims());
                ddpm_unet::kernels::ema_update(tensor, new, self.decay)
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn ema_moves_toward_the_model() {
        let device = Default::default();
        let model: Linear<Flex> = LinearConfig::new(3, 2).init(&device);
        let ema = model.clone().map(&mut Zero);
        let ema = ema_update(ema, &model, 0.75);
        let w_ema = ema.weight.val().into_data().to_vec::<f32>().unwrap();
        let w = model.weight.val().into_data().to_vec::<f32>().unwrap();
        for (a, b) in w_ema.iter().zip(&w) {
            assert!((a - 0.25 * b).abs() < 1e-7, "{a} vs {b}");
        }
    }

    struct Zero;
    impl<B: Backend> ModuleMapper<B> for Zero {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, m) = p.consume();
            Param::from_mapped_value(id, t.zeros_like(), m)
        }
    }
}
