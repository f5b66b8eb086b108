//! `racm3 metric`: score a user's own files with racm3's metrics.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use racm3::evaluate::coco::read_pairs;
use racm3::evaluate::fid::{
    FEATURES, InceptionFid, fid_of_npy, frechet_distance_of_samples, kernel_inception_distance,
    read_npy,
};
use racm3::evaluate::score_captions;
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
        #[arg(long, default_value = crate::clip::DEFAULT_CLIP)]
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

fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "npy")
}

/// Every image in a folder, in name order.
fn read_images(dir: &Path) -> Result<Vec<image::RgbImage>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the folder {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "png" | "jpg" | "jpeg" | "webp"
                )
            })
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| crate::data::read_image(path))
        .collect()
}

fn fid(a: &Path, b: &Path, weights: Option<PathBuf>, json: bool) -> Result<()> {
    let (fid, kid, samples) = match (is_npy(a), is_npy(b)) {
        (true, true) => {
            let (x, n, dim) = read_npy(a)?;
            let (y, m, _) = read_npy(b)?;
            let fid = fid_of_npy(a, b)?;
            let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            let kid = kernel_inception_distance(&as_f32(&x), &as_f32(&y), dim)?;
            (fid, kid, (n, m))
        }
        (false, false) => {
            let weights = weights
                .or_else(|| std::env::var_os("RACM3_FID_WEIGHTS").map(PathBuf::from))
                .unwrap_or_else(|| {
                    racm3::data::Home::from_env()
                        .path()
                        .join("fid/inception-fid.safetensors")
                });
            if !weights.exists() {
                bail!(
                    "no FID Inception weights at {}: run .ci/fid-weights to fetch and convert them, or pass --weights",
                    weights.display()
                );
            }
            let inception = InceptionFid::load(&weights, &racm3::Device::Cpu)?;
            let (x, y) = (read_images(a)?, read_images(b)?);
            let fx = inception.features(&x, 16)?;
            let fy = inception.features(&y, 16)?;
            let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
            let fid = frechet_distance_of_samples(&widen(&fx), &widen(&fy), FEATURES)
                .with_context(|| format!("{} against {}", a.display(), b.display()))?;
            let kid = kernel_inception_distance(&fx, &fy, FEATURES)?;
            (fid, kid, (x.len(), y.len()))
        }
        _ => bail!("give two folders of images or two .npy matrices, not one of each"),
    };
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

/// The image of `id` in `dir`, by any of the extensions racm3 reads.
fn image_of(dir: &Path, id: &str) -> Result<image::RgbImage> {
    for extension in ["png", "jpg", "jpeg", "webp"] {
        let path = dir.join(format!("{id}.{extension}"));
        if path.exists() {
            return crate::data::read_image(&path);
        }
    }
    bail!(
        "no image for image_id {id} in {} (expected {id}.png, .jpg or .webp)",
        dir.display()
    )
}

fn clipscore(
    results: &Path,
    images: &Path,
    references: Option<&Path>,
    clip: &Path,
    json: bool,
) -> Result<()> {
    let encoder = crate::clip::load_clip(clip)?;
    let (ids, captions, refs) = match references {
        Some(annotations) => {
            let pairs = read_pairs(annotations, results)?;
            (pairs.image_ids, pairs.candidates, Some(pairs.references))
        }
        None => {
            let pairs = racm3::evaluate::coco::read_results(results)?;
            (pairs.0, pairs.1, None)
        }
    };
    let pictures = ids
        .iter()
        .map(|id| image_of(images, id))
        .collect::<Result<Vec<_>>>()?;
    let texts: Vec<&str> = captions.iter().map(String::as_str).collect();
    let scores = racm3::scores::clip_score(&encoder, &pictures, &texts)?;
    let ref_scores = refs
        .map(|refs| racm3::scores::ref_clip_score(&encoder, &pictures, &texts, &refs))
        .transpose()?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    if json {
        let value = json!({
            "images": ids.len(),
            "clip_score": mean(&scores),
            "ref_clip_score": ref_scores.as_deref().map(mean),
            "per_image": ids.iter().zip(&scores).enumerate().map(|(i, (id, s))| json!({
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
            mean(&scores),
            ids.len()
        );
    }
    Ok(())
}
