//! Finiteness of a U-Net's parameters: checked when weights are loaded
//! ([`ImportError::NonFiniteWeight`](crate::ImportError::NonFiniteWeight)) and by trainers
//! before they call a checkpoint good.

use burn::tensor::backend::Backend;
use burn_store::ModuleSnapshot;

use crate::Unet;
use crate::import::diffusers_key;

/// A parameter tensor that holds NaN or ±inf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonFiniteParam {
    /// The parameter, in diffusers naming (e.g. `down_blocks.0.resnets.0.conv1.weight`).
    pub key: String,
    /// How many of its values are not finite.
    pub count: usize,
    /// How many values it has.
    pub len: usize,
    /// The flat (row-major) index of the first non-finite value.
    pub first: usize,
}

impl<B: Backend> Unet<B> {
    /// The first parameter (in module order) that holds NaN or ±inf, or `None` when every
    /// weight is finite. Reads every parameter back to the host once.
    pub fn find_non_finite(&self) -> Option<NonFiniteParam> {
        self.collect(None, None, false)
            .into_iter()
            .find_map(|snapshot| {
                let data = snapshot
                    .to_data()
                    .expect("a parameter of a live module reads back");
                let (mut count, mut first, mut len) = (0, None, 0);
                for (i, v) in data.iter::<f32>().enumerate() {
                    len += 1;
                    if !v.is_finite() {
                        count += 1;
                        first.get_or_insert(i);
                    }
                }
                first.map(|first| NonFiniteParam {
                    key: diffusers_key(&snapshot.full_path()),
                    count,
                    len,
                    first,
                })
            })
    }
}
