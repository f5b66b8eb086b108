//! `racm3 metric`: score a user's own files with racm3's metrics.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use racm3::evaluate::coco::read_pairs;
use racm3::evaluate::score_captions;
use racm3::scores::{SetDistance, clip_score_files, default_fid_weights, fid_between};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum MetricCommand {
    /// CIDEr-D, BLEU-1..4 and ROUGE-L of captions, as pycocoevalcap computes them (PTB tokenization,
    /// lower case, punctuation removed). Reads COCO's formats: an annotations file with
    /// "annotations" of {"image_id", "caption"}, and a results list of the same.
    ///
    /// Example: racm3 metric cider --references captions_val.json --results results.json --json
    Cider {
        /// The annotations file (references).
        #[arg(long)]
        references: PathBuf,
        /// The results list (one candidate per image).
        #[arg(long)]
        results: PathBuf,
        /// Print per-image scores as JSON.
        #[arg(long)]
        json: bool,
    },
    /// CLIPScore (2.5 max(cos, 0) with "A photo depicts ") of each result's caption against
    /// its image, and RefCLIPScore when references are given, with racm3's CLIP. Images
    /// are IMAGES/<image_id>.png (or .jpg, .jpeg, .webp).
    ///
    /// Example: racm3 metric clipscore --results results.json --images generated/ --references captions_val.json
    Clipscore {
        /// The results list ([{"image_id", "caption"}]).
        #[arg(long)]
        results: PathBuf,
        /// The folder of images named by image id.
        #[arg(long)]
        images: PathBuf,
        /// An annotations file for RefCLIPScore.
        #[arg(long)]
        references: Option<PathBuf>,
        /// The CLIP folder.
        #[arg(long, default_value = racm3::experiment::demo::CLIP)]
        clip: PathBuf,
        /// Print per-image scores as JSON.
        #[arg(long)]
        json: bool,
    },
    /// FID and KID between two sets: folders of images (through the standard FID
    /// Inception-v3, pytorch-fid's preprocessing) or two .npy feature matrices (rows are
    /// samples). Both sets need at least 2 samples.
    ///
    /// Example: racm3 metric fid generated/ real/ --json
    Fid {
        /// The first set: a folder of PNG/JPEG/WebP images or a .npy matrix.
        a: PathBuf,
        /// The second set, of the same kind.
        b: PathBuf,
        /// The converted Inception weights; default $RACM3_FID_WEIGHTS, else
        /// $RACM3_HOME/fid/inception-fid.safetensors (made by .ci/fid-weights).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: MetricCommand) -> Result<()> {
    match command {
        MetricCommand::Clipscore {
            results,
            images,
            references,
            clip,
            json,
        } => clipscore(&results, &images, references.as_deref(), &clip, json),
        MetricCommand::Fid {
            a,
            b,
            weights,
            json,
        } => fid(&a, &b, weights, json),
        MetricCommand::Cider {
            references,
            results,
            json,
        } => {
            let pairs = read_pairs(&references, &results)?;
            let scores = score_captions(&pairs.candidates, &pairs.references)?;
            if json {
                let per_image: Vec<_> = pairs
                    .image_ids
                    .iter()
                    .zip(&scores.per_image)
                    .map(|(id, image)| {
                        json!({
                            "image_id": id,
                            "candidate_tokenized": image.candidate,
                            "cider_d": image.cider_d,
                            "rouge_l": image.rouge_l,
                            "bleu": image.bleu,
                        })
                    })
                    .collect();
                let value = json!({
                    "images": pairs.image_ids.len(),
                    "cider_d": scores.cider_d,
                    "rouge_l": scores.rouge_l,
                    "bleu": scores.bleu,
                    "per_image": per_image,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!(
                    "CIDEr-D {:.4}  BLEU-4 {:.4}  ROUGE-L {:.4}  over {} images",
                    scores.cider_d,
                    scores.bleu[3],
                    scores.rouge_l,
                    pairs.image_ids.len()
                );
            }
            Ok(())
        }
    }
}

fn fid(a: &Path, b: &Path, weights: Option<PathBuf>, json: bool) -> Result<()> {
    let weights = weights.unwrap_or_else(default_fid_weights);
    let SetDistance { fid, kid, samples } = fid_between(a, b, &weights)?;
    if json {
        let value = json!({"fid": fid, "kid": kid, "samples": [samples.0, samples.1]});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "FID {fid:.4}  KID {kid:.6}  ({} and {} samples)",
            samples.0, samples.1
        );
    }
    Ok(())
}

fn clipscore(
    results: &Path,
    images: &Path,
    references: Option<&Path>,
    clip: &Path,
    json: bool,
) -> Result<()> {
    let encoder = racm3::memory::load_clip(clip)?;
    let scores = clip_score_files(&encoder, results, images, references)?;
    let (ids, ref_scores) = (&scores.image_ids, &scores.ref_clip_score);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    if json {
        let value = json!({
            "images": ids.len(),
            "clip_score": mean(&scores.clip_score),
            "ref_clip_score": ref_scores.as_deref().map(mean),
            "per_image": ids.iter().zip(&scores.clip_score).enumerate().map(|(i, (id, s))| json!({
                "image_id": id,
                "clip_score": s,
                "ref_clip_score": ref_scores.as_ref().map(|r| r[i]),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let with_refs = ref_scores
            .as_deref()
            .map(|r| format!("  RefCLIPScore {:.4}", mean(r)))
            .unwrap_or_default();
        println!(
            "CLIPScore {:.4}{with_refs}  over {} images",
            mean(&scores.clip_score),
            ids.len()
        );
    }
    Ok(())
}
