//! Tensors in safetensors files: x_T and per-step noise recorded by another implementation (to
//! replay its run exactly), and raw samples written for later analysis.

use std::path::Path;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use safetensors::{Dtype, SafeTensors};

use crate::PipelineError;

/// Reads one tensor of a safetensors file as f32 host values: the tensor named by the first of
/// `preferred` that the file holds, else the file's only tensor. F32 and F64 are accepted.
///
/// # Errors
/// [`PipelineError::Io`] for an unreadable file, [`PipelineError::Import`] naming a truncated
/// file with both sizes, [`PipelineError::TensorFile`] for a file that is not safetensors,
/// holds several tensors none of which is preferred, or another dtype.
pub fn read_tensor(
    path: impl AsRef<Path>,
    preferred: &[&str],
) -> Result<(Vec<usize>, Vec<f32>), PipelineError> {
    let path = path.as_ref();
    let bad = |message: String| PipelineError::TensorFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
    let st = match SafeTensors::deserialize(&bytes) {
        Ok(st) => st,
        // A file cut short is named as truncated, with both sizes.
        Err(e) => match ddpm_unet::check_safetensors_file(path) {
            Err(truncated @ ddpm_unet::ImportError::Truncated { .. }) => {
                return Err(truncated.into());
            }
            _ => return Err(bad(format!("not a safetensors file ({e})"))),
        },
    };
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let name = match preferred.iter().find(|p| names.iter().any(|n| n == *p)) {
        Some(p) => p.to_string(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(bad(format!(
                "holds {} tensors ({}); expected one, or one named {}",
                names.len(),
                names.join(", "),
                preferred.join(" or ")
            )));
        }
    };
    let view = st
        .tensor(&name)
        .map_err(|e| bad(format!("tensor {name}: {e}")))?;
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(bad(format!(
                "tensor {name} has dtype {other:?}; expected F32 or F64"
            )));
        }
    };
    Ok((view.shape().to_vec(), values))
}

/// [`read_tensor`] onto `device` as a `D`-dimensional tensor.
///
/// # Errors
/// As [`read_tensor`], and [`PipelineError::TensorFile`] when the tensor does not have `D`
/// dimensions.
pub fn load_tensor<B: Backend, const D: usize>(
    path: impl AsRef<Path>,
    preferred: &[&str],
    device: &B::Device,
) -> Result<Tensor<B, D>, PipelineError> {
    let path = path.as_ref();
    let (shape, values) = read_tensor(path, preferred)?;
    if shape.len() != D {
        return Err(PipelineError::TensorFile {
            path: path.to_path_buf(),
            message: format!("the tensor has shape {shape:?}; expected {D} dimensions"),
        });
    }
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

/// Writes `tensor` as float32 under `key` to a safetensors file, atomically (the previous file
/// is intact if writing fails), creating missing parent directories.
///
/// # Errors
/// [`PipelineError::Write`] naming the file and the OS error.
pub fn save_tensor<B: Backend, const D: usize>(
    path: impl AsRef<Path>,
    key: &str,
    tensor: Tensor<B, D>,
) -> Result<(), PipelineError> {
    let path = path.as_ref();
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("a float tensor converts to f32");
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(Dtype::F32, shape, &bytes)
        .expect("shape and byte count agree");
    let data = safetensors::serialize([(key, view)], None).expect("one f32 tensor serializes");
    crate::images::create_parent(path)?;
    ddpm_io::write_atomic(path, data)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn round_trip_and_clear_errors() {
        let dir = std::env::temp_dir().join(format!("ddpm-pipeline-tensor-{}", std::process::id()));
        let device = Default::default();
        let x = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![1.0f32, -2.5, 3.0, 0.25, 5.0, 6.0], [2, 3]),
            &device,
        );
        let path = dir.join("x.safetensors");
        save_tensor(&path, "x_T", x.clone()).unwrap();
        let (shape, values) = read_tensor(&path, &["noise"]).unwrap();
        assert_eq!(shape, [2, 3]);
        assert_eq!(values, x.clone().into_data().to_vec::<f32>().unwrap());
        let back: Tensor<Flex, 2> = load_tensor(&path, &[], &device).unwrap();
        assert_eq!(back.into_data(), x.into_data());
        let e = load_tensor::<Flex, 4>(&path, &[], &device).unwrap_err();
        assert!(e.to_string().contains("expected 4 dimensions"), "{e}");
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let e = read_tensor(&path, &[]).unwrap_err();
        assert!(e.to_string().contains("x.safetensors is truncated"), "{e}");
        std::fs::write(&path, b"not safetensors").unwrap();
        let e = read_tensor(&path, &[]).unwrap_err();
        assert!(e.to_string().contains("x.safetensors"), "{e}");
        assert!(e.to_string().contains("not a safetensors file"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
