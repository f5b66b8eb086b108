//! Training a VQGAN: L1 (or L2) reconstruction, the VQ losses, and a PatchGAN hinge loss switched on
//! after a warm-up (Esser et al., 2021, section 3.2), with dead codes restarted from encoder
//! outputs so the codebook stays in use.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::VarMap;
use image::RgbImage;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::discriminator::{Discriminator, DiscriminatorConfig};
use super::{CONFIG_FILE, Vqgan, VqganConfig, WEIGHTS_FILE, images_to_tensor};
use crate::error::{Error, Result};
use racm3_train::{AdamWConfig, MODEL, Run, load_vars_where, seeded_var_builder, warmup_cosine};

/// Every setting of a VQGAN run; stored in each checkpoint so a resumed run is the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqTrainConfig {
    /// The model's shape.
    pub model: VqganConfig,
    /// Optimizer steps in all.
    pub steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate (warm-up, then cosine decay to a tenth).
    pub lr: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Weight of the commitment loss (VQ-VAE's beta).
    pub beta: f64,
    /// Step at which the discriminator starts: VQGAN first learns to reconstruct.
    pub disc_start: usize,
    /// Steps the discriminator trains alone, from `disc_start`, before its loss reaches the
    /// model: a fresh discriminator's gradient is noise that costs a trained decoder
    /// sharpness it had (BENCHMARKS.md, "the PatchGAN with taming's adaptive weight").
    #[serde(default)]
    pub disc_lead: usize,
    /// Factor on the generator's adversarial loss after its adaptive weight (taming's
    /// `discriminator_weight`): the adversarial gradient at the decoder's last layer is scaled
    /// to this fraction of the reconstruction loss's there.
    pub disc_weight: f64,
    /// Codes unused over this many steps are restarted from encoder outputs.
    pub restart_every: usize,
    /// Steps between loss-log rows.
    pub log_every: usize,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Seed of initialization and batch sampling.
    pub seed: u64,
    /// A trained model folder (`config.json`, `model.safetensors`) whose weights a new run
    /// starts from instead of fresh ones; its shape must be `model`, except that a decoder
    /// of another width (`decoder_ch`) starts fresh.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Trains the decoder alone on the codes of the frozen encoder and codebook: every
    /// image keeps its tokens, so generators trained on them stay valid, while the
    /// reconstructions sharpen.
    #[serde(default)]
    pub decoder_only: bool,
    /// The reconstruction loss the model is trained on.
    #[serde(default)]
    pub reconstruction: ReconstructionLoss,
}

/// The pixel loss between an image and its reconstruction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconstructionLoss {
    /// Mean absolute error, as taming-transformers: sharper edges.
    #[default]
    L1,
    /// Mean squared error: what PSNR measures, so the loss to fine-tune for it.
    L2,
}

impl std::str::FromStr for ReconstructionLoss {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "l1" => Ok(Self::L1),
            "l2" => Ok(Self::L2),
            other => Err(format!(
                "unknown reconstruction loss '{other}': expected l1 or l2"
            )),
        }
    }
}

impl VqTrainConfig {
    /// Defaults for a model of the given shape.
    pub fn new(model: VqganConfig) -> Self {
        Self {
            model,
            steps: 3000,
            batch_size: 16,
            // taming: 4.5e-6 per image of batch; 16 images is about 7e-5. Higher suits the
            // small model and short run here.
            lr: 4e-4,
            warmup: 100,
            beta: 0.25,
            disc_start: 2000,
            disc_lead: 0,
            // taming's VQGAN configs.
            disc_weight: 0.8,
            restart_every: 100,
            log_every: 10,
            checkpoint_every: 250,
            seed: 0,
            init: None,
            decoder_only: false,
            reconstruction: ReconstructionLoss::L1,
        }
    }
}

/// What a logged step reports.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// Steps done.
    pub step: usize,
    /// L1 reconstruction loss of the batch.
    pub l1: f64,
    /// PSNR of the batch, dB.
    pub psnr: f64,
    /// Codebook plus weighted commitment loss.
    pub vq: f64,
    /// Discriminator hinge loss (0 before it starts).
    pub disc: f64,
    /// The adversarial loss's weight in the decoder's loss this step, adaptive weight times
    /// `disc_weight` (0 before the discriminator starts).
    pub gan_weight: f64,
}

/// Reconstruction quality and codebook use over a set of images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// Images measured.
    pub images: usize,
    /// Mean over images of the PSNR on 8-bit pixels, dB.
    pub psnr: f64,
    /// Share of the codebook used at least once.
    pub usage: f64,
    /// exp(entropy) of the code distribution: the effective number of codes.
    pub perplexity: f64,
}

/// Reconstructs `images` and measures PSNR and codebook use.
pub fn evaluate(
    model: &Vqgan,
    images: &[RgbImage],
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation> {
    let resolution = model.config().resolution as u32;
    let mut counts = vec![0u64; model.config().n_embed];
    let mut psnr_sum = 0.0;
    for chunk in images.chunks(batch_size.max(1)) {
        let xs = images_to_tensor(chunk, resolution, device)?;
        let quantized = model.encode(&xs)?;
        let reconstruction = model.decode(&quantized.z_q)?.clamp(-1f32, 1f32)?;
        // Round to 8-bit levels, as a saved image would be.
        let to_pixels = |t: &Tensor| ((t + 1.0)? * 127.5)?.round();
        let squared = (to_pixels(&xs)? - to_pixels(&reconstruction)?)?.sqr()?;
        let mse: Vec<f32> = squared.flatten_from(1)?.mean(1)?.to_vec1()?;
        psnr_sum += mse
            .iter()
            .map(|&m| 10.0 * (255.0f64 * 255.0 / f64::from(m).max(1e-10)).log10())
            .sum::<f64>();
        for code in quantized.indices.flatten_all()?.to_vec1::<u32>()? {
            counts[code as usize] += 1;
        }
    }
    Ok(codebook_stats(&counts, images.len(), psnr_sum))
}

fn codebook_stats(counts: &[u64], images: usize, psnr_sum: f64) -> Evaluation {
    let total: u64 = counts.iter().sum();
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    Evaluation {
        images,
        psnr: psnr_sum / images.max(1) as f64,
        usage: counts.iter().filter(|&&c| c > 0).count() as f64 / counts.len() as f64,
        perplexity: entropy.exp(),
    }
}

/// A VQGAN training run writing to a folder: `config.json` and `model.safetensors` (the
/// latest weights, ready to use), `loss.csv`, `loss.png`, and resumable checkpoints in
/// `train/`.
pub struct VqTrainer {
    run: Run<VqTrainConfig>,
    device: Device,
    model: Vqgan,
    model_vars: VarMap,
    discriminator: Discriminator,
    code_counts: Vec<u64>,
}

/// The run's second set of variables, with its own optimizer.
const DISCRIMINATOR: &str = "discriminator";

const LOG_COLUMNS: [&str; 5] = ["l1", "psnr", "vq", "disc", "gan_weight"];

/// The decoder's last layer, whose gradients set the adversarial loss's weight.
const LAST_LAYER: &str = "decoder.conv_out.weight";

impl VqTrainer {
    /// Starts a run in `out`, or resumes the one there. A resumed run keeps its stored
    /// settings except the total step count, which may be raised to train longer.
    pub fn open(config: VqTrainConfig, out: &Path, device: &Device) -> Result<Self> {
        let mut run = Run::open(out, config, &LOG_COLUMNS, |stored, asked| VqTrainConfig {
            steps: asked.steps,
            ..stored
        })?;
        let config = run.settings().clone();
        config.model.validate().map_err(|message| Error::Config {
            path: out.join(CONFIG_FILE),
            message,
        })?;
        if !(config.disc_weight.is_finite() && config.disc_weight >= 0.0) {
            return Err(Error::Config {
                path: out.join(CONFIG_FILE),
                message: format!(
                    "disc_weight {} is not a finite weight of 0 or more",
                    config.disc_weight
                ),
            });
        }
        let generator_vars = VarMap::new();
        let discriminator_vars = VarMap::new();
        let model = Vqgan::new(
            &config.model,
            seeded_var_builder(&generator_vars, config.seed, DType::F32, device),
        )?;
        let discriminator = Discriminator::new(
            &DiscriminatorConfig::default(),
            seeded_var_builder(
                &discriminator_vars,
                config.seed.wrapping_add(1),
                DType::F32,
                device,
            ),
        )?;
        // taming's Adam betas (0.5, 0.9): a short memory steadies the GAN game.
        let adam = AdamWConfig {
            lr: config.lr,
            beta1: 0.5,
            beta2: 0.9,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        run.train_vars(MODEL, &generator_vars, adam)?;
        run.train_vars(DISCRIMINATOR, &discriminator_vars, adam)?;
        // A fresh run may start from a trained model; a resumed one has its checkpoint.
        if let Some(init) = config.init.as_ref().filter(|_| !run.is_resumed()) {
            let shape = super::read_config(init)?;
            let beside_decoder = |model: &VqganConfig| VqganConfig {
                decoder_ch: None,
                ..model.clone()
            };
            if beside_decoder(&shape) != beside_decoder(&config.model) {
                return Err(Error::Config {
                    path: init.join(CONFIG_FILE),
                    message: format!(
                        "the model to start from has another shape than the run: {shape:?} against {:?}",
                        config.model
                    ),
                });
            }
            // A decoder of another width starts afresh on the trained encoder.
            let keep_decoder = shape.decoder_base() == config.model.decoder_base();
            load_vars_where(&generator_vars, &init.join(WEIGHTS_FILE), |name| {
                keep_decoder || !name.starts_with("decoder.")
            })?;
        }
        Ok(Self {
            code_counts: vec![0; config.model.n_embed],
            run,
            device: device.clone(),
            model,
            model_vars: generator_vars,
            discriminator,
        })
    }

    /// Steps done so far (more than 0 for a resumed run).
    pub fn step(&self) -> usize {
        self.run.step()
    }

    /// The run's settings.
    pub fn config(&self) -> &VqTrainConfig {
        self.run.settings()
    }

    /// The model being trained.
    pub fn model(&self) -> &Vqgan {
        &self.model
    }

    /// Trains until `config.steps`, calling `on_log` at every logged step. Checkpoints
    /// come every `checkpoint_every` steps and at the end. A NaN loss stops the run with
    /// an error naming the step; the last checkpoint stays as it was.
    pub fn train(&mut self, images: &Tensor, on_log: impl FnMut(&StepReport)) -> Result<()> {
        self.train_until(images, self.config().steps, on_log)
    }

    /// Trains until step `until` (at most `config.steps`), as [`VqTrainer::train`]; the
    /// learning-rate schedule still spans the whole run, so stopping here and resuming later
    /// gives the same weights as never stopping.
    pub fn train_until(
        &mut self,
        images: &Tensor,
        until: usize,
        mut on_log: impl FnMut(&StepReport),
    ) -> Result<()> {
        let until = until.min(self.config().steps);
        let n_images = images.dim(0)?;
        if n_images == 0 {
            return Err(Error::Config {
                path: self.run.dir().to_owned(),
                message: "no training images".into(),
            });
        }
        while self.step() < until {
            // A generator per step makes batches independent of where a run resumed.
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                self.config().seed ^ (self.step() as u64).wrapping_mul(0x9e37_79b9),
            );
            let picks: Vec<u32> = (0..self.config().batch_size)
                .map(|_| rng.random_range(0..n_images as u32))
                .collect();
            let batch = images.index_select(&Tensor::new(picks.as_slice(), &self.device)?, 0)?;
            let report = self.train_step(&batch)?;
            self.run.advance();
            let step = self.step();
            if !self.config().decoder_only && step.is_multiple_of(self.config().restart_every) {
                self.restart_dead_codes(&batch, &mut rng)?;
            }
            if step.is_multiple_of(self.config().log_every) || step == self.config().steps {
                self.run.log(&[
                    report.l1,
                    report.psnr,
                    report.vq,
                    report.disc,
                    report.gan_weight,
                ])?;
                on_log(&report);
            }
            if self
                .run
                .checkpoint_due(self.config().checkpoint_every, until)
            {
                self.save()?;
            }
        }
        Ok(())
    }

    fn train_step(&mut self, xs: &Tensor) -> Result<StepReport> {
        let step = self.step();
        let lr = warmup_cosine(
            step,
            self.config().warmup,
            self.config().steps,
            self.config().lr,
            0.1,
        );
        let (reconstruction, quantized) = if self.config().decoder_only {
            let quantized = self.model.encode(xs)?;
            (self.model.decode(&quantized.z_q.detach())?, quantized)
        } else {
            self.model.forward(xs)?
        };
        let error = (xs - &reconstruction)?;
        let l1 = error.abs()?.mean_all()?;
        let squared = error.sqr()?.mean_all()?;
        let pixel_loss = match self.config().reconstruction {
            ReconstructionLoss::L1 => &l1,
            ReconstructionLoss::L2 => &squared,
        };
        let vq = (&quantized.codebook_loss + (&quantized.commitment_loss * self.config().beta)?)?;
        let discriminating = step >= self.config().disc_start;
        let adversarial = step
            >= self
                .config()
                .disc_start
                .saturating_add(self.config().disc_lead);
        // With the encoder and codebook frozen the VQ losses are reported, not trained.
        let loss = if self.config().decoder_only {
            pixel_loss.clone()
        } else {
            (pixel_loss + &vq)?
        };
        let loss_value = f64::from(loss.to_scalar::<f32>()?);
        if !loss_value.is_finite() {
            return Err(self.diverged(loss_value, step));
        }
        let mut gan_weight = 0.0;
        let mut grads = loss.backward()?;
        if adversarial {
            let generator_loss = self
                .discriminator
                .forward(&reconstruction)?
                .mean_all()?
                .neg()?;
            let generator_value = f64::from(generator_loss.to_scalar::<f32>()?);
            if !generator_value.is_finite() {
                return Err(self.diverged(generator_value, step));
            }
            let adversarial_grads = generator_loss.backward()?;
            gan_weight =
                self.adaptive_weight(&grads, &adversarial_grads)? * self.config().disc_weight;
            for var in self.model_vars.all_vars() {
                if let Some(push) = adversarial_grads.get(&var) {
                    let push = (push * gan_weight)?;
                    let sum = match grads.get(&var) {
                        Some(pull) => (pull + push)?,
                        None => push,
                    };
                    grads.insert(&var, sum);
                }
            }
        }
        self.run.update(0, &grads, lr)?;

        let mut disc_value = 0.0;
        if discriminating {
            let fake = reconstruction.detach();
            let real_score = self.discriminator.forward(xs)?;
            let fake_score = self.discriminator.forward(&fake)?;
            // Hinge loss, halved as taming's.
            let disc_loss = (((1.0 - real_score)?.relu()?.mean_all()?
                + (1.0 + fake_score)?.relu()?.mean_all()?)?
                * 0.5)?;
            disc_value = f64::from(disc_loss.to_scalar::<f32>()?);
            self.run.update(1, &disc_loss.backward()?, lr)?;
        }
        for code in quantized.indices.flatten_all()?.to_vec1::<u32>()? {
            self.code_counts[code as usize] += 1;
        }
        let mse = f64::from(squared.to_scalar::<f32>()?);
        Ok(StepReport {
            step: step + 1,
            l1: f64::from(l1.to_scalar::<f32>()?),
            // Pixels span 2 in [-1, 1]: PSNR = 10 log10(2^2 / mse).
            psnr: 10.0 * (4.0 / mse.max(1e-10)).log10(),
            vq: f64::from(vq.to_scalar::<f32>()?),
            disc: disc_value,
            gan_weight,
        })
    }

    fn diverged(&self, value: f64, step: usize) -> Error {
        Error::Config {
            path: self.run.dir().to_owned(),
            message: format!(
                "loss became {value} at step {step}; training stopped and the last checkpoint is kept"
            ),
        }
    }

    /// taming's adaptive weight: the norm of the reconstruction loss's gradient at the
    /// decoder's last layer over the adversarial loss's, clamped to [0, 1e4], so that the
    /// discriminator pushes the decoder as hard as reconstruction pulls it whatever the scale
    /// of its logits.
    fn adaptive_weight(
        &self,
        reconstruction: &candle_core::backprop::GradStore,
        adversarial: &candle_core::backprop::GradStore,
    ) -> Result<f64> {
        let vars = self.model_vars.data().lock().map_err(|_| Error::Config {
            path: self.run.dir().to_owned(),
            message: "the model's variables are poisoned by a panic".into(),
        })?;
        let last = vars.get(LAST_LAYER).ok_or_else(|| Error::Config {
            path: self.run.dir().to_owned(),
            message: format!("the model has no {LAST_LAYER}"),
        })?;
        let norm = |grads: &candle_core::backprop::GradStore| -> Result<f64> {
            Ok(match grads.get(last.as_tensor()) {
                Some(grad) => f64::from(grad.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?),
                None => 0.0,
            })
        };
        Ok((norm(reconstruction)? / (norm(adversarial)? + 1e-4)).clamp(0.0, 1e4))
    }

    /// Replaces every code unused since the last restart with an encoder output from the
    /// batch (Dhariwal et al., Jukebox, 2020): a dead code gets a second chance where the
    /// data actually is.
    fn restart_dead_codes(&mut self, xs: &Tensor, rng: &mut rand::rngs::StdRng) -> Result<()> {
        let dead: Vec<usize> = (0..self.code_counts.len())
            .filter(|&i| self.code_counts[i] == 0)
            .collect();
        self.code_counts.iter_mut().for_each(|c| *c = 0);
        if dead.is_empty() {
            return Ok(());
        }
        let latents = self.model.latents(xs)?.detach(); // (b, d, h, w)
        let dim = latents.dim(1)?;
        let flat: Vec<Vec<f32>> = latents
            .permute((0, 2, 3, 1))?
            .reshape(((), dim))?
            .to_vec2()?;
        let codebook: &Var = &self.codebook_var()?;
        let mut rows: Vec<Vec<f32>> = codebook.as_tensor().to_vec2()?;
        for &code in &dead {
            rows[code] = flat[rng.random_range(0..flat.len())].clone();
        }
        let n_embed = rows.len();
        let updated = Tensor::from_vec(rows.concat(), (n_embed, dim), &self.device)?;
        codebook.set(&updated)?;
        Ok(())
    }

    fn codebook_var(&self) -> Result<Var> {
        self.run
            .var(0, "quantize.embedding.weight")?
            .ok_or_else(|| Error::Config {
                path: self.run.dir().to_owned(),
                message: "the model has no quantize.embedding.weight".into(),
            })
    }

    /// Writes a checkpoint and refreshes the ready-to-use model and loss curve in `out`.
    pub fn save(&self) -> Result<()> {
        Ok(self.run.save(&self.config().model)?)
    }
}
