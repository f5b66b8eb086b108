//! What the models' CPU kernels (candle custom ops) share.

use candle_core::{CpuStorage, Layout, Result};

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
