//! The generator's training loop (nanoGPT's `train.py`, minGPT's trainer): AdamW with
//! warm-up then cosine decay, gradient clipping at 1.0, gradient accumulation, periodic
//! validation loss, atomic resumable checkpoints and a loss log. It knows sequences and
//! roles, not where they came from: retrieval is done once, before training.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use racm3_tokenize::{IdSpace, Special};
use racm3_train::{AdamWConfig, MODEL, Run, clip_grad_norm, seeded_var_builder, warmup_cosine};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::Cm3Model;
use crate::sequence::{RETRIEVED_LOSS_WEIGHT, Role, Sequence, rag_loss};

/// Every setting of a generator training run, stored with its checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cm3TrainConfig {
    /// The model's shape.
    pub model: Config,
    /// Optimizer steps in all.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up.
    pub warmup: usize,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Weight of the retrieved documents' loss (α).
    pub alpha: f32,
    /// Seeds the weights and the order of the sequences.
    pub seed: u64,
    /// Steps between validation losses and checkpoints.
    pub checkpoint_every: usize,
}

impl Cm3TrainConfig {
    /// Defaults for `model`: nanoGPT-like settings scaled to a CPU.
    pub fn new(model: Config) -> Self {
        Self {
            model,
            steps: 2000,
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-3,
            warmup: 100,
            weight_decay: 0.1,
            alpha: RETRIEVED_LOSS_WEIGHT,
            seed: 0,
            checkpoint_every: 250,
        }
    }
}

/// One optimizer step's figures.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// The step just taken (from 1).
    pub step: usize,
    /// Mean `L_main` over the step's micro-batches.
    pub main: f64,
    /// Mean `L_retr`.
    pub retrieved: f64,
    /// Target tokens in the step.
    pub tokens: usize,
}

/// A generator training run in a folder: `config.json` and `model.safetensors` (ready to
/// load), `loss.csv`, `loss.png`, and resumable checkpoints in `train/`.
pub struct Cm3Trainer {
    run: Run<Cm3TrainConfig>,
    ids: IdSpace,
    device: Device,
    model: Cm3Model,
    probe: Option<CopyProbe>,
}

/// Validation sets that show how much the model reads what is in front of it: the same
/// main documents (only their image codes counted) after a document of the same entity in
/// another rendition, and after a random document of another entity.
#[derive(Debug, Clone, Default)]
pub struct CopyProbe {
    /// Main documents after a same-entity document.
    pub same_entity: Vec<Sequence>,
    /// The same main documents after a random one.
    pub random: Vec<Sequence>,
}

const LOG_COLUMNS: [&str; 5] = [
    "main",
    "retrieved",
    "val_main",
    "probe_same_image",
    "probe_random_image",
];

impl Cm3Trainer {
    /// Starts a run in `out`, or resumes the one there (keeping its settings, except the
    /// total step count).
    pub fn open(
        config: Cm3TrainConfig,
        ids: IdSpace,
        out: &Path,
        device: &Device,
    ) -> racm3_train::Result<Self> {
        let mut run = Run::open(out, config, &LOG_COLUMNS, |stored, asked| Cm3TrainConfig {
            steps: asked.steps,
            ..stored
        })?;
        let config = run.settings().clone();
        let vars = VarMap::new();
        let model = Cm3Model::new(
            &config.model,
            seeded_var_builder(&vars, config.seed, DType::F32, device),
        )?;
        let adam = AdamWConfig {
            lr: config.lr,
            beta1: 0.9,
            // nanoGPT's beta2 for small models.
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: config.weight_decay,
        };
        run.train_vars(MODEL, &vars, adam)?;
        Ok(Self {
            run,
            ids,
            device: device.clone(),
            model,
            probe: None,
        })
    }

    /// Measures `probe` at every checkpoint, into the loss log's probe columns (NaN
    /// without one).
    pub fn set_probe(&mut self, probe: CopyProbe) {
        self.probe = Some(probe);
    }

    /// Steps done so far.
    pub fn step(&self) -> usize {
        self.run.step()
    }

    /// The run's settings.
    pub fn config(&self) -> &Cm3TrainConfig {
        self.run.settings()
    }

    /// The model being trained.
    pub fn model(&self) -> &Cm3Model {
        &self.model
    }

    /// Token ids (b, longest) padded with `<pad>`, and roles with padding ignored.
    fn batch(&self, sequences: &[&Sequence]) -> candle_core::Result<(Tensor, Vec<Vec<Role>>)> {
        let longest = sequences.iter().map(|s| s.tokens.len()).max().unwrap_or(1);
        let pad = self.ids.special(Special::Pad);
        let mut flat = Vec::with_capacity(sequences.len() * longest);
        let mut roles = Vec::with_capacity(sequences.len());
        for sequence in sequences {
            flat.extend_from_slice(&sequence.tokens);
            flat.extend(std::iter::repeat_n(pad, longest - sequence.tokens.len()));
            let mut row = sequence.roles.clone();
            row.resize(longest, Role::Ignored);
            roles.push(row);
        }
        Ok((
            Tensor::from_vec(flat, (sequences.len(), longest), &self.device)?,
            roles,
        ))
    }

    /// The sequences of step `step`: a permutation drawn from the seed and the epoch, so a
    /// resumed run sees the batches it would have seen.
    fn step_sequences<'a>(&self, data: &'a [Sequence], step: usize) -> Vec<&'a Sequence> {
        let per_step = self.config().batch_size * self.config().grad_accum;
        let per_epoch = (data.len() / per_step).max(1);
        let epoch = step / per_epoch;
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            self.config().seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9),
        ));
        let start = (step % per_epoch) * per_step;
        (0..per_step)
            .map(|i| &data[order[(start + i) % data.len()]])
            .collect()
    }

    /// One optimizer step over `batch_size · grad_accum` sequences of `data`.
    pub fn train_step(&mut self, data: &[Sequence]) -> racm3_train::Result<StepReport> {
        let sequences = self.step_sequences(data, self.step());
        let micro_batches = sequences.chunks(self.config().batch_size).count();
        let mut summed: Option<candle_core::backprop::GradStore> = None;
        let (mut main, mut retrieved, mut tokens) = (0.0, 0.0, 0);
        for micro in sequences.chunks(self.config().batch_size) {
            let (ids, roles) = self.batch(micro)?;
            let output = self.model.forward_output(&ids, None)?;
            let loss = rag_loss(&output, &ids, &roles, self.config().alpha)?;
            if !loss.main.is_finite() {
                return Err(racm3_train::Error::Tensor(candle_core::Error::msg(
                    format!(
                        "loss became {} at step {}; lower the learning rate and resume",
                        loss.main,
                        self.step() + 1
                    ),
                )));
            }
            main += loss.main as f64 / micro_batches as f64;
            retrieved += loss.retrieved as f64 / micro_batches as f64;
            tokens += roles
                .iter()
                .flat_map(|row| &row[1..])
                .filter(|r| **r != Role::Ignored)
                .count();
            let grads = (loss.total / micro_batches as f64)?.backward()?;
            summed = Some(match summed {
                None => grads,
                Some(mut total) => {
                    for var in self.run.vars(0).all_vars() {
                        if let Some(grad) = grads.get(var.as_tensor()) {
                            let sum = match total.get(var.as_tensor()) {
                                Some(previous) => (previous + grad)?,
                                None => grad.clone(),
                            };
                            total.insert(var.as_tensor(), sum);
                        }
                    }
                    total
                }
            });
        }
        let mut grads =
            summed.ok_or_else(|| candle_core::Error::msg("no sequences to train on"))?;
        clip_grad_norm(&mut grads, self.run.vars(0), 1.0)?;
        let lr = warmup_cosine(
            self.step(),
            self.config().warmup,
            self.config().steps,
            self.config().lr,
            0.1,
        );
        self.run.update(0, &grads, lr)?;
        self.run.advance();
        Ok(StepReport {
            step: self.step(),
            main,
            retrieved,
            tokens,
        })
    }

    /// Mean `L_main` over `data`, in batches, without gradients.
    pub fn validation_loss(&self, data: &[Sequence]) -> racm3_train::Result<f64> {
        let mut total = 0.0;
        let mut batches = 0;
        for chunk in data.chunks(self.config().batch_size) {
            let refs: Vec<&Sequence> = chunk.iter().collect();
            let (ids, roles) = self.batch(&refs)?;
            let output = self.model.forward_output(&ids, None)?;
            total += rag_loss(&output, &ids, &roles, self.config().alpha)?.main as f64;
            batches += 1;
        }
        Ok(total / batches.max(1) as f64)
    }

    /// Trains until step `stop` (at most `config.steps`), validating and checkpointing
    /// every `checkpoint_every` steps and at the end; `on_step` sees every step.
    pub fn train_until(
        &mut self,
        stop: usize,
        train: &[Sequence],
        val: &[Sequence],
        mut on_step: impl FnMut(&StepReport),
    ) -> racm3_train::Result<()> {
        let stop = stop.min(self.config().steps);
        while self.step() < stop {
            let report = self.train_step(train)?;
            on_step(&report);
            let checkpoint = self
                .run
                .checkpoint_due(self.config().checkpoint_every, stop);
            let measure = |data: &[Sequence]| -> racm3_train::Result<f64> {
                if checkpoint && !data.is_empty() {
                    self.validation_loss(data)
                } else {
                    Ok(f64::NAN)
                }
            };
            let val_main = measure(val)?;
            let probe = self.probe.as_ref();
            let same = measure(probe.map_or(&[][..], |p| &p.same_entity))?;
            let random = measure(probe.map_or(&[][..], |p| &p.random))?;
            self.run
                .log(&[report.main, report.retrieved, val_main, same, random])?;
            if checkpoint {
                self.save()?;
            }
        }
        Ok(())
    }

    /// Writes a checkpoint and refreshes the ready-to-use model and loss curve in `out`.
    pub fn save(&self) -> racm3_train::Result<()> {
        self.run.save(&self.config().model)
    }
}
