//! Normalization over the last dimension, as one candle op with its backward pass: the
//! core of LayerNorm (centred) and RMSNorm (not), before the learned scale and shift.
//!
//! Written from tensor ops (candle 0.11's fused `layer_norm` and `rms_norm` pass back no
//! gradient), a LayerNorm is nine ops forward and about fifteen backward, each a pass over
//! memory with its own allocation; here it is one pass forward and one backward, each row
//! done by one thread.
//!
//! For a row x of n values: x̂ = (x − μ) · r with r = 1 / √(var + ε) (centred), or x̂ = x · r
//! with r = 1 / √(mean(x²) + ε). Given the gradient g of x̂, the input's is
//! r · (g − mean(g) − x̂ · mean(g · x̂)), without the mean(g) term when not centred.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::contiguous_f32;
use crate::simd::avx2_dispatch;
use crate::storage::inputs_and_gradients;

/// `xs` normalized over its last dimension: centred and scaled to unit variance
/// (LayerNorm's core) when `centre`, else scaled to unit mean square (RMSNorm's), with
/// `eps` added under the root. Gradients flow to `xs`.
pub fn normalize_rows(xs: &Tensor, eps: f64, centre: bool) -> Result<Tensor> {
    let op = RowNorm {
        eps: eps as f32,
        centre,
    };
    if xs.device().is_cpu() && xs.dtype() == candle_core::DType::F32 {
        return xs.contiguous()?.apply_op1(op);
    }
    op.tensor_ops(xs)
}

#[derive(Clone, Copy)]
struct RowNorm {
    eps: f32,
    centre: bool,
}

/// The input's gradient from (x, the output's gradient).
struct RowNormBackward(RowNorm);

/// Rows per parallel task, at least: short rows are cheap.
const ROWS_PER_TASK: usize = 16;

impl RowNorm {
    /// The same computation from candle's ops, for devices and types the kernel lacks.
    fn tensor_ops(&self, xs: &Tensor) -> Result<Tensor> {
        use candle_core::D;
        let centred = if self.centre {
            xs.broadcast_sub(&xs.mean_keepdim(D::Minus1)?)?
        } else {
            xs.clone()
        };
        let spread = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred.broadcast_div(&(spread + f64::from(self.eps))?.sqrt()?)
    }
}

/// Sums of a row in eight independent lanes, which the compiler keeps in one vector
/// register (a plain `sum` is a serial chain: floating-point addition does not reorder).
#[inline(always)]
fn lane_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0f32; 8];
    for (index, value) in values.enumerate() {
        lanes[index % 8] += value;
    }
    lanes.iter().sum()
}

/// The mean (0 when not centring) and 1 / √(spread + ε) of one row.
#[inline(always)]
fn moments(row: &[f32], centre: bool, eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = if centre {
        lane_sum(row.iter().copied()) / n
    } else {
        0.0
    };
    let spread = lane_sum(row.iter().map(|&x| (x - mean) * (x - mean))) / n;
    (mean, 1.0 / (spread + eps).sqrt())
}

#[inline(always)]
fn forward_rows_body(xs: &[f32], out: &mut [f32], len: usize, centre: bool, eps: f32) {
    for (x, out) in xs.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        let (mean, r) = moments(x, centre, eps);
        for (o, &x) in out.iter_mut().zip(x) {
            *o = (x - mean) * r;
        }
    }
}

#[inline(always)]
fn backward_rows_body(
    xs: &[f32],
    grads: &[f32],
    out: &mut [f32],
    len: usize,
    centre: bool,
    eps: f32,
) {
    let n = len as f32;
    for ((x, g), out) in xs
        .chunks_exact(len)
        .zip(grads.chunks_exact(len))
        .zip(out.chunks_exact_mut(len))
    {
        let (mean, r) = moments(x, centre, eps);
        let mean_g = if centre {
            lane_sum(g.iter().copied()) / n
        } else {
            0.0
        };
        let mean_g_xhat = lane_sum(x.iter().zip(g).map(|(&x, &g)| g * (x - mean) * r)) / n;
        for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
            *o = r * (g - mean_g - (x - mean) * r * mean_g_xhat);
        }
    }
}

avx2_dispatch!(fn forward_rows = forward_rows_body(xs: &[f32], out: &mut [f32], len: usize, centre: bool, eps: f32));
avx2_dispatch!(fn backward_rows = backward_rows_body(xs: &[f32], grads: &[f32], out: &mut [f32], len: usize, centre: bool, eps: f32));

/// Runs `kernel` on blocks of whole `len`-long rows: (the block's first element, its
/// output), in parallel.
fn map_rows(total: usize, len: usize, kernel: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; total];
    if len == 0 {
        return out;
    }
    let task = len * ROWS_PER_TASK;
    out.par_chunks_mut(task)
        .enumerate()
        .for_each(|(index, block)| kernel(index * task, block));
    out
}

impl CustomOp1 for RowNorm {
    fn name(&self) -> &'static str {
        "normalize-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(storage, layout, self.name())?;
        let len = layout.dims().last().copied().unwrap_or(1);
        let out = map_rows(xs.len(), len, |start, out| {
            let x = &xs[start..start + out.len()];
            forward_rows(x, out, len, self.centre, self.eps)
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &RowNormBackward(*self),
        )?))
    }
}

impl CustomOp2 for RowNormBackward {
    fn name(&self) -> &'static str {
        "normalize-rows-backward"
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        grad_storage: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (xs, grads) = inputs_and_gradients(
            (x_storage, x_layout),
            (grad_storage, grad_layout),
            self.name(),
        )?;
        let RowNorm { eps, centre } = self.0;
        let len = x_layout.dims().last().copied().unwrap_or(1);
        let out = map_rows(xs.len(), len, |start, out| {
            let end = start + out.len();
            backward_rows(&xs[start..end], &grads[start..end], out, len, centre, eps)
        });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::max_abs_diff;
    use candle_core::{Device, Var};

    // Output and input gradient match the tensor-op form, centred and not, on rows of
    // uneven scale and offset.
    #[test]
    fn matches_the_tensor_op_form_and_its_gradient() {
        let device = Device::Cpu;
        let values: Vec<f32> = (0..7 * 37)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.03 * (1 + i / 37) as f32 + (i / 37) as f32)
            .collect();
        let var = Var::from_tensor(&Tensor::from_vec(values, (7, 37), &device).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (7, 37), &device).unwrap();
        for centre in [true, false] {
            let op = RowNorm { eps: 1e-5, centre };
            let fused = normalize_rows(var.as_tensor(), 1e-5, centre).unwrap();
            let reference = op.tensor_ops(var.as_tensor()).unwrap();
            assert!(
                max_abs_diff(&fused, &reference).unwrap() < 1e-5,
                "centre {centre}"
            );
            let gradient = |out: &Tensor| {
                let grads = (out * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                grads.get(var.as_tensor()).unwrap().clone()
            };
            let diff = max_abs_diff(&gradient(&fused), &gradient(&reference)).unwrap();
            assert!(diff < 1e-4, "centre {centre}: gradient differs by {diff}");
        }
    }
}
