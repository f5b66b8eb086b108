//! How far apart two tensors are: the measure of every parity check, against a reference
//! implementation's fixtures or between two code paths of one model.

use candle_core::{Result, Tensor};

/// The largest absolute difference between two tensors of the same shape; tensors of
/// different shapes are an error naming both (candle's own, from the subtraction).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
}
