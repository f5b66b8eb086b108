//! GroupNorm as one pass forward and one backward on the CPU.
//!
//! candle_nn's GroupNorm is a chain of about ten tensor ops (group means, centring,
//! variance, division, then the per-channel scale and shift), each a full-size temporary,
//! and its backward pass walks that chain in reverse: on the 2-core machine it cost about
//! twelve times its forward pass (BENCHMARKS.md, "where a training step goes"). Here the
//! forward pass is two sweeps over each group (statistics, then the affine output) and the
//! backward pass computes the input's, weight's and bias's gradients together from the
//! closed form. The SiLU that follows most of taming's norms is fused in too (its own
//! backward in candle is five full-size temporaries). Other devices and dtypes use
//! candle_nn's.

use crate::{contiguous_f32, storage_f32};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{GroupNorm, Init, VarBuilder};
use rayon::prelude::*;

/// GroupNorm with taming's parameter names (`weight`, `bias`) and candle_nn's initialization.
#[derive(Debug)]
pub struct Norm {
    reference: GroupNorm,
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl Norm {
    /// GroupNorm of `channels` in `groups`, weight 1 and bias 0 unless `vb` holds them.
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let reference = GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?;
        Ok(Self {
            reference,
            weight,
            bias,
            groups,
            eps,
        })
    }

    /// GroupNorm then SiLU (swish), as taming's blocks apply them.
    pub fn forward_silu(&self, xs: &Tensor) -> Result<Tensor> {
        self.apply(xs, true)
    }

    fn apply(&self, xs: &Tensor, silu: bool) -> Result<Tensor> {
        let fused = xs.device().is_cpu()
            && xs.dtype() == DType::F32
            && self.weight.dtype() == DType::F32
            && xs.rank() == 4;
        if !fused {
            let normalized = self.reference.forward(xs)?;
            return if silu {
                normalized.silu()
            } else {
                Ok(normalized)
            };
        }
        if xs.dim(1)? != self.weight.dim(0)? {
            candle_core::bail!(
                "GroupNorm over {} channels got an input of shape {:?}",
                self.weight.dim(0)?,
                xs.dims()
            );
        }
        let op = GroupNormOp {
            groups: self.groups,
            eps: self.eps,
            silu,
        };
        xs.contiguous()?.apply_op3(&self.weight, &self.bias, op)
    }
}

impl Module for Norm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.apply(xs, false)
    }
}

#[derive(Debug)]
struct GroupNormOp {
    groups: usize,
    eps: f64,
    /// Whether SiLU follows.
    silu: bool,
}

fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + (-a).exp())
}

/// Mean and 1/σ of one group's elements (biased variance, as torch's GroupNorm).
fn statistics(group: &[f32], eps: f64) -> (f32, f32) {
    let n = group.len() as f64;
    let mean = group.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let variance = group
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean as f32, (1.0 / (variance + eps).sqrt()) as f32)
}

impl GroupNormOp {
    /// (batch, channels, elements per channel), checked against the group count.
    fn dims(&self, shape: &Shape) -> Result<(usize, usize, usize)> {
        let (batch, channels, height, width) = shape.dims4()?;
        if channels % self.groups != 0 {
            candle_core::bail!(
                "GroupNorm: {} groups do not divide {channels} channels",
                self.groups
            );
        }
        Ok((batch, channels, height * width))
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "group-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(xs, xs_layout, self.name())?;
        let weight = contiguous_f32(weight, weight_layout, self.name())?;
        let bias = contiguous_f32(bias, bias_layout, self.name())?;
        let (_, channels, plane) = self.dims(xs_layout.shape())?;
        let per_group = channels / self.groups;
        let mut out = vec![0f32; input.len()];
        out.par_chunks_mut(per_group * plane)
            .zip(input.par_chunks(per_group * plane))
            .enumerate()
            .for_each(|(index, (out, group))| {
                let (mean, rstd) = statistics(group, self.eps);
                let first = (index % self.groups) * per_group;
                for (c, (out, values)) in out.chunks_mut(plane).zip(group.chunks(plane)).enumerate()
                {
                    let scale = rstd * weight[first + c];
                    let shift = bias[first + c] - mean * scale;
                    for (o, &v) in out.iter_mut().zip(values) {
                        *o = v * scale + shift;
                    }
                    if self.silu {
                        out.iter_mut().for_each(|o| *o *= sigmoid(*o));
                    }
                }
            });
        Ok((CpuStorage::F32(out), xs_layout.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, channels, plane) = self.dims(xs.shape())?;
        let per_group = channels / self.groups;
        let (xs, grad_res, weight, bias) = (
            xs.contiguous()?,
            grad_res.contiguous()?,
            weight.contiguous()?,
            bias.contiguous()?,
        );
        let (xs_storage, xs_layout) = xs.storage_and_layout();
        let (grad_storage, grad_layout) = grad_res.storage_and_layout();
        let (weight_storage, weight_layout) = weight.storage_and_layout();
        let (bias_storage, bias_layout) = bias.storage_and_layout();
        let input = storage_f32(&xs_storage, xs_layout, self.name())?;
        let grads = storage_f32(&grad_storage, grad_layout, self.name())?;
        let weight_values = storage_f32(&weight_storage, weight_layout, self.name())?;
        let bias_values = storage_f32(&bias_storage, bias_layout, self.name())?;
        let mut grad_input = vec![0f32; input.len()];
        // Per image and channel; summed over the batch below.
        let mut grad_weight = vec![0f32; batch * channels];
        let mut grad_bias = vec![0f32; batch * channels];
        grad_input
            .par_chunks_mut(per_group * plane)
            .zip(grad_weight.par_chunks_mut(per_group))
            .zip(grad_bias.par_chunks_mut(per_group))
            .enumerate()
            .for_each(|(index, ((grad_input, grad_weight), grad_bias))| {
                let group = &input[index * per_group * plane..][..per_group * plane];
                let grad = &grads[index * per_group * plane..][..per_group * plane];
                let (mean, rstd) = statistics(group, self.eps);
                let first = (index % self.groups) * per_group;
                // The gradient reaching the affine output (through the SiLU, if any) is
                // kept in grad_input until the second sweep replaces it.
                // Sums over the group of the normalized input's gradient, plain and times it.
                let (mut sum, mut sum_dot) = (0f64, 0f64);
                for c in 0..per_group {
                    let (w, b) = (weight_values[first + c], bias_values[first + c]);
                    let (mut weight_sum, mut bias_sum) = (0f64, 0f64);
                    for i in c * plane..(c + 1) * plane {
                        let normalized = (group[i] - mean) * rstd;
                        let g = if self.silu {
                            let a = normalized * w + b;
                            let s = sigmoid(a);
                            grad[i] * s * (1.0 + a * (1.0 - s))
                        } else {
                            grad[i]
                        };
                        grad_input[i] = g;
                        weight_sum += f64::from(g * normalized);
                        bias_sum += f64::from(g);
                    }
                    grad_weight[c] = weight_sum as f32;
                    grad_bias[c] = bias_sum as f32;
                    sum += f64::from(w) * bias_sum;
                    sum_dot += f64::from(w) * weight_sum;
                }
                let n = (per_group * plane) as f64;
                let (mean_grad, mean_dot) = ((sum / n) as f32, (sum_dot / n) as f32);
                for c in 0..per_group {
                    let w = weight_values[first + c];
                    for i in c * plane..(c + 1) * plane {
                        let normalized = (group[i] - mean) * rstd;
                        grad_input[i] =
                            rstd * (grad_input[i] * w - mean_grad - normalized * mean_dot);
                    }
                }
            });
        let sum_over_batch = |partial: Vec<f32>| -> Vec<f32> {
            (0..channels)
                .map(|c| (0..batch).map(|n| partial[n * channels + c]).sum())
                .collect()
        };
        let device = xs.device();
        Ok((
            Some(Tensor::from_vec(grad_input, xs.shape(), device)?),
            Some(Tensor::from_vec(
                sum_over_batch(grad_weight),
                channels,
                device,
            )?),
            Some(Tensor::from_vec(
                sum_over_batch(grad_bias),
                channels,
                device,
            )?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::max_abs_diff;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    // The fused pass gives candle_nn's GroupNorm's output and the gradients of input,
    // weight and bias, alone and followed by SiLU, on an input with a non-zero mean and
    // weights away from 1 and 0.
    #[test]
    fn matches_candles_group_norm_and_gradients() -> Result<()> {
        let device = Device::Cpu;
        let (groups, channels) = (4, 8);
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &device);
        let norm = Norm::new(groups, channels, 1e-6, vb)?;
        for var in vars.all_vars() {
            var.set(&Tensor::randn(0.5f32, 1.0, channels, &device)?)?;
        }
        let xs =
            Var::from_tensor(&(Tensor::randn(0f32, 2.0, (3, channels, 5, 7), &device)? + 1.5)?)?;
        let upstream = Tensor::randn(0f32, 1.0, (3, channels, 5, 7), &device)?;
        let run = |forward: &dyn Fn(&Tensor) -> Result<Tensor>| -> Result<Vec<Tensor>> {
            let out = forward(xs.as_tensor())?;
            let grads = (&out * &upstream)?.sum_all()?.backward()?;
            let mut found = vec![out];
            found.push(grads.get(xs.as_tensor()).expect("input gradient").clone());
            found.push(grads.get(&norm.weight).expect("weight gradient").clone());
            found.push(grads.get(&norm.bias).expect("bias gradient").clone());
            Ok(found)
        };
        let plain = (
            run(&|xs| norm.forward(xs))?,
            run(&|xs| norm.reference.forward(xs))?,
        );
        let with_silu = (
            run(&|xs| norm.forward_silu(xs))?,
            run(&|xs| norm.reference.forward(xs)?.silu())?,
        );
        for (case, (fused, reference)) in [("plain", plain), ("with SiLU", with_silu)] {
            for (what, (ours, theirs)) in ["output", "input grad", "weight grad", "bias grad"]
                .iter()
                .zip(fused.iter().zip(&reference))
            {
                let diff = max_abs_diff(ours, theirs).expect("same shapes");
                assert!(diff < 1e-4, "{case}: {what} differs by {diff}");
            }
        }
        Ok(())
    }
}
