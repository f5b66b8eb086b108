//! `racm3 metric`: score a user's own files with racm3's metrics.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use racm3::evaluate::coco::read_pairs;
use racm3::evaluate::score_captions;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum MetricCommand {
    /// CIDEr-D and ROUGE-L of captions, as pycocoevalcap computes them (PTB tokenization,
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
}

pub fn run(command: MetricCommand) -> Result<()> {
    match command {
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
                        })
                    })
                    .collect();
                let value = json!({
                    "images": pairs.image_ids.len(),
                    "cider_d": scores.cider_d,
                    "rouge_l": scores.rouge_l,
                    "per_image": per_image,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!(
                    "CIDEr-D {:.4}  ROUGE-L {:.4}  over {} images",
                    scores.cider_d,
                    scores.rouge_l,
                    pairs.image_ids.len()
                );
            }
            Ok(())
        }
    }
}
