//! Named `f32` tensors to and from safetensors bytes (checkpoints, final weights).

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

/// Serializes `named` (Float tensors, on any device: each is copied to the host first) as
/// safetensors.
pub fn to_safetensors(named: &[(String, Tensor)]) -> Result<Vec<u8>, String> {
    let mut buffers = Vec::with_capacity(named.len());
    for (name, t) in named {
        let host = t.detach().to_device(Device::Cpu).to_kind(Kind::Float);
        let values =
            Vec::<f32>::try_from(&host.reshape([-1])).map_err(|e| format!("{name}: {e}"))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), shape, bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

/// Reads safetensors bytes written by [`to_safetensors`], as tensors on the CPU.
pub fn from_safetensors(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| format!("safetensors: {e}"))?;
    let mut out = Vec::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format!("{name}: expected F32, found {:?}", view.dtype()));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((name, Tensor::from_slice(&values).view(shape.as_slice())));
    }
    Ok(out)
}
