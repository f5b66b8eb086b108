//! Training the image tokenizer and the retriever on datasets by name, as `racm3 vq train`
//! and `racm3 clip train` do: load the data, run the model's trainer with a "training"
//! stage, and measure the saved model on the val split; and fitting a CLIP folder's pixel
//! keys, as `racm3 clip fit-pixel-keys` does. The trainers themselves live in their stages ([`racm3_tokenize::vqgan::VqTrainer`], [`racm3_retrieve::ClipTrainer`]).

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use image::RgbImage;
use racm3_data::{Document, Split};
use racm3_retrieve::train::Pair;
use racm3_retrieve::{
    ClipEncoder, ClipTrainConfig, ClipTrainer, EntityRecall, PIXEL_KEYS_FILE, PixelKeyOptions,
    PixelKeys, Recall, document_text, entity_recall, recall_at_k,
};
use racm3_tokenize::vqgan::{
    Evaluation, VqTrainConfig, VqTrainer, Vqgan, evaluate, images_to_tensor,
};
use serde::Serialize;

use crate::Error;
use crate::error::WithContext;
use crate::progress::{Observer, stage_from};

/// The first image of every document in `split`.
pub fn split_images(documents: &[Document], split: Split) -> Vec<RgbImage> {
    documents
        .iter()
        .filter(|doc| doc.source.split == split)
        .filter_map(|doc| doc.images().next().map(|image| image.pixels.clone()))
        .collect()
}

/// What a VQGAN run did, measured on the val split.
#[derive(Debug, Clone)]
pub struct VqTrained {
    /// The run's settings as it trained (a resumed run keeps its own).
    pub config: VqTrainConfig,
    /// Training images.
    pub images: usize,
    /// The step the run started from.
    pub first_step: usize,
    /// Wall time of the training.
    pub seconds: f64,
    /// The saved model on the val split's images.
    pub val: Evaluation,
}

/// Trains a VQGAN on the train split of `dataset` into the run folder `out` (resuming a run
/// there), then evaluates the saved model on the val split.
pub fn train_vqgan(
    dataset: &str,
    skip_bad: bool,
    config: VqTrainConfig,
    out: &Path,
    device: &Device,
    observer: &dyn Observer,
) -> Result<VqTrained, Error> {
    let loaded = crate::datasets::load(dataset, skip_bad, observer)?;
    let images = split_images(&loaded.documents, Split::Train);
    if images.is_empty() {
        return Err(Error::BadInput(format!("{dataset} has no training images")));
    }
    let mut trainer = VqTrainer::open(config, out, device)
        .context(|| format!("opening the run in {}", out.display()))?;
    let config = trainer.config().clone();
    let tensor = images_to_tensor(&images, config.model.resolution as u32, device)?;
    observer.note(&format!(
        "training on {} images of {dataset}: steps {}..{}, batch {}, run folder {}",
        images.len(),
        trainer.step(),
        config.steps,
        config.batch_size,
        out.display()
    ));
    let first_step = trainer.step();
    let stage = stage_from(observer, "training", config.steps as u64, first_step as u64);
    let started = Instant::now();
    let mut last_step = first_step;
    trainer.train(&tensor, |report| {
        stage.advance((report.step - last_step) as u64);
        last_step = report.step;
        stage.message(&format!("l1 {:.4} psnr {:.1} dB", report.l1, report.psnr));
    })?;
    drop(stage);
    let seconds = started.elapsed().as_secs_f64();
    drop(trainer);
    // The saved model holds plain tensors: the trainer's variables would record every op
    // of the evaluation for a backward pass that never comes (10 GB at batch 64).
    let trained = Vqgan::load(out, device)?;
    let val = evaluate(
        &trained,
        &split_images(&loaded.documents, Split::Val),
        64,
        device,
    )?;
    Ok(VqTrained {
        config,
        images: images.len(),
        first_step,
        seconds,
        val,
    })
}

/// Each document of `split` with an image and a caption, as a pair; at most `limit`,
/// spread evenly over the split.
pub fn pairs_of(documents: &[Document], split: Split, limit: Option<usize>) -> Vec<Pair> {
    let pairs: Vec<Pair> = documents
        .iter()
        .filter(|doc| doc.source.split == split)
        .filter_map(|doc| {
            let image = doc.images().next()?;
            let text = document_text(doc)?;
            Some(Pair {
                text,
                image: image.pixels.clone(),
                entity: doc.source.entity.clone(),
                // Emoji name their vendor; other datasets have one rendition each.
                rendition: doc
                    .source
                    .attributes
                    .get("vendor")
                    .unwrap_or(&doc.source.dataset)
                    .clone(),
            })
        })
        .collect();
    match limit {
        Some(limit) if limit < pairs.len() => {
            let stride = pairs.len() as f64 / limit as f64;
            (0..limit)
                .map(|i| pairs[(i as f64 * stride) as usize].clone())
                .collect()
        }
        _ => pairs,
    }
}

/// How a CLIP retrieves on a set of pairs: image-caption recall, and entity recall across
/// renditions.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClipRecall {
    /// Image-caption recall@1/5/10, both ways.
    #[serde(flatten)]
    pub pairs: Recall,
    /// The same entity from a caption, and from a drawing among the other renditions.
    pub entity: EntityRecall,
}

/// [`ClipRecall`] of `encoder` on `pairs`.
pub fn clip_recall(encoder: &ClipEncoder, pairs: &[Pair]) -> Result<ClipRecall, Error> {
    Ok(ClipRecall {
        pairs: recall_at_k(encoder, pairs)?,
        entity: entity_recall(encoder, pairs)?,
    })
}

/// What a CLIP run did.
#[derive(Debug, Clone)]
pub struct ClipTrained {
    /// The run's settings as it trained.
    pub config: ClipTrainConfig,
    /// The step the run started from.
    pub first_step: usize,
    /// Wall time of the training.
    pub seconds: f64,
    /// Recall of the saved model on each dataset's val split that has pairs.
    pub recall: Vec<(String, ClipRecall)>,
}

/// Trains a CLIP on the train splits of `datasets` together into the run folder `out`,
/// resuming a run there; then measures recall on each dataset's val split and writes it to
/// `out/recall.json`. `limits` caps the pairs taken of each dataset: one value for all, or
/// one per dataset in order (`None` or 0: no cap).
pub fn train_clip(
    datasets: &[String],
    config: ClipTrainConfig,
    limits: &[usize],
    skip_bad: bool,
    out: &Path,
    device: &Device,
    observer: &dyn Observer,
) -> Result<ClipTrained, Error> {
    if limits.len() > 1 && limits.len() != datasets.len() {
        return Err(Error::BadInput(format!(
            "{} limits for {} datasets: give one for all, or one for each",
            limits.len(),
            datasets.len()
        )));
    }
    let mut train_pairs = Vec::new();
    let mut val_sets = Vec::new();
    for (index, name) in datasets.iter().enumerate() {
        let limit = limits
            .get(index)
            .or(limits.first())
            .copied()
            .filter(|&limit| limit > 0);
        let documents = crate::datasets::load(name, skip_bad, observer)?.documents;
        let pairs = pairs_of(&documents, Split::Train, limit);
        if pairs.is_empty() {
            return Err(Error::BadInput(format!(
                "{name} has no image-caption pairs in its train split"
            )));
        }
        observer.note(&format!("{name}: {} training pairs", pairs.len()));
        train_pairs.extend(pairs);
        val_sets.push((name.clone(), pairs_of(&documents, Split::Val, limit)));
    }
    let mut trainer = ClipTrainer::open(config, &train_pairs, out, device)
        .context(|| format!("opening the run in {}", out.display()))?;
    let config = trainer.config().clone();
    observer.note(&format!(
        "training CLIP {} on {} pairs: steps {}..{}, batch {}, run folder {}",
        config.preset,
        train_pairs.len(),
        trainer.step(),
        config.steps,
        config.batch_size,
        out.display()
    ));
    let first_step = trainer.step();
    let stage = stage_from(observer, "training", config.steps as u64, first_step as u64);
    let started = Instant::now();
    trainer.train(
        |report| {
            stage.advance(1);
            stage.message(&format!(
                "loss {:.3} acc {:.2} temp {:.3}",
                report.loss, report.accuracy, report.temperature
            ));
        },
        |_| Ok(()),
    )?;
    drop(stage);
    let seconds = started.elapsed().as_secs_f64();
    let encoder = crate::memory::load_clip(out)?;
    let mut recall = Vec::new();
    for (name, pairs) in val_sets {
        if !pairs.is_empty() {
            recall.push((name, clip_recall(&encoder, &pairs)?));
        }
    }
    let by_dataset: serde_json::Map<String, serde_json::Value> = recall
        .iter()
        .map(|(name, recall)| (name.clone(), serde_json::json!(recall)))
        .collect();
    let json = serde_json::to_vec_pretty(&by_dataset).map_err(|err| Error::Cache {
        path: out.join("recall.json"),
        problem: err.to_string(),
    })?;
    racm3_data::write_atomic(&out.join("recall.json"), &json)?;
    Ok(ClipTrained {
        config,
        first_step,
        seconds,
        recall,
    })
}

/// What fitting pixel keys did.
#[derive(Debug, Clone)]
pub struct PixelKeysFitted {
    /// Images fitted on.
    pub images: usize,
    /// Distinct entities among them.
    pub entities: usize,
    /// Where the keys were saved.
    pub path: std::path::PathBuf,
}

/// Fits pixel keys on the first image of every document in `split` of `datasets`, labelled
/// by dataset and entity, and saves them (atomically) in the CLIP folder `clip`, where
/// [`racm3_retrieve::ClipEncoder::load`] finds them.
pub fn fit_pixel_keys(
    datasets: &[String],
    clip: &Path,
    split: Split,
    options: PixelKeyOptions,
    skip_bad: bool,
    observer: &dyn Observer,
) -> Result<PixelKeysFitted, Error> {
    if !clip.join("config.json").is_file() {
        return Err(Error::BadInput(format!(
            "{} is not a CLIP folder (no config.json)",
            clip.display()
        )));
    }
    let (mut images, mut entities) = (Vec::new(), Vec::new());
    for dataset in datasets {
        for document in crate::datasets::load(dataset, skip_bad, observer)?.documents {
            if document.source.split != split {
                continue;
            }
            if let Some(image) = document.images().next() {
                images.push(image.pixels.clone());
                entities.push(format!("{dataset}/{}", document.source.entity));
            }
        }
    }
    let labels: Vec<&str> = entities.iter().map(String::as_str).collect();
    let keys = PixelKeys::fit(&images, &labels, options)?;
    let path = clip.join(PIXEL_KEYS_FILE);
    keys.save(&path)?;
    let distinct: std::collections::HashSet<&str> = labels.iter().copied().collect();
    Ok(PixelKeysFitted {
        images: images.len(),
        entities: distinct.len(),
        path,
    })
}
