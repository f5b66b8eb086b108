//! AdamW (Loshchilov and Hutter, 2019, arXiv:1711.05101) over named variables, with its
//! moments saved and restored, which candle's own `AdamW` keeps private.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::checkpoint::take_tensor;
use crate::error::{Error, Result};

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Peak learning rate; the caller's schedule scales it per step.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

struct Slot {
    var: Var,
    first_moment: Tensor,
    second_moment: Tensor,
}

/// AdamW over every variable of a `VarMap`, keyed by the variable's name.
pub struct AdamW {
    slots: Vec<(String, Slot)>,
    step: usize,
    config: AdamWConfig,
}

impl AdamW {
    /// An optimizer for all variables of `vars`, with zero moments.
    pub fn new(vars: &VarMap, config: AdamWConfig) -> Result<Self> {
        let data = vars.data().lock().map_err(|_| Error::Poisoned)?;
        let mut slots: Vec<(String, Slot)> = data
            .iter()
            .map(|(name, var)| {
                let zeros = var.zeros_like()?;
                Ok((
                    name.clone(),
                    Slot {
                        var: var.clone(),
                        first_moment: zeros.clone(),
                        second_moment: zeros,
                    },
                ))
            })
            .collect::<candle_core::Result<_>>()?;
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            slots,
            step: 0,
            config,
        })
    }

    /// Updates applied so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// The settings.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// One update with learning rate `lr`. Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = self.config;
        let bias1 = 1.0 - beta1.powi(self.step as i32);
        let bias2 = 1.0 - beta2.powi(self.step as i32);
        for (_, slot) in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            // Detached: otherwise each moment records the previous one and every step's
            // graph stays alive.
            slot.first_moment = ((&slot.first_moment * beta1)? + (grad * (1.0 - beta1))?)?.detach();
            slot.second_moment =
                ((&slot.second_moment * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?.detach();
            let update =
                ((&slot.first_moment / bias1)? / ((&slot.second_moment / bias2)?.sqrt()? + eps)?)?;
            let decayed = (slot.var.as_tensor() * (1.0 - lr * weight_decay))?;
            slot.var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Saves the moments (`m.NAME`, `v.NAME`) to a safetensors file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, slot) in &self.slots {
            tensors.insert(format!("m.{name}"), slot.first_moment.clone());
            tensors.insert(format!("v.{name}"), slot.second_moment.clone());
        }
        let step = Tensor::new(&[self.step as u32], &candle_core::Device::Cpu)?;
        tensors.insert("step".into(), step);
        crate::checkpoint::save_tensors(&tensors, path)
    }

    /// Restores moments and step count saved by [`AdamW::save`]. Every variable must have
    /// its moments in the file, with its own shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self
            .slots
            .first()
            .map_or(candle_core::Device::Cpu, |(_, slot)| {
                slot.var.device().clone()
            });
        let tensors =
            candle_core::safetensors::load(path, &device).map_err(|source| Error::Tensors {
                path: path.to_owned(),
                source,
            })?;
        let take = |key: &str, like: &Tensor| -> Result<Tensor> {
            Ok(take_tensor(&tensors, path, key, like.dims())?.to_dtype(DType::F32)?)
        };
        let mut restored = Vec::with_capacity(self.slots.len());
        for (name, slot) in &self.slots {
            let first = take(&format!("m.{name}"), slot.var.as_tensor())?;
            let second = take(&format!("v.{name}"), slot.var.as_tensor())?;
            restored.push((first, second));
        }
        for ((_, slot), (first, second)) in self.slots.iter_mut().zip(restored) {
            slot.first_moment = first;
            slot.second_moment = second;
        }
        let step = take_tensor(&tensors, path, "step", &[1])?;
        self.step = step.to_vec1::<u32>()?.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

/// Scales `grads` in place so their global l2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &VarMap, max_norm: f64) -> Result<f64> {
    let data = vars.data().lock().map_err(|_| Error::Poisoned)?;
    let mut total = 0.0f64;
    for var in data.values() {
        if let Some(grad) = grads.get(var.as_tensor()) {
            total += f64::from(grad.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    let norm = total.sqrt();
    if norm > max_norm && norm.is_finite() {
        let scale = max_norm / norm;
        for var in data.values() {
            if let Some(grad) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (grad * scale)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Init;

    // One AdamW step matches the update worked by hand: the first step moves each weight by
    // lr * sign(grad) (bias-corrected m / sqrt(v) = g / |g|), after decay.
    #[test]
    fn first_step_matches_hand_computation() {
        let vars = VarMap::new();
        let w = vars
            .get((2,), "w", Init::Const(1.0), DType::F32, &Device::Cpu)
            .unwrap();
        let config = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut optimizer = AdamW::new(&vars, config).unwrap();
        let loss = (w.clone() * Tensor::new(&[3f32, -2.0], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        optimizer.step(&loss.backward().unwrap(), 0.1).unwrap();
        let got = w.to_vec1::<f32>().unwrap();
        // 1 * (1 - 0.1 * 0.5) -/+ 0.1
        assert!((got[0] - 0.85).abs() < 1e-5, "{got:?}");
        assert!((got[1] - 1.05).abs() < 1e-5, "{got:?}");
    }

    // Saved moments restore exactly: two optimizers, one restored mid-way, take the same step.
    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let run = |restore: bool| {
            let vars = VarMap::new();
            let w = vars
                .get((3,), "w", Init::Const(0.5), DType::F32, &Device::Cpu)
                .unwrap();
            let mut optimizer = AdamW::new(&vars, AdamWConfig::default()).unwrap();
            let step = |optimizer: &mut AdamW| {
                let loss = w.sqr().unwrap().sum_all().unwrap();
                optimizer.step(&loss.backward().unwrap(), 0.01).unwrap();
            };
            step(&mut optimizer);
            if restore {
                optimizer.save(&dir.path().join("opt.safetensors")).unwrap();
                let mut fresh = AdamW::new(&vars, AdamWConfig::default()).unwrap();
                fresh.load(&dir.path().join("opt.safetensors")).unwrap();
                optimizer = fresh;
            }
            step(&mut optimizer);
            (optimizer.steps(), w.to_vec1::<f32>().unwrap())
        };
        assert_eq!(run(false), run(true));
    }
}
