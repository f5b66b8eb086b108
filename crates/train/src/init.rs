//! Seeded initialization. candle draws fresh weights from a thread-local generator that
//! cannot be seeded on the CPU, so two runs would start from different weights; this
//! backend draws them from a seeded generator instead, in the order the model asks.

use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

struct SeededVarMap {
    vars: VarMap,
    rng: Mutex<StdRng>,
}

impl SeededVarMap {
    fn draw(&self, shape: &Shape, init: Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let count = shape.elem_count();
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::msg("seeded initializer lock poisoned"))?;
        let mut sample = |distribution: &dyn Fn(&mut StdRng) -> f32| -> Vec<f32> {
            (0..count).map(|_| distribution(&mut rng)).collect()
        };
        let uniform =
            |lo: f64, up: f64| Uniform::new(lo as f32, up as f32).map_err(candle_core::Error::msg);
        let normal = |mean: f64, std: f64| {
            Normal::new(mean as f32, std as f32).map_err(candle_core::Error::msg)
        };
        let values = match init {
            Init::Const(value) => vec![value as f32; count],
            Init::Uniform { lo, up } => {
                let dist = uniform(lo, up)?;
                sample(&|rng| dist.sample(rng))
            }
            Init::Randn { mean, stdev } => {
                let dist = normal(mean, stdev)?;
                sample(&|rng| dist.sample(rng))
            }
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                // The same bounds candle's Init::var uses.
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        let dist = uniform(-bound, bound)?;
                        sample(&|rng| dist.sample(rng))
                    }
                    NormalOrUniform::Normal => {
                        let dist = normal(0.0, std)?;
                        sample(&|rng| dist.sample(rng))
                    }
                }
            }
        };
        Tensor::from_vec(values, shape.clone(), device)?.to_dtype(dtype)
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let mut data = self
            .vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::msg("variable store lock poisoned"))?;
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "{name}: shape {:?} asked for, {:?} stored",
                    shape,
                    var.shape()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let var = Var::from_tensor(&self.draw(&shape, init, dtype, device)?)?;
        let tensor = var.as_tensor().clone();
        data.insert(name.to_owned(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _device: &Device) -> Result<Tensor> {
        candle_core::bail!("{name}: a seeded variable store needs a shape to create it")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .data()
            .lock()
            .map(|data| data.contains_key(name))
            .unwrap_or(false)
    }
}

/// A `VarBuilder` that creates its variables in `vars`, drawn from a generator seeded with
/// `seed`: the same model code and seed give the same initial weights on every run.
pub fn seeded_var_builder(
    vars: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let backend = SeededVarMap {
        vars: vars.clone(),
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
    };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The same seed gives the same weights; another seed gives others.
    #[test]
    fn same_seed_same_weights() {
        let weights = |seed| {
            let vars = VarMap::new();
            let vb = seeded_var_builder(&vars, seed, DType::F32, &Device::Cpu);
            let linear = candle_nn::linear(4, 3, vb.pp("l")).unwrap();
            linear
                .weight()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(weights(1), weights(1));
        assert_ne!(weights(1), weights(2));
    }
}
