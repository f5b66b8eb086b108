//! What the models' CPU kernels (candle custom ops) share.

use candle_core::{CpuStorage, Layout, Result, Storage};

/// The f32 elements of a contiguous CPU tensor, as a custom op receives it; `op` names the
/// kernel in the error.
pub fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// The inputs and incoming gradients of an element-wise op's backward kernel (a
/// `CustomOp2` of x and the output's gradient): both contiguous f32, of one length.
pub fn inputs_and_gradients<'a>(
    x: (&'a CpuStorage, &Layout),
    grad: (&'a CpuStorage, &Layout),
    op: &str,
) -> Result<(&'a [f32], &'a [f32])> {
    let xs = contiguous_f32(x.0, x.1, op)?;
    let grads = contiguous_f32(grad.0, grad.1, op)?;
    if xs.len() != grads.len() {
        candle_core::bail!("{op}: {} inputs but {} gradients", xs.len(), grads.len());
    }
    Ok((xs, grads))
}

/// The f32 elements of a contiguous tensor's storage, as a custom op's backward pass
/// borrows them (`Tensor::storage_and_layout`); an error on other devices.
pub fn storage_f32<'a>(storage: &'a Storage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match storage {
        Storage::Cpu(cpu) => contiguous_f32(cpu, layout, op),
        _ => candle_core::bail!("{op}: the CPU kernel got a tensor on another device"),
    }
}
