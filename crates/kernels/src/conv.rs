//! Convolutions as one CPU kernel forward and one backward.
//!
//! candle differentiates `conv2d` through `conv_transpose2d`, which on the CPU is a direct
//! loop (a dot product per output element), and its forward pass gathers patches one
//! element at a time. Here each image's patches are gathered (im2col) into a buffer that
//! lives for that image only, and the convolution is a matrix product with the weight;
//! backward, the weight's gradient is the output gradient times the patches, the
//! patches' gradient the weight times the output gradient, summed back onto the pixels
//! (col2im). Images run in parallel, one product each, so no patch matrix of the whole
//! batch is ever held, and bias, weight and input gradients come out of one pass instead of
//! a chain of graph nodes (a bias broadcast alone cost a strided reduction over every
//! output gradient). The resampling around taming's convolutions is folded into the
//! gather: the decoder's nearest-neighbour upsampling and the encoder's extra bottom and
//! right zero row. Other devices and dtypes take candle's ops.

use crate::{contiguous_f32, storage_f32};
use candle_core::{CpuStorage, CustomOp3, D, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use rayon::prelude::*;

/// What a convolution does to its input before the kernel slides over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// Nothing: the input as it is, padded as the convolution's config says.
    None,
    /// Nearest-neighbour upsampling by 2 (taming's decoder `Upsample`).
    Upsample,
    /// One more zero row at the bottom and column at the right (taming's encoder
    /// `Downsample`, ahead of its stride-2 convolution).
    PadBottomRight,
}

/// A 2-D convolution with taming's parameter names (`weight`, `bias`), and the resampling
/// its input gets first.
#[derive(Debug)]
pub struct Conv {
    inner: Conv2d,
    resample: Resample,
}

impl Conv {
    /// A convolution of `in_ch` to `out_ch` channels with a square `kernel`.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        config: Conv2dConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            inner: candle_nn::conv2d(in_ch, out_ch, kernel, config, vb)?,
            resample: Resample::None,
        })
    }

    /// The same convolution on a resampled input.
    pub fn resampling(self, resample: Resample) -> Self {
        Self { resample, ..self }
    }

    /// The shapes of the fused kernel's pass over `xs`, or `None` where candle's ops run.
    fn geometry(&self, xs: &Tensor) -> Result<Option<Geometry>> {
        let config = self.inner.config();
        let weight = self.inner.weight();
        let fused = xs.device().is_cpu()
            && xs.dtype() == DType::F32
            && weight.dtype() == DType::F32
            && xs.rank() == 4
            && config.dilation == 1
            && config.groups == 1;
        if !fused {
            return Ok(None);
        }
        let (_, channels, height, width) = xs.dims4()?;
        let (_, weight_channels, kernel, kernel_w) = weight.dims4()?;
        if channels != weight_channels || kernel != kernel_w {
            candle_core::bail!(
                "convolution of weight shape {:?} got an input of shape {:?}",
                weight.dims(),
                xs.dims()
            );
        }
        let (upsample, pad_after) = match self.resample {
            Resample::None => (1, config.padding),
            Resample::Upsample => (2, config.padding),
            Resample::PadBottomRight => (1, config.padding + 1),
        };
        let side = |input: usize| {
            let span = input * upsample + config.padding + pad_after;
            (span >= kernel).then(|| (span - kernel) / config.stride + 1)
        };
        let (Some(out_h), Some(out_w)) = (side(height), side(width)) else {
            candle_core::bail!(
                "a {kernel}x{kernel} convolution got an input of shape {:?}, smaller than its kernel",
                xs.dims()
            );
        };
        Ok(Some(Geometry {
            channels,
            kernel,
            stride: config.stride,
            pad: config.padding,
            upsample,
            in_h: height,
            in_w: width,
            out_h,
            out_w,
        }))
    }

    /// candle's ops: the reference the fused kernel is tested against, and the path on
    /// other devices.
    fn reference_forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self.resample {
            Resample::None => self.inner.forward(xs),
            Resample::Upsample => {
                let (_, _, height, width) = xs.dims4()?;
                xs.upsample_nearest2d(2 * height, 2 * width)?
                    .apply(&self.inner)
            }
            Resample::PadBottomRight => xs
                .pad_with_zeros(D::Minus1, 0, 1)?
                .pad_with_zeros(D::Minus2, 0, 1)?
                .apply(&self.inner),
        }
    }
}

impl Module for Conv {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (Some(geometry), Some(bias)) = (self.geometry(xs)?, self.inner.bias()) else {
            return self.reference_forward(xs);
        };
        xs.contiguous()?.apply_op3(
            &self.inner.weight().contiguous()?,
            &bias.contiguous()?,
            ConvOp(geometry),
        )
    }
}

/// The shapes of one convolution pass: input channels, the kernel's steps over the
/// (upsampled) input, and both maps' sizes.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    channels: usize,
    kernel: usize,
    stride: usize,
    /// Zero rows (columns) above (left of) the upsampled input.
    pad: usize,
    /// Nearest-neighbour upsampling factor of the input (1: none).
    upsample: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
}

/// Along one axis, for one kernel offset: the output positions whose source lies inside the
/// input, and each one's source index in the input before upsampling.
struct AxisMap {
    inside: std::ops::Range<usize>,
    sources: Vec<usize>,
}

impl Geometry {
    fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Rows of the patch matrix: channel, then kernel row, then kernel column.
    fn patch_rows(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    fn axis_map(&self, offset: usize, input: usize, output: usize) -> AxisMap {
        let upsampled = (input * self.upsample) as isize;
        let source = |o: usize| (o * self.stride + offset) as isize - self.pad as isize;
        let start = (0..output).find(|&o| source(o) >= 0).unwrap_or(output);
        let end = (start..output)
            .find(|&o| source(o) >= upsampled)
            .unwrap_or(output);
        let sources = (start..end)
            .map(|o| source(o) as usize / self.upsample)
            .collect();
        AxisMap {
            inside: start..end,
            sources,
        }
    }

    /// The maps of every kernel offset, rows then columns.
    fn axis_maps(&self) -> (Vec<AxisMap>, Vec<AxisMap>) {
        let maps = |input, output| {
            (0..self.kernel)
                .map(|offset| self.axis_map(offset, input, output))
                .collect()
        };
        (maps(self.in_h, self.out_h), maps(self.in_w, self.out_w))
    }

    /// Whether a row's sources are consecutive input pixels, so it copies as one slice.
    fn rows_are_slices(&self) -> bool {
        self.stride == 1 && self.upsample == 1
    }

    /// im2col of one image (channels × in_h × in_w) into `patches` (patch_rows × out_plane),
    /// zeros where the kernel reaches outside.
    fn gather(&self, maps: &(Vec<AxisMap>, Vec<AxisMap>), image: &[f32], patches: &mut [f32]) {
        let (k, plane, out_w) = (self.kernel, self.in_plane(), self.out_w);
        for (row_index, row) in patches.chunks_mut(self.out_plane()).enumerate() {
            let channel = &image[row_index / (k * k) * plane..][..plane];
            let (ys, xs) = (&maps.0[row_index / k % k], &maps.1[row_index % k]);
            row.fill(0.0);
            for (oy, &iy) in ys.inside.clone().zip(&ys.sources) {
                let source = &channel[iy * self.in_w..][..self.in_w];
                let target = &mut row[oy * out_w..][xs.inside.clone()];
                if self.rows_are_slices() {
                    let first = xs.sources.first().copied().unwrap_or(0);
                    target.copy_from_slice(&source[first..first + target.len()]);
                } else {
                    for (t, &ix) in target.iter_mut().zip(&xs.sources) {
                        *t = source[ix];
                    }
                }
            }
        }
    }

    /// col2im, the gradient of [`Geometry::gather`]: adds each patch entry onto its pixel
    /// of `image`.
    fn scatter_add(&self, maps: &(Vec<AxisMap>, Vec<AxisMap>), patches: &[f32], image: &mut [f32]) {
        let (k, plane, out_w) = (self.kernel, self.in_plane(), self.out_w);
        for (row_index, row) in patches.chunks(self.out_plane()).enumerate() {
            let channel = &mut image[row_index / (k * k) * plane..][..plane];
            let (ys, xs) = (&maps.0[row_index / k % k], &maps.1[row_index % k]);
            for (oy, &iy) in ys.inside.clone().zip(&ys.sources) {
                let target = &mut channel[iy * self.in_w..][..self.in_w];
                let source = &row[oy * out_w..][xs.inside.clone()];
                if self.rows_are_slices() {
                    let first = xs.sources.first().copied().unwrap_or(0);
                    let target = &mut target[first..first + source.len()];
                    for (t, &g) in target.iter_mut().zip(source) {
                        *t += g;
                    }
                } else {
                    for (&g, &ix) in source.iter().zip(&xs.sources) {
                        target[ix] += g;
                    }
                }
            }
        }
    }
}

/// A row-major matrix in a slice, or the transpose of one.
#[derive(Clone, Copy)]
struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Matrix<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `out = lhs · rhs`, or `out += lhs · rhs` with `accumulate`; `out` is row-major.
fn product(
    out: &mut [f32],
    lhs: Matrix,
    rhs: Matrix,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) -> Result<()> {
    if lhs.cols != rhs.rows || out.len() != lhs.rows * rhs.cols || !lhs.fits() || !rhs.fits() {
        candle_core::bail!(
            "convolution: a product of {}x{} and {}x{} into {} values",
            lhs.rows,
            lhs.cols,
            rhs.rows,
            rhs.cols,
            out.len()
        );
    }
    // SAFETY: checked above, every index the product reads or writes lies in its slice:
    // out is lhs.rows × rhs.cols row-major, and each operand fits its strides.
    unsafe {
        gemm::gemm(
            lhs.rows,
            rhs.cols,
            lhs.cols,
            out.as_mut_ptr(),
            1,
            rhs.cols as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// The convolution of an input (b, c, h, w) with a weight (o, c, k, k) and bias (o).
struct ConvOp(Geometry);

/// How each image's products use the threads: images run in parallel, so one thread each,
/// unless there are fewer images than threads (a single image encoded or decoded).
fn parallelism(batch: usize) -> gemm::Parallelism {
    if batch < rayon::current_num_threads() {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

impl ConvOp {
    fn check(&self, input: usize, weight: usize, bias: usize) -> Result<(usize, usize)> {
        let g = &self.0;
        let out_ch = bias;
        if weight != out_ch * g.patch_rows() || !input.is_multiple_of(g.channels * g.in_plane()) {
            candle_core::bail!("convolution: weight, bias and input sizes do not agree");
        }
        Ok((input / (g.channels * g.in_plane()), out_ch))
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "conv2d-im2col"
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
        let (batch, out_ch) = self.check(input.len(), weight.len(), bias.len())?;
        let g = &self.0;
        let maps = g.axis_maps();
        let weight = Matrix::new(weight, out_ch, g.patch_rows());
        let threads = parallelism(batch);
        let mut out = vec![0f32; batch * out_ch * g.out_plane()];
        out.par_chunks_mut(out_ch * g.out_plane())
            .zip(input.par_chunks(g.channels * g.in_plane()))
            .try_for_each_init(
                || vec![0f32; g.patch_rows() * g.out_plane()],
                |patches, (out, image)| {
                    g.gather(&maps, image, patches);
                    for (row, &b) in out.chunks_mut(g.out_plane()).zip(bias) {
                        row.fill(b);
                    }
                    let patches = Matrix::new(patches, g.patch_rows(), g.out_plane());
                    product(out, weight, patches, true, threads)
                },
            )?;
        let shape = Shape::from((batch, out_ch, g.out_h, g.out_w));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = &self.0;
        let grad_res = grad_res.contiguous()?;
        let (xs_storage, xs_layout) = xs.storage_and_layout();
        let (weight_storage, weight_layout) = weight.storage_and_layout();
        let (grad_storage, grad_layout) = grad_res.storage_and_layout();
        let input = storage_f32(&xs_storage, xs_layout, self.name())?;
        let weight_values = storage_f32(&weight_storage, weight_layout, self.name())?;
        let grads = storage_f32(&grad_storage, grad_layout, self.name())?;
        let (batch, out_ch) = self.check(input.len(), weight_values.len(), bias.elem_count())?;
        if grads.len() != batch * out_ch * g.out_plane() {
            candle_core::bail!("convolution: the output gradient has the wrong size");
        }
        // An input that no gradient reaches (the images, a frozen encoder's output) skips
        // its product and col2im.
        let input_wanted = xs.track_op();
        let maps = g.axis_maps();
        let rows = g.patch_rows();
        let threads = parallelism(batch);
        let weight_matrix = Matrix::new(weight_values, out_ch, rows);
        // One value an image stands in for the input's gradient where none is wanted.
        let image_size = if input_wanted {
            g.channels * g.in_plane()
        } else {
            1
        };
        let mut grad_input = vec![0f32; batch * image_size];
        let zeros = || {
            (
                vec![0f32; rows * g.out_plane()],
                vec![0f32; out_ch * rows],
                vec![0f32; out_ch],
            )
        };
        let (_, grad_weight, grad_bias) = input
            .par_chunks(g.channels * g.in_plane())
            .zip(grads.par_chunks(out_ch * g.out_plane()))
            .zip(grad_input.par_chunks_mut(image_size))
            .try_fold(
                zeros,
                |(mut patches, mut grad_weight, mut grad_bias),
                 ((image, grad), image_grad)|
                 -> Result<_> {
                    let grad_matrix = Matrix::new(grad, out_ch, g.out_plane());
                    g.gather(&maps, image, &mut patches);
                    let patch_matrix = Matrix::new(&patches, rows, g.out_plane());
                    product(
                        &mut grad_weight,
                        grad_matrix,
                        patch_matrix.t(),
                        true,
                        threads,
                    )?;
                    for (sum, row) in grad_bias.iter_mut().zip(grad.chunks(g.out_plane())) {
                        *sum += row.iter().sum::<f32>();
                    }
                    if input_wanted {
                        product(&mut patches, weight_matrix.t(), grad_matrix, false, threads)?;
                        g.scatter_add(&maps, &patches, image_grad);
                    }
                    Ok((patches, grad_weight, grad_bias))
                },
            )
            .try_reduce(
                || (Vec::new(), vec![0f32; out_ch * rows], vec![0f32; out_ch]),
                |(_, mut weight_a, mut bias_a), (_, weight_b, bias_b)| {
                    weight_a
                        .iter_mut()
                        .zip(&weight_b)
                        .for_each(|(a, b)| *a += b);
                    bias_a.iter_mut().zip(&bias_b).for_each(|(a, b)| *a += b);
                    Ok((Vec::new(), weight_a, bias_a))
                },
            )?;
        let device = xs.device();
        let grad_input = if input_wanted {
            Some(Tensor::from_vec(grad_input, xs.shape(), device)?)
        } else {
            None
        };
        Ok((
            grad_input,
            Some(Tensor::from_vec(grad_weight, weight.shape(), device)?),
            Some(Tensor::from_vec(grad_bias, bias.shape(), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::max_abs_diff;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;
    use racm3_train::seeded_var_builder;

    fn ramp(n: usize, step: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * step) % 101) as f32 / 50.0 - 1.0)
            .collect()
    }

    /// The output and the gradients of weight, bias and (when it is a variable) input, of
    /// a weighted sum of the output. candle's own ops also give a gradient for an input
    /// that is not a variable; the fused kernel skips it.
    fn run(conv: &Conv, xs: &Tensor, fused: bool) -> (Vec<Tensor>, Option<Tensor>) {
        let out = if fused {
            conv.forward(xs).unwrap()
        } else {
            conv.reference_forward(xs).unwrap()
        };
        let weights = Tensor::from_vec(ramp(out.elem_count(), 13), out.shape(), xs.device())
            .unwrap()
            .sin()
            .unwrap();
        let grads = (&out * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let params = [conv.inner.weight(), conv.inner.bias().unwrap()];
        let found = std::iter::once(out)
            .chain(params.map(|t| grads.get(t).expect("parameter gradient").clone()))
            .collect();
        (found, grads.get(xs).cloned())
    }

    // The fused kernel gives candle's output and its three gradients: 3x3, 1x1 and 5x5
    // kernels, strides 1 and 2, upsampling and taming's bottom-right padding, on maps that
    // are not square and, for the 5x5 kernel, smaller than its reach. Strided maps have
    // sides that the stride covers exactly: candle's own gradient is wrong elsewhere.
    #[test]
    fn matches_candles_convolution_and_gradients() {
        let cases = [
            (3, 1, 1, Resample::None, (4, 9)),
            (1, 0, 1, Resample::None, (4, 9)),
            (5, 2, 1, Resample::None, (4, 9)),
            (3, 1, 2, Resample::None, (5, 9)),
            (3, 1, 1, Resample::Upsample, (4, 9)),
            (3, 0, 2, Resample::PadBottomRight, (6, 8)),
        ];
        for (kernel, padding, stride, resample, (height, width)) in cases {
            let vars = VarMap::new();
            let vb = seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu);
            let config = Conv2dConfig {
                padding,
                stride,
                ..Default::default()
            };
            let conv = Conv::new(5, 6, kernel, config, vb)
                .unwrap()
                .resampling(resample);
            let shape = (2, 5, height, width);
            let values =
                Tensor::from_vec(ramp(2 * 5 * height * width, 37), shape, &Device::Cpu).unwrap();
            let case = format!("kernel {kernel}, padding {padding}, stride {stride}, {resample:?}");
            assert!(conv.geometry(&values).unwrap().is_some(), "{case}");
            // One image alone (its products then split over the threads) as in the batch.
            let first = values.narrow(0, 0, 1).unwrap();
            let alone = conv.forward(&first).unwrap();
            let in_batch = conv.forward(&values).unwrap().narrow(0, 0, 1).unwrap();
            assert!(max_abs_diff(&alone, &in_batch).unwrap() < 1e-5, "{case}");
            for variable in [true, false] {
                let xs = if variable {
                    Var::from_tensor(&values).unwrap().as_tensor().clone()
                } else {
                    values.clone()
                };
                let (mut ours, ours_input) = run(&conv, &xs, true);
                let (mut reference, reference_input) = run(&conv, &xs, false);
                assert_eq!(ours_input.is_some(), variable, "{case}");
                if variable {
                    ours.extend(ours_input);
                    reference.extend(reference_input);
                }
                for (ours, reference) in ours.iter().zip(&reference) {
                    assert_eq!(ours.dims(), reference.dims(), "{case}");
                    let diff = max_abs_diff(ours, reference).unwrap();
                    assert!(diff < 1e-4, "{case}: {diff}");
                }
            }
        }
    }

    #[test]
    fn a_kernel_larger_than_the_input_is_an_error() {
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu);
        let conv = Conv::new(2, 2, 5, Default::default(), vb).unwrap();
        let xs = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let err = conv.forward(&xs).unwrap_err().to_string();
        assert!(err.contains("smaller than its kernel"), "{err}");
    }
}
