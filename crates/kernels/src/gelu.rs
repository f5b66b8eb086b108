//! The exact GELU, x · Φ(x), and CLIP's QuickGELU, x · σ(1.702 x), as candle ops for the
//! CPU whose forward and backward passes vectorize.
//!
//! candle's `gelu_erf` calls libm's scalar `erf` for every element, and its backward pass
//! `erf` and `exp` again; in a training step of the `small` preset that was about 7% of
//! the time, and as much in decoding. Here erf is a rational function (the minimax fit
//! Eigen uses for `erf`, |error| < 1e-7 on f32) and exp a range reduction with a
//! polynomial, both plain arithmetic that the compiler turns into vector code, compiled
//! twice: for AVX2 + FMA, chosen at run time, and for the baseline.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::contiguous_f32;
use crate::storage::inputs_and_gradients;

use crate::simd::{avx2_dispatch, exp};

/// GELU(x) = x · Φ(x) = 0.5 · x · (1 + erf(x / √2)), with its gradient.
pub fn gelu(xs: &Tensor) -> Result<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == candle_core::DType::F32 {
        xs.contiguous()?.apply_op1(GELU)
    } else {
        xs.gelu_erf()
    }
}

/// OpenAI CLIP's QuickGELU, x · σ(1.702 x), with its gradient; three tensor ops each way
/// in candle's form.
pub fn quick_gelu(xs: &Tensor) -> Result<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == candle_core::DType::F32 {
        xs.contiguous()?.apply_op1(QUICK_GELU)
    } else {
        xs * candle_nn::ops::sigmoid(&(xs * QUICK)?)?
    }
}

/// QuickGELU's slope inside the sigmoid.
const QUICK: f64 = 1.702;

/// An element-wise activation as a candle op: its kernel, and the kernel of its
/// derivative times the incoming gradient, (x, grad) -> grad · f'(x).
#[derive(Clone, Copy)]
struct Activation {
    name: &'static str,
    backward_name: &'static str,
    forward: fn(&[f32], &mut [f32]),
    backward: fn(&[f32], &[f32], &mut [f32]),
}

/// GELU's derivative is Φ(x) + x · φ(x).
const GELU: Activation = Activation {
    name: "gelu-erf-vectorized",
    backward_name: "gelu-erf-vectorized-backward",
    forward,
    backward,
};

/// QuickGELU's is σ(a x) · (1 + a x (1 − σ(a x))).
const QUICK_GELU: Activation = Activation {
    name: "quick-gelu-vectorized",
    backward_name: "quick-gelu-vectorized-backward",
    forward: quick_forward,
    backward: quick_backward,
};

/// The backward pass of an [`Activation`], as an op of (x, grad).
struct ActivationBackward {
    name: &'static str,
    kernel: fn(&[f32], &[f32], &mut [f32]),
}

/// Elements below which one thread does the whole tensor.
const PARALLEL_FROM: usize = 1 << 14;

/// Applies `kernel` to matching chunks of `inputs` and a fresh output, on every core
/// when the tensor is large.
fn map_chunks(inputs: &[&[f32]], kernel: impl Fn(&[&[f32]], &mut [f32]) + Sync) -> Vec<f32> {
    let len = inputs[0].len();
    let mut out = vec![0f32; len];
    let chunk = len
        .div_ceil(rayon::current_num_threads())
        .max(PARALLEL_FROM);
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(index, out)| {
            let start = index * chunk;
            let parts: Vec<&[f32]> = inputs
                .iter()
                .map(|input| &input[start..start + out.len()])
                .collect();
            kernel(&parts, out);
        });
    out
}

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(storage, layout, self.name)?;
        let out = map_chunks(&[xs], |inputs, out| (self.forward)(inputs[0], out));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &ActivationBackward {
                name: self.backward_name,
                kernel: self.backward,
            },
        )?))
    }
}

impl CustomOp2 for ActivationBackward {
    fn name(&self) -> &'static str {
        self.name
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
            self.name,
        )?;
        let out = map_chunks(&[xs, grads], |inputs, out| {
            (self.kernel)(inputs[0], inputs[1], out)
        });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

/// σ(z) from the e^x that takes x <= 0 only: e^(−|z|) is on both sides.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    let e = exp(-z.abs());
    if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

#[inline(always)]
fn quick_forward_body(xs: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(xs) {
        *o = x * sigmoid(QUICK as f32 * x);
    }
}

#[inline(always)]
fn quick_backward_body(xs: &[f32], grads: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(xs).zip(grads) {
        let ax = QUICK as f32 * x;
        let s = sigmoid(ax);
        *o = g * s * (1.0 + ax * (1.0 - s));
    }
}

avx2_dispatch!(fn quick_forward = quick_forward_body(xs: &[f32], out: &mut [f32]));
avx2_dispatch!(fn quick_backward = quick_backward_body(xs: &[f32], grads: &[f32], out: &mut [f32]));
avx2_dispatch!(fn forward = forward_body(xs: &[f32], out: &mut [f32]));
avx2_dispatch!(fn backward = backward_body(xs: &[f32], grads: &[f32], out: &mut [f32]));

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / √(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
fn forward_body(xs: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(xs) {
        *o = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn backward_body(xs: &[f32], grads: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(xs).zip(grads) {
        let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
        let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
        *o = g * (cdf + x * pdf);
    }
}

/// erf(x) as Eigen's rational minimax fit on [-4, 4] (outside it erf is ±1 in f32).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_1e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::max_abs_diff;
    use candle_core::{Device, Var};

    // QuickGELU and its gradient match candle's x · sigmoid(1.702 x) from -20 to 20.
    #[test]
    fn quick_gelu_matches_candles_form_and_its_gradient() {
        let values: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 200.0).collect();
        let var = Var::new(values.as_slice(), &Device::Cpu).unwrap();
        let ours = quick_gelu(var.as_tensor()).unwrap();
        let xs = var.as_tensor();
        let reference = (xs * candle_nn::ops::sigmoid(&(xs * QUICK).unwrap()).unwrap()).unwrap();
        assert!(max_abs_diff(&ours, &reference).unwrap() < 1e-5);
        let weights = Tensor::new(
            (0..values.len())
                .map(|i| (i % 5) as f32 - 2.0)
                .collect::<Vec<_>>()
                .as_slice(),
            &Device::Cpu,
        )
        .unwrap();
        let gradient = |out: &Tensor| {
            let grads = (out * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            grads.get(var.as_tensor()).unwrap().clone()
        };
        assert!(max_abs_diff(&gradient(&ours), &gradient(&reference)).unwrap() < 1e-5);
    }

    // The forward pass and the gradient match candle's exact `gelu_erf` (libm's erf and
    // exp) from -10 to 10.
    #[test]
    fn matches_candles_exact_gelu_and_its_gradient() {
        let values: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 400.0).collect();
        let var = Var::new(values.as_slice(), &Device::Cpu).unwrap();
        let ours = gelu(var.as_tensor()).unwrap();
        let exact = var.as_tensor().gelu_erf().unwrap();
        assert!(max_abs_diff(&ours, &exact).unwrap() < 1e-6);
        let weights = Tensor::new(
            (0..values.len())
                .map(|i| (i % 7) as f32 - 3.0)
                .collect::<Vec<_>>()
                .as_slice(),
            &Device::Cpu,
        )
        .unwrap();
        let gradient = |out: &Tensor| {
            let grads = (out * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            grads.get(var.as_tensor()).unwrap().clone()
        };
        assert!(max_abs_diff(&gradient(&ours), &gradient(&exact)).unwrap() < 1e-5);
    }
}
