//! The dtype of loaded weights: every floating-point tensor of a checkpoint (f16, bf16, f64, f32)
//! is converted to the model's compute dtype as it is loaded, and integer or boolean tensors are
//! refused by name.
//!
//! diffusers ships half-precision variants of its checkpoints
//! (`diffusion_pytorch_model.fp16.safetensors`); burn-store would otherwise load their tensors
//! as f16 parameters of an f32 model, which fails at the first matrix multiplication, and would
//! load an `I32` tensor as a float parameter holding integers.

use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::{DType, TensorData};
use burn_store::{ModuleAdapter, TensorSnapshot, TensorSnapshotError};

/// A `burn-store` adapter, applied after the layout adapter, that casts floating-point tensors
/// to `target` and records every tensor of another dtype (which then fails to load).
#[derive(Debug, Clone)]
pub(crate) struct ToComputeDtype {
    target: DType,
    refused: Arc<Mutex<Vec<(String, DType)>>>,
}

impl ToComputeDtype {
    /// An adapter that converts floating-point tensors to `target`.
    pub(crate) fn new(target: DType) -> Self {
        Self {
            target,
            refused: Arc::default(),
        }
    }

    /// The first tensor refused for its dtype (Burn module path, dtype), if any.
    pub(crate) fn first_refused(&self) -> Option<(String, DType)> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first()
            .cloned()
    }
}

/// Whether weights of this dtype can be converted to the compute dtype.
pub(crate) fn is_float(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F64 | DType::F32 | DType::Flex32 | DType::F16 | DType::BF16
    )
}

/// A dtype as safetensors names it (`F16`, `I32`, `BOOL`, ...).
pub(crate) fn dtype_name(dtype: DType) -> String {
    match dtype {
        DType::F64 => "F64".into(),
        DType::F32 | DType::Flex32 => "F32".into(),
        DType::F16 => "F16".into(),
        DType::BF16 => "BF16".into(),
        DType::I64 => "I64".into(),
        DType::I32 => "I32".into(),
        DType::I16 => "I16".into(),
        DType::I8 => "I8".into(),
        DType::U64 => "U64".into(),
        DType::U32 => "U32".into(),
        DType::U16 => "U16".into(),
        DType::U8 => "U8".into(),
        DType::Bool(_) => "BOOL".into(),
        other => format!("{other:?}"),
    }
}

impl ModuleAdapter for ToComputeDtype {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let dtype = snapshot.dtype;
        if dtype == self.target {
            return snapshot.clone();
        }
        let path_stack = snapshot.path_stack.clone().unwrap_or_default();
        let container_stack = snapshot.container_stack.clone().unwrap_or_default();
        let id = snapshot.tensor_id.unwrap_or_default();
        if !is_float(dtype) {
            self.refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((snapshot.full_path(), dtype));
            let message = format!("dtype {} is not floating point", dtype_name(dtype));
            return TensorSnapshot::from_closure(
                Rc::new(move || -> Result<TensorData, TensorSnapshotError> {
                    Err(TensorSnapshotError::DataError(message.clone()))
                }),
                dtype,
                snapshot.shape.clone(),
                path_stack,
                container_stack,
                id,
            );
        }
        let target = self.target;
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || data().map(|d| d.convert_dtype(target))),
            target,
            snapshot.shape.clone(),
            path_stack,
            container_stack,
            id,
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(data: TensorData) -> TensorSnapshot {
        TensorSnapshot::from_data(
            data,
            vec!["conv_in".into(), "weight".into()],
            vec!["Struct:Unet".into(), "Struct:Conv2d".into()],
            Default::default(),
        )
    }

    #[test]
    fn floats_are_cast_and_integers_refused() {
        let adapter = ToComputeDtype::new(DType::F32);
        let half = TensorData::new(vec![0.5f32, -2.0, 3.25], [3]).convert_dtype(DType::F16);
        let cast = adapter.adapt(&snapshot(half));
        assert_eq!(cast.dtype, DType::F32);
        let data = cast.to_data().unwrap();
        assert_eq!(data.dtype, DType::F32);
        assert_eq!(data.to_vec::<f32>().unwrap(), [0.5, -2.0, 3.25]);
        assert!(adapter.first_refused().is_none());

        let ints = adapter.adapt(&snapshot(TensorData::new(vec![1i32, 2, 3], [3])));
        assert!(ints.to_data().is_err());
        let (key, dtype) = adapter.first_refused().unwrap();
        assert_eq!(
            (key.as_str(), dtype_name(dtype).as_str()),
            ("conv_in.weight", "I32")
        );
    }
}
