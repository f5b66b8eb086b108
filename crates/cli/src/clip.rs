//! `racm3 clip`: train the CLIP retriever encoder and measure its recall@k.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;
use racm3::Device;
use racm3::data::Split;
use racm3::experiment::demo::CLIP as DEFAULT_CLIP;
use racm3::memory::load_clip;
use racm3::retrieve::{ClipTrainConfig, PixelKeyOptions};
use racm3::training::{ClipRecall, clip_recall, pairs_of};

use crate::data::load_dataset;
use crate::progress::Terminal;
/// Where `clip train` writes a run unless told: beside the committed model, never over it.
const DEFAULT_RUN: &str = "runs/clip-emoji-small";

#[derive(Debug, Subcommand)]
pub enum ClipCommand {
    /// Train a small CLIP from scratch on the train splits of one or more datasets
    /// (symmetric InfoNCE with a learned temperature), then report recall@1/5/10 on their
    /// val splits. Resumes the run in --out if there is one.
    ///
    /// Example: racm3 clip train emoji fashion-mnist --steps 1500 --out runs/clip-emoji-small
    Train {
        /// Datasets: built-in names, folders of image-caption pairs, or .tar shards.
        #[arg(default_values_t = ["emoji".to_string()])]
        datasets: Vec<String>,
        /// Model shape: emoji-small (64×64 images) or tiny.
        #[arg(long, default_value = "emoji-small")]
        preset: String,
        /// Optimizer steps in all.
        #[arg(long)]
        steps: Option<usize>,
        /// Pairs per batch (distinct captions, or whole entities with
        /// --renditions-per-entity).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Pairs of one entity (its renditions) in a batch together, all positives of each
        /// other (multi-positive InfoNCE); 1 is CLIP's batch of distinct captions.
        #[arg(long, default_value_t = 1)]
        renditions_per_entity: usize,
        /// Weight of the image-to-image loss in which renditions of an entity must find each
        /// other (with --renditions-per-entity above 1).
        #[arg(long, default_value_t = 0.0)]
        image_image_weight: f64,
        /// Peak learning rate.
        #[arg(long)]
        lr: Option<f64>,
        /// At most this many training pairs from each dataset, evenly spaced: one value for
        /// all, or one per dataset in order, comma-separated (0: all of that one).
        #[arg(long, value_delimiter = ',')]
        limit: Vec<usize>,
        /// Seed for initialization and batches.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Leave out unreadable samples instead of stopping.
        #[arg(long)]
        skip_bad: bool,
        /// The run's folder: config.json, model.safetensors, tokenizer.json, checkpoints. A
        /// folder holding a trained model without checkpoints is refused, not overwritten.
        #[arg(long, default_value = DEFAULT_RUN)]
        out: PathBuf,
        /// Where to train: cpu, cuda or cuda:N (a --features cuda build).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Text-to-image and image-to-text recall@1/5/10 of a CLIP on a split (an image and a
    /// caption match when the caption is the image's own), and same-entity recall@1/2/10:
    /// a caption against every image, an image against the other renditions' images.
    ///
    /// Example: racm3 clip recall emoji --clip checkpoints/clip-emoji-small --split val
    Recall {
        /// The dataset.
        #[arg(default_value = "emoji")]
        dataset: String,
        /// The CLIP folder (HF CLIPModel layout with tokenizer.json).
        #[arg(long, default_value = DEFAULT_CLIP)]
        clip: PathBuf,
        /// The split.
        #[arg(long, default_value = "val")]
        split: Split,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fit the pixel keys that let a drawing find its entity in other renditions (a linear
    /// discriminant map of a small thumbnail, fitted on images labelled by entity), and
    /// save them in the CLIP folder, where `memory build --keys joint+pixels` (or
    /// `joint+text+pixels`) and the experiment's memory use them.
    ///
    /// Example: racm3 clip fit-pixel-keys emoji --clip checkpoints/clip-emoji-small
    FitPixelKeys {
        /// Datasets whose documents' images are fitted on, labelled by entity.
        #[arg(default_values_t = ["emoji".to_string()])]
        datasets: Vec<String>,
        /// The CLIP folder to save them in (as pixel-keys.safetensors).
        #[arg(long, default_value = DEFAULT_CLIP)]
        clip: PathBuf,
        /// The split fitted on; held-out entities stay unseen.
        #[arg(long, default_value = "train")]
        split: Split,
        /// Thumbnail side in pixels.
        #[arg(long, default_value_t = PixelKeyOptions::default().side)]
        side: usize,
        /// Values per key.
        #[arg(long, default_value_t = PixelKeyOptions::default().dims)]
        dims: usize,
        /// Ridge on the within-entity scatter, as a share of its mean eigenvalue.
        #[arg(long, default_value_t = PixelKeyOptions::default().regularization)]
        regularization: f64,
        /// Each image is also fitted on shrunk and grown by this share (0: as it is only).
        #[arg(long, default_value_t = PixelKeyOptions::default().zoom)]
        zoom: f64,
        /// Leave out unreadable samples instead of stopping.
        #[arg(long)]
        skip_bad: bool,
    },
}

pub fn run(command: ClipCommand) -> Result<()> {
    match command {
        ClipCommand::Train {
            datasets,
            preset,
            steps,
            batch_size,
            renditions_per_entity,
            image_image_weight,
            lr,
            limit,
            seed,
            skip_bad,
            out,
            device,
        } => {
            let device = racm3::device(&device)?;
            let defaults = ClipTrainConfig::default();
            let config = ClipTrainConfig {
                preset,
                steps: steps.unwrap_or(defaults.steps),
                batch_size: batch_size.unwrap_or(defaults.batch_size),
                lr: lr.unwrap_or(defaults.lr),
                seed,
                renditions_per_entity: renditions_per_entity.max(1),
                image_image_weight,
                ..defaults
            };
            train(&datasets, config, limit, skip_bad, &out, &device)
        }
        ClipCommand::Recall {
            dataset,
            clip,
            split,
            json,
        } => {
            let encoder = load_clip(&clip)?;
            let pairs = pairs_of(&load_dataset(&dataset, false)?.documents, split, None);
            if pairs.is_empty() {
                bail!("{dataset} has no image-caption pairs in its {split} split");
            }
            let recall = clip_recall(&encoder, &pairs)?;
            print_recall(&dataset, split, &recall, json)
        }
        ClipCommand::FitPixelKeys {
            datasets,
            clip,
            split,
            side,
            dims,
            regularization,
            zoom,
            skip_bad,
        } => {
            let options = PixelKeyOptions {
                side,
                dims,
                regularization,
                zoom,
            };
            fit_pixel_keys(&datasets, &clip, split, options, skip_bad)
        }
    }
}

fn fit_pixel_keys(
    datasets: &[String],
    clip: &Path,
    split: Split,
    options: PixelKeyOptions,
    skip_bad: bool,
) -> Result<()> {
    let fitted =
        racm3::training::fit_pixel_keys(datasets, clip, split, options, skip_bad, &Terminal)?;
    println!(
        "pixel keys ({}x{} thumbnails, {} values) fitted on {} {split} images of {} entities; saved in {}",
        options.side,
        options.side,
        options.dims,
        fitted.images,
        fitted.entities,
        fitted.path.display()
    );
    Ok(())
}

fn train(
    datasets: &[String],
    config: ClipTrainConfig,
    limit: Vec<usize>,
    skip_bad: bool,
    out: &Path,
    device: &Device,
) -> Result<()> {
    let trained =
        racm3::training::train_clip(datasets, config, &limit, skip_bad, out, device, &Terminal)?;
    println!(
        "trained steps {}..{} in {:.0} s ({:.2} s/step); model in {}",
        trained.first_step,
        trained.config.steps,
        trained.seconds,
        trained.seconds / (trained.config.steps - trained.first_step).max(1) as f64,
        out.display()
    );
    for (name, recall) in &trained.recall {
        print_recall(name, Split::Val, recall, false)?;
    }
    Ok(())
}

fn print_recall(dataset: &str, split: Split, recall: &ClipRecall, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(recall)?);
        return Ok(());
    }
    let [t1, t5, t10] = recall.pairs.text_to_image;
    let [i1, i5, i10] = recall.pairs.image_to_text;
    println!(
        "{dataset} {split} ({} pairs): text->image R@1 {:.3} R@5 {:.3} R@10 {:.3}; image->text R@1 {:.3} R@5 {:.3} R@10 {:.3}",
        recall.pairs.pairs, t1, t5, t10, i1, i5, i10
    );
    let ([e1, e2, e10], [o1, o2, o10]) = (
        recall.entity.text_to_entity,
        recall.entity.image_to_other_rendition,
    );
    let (texts, images) = (recall.entity.texts, recall.entity.images);
    println!(
        "  same entity: text->image ({texts} captions) R@1 {e1:.3} R@2 {e2:.3} R@10 {e10:.3}; image->other rendition ({images} images) R@1 {o1:.3} R@2 {o2:.3} R@10 {o10:.3}"
    );
    if let Some([p1, p2, p10]) = recall.entity.image_to_other_rendition_by_pixels {
        println!(
            "  same entity by pixel keys: image->other rendition R@1 {p1:.3} R@2 {p2:.3} R@10 {p10:.3}"
        );
    }
    Ok(())
}
