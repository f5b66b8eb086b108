//! Convolutions whose gradients are matrix products on the CPU.
//!
//! candle differentiates `conv2d` through `conv_transpose2d`, which on the CPU is a direct
//! loop (a dot product per output element): in a decoder training step that was about
//! half the time. A stride-1 convolution with "same" padding is the weight times its
//! input's patches (im2col), and written that way both gradients are matrix products and
//! the patches' gradient is the reverse gather (col2im). The same form also runs passes
//! without gradients (encoding, decoding): candle's CPU convolution gathers its patches one
//! element at a time, and the row copies here decode at 1.7 times its speed. Other
//! convolutions and other devices stay candle's.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use racm3_train::contiguous_f32;
use rayon::prelude::*;

/// A 2-D convolution with taming's parameter names (`weight`, `bias`).
#[derive(Debug)]
pub(crate) struct Conv(Conv2d);

impl Conv {
    pub(crate) fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        config: Conv2dConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self(candle_nn::conv2d(in_ch, out_ch, kernel, config, vb)?))
    }

    /// Whether this forward pass goes through patches and a matrix product.
    fn as_product(&self, xs: &Tensor) -> bool {
        let config = self.0.config();
        let kernel = self.0.weight().dim(2).unwrap_or(0);
        xs.device().is_cpu()
            && xs.dtype() == candle_core::DType::F32
            && config.stride == 1
            && config.dilation == 1
            && config.groups == 1
            && kernel % 2 == 1
            && config.padding == kernel / 2
    }
}

impl Module for Conv {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if !self.as_product(xs) {
            return self.0.forward(xs);
        }
        let weight = self.0.weight();
        let (out_ch, in_ch, kernel, _) = weight.dims4()?;
        let (batch, _, height, width) = xs.dims4()?;
        let patches = xs.contiguous()?.apply_op1(Patches { kernel })?;
        let product = weight
            .reshape((out_ch, in_ch * kernel * kernel))?
            .broadcast_left(batch)?
            .matmul(&patches)?
            .reshape((batch, out_ch, height, width))?;
        match self.0.bias() {
            Some(bias) => product.broadcast_add(&bias.reshape((1, out_ch, 1, 1))?),
            None => Ok(product),
        }
    }
}

/// im2col for a stride-1, "same"-padded square kernel: (b, c, h, w) to (b, c·k·k, h·w),
/// row c·k·k + dy·k + dx holding the input shifted by (dy − k/2, dx − k/2), zeros outside.
struct Patches {
    kernel: usize,
}

/// col2im, the gradient of [`Patches`]: sums each patch entry back onto its pixel.
struct PatchesBackward {
    kernel: usize,
    height: usize,
    width: usize,
}

/// For one kernel offset `d` (0..k) along an axis of length `n`: the output positions whose
/// source `position + d − k/2` lies inside, and that shift.
fn valid_range(d: usize, kernel: usize, n: usize) -> (std::ops::Range<usize>, isize) {
    let shift = d as isize - (kernel / 2) as isize;
    let start = (-shift).max(0) as usize;
    let end = (n as isize - shift).clamp(0, n as isize) as usize;
    (start..end.max(start), shift)
}

impl CustomOp1 for Patches {
    fn name(&self) -> &'static str {
        "conv-patches"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let (batch, channels, height, width) = layout.shape().dims4()?;
        let k = self.kernel;
        let plane = height * width;
        let mut out = vec![0f32; batch * channels * k * k * plane];
        out.par_chunks_mut(k * k * plane)
            .enumerate()
            .for_each(|(image_channel, rows)| {
                let source = &input[image_channel * plane..(image_channel + 1) * plane];
                for (offset, row) in rows.chunks_mut(plane).enumerate() {
                    let (ys, dy) = valid_range(offset / k, k, height);
                    let (xs, dx) = valid_range(offset % k, k, width);
                    for y in ys {
                        let from = (y as isize + dy) as usize * width;
                        let from = (from as isize + xs.start as isize + dx) as usize;
                        row[y * width + xs.start..y * width + xs.end]
                            .copy_from_slice(&source[from..from + xs.len()]);
                    }
                }
            });
        let shape = Shape::from((batch, channels * k * k, plane));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, height, width) = arg.dims4()?;
        let backward = PatchesBackward {
            kernel: self.kernel,
            height,
            width,
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&backward)?))
    }
}

impl CustomOp1 for PatchesBackward {
    fn name(&self) -> &'static str {
        "conv-patches-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let grads = contiguous_f32(storage, layout, self.name())?;
        let (batch, rows, plane) = layout.shape().dims3()?;
        let (k, height, width) = (self.kernel, self.height, self.width);
        let channels = rows / (k * k);
        let mut out = vec![0f32; batch * channels * plane];
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(image_channel, target)| {
                let patch_rows = &grads[image_channel * k * k * plane..][..k * k * plane];
                for (offset, row) in patch_rows.chunks(plane).enumerate() {
                    let (ys, dy) = valid_range(offset / k, k, height);
                    let (xs, dx) = valid_range(offset % k, k, width);
                    for y in ys {
                        let to = ((y as isize + dy) as usize * width) as isize;
                        let to = (to + xs.start as isize + dx) as usize;
                        for (t, g) in target[to..to + xs.len()]
                            .iter_mut()
                            .zip(&row[y * width + xs.start..y * width + xs.end])
                        {
                            *t += g;
                        }
                    }
                }
            });
        let shape = Shape::from((batch, channels, height, width));
        Ok((CpuStorage::F32(out), shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;
    use racm3_train::max_abs_diff;

    // The product form gives candle's convolution and its three gradients, for 3x3, 1x1
    // and 5x5 kernels on a non-square map smaller than the largest kernel's reach.
    #[test]
    fn matches_candles_convolution_and_gradients() {
        for (kernel, padding) in [(3, 1), (1, 0), (5, 2)] {
            let vars = VarMap::new();
            let vb = racm3_train::seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu);
            let config = Conv2dConfig {
                padding,
                ..Default::default()
            };
            let conv = Conv::new(5, 6, kernel, config, vb).unwrap();
            let values: Vec<f32> = (0..2 * 5 * 4 * 9)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let xs =
                Var::from_tensor(&Tensor::from_vec(values, (2, 5, 4, 9), &Device::Cpu).unwrap())
                    .unwrap();
            assert!(conv.as_product(xs.as_tensor()));
            let ours = conv.forward(xs.as_tensor()).unwrap();
            let reference = conv.0.forward(xs.as_tensor()).unwrap();
            assert!(max_abs_diff(&ours, &reference).unwrap() < 1e-5);

            let grads = |out: &Tensor| {
                let weights = Tensor::arange(0f32, out.elem_count() as f32, &Device::Cpu)
                    .unwrap()
                    .reshape(out.shape())
                    .unwrap()
                    .affine(0.01, -0.5)
                    .unwrap()
                    .sin()
                    .unwrap();
                let grads = (out * weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                [xs.as_tensor(), conv.0.weight(), conv.0.bias().unwrap()]
                    .map(|t| grads.get(t).unwrap().clone())
            };
            for (ours, reference) in grads(&ours).iter().zip(&grads(&reference)) {
                let diff = max_abs_diff(ours, reference).unwrap();
                assert!(diff < 1e-4, "kernel {kernel}: {diff}");
            }
        }
    }
}
