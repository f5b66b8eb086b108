//! Training a small CLIP from scratch, contrastively: for a batch of image-caption pairs,
//! each image must pick its caption among the batch's captions and each caption its image
//! (the symmetric InfoNCE loss of Radford et al., 2021), with a learnable temperature.
//!
//! Where an entity is drawn in several renditions, a batch can hold several of them
//! (`renditions_per_entity`), and then every pair of one entity, or of one caption, is a
//! positive of every other: the loss is multi-positive InfoNCE (the log of the softmax
//! mass on all positives; Khosla et al., 2020, "Supervised Contrastive Learning", the
//! L_out form), caption to image and image to caption, plus an image-to-image term
//! (`image_image_weight`) in which each drawing must find the entity's other renditions
//! among the batch's drawings. That is the invariance a memory queried with a drawing of
//! an unseen entity needs: its other renditions should be its nearest neighbours.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarMap;
use image::RgbImage;
use racm3_tokenize::{TextTokenizer, TrainOptions};
use racm3_train::{AdamWConfig, MODEL, Run, clip_grad_norm, seeded_var_builder, warmup_cosine};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::clip::{ClipModel, Config, l2_normalize};
use crate::encoder::{ClipEncoder, ClipTokenizer, END_TOKEN, START_TOKEN};
use crate::error::{Error, Result};
use crate::preprocess::pixel_values;

/// An image with its caption, and what it shows.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The caption.
    pub text: String,
    /// The image, any size.
    pub image: RgbImage,
    /// The entity the image shows; renditions of one entity share it. Training treats
    /// pairs of one entity as positives of each other.
    pub entity: String,
    /// Which rendition (vendor, style) drew the image.
    pub rendition: String,
}

/// Every setting of a CLIP training run, stored with its checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTrainConfig {
    /// The model preset ([`Config::preset`]).
    pub preset: String,
    /// BPE vocabulary size of the tokenizer trained on the captions.
    pub vocab_size: usize,
    /// Optimizer steps in all.
    pub steps: usize,
    /// Pairs per batch; every other caption of the batch is a negative.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up.
    pub warmup: usize,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seeds the weights and the batches.
    pub seed: u64,
    /// Steps between checkpoints (and validation).
    pub checkpoint_every: usize,
    /// Pairs of one entity drawn into a batch together; 1 is CLIP's batch of distinct
    /// captions with one positive each.
    #[serde(default = "one")]
    pub renditions_per_entity: usize,
    /// Weight of the image-to-image loss between renditions (used above 1 rendition).
    #[serde(default)]
    pub image_image_weight: f64,
}

fn one() -> usize {
    1
}

impl Default for ClipTrainConfig {
    /// Settings that train `emoji-small` on two cores in about half an hour.
    fn default() -> Self {
        Self {
            preset: "emoji-small".into(),
            vocab_size: 4096,
            steps: 1500,
            batch_size: 128,
            lr: 1e-3,
            warmup: 100,
            // OpenAI trained CLIP with weight decay 0.2.
            weight_decay: 0.2,
            seed: 0,
            checkpoint_every: 250,
            renditions_per_entity: 1,
            image_image_weight: 0.0,
        }
    }
}

/// One logged step.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// The step just taken (from 1).
    pub step: usize,
    /// The contrastive loss.
    pub loss: f64,
    /// The learned softmax temperature, 1 / exp(logit_scale).
    pub temperature: f64,
    /// In-batch accuracy of image-to-text matching.
    pub accuracy: f64,
}

/// The indices of `pairs` grouped by entity, entities in order of first appearance.
fn group_by_entity(pairs: &[Pair]) -> Vec<Vec<usize>> {
    let mut slot = std::collections::HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (index, pair) in pairs.iter().enumerate() {
        let group = *slot.entry(pair.entity.as_str()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[group].push(index);
    }
    groups
}

/// The mean over rows that have a positive of −log(softmax mass on the row's positives):
/// InfoNCE when each row has one positive, its multi-positive form otherwise.
fn multi_positive_nll(logits: &Tensor, positives: &Tensor) -> candle_core::Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    // Non-positives pushed far down, so the log-sum-exp below runs over positives only.
    let masked = (log_probs + ((positives - 1.0)? * 1e4)?)?;
    let top = masked.max_keepdim(D::Minus1)?.detach();
    let mass = masked
        .broadcast_sub(&top)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&top)?
        .squeeze(D::Minus1)?;
    // Rows with no positive (a drawing whose entity has no other rendition in the batch)
    // contribute nothing.
    let has_positive = positives.max_keepdim(D::Minus1)?.squeeze(D::Minus1)?;
    let rows = has_positive.sum_all()?.to_scalar::<f32>()?.max(1.0);
    (mass * has_positive)?.sum_all()?.neg()? / f64::from(rows)
}

/// A CLIP training run in a folder: `config.json`, `model.safetensors` and
/// `tokenizer.json` (ready for [`ClipEncoder::load`]), `loss.csv`, `loss.png`, and
/// resumable checkpoints in `train/`.
pub struct ClipTrainer {
    run: Run<ClipTrainConfig>,
    device: Device,
    encoder: ClipEncoder,
    /// Framed token ids of every training caption.
    token_rows: Vec<Vec<u32>>,
    /// Every training image, preprocessed: (n, 3, size, size).
    pixels: Tensor,
    captions: Vec<String>,
    /// The entity of every training pair.
    entities: Vec<String>,
    /// The pairs of each entity, entities in order of first appearance.
    by_entity: Vec<Vec<usize>>,
}

const LOG_COLUMNS: [&str; 3] = ["loss", "temperature", "accuracy"];

impl ClipTrainer {
    /// Starts a run in `out` on `pairs`, or resumes the one there (keeping its tokenizer
    /// and settings, except the total step count, which may be raised).
    pub fn open(
        config: ClipTrainConfig,
        pairs: &[Pair],
        out: &Path,
        device: &Device,
    ) -> Result<Self> {
        if pairs.len() < 2 {
            return Err(Error::BadInput(format!(
                "contrastive training needs at least 2 image-caption pairs, got {}",
                pairs.len()
            )));
        }
        let mut run = Run::open(out, config, &LOG_COLUMNS, |stored, asked| ClipTrainConfig {
            steps: asked.steps,
            ..stored
        })?;
        let config = run.settings().clone();
        let tokenizer_path = out.join("tokenizer.json");
        let text = if run.is_resumed() {
            TextTokenizer::from_file(&tokenizer_path)
        } else {
            let options = TrainOptions {
                vocab_size: config.vocab_size,
                lowercase: true,
                ..TrainOptions::default()
            };
            TextTokenizer::train(pairs.iter().map(|pair| pair.text.as_str()), &options).and_then(
                |mut text| {
                    text.add_special_tokens(&[START_TOKEN, END_TOKEN])?;
                    Ok(text)
                },
            )
        }
        .map_err(|err| Error::Tokenizer(err.to_string()))?;
        let vocab = text.vocab_size() as usize;
        let start = text.token_to_id(START_TOKEN).unwrap_or_default();
        let end = text.token_to_id(END_TOKEN).unwrap_or_default();
        let model_config = Config::preset(&config.preset, vocab, start, end).ok_or_else(|| {
            Error::BadInput(format!(
                "unknown CLIP preset '{}': expected emoji-small or tiny",
                config.preset
            ))
        })?;
        let vars = VarMap::new();
        let model = ClipModel::new(
            &model_config,
            seeded_var_builder(&vars, config.seed, DType::F32, device),
        )?;
        let tokenizer = ClipTokenizer::new(text.clone(), &model_config)?;
        let adam = AdamWConfig {
            lr: config.lr,
            beta1: 0.9,
            // CLIP's beta2 for transformer towers (Radford et al., 2021, appendix).
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: config.weight_decay,
        };
        run.train_vars(MODEL, &vars, adam)?;
        if !run.is_resumed() {
            text.save(&tokenizer_path)
                .map_err(|err| Error::Tokenizer(err.to_string()))?;
        }
        let token_rows = pairs
            .iter()
            .map(|pair| tokenizer.encode(&pair.text))
            .collect::<Result<Vec<_>>>()?;
        let images: Vec<RgbImage> = pairs.iter().map(|pair| pair.image.clone()).collect();
        let pixels = pixel_values(
            &images,
            model_config.vision_config.image_size as u32,
            device,
        )?;
        let encoder = ClipEncoder::new(model, tokenizer, device.clone(), out.display().to_string());
        Ok(Self {
            run,
            device: device.clone(),
            encoder,
            token_rows,
            pixels,
            captions: pairs.iter().map(|pair| pair.text.clone()).collect(),
            entities: pairs.iter().map(|pair| pair.entity.clone()).collect(),
            by_entity: group_by_entity(pairs),
        })
    }

    /// Steps done so far.
    pub fn step(&self) -> usize {
        self.run.step()
    }

    /// The run's settings.
    pub fn config(&self) -> &ClipTrainConfig {
        self.run.settings()
    }

    /// The model being trained, as an encoder.
    pub fn encoder(&self) -> &ClipEncoder {
        &self.encoder
    }

    /// The batch of step `step`, drawn from the step number so a resumed run sees the
    /// batches it would have seen. With one rendition per entity: distinct captions only,
    /// since two pairs that share a caption would be each other's false negatives. With
    /// more: whole entities, up to `renditions_per_entity` pairs each.
    fn batch_indices(&self, step: usize) -> Vec<usize> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            self.config().seed ^ (step as u64).wrapping_mul(0x9e37_79b9),
        );
        let batch_size = self.config().batch_size;
        let per_entity = self.config().renditions_per_entity;
        if per_entity <= 1 {
            let mut order: Vec<usize> = (0..self.captions.len()).collect();
            order.shuffle(&mut rng);
            let mut seen = std::collections::HashSet::new();
            return order
                .into_iter()
                .filter(|&index| seen.insert(self.captions[index].as_str()))
                .take(batch_size)
                .collect();
        }
        let mut entities: Vec<&Vec<usize>> = self.by_entity.iter().collect();
        entities.shuffle(&mut rng);
        let mut batch = Vec::with_capacity(batch_size);
        for members in entities {
            let mut members = members.clone();
            members.shuffle(&mut rng);
            let room = batch_size - batch.len();
            batch.extend(members.into_iter().take(per_entity.min(room)));
            if batch.len() == batch_size {
                break;
            }
        }
        batch
    }

    /// (b, b) of 1 where pairs `i` and `j` of the batch are positives: one entity, or one
    /// caption. Only the diagonal with one rendition per entity, as CLIP has it.
    fn positives(&self, indices: &[usize]) -> Result<Tensor> {
        let one_each = self.config().renditions_per_entity <= 1;
        let mask: Vec<f32> = indices
            .iter()
            .flat_map(|&i| {
                indices.iter().map(move |&j| {
                    let same = i == j
                        || (!one_each
                            && (self.entities[i] == self.entities[j]
                                || self.captions[i] == self.captions[j]));
                    f32::from(u8::from(same))
                })
            })
            .collect();
        Ok(Tensor::from_vec(
            mask,
            (indices.len(), indices.len()),
            &self.device,
        )?)
    }

    /// One optimizer step on the batch of the current step.
    fn train_step(&mut self) -> Result<StepReport> {
        let indices = self.batch_indices(self.step());
        let b_sz = indices.len();
        let rows: Vec<Vec<u32>> = indices
            .iter()
            .map(|&index| self.token_rows[index].clone())
            .collect();
        let ids = self.encoder.tokenizer().batch(&rows, &self.device)?;
        let index_tensor = Tensor::from_vec(
            indices.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            b_sz,
            &self.device,
        )?;
        let pixels = self.pixels.index_select(&index_tensor, 0)?;
        let model = self.encoder.model();
        let image_embeds = l2_normalize(&model.image_features(&pixels)?)?;
        let text_embeds = l2_normalize(&model.text_features(&ids)?)?;
        let scale = model.logit_scale().exp()?;
        // (b, b): image i against caption j.
        let logits = image_embeds
            .matmul(&text_embeds.t()?)?
            .broadcast_mul(&scale)?;
        let positives = self.positives(&indices)?;
        let mut loss = ((multi_positive_nll(&logits, &positives)?
            + multi_positive_nll(&logits.t()?, &positives)?)?
            / 2.0)?;
        let weight = self.config().image_image_weight;
        if self.config().renditions_per_entity > 1 && weight > 0.0 {
            // (b, b): drawing i against drawing j, never itself.
            let eye = Tensor::eye(b_sz, DType::F32, &self.device)?;
            let images = image_embeds
                .matmul(&image_embeds.t()?)?
                .broadcast_mul(&scale)?
                .broadcast_sub(&(&eye * 1e4)?)?;
            let others = (&positives - &eye)?;
            loss = (loss + (multi_positive_nll(&images, &others)? * weight)?)?;
        }
        let loss_value = loss.to_scalar::<f32>()? as f64;
        if !loss_value.is_finite() {
            return Err(Error::BadInput(format!(
                "loss became {loss_value} at step {}; lower the learning rate and resume",
                self.step() + 1
            )));
        }
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, self.run.vars(0), 1.0)?;
        // Cosine decay to zero, as CLIP was trained.
        let lr = warmup_cosine(
            self.step(),
            self.config().warmup,
            self.config().steps,
            self.config().lr,
            0.0,
        );
        self.run.update(0, &grads, lr)?;
        self.clamp_logit_scale()?;
        // An image's best caption is right when it is a positive.
        let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let positive_rows = positives.to_vec2::<f32>()?;
        let correct = predicted
            .iter()
            .enumerate()
            .filter(|(i, p)| positive_rows[*i][**p as usize] > 0.0)
            .count();
        self.run.advance();
        let scale = self.encoder.model().logit_scale().to_scalar::<f32>()? as f64;
        Ok(StepReport {
            step: self.step(),
            loss: loss_value,
            temperature: (-scale).exp(),
            accuracy: correct as f64 / b_sz as f64,
        })
    }

    /// CLIP caps the logit scale at ln(100) so the softmax never becomes too sharp.
    fn clamp_logit_scale(&self) -> Result<()> {
        if let Some(var) = self.run.var(0, "logit_scale")? {
            let capped = var.as_tensor().clamp(0f32, 100f32.ln())?;
            var.set(&capped)?;
        }
        Ok(())
    }

    /// Trains until `config.steps`, calling `on_step` after each step and checkpointing
    /// every `checkpoint_every` steps and at the end. `on_checkpoint` runs after each save
    /// (to evaluate the saved model).
    pub fn train(
        &mut self,
        on_step: impl FnMut(&StepReport),
        on_checkpoint: impl FnMut(&Self) -> Result<()>,
    ) -> Result<()> {
        self.train_until(self.config().steps, on_step, on_checkpoint)
    }

    /// [`ClipTrainer::train`], stopping after step `stop` with a checkpoint there (the
    /// schedule still spans `config.steps`, so a resumed run continues it exactly).
    pub fn train_until(
        &mut self,
        stop: usize,
        mut on_step: impl FnMut(&StepReport),
        mut on_checkpoint: impl FnMut(&Self) -> Result<()>,
    ) -> Result<()> {
        let stop = stop.min(self.config().steps);
        while self.step() < stop {
            let report = self.train_step()?;
            self.run
                .log(&[report.loss, report.temperature, report.accuracy])?;
            on_step(&report);
            if self
                .run
                .checkpoint_due(self.config().checkpoint_every, stop)
            {
                self.save()?;
                on_checkpoint(self)?;
            }
        }
        Ok(())
    }

    /// Writes a checkpoint and refreshes the ready-to-use model and loss curve in `out`.
    pub fn save(&self) -> Result<()> {
        Ok(self.run.save(self.encoder.model().config())?)
    }
}
