//! A linear layer that multiplies once. candle's `Linear` on a (b, t, in) input runs b
//! products against the broadcast weight, each repacking the transposed weight; for the
//! short sequences of decoding and of CLIP's captions those repacks cost more than the
//! products. [`Dense`] flattens the leading dimensions into one (b·t, in) × (in, out)
//! product, with the same parameters, names and initialization as candle's layer.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `xs · W + b` for a weight stored (out, in) as PyTorch and candle store it.
#[derive(Debug, Clone)]
pub struct Dense {
    /// The weight as the right-hand side of the product, (in, out).
    rhs: Tensor,
    bias: Option<Tensor>,
}

impl Dense {
    /// `weight` (and `bias` when `with_bias`) from `vb`, initialized as candle_nn's
    /// `linear` and `linear_no_bias` initialize them.
    pub fn new(inputs: usize, outputs: usize, with_bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(
            (outputs, inputs),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bias = if with_bias {
            let bound = 1.0 / (inputs as f64).sqrt();
            Some(vb.get_with_hints(
                outputs,
                "bias",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?)
        } else {
            None
        };
        Ok(Self {
            bias,
            ..Self::from_weight(&weight)?
        })
    }

    /// From a weight (out, in) and no bias. A weight that cannot change (a loaded
    /// checkpoint, not a training variable) on the CPU is transposed into a contiguous copy
    /// once: gemm would otherwise repack the strided view on every product, which costs
    /// more than the product itself for a few rows.
    pub fn from_weight(weight: &Tensor) -> Result<Self> {
        let rhs = weight.t()?;
        let rhs = if weight.device().is_cpu() && !weight.is_variable() {
            rhs.contiguous()?
        } else {
            rhs
        };
        Ok(Self { rhs, bias: None })
    }
}

impl Module for Dense {
    /// `xs` (…, in) times the weight, as one matrix product over all leading dimensions.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut dims = xs.dims().to_vec();
        let inputs = dims.pop().unwrap_or(1);
        let rows: usize = dims.iter().product();
        let mut out = xs.reshape((rows, inputs))?.matmul(&self.rhs)?;
        if let Some(bias) = &self.bias {
            out = out.broadcast_add(bias)?;
        }
        dims.push(self.rhs.dim(1)?);
        out.reshape(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    // The same variables as candle's linear layer, drawn in the same order, and the same
    // result on a 3-d input, with and without a bias.
    #[test]
    fn matches_candles_linear() {
        let device = Device::Cpu;
        let xs = Tensor::randn(0f32, 1.0, (3, 5, 8), &device).unwrap();
        for with_bias in [true, false] {
            let (ours, theirs) = (VarMap::new(), VarMap::new());
            let seeded =
                |vars: &VarMap| racm3_train::seeded_var_builder(vars, 7, DType::F32, &device);
            let dense = Dense::new(8, 6, with_bias, seeded(&ours)).unwrap();
            let linear = if with_bias {
                candle_nn::linear(8, 6, seeded(&theirs)).unwrap()
            } else {
                candle_nn::linear_no_bias(8, 6, seeded(&theirs)).unwrap()
            };
            let a = dense.forward(&xs).unwrap().flatten_all().unwrap();
            let b = linear.forward(&xs).unwrap().flatten_all().unwrap();
            let diff = (a - b).unwrap().abs().unwrap().max(0).unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "bias {with_bias}");
        }
    }
}
