//! `racm3 clip`: train the CLIP retriever encoder and measure its recall@k.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use racm3::Device;
use racm3::data::{Document, Split};
use racm3::retrieve::train::Pair;
use racm3::retrieve::{ClipEncoder, ClipTrainConfig, ClipTrainer, Recall, recall_at_k};

use crate::data::load_dataset;
use crate::progress::Bar;

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
            let device = crate::device(&device)?;
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

/// Loads a CLIP folder with a message naming it.
pub fn load_clip(dir: &Path) -> Result<ClipEncoder> {
    ClipEncoder::load(dir, &Device::Cpu).with_context(|| {
        format!(
            "loading the CLIP in {} (train one with `racm3 clip train`)",
            dir.display()
        )
    })
}

/// Each document of `split` with an image and a caption, as a pair; at most `limit`,
/// spread evenly over the split.
fn pairs_of(documents: &[Document], split: Split, limit: Option<usize>) -> Vec<Pair> {
    let pairs: Vec<Pair> = documents
        .iter()
        .filter(|doc| doc.source.split == split)
        .filter_map(|doc| {
            let image = doc.images().next()?;
            let text = racm3::retrieve::document_text(doc)?;
            Some(Pair {
                text,
                image: image.pixels.clone(),
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

fn train(
    datasets: &[String],
    config: ClipTrainConfig,
    limit: Option<usize>,
    skip_bad: bool,
    out: &Path,
    device: &Device,
) -> Result<()> {
    let mut train_pairs = Vec::new();
    let mut val_sets = Vec::new();
    for name in datasets {
        let documents = load_dataset(name, skip_bad)?.documents;
        let pairs = pairs_of(&documents, Split::Train, limit);
        if pairs.is_empty() {
            bail!("{name} has no image-caption pairs in its train split");
        }
        eprintln!("{name}: {} training pairs", pairs.len());
        train_pairs.extend(pairs);
        val_sets.push((name.clone(), pairs_of(&documents, Split::Val, limit)));
    }
    let mut trainer = ClipTrainer::open(config, &train_pairs, out, device)
        .with_context(|| format!("opening the run in {}", out.display()))?;
    let config = trainer.config().clone();
    eprintln!(
        "training CLIP {} on {} pairs: steps {}..{}, batch {}, run folder {}",
        config.preset,
        train_pairs.len(),
        trainer.step(),
        config.steps,
        config.batch_size,
        out.display()
    );
    let bar = Bar::new("training");
    racm3::data::Progress::set_total(&bar, config.steps as u64);
    racm3::data::Progress::advance(&bar, trainer.step() as u64);
    let started = std::time::Instant::now();
    let first_step = trainer.step();
    let outcome = trainer.train(
        |report| {
            racm3::data::Progress::advance(&bar, 1);
            bar.set_message(format!(
                "loss {:.3} acc {:.2} temp {:.3}",
                report.loss, report.accuracy, report.temperature
            ));
        },
        |_| Ok(()),
    );
    bar.finish();
    outcome?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "trained steps {first_step}..{} in {elapsed:.0} s ({:.2} s/step); model in {}",
        config.steps,
        elapsed / (config.steps - first_step).max(1) as f64,
        out.display()
    );
    let encoder = load_clip(out)?;
    let mut report = serde_json::Map::new();
    for (name, pairs) in val_sets {
        if pairs.is_empty() {
            continue;
        }
        let recall = recall_at_k(&encoder, &pairs)?;
        print_recall(&name, Split::Val, &recall, false)?;
        report.insert(name, serde_json::to_value(recall)?);
    }
    let path = out.join("recall.json");
    racm3::data::write_atomic(&path, &serde_json::to_vec_pretty(&report)?)?;
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
