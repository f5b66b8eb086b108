//! `racm3 clip`: train the CLIP retriever encoder and measure its recall@k.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;
use racm3::Device;
use racm3::data::Split;
use racm3::memory::load_clip;
use racm3::retrieve::{ClipTrainConfig, Recall, recall_at_k};
use racm3::training::pairs_of;

use crate::data::load_dataset;
use crate::progress::Terminal;

/// The committed emoji CLIP, relative to the repository root.
pub const DEFAULT_CLIP: &str = "checkpoints/clip-emoji-small";
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
        /// Pairs per batch (distinct captions).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Peak learning rate.
        #[arg(long)]
        lr: Option<f64>,
        /// At most this many training pairs from each dataset (a seeded sample).
        #[arg(long)]
        limit: Option<usize>,
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
    /// Text-to-image and image-to-text recall@1/5/10 of a CLIP on a split. An image and a
    /// caption match when the caption is the image's own.
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
}

pub fn run(command: ClipCommand) -> Result<()> {
    match command {
        ClipCommand::Train {
            datasets,
            preset,
            steps,
            batch_size,
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
            let recall = recall_at_k(&encoder, &pairs)?;
            print_recall(&dataset, split, &recall, json)
        }
    }
}

fn train(
    datasets: &[String],
    config: ClipTrainConfig,
    limit: Option<usize>,
    skip_bad: bool,
    out: &Path,
    device: &Device,
) -> Result<()> {
    let trained =
        racm3::training::train_clip(datasets, config, limit, skip_bad, out, device, &Terminal)?;
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

fn print_recall(dataset: &str, split: Split, recall: &Recall, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(recall)?);
        return Ok(());
    }
    let [t1, t5, t10] = recall.text_to_image;
    let [i1, i5, i10] = recall.image_to_text;
    println!(
        "{dataset} {split} ({} pairs): text->image R@1 {:.3} R@5 {:.3} R@10 {:.3}; image->text R@1 {:.3} R@5 {:.3} R@10 {:.3}",
        recall.pairs, t1, t5, t10, i1, i5, i10
    );
    Ok(())
}
