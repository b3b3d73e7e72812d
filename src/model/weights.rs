//! Named tensors as safetensors bytes, in memory: the one encoder behind `model.safetensors` (final output
//! and checkpoints alike) and the optimiser state, so both are written the same way, byte for byte.

use std::borrow::Cow;

use safetensors::SafeTensorError;
use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{Device, Kind, Tensor};

use super::ModelError;

/// One tensor's bytes, little-endian, row-major.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn incompatible(why: String) -> ModelError {
    ModelError::Incompatible {
        path: "<snapshot>".into(),
        why,
    }
}

/// Encodes named tensors as a safetensors file in memory: `i64` tensors stay `i64`, everything else is
/// stored as `f32`.
pub fn encode(tensors: &[(String, Tensor)]) -> Result<Vec<u8>, ModelError> {
    let host: Vec<(String, HostTensor)> = tensors
        .iter()
        .map(|(name, t)| {
            let (kind, dtype) = if t.kind() == Kind::Int64 {
                (Kind::Int64, Dtype::I64)
            } else {
                (Kind::Float, Dtype::F32)
            };
            let t = t.detach().to_device(Device::Cpu).to_kind(kind).contiguous();
            let mut data = vec![0u8; t.numel() * kind.elt_size_in_bytes()];
            t.copy_data_u8(&mut data, t.numel());
            let shape = t.size().iter().map(|&d| d as usize).collect();
            (name.clone(), HostTensor { dtype, shape, data })
        })
        .collect();
    safetensors::serialize(host.iter().map(|(n, t)| (n.as_str(), t)), None)
        .map_err(|e| incompatible(format!("cannot serialise: {e}")))
}

/// What is wrong with a safetensors file, in words rather than the library's codes.
fn describe(error: &SafeTensorError) -> String {
    use SafeTensorError as E;
    let what = match error {
        E::HeaderTooSmall | E::InvalidHeaderLength => "the file is too short for its header (truncated?)".to_owned(),
        E::HeaderTooLarge => "the header length is implausibly large: the file is damaged".to_owned(),
        E::InvalidHeader(_) | E::InvalidHeaderDeserialization(_) | E::JsonError(_) => {
            "the header is not readable JSON: the file is damaged".to_owned()
        }
        E::InvalidOffset(name) => format!("the byte range of tensor {name} lies outside the file (truncated?)"),
        E::TensorInvalidInfo | E::InvalidTensorView(..) | E::ValidationOverflow | E::MisalignedSlice => {
            "a tensor's shape, type and byte range disagree: the file is damaged".to_owned()
        }
        E::MetadataIncompleteBuffer => "the tensors do not cover the file's data: truncated or damaged".to_owned(),
        E::TensorNotFound(name) => format!("no tensor {name}"),
        other => other.to_string(),
    };
    format!("not a readable safetensors file: {what}")
}

/// Decodes a safetensors file held in memory into named CPU tensors.
pub fn decode(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, ModelError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| incompatible(describe(&e)))?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let kind = match view.dtype() {
                Dtype::F32 => Kind::Float,
                Dtype::I64 => Kind::Int64,
                other => return Err(incompatible(format!("{name}: unsupported dtype {other:?}"))),
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            Ok((
                name,
                Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|e| incompatible(e.to_string()))?,
            ))
        })
        .collect()
}
