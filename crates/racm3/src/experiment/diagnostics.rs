//! What separates the retriever's failures from the generator's (issue: retrieval that
//! pays): rows the generators are read against, and a probe of how much a model uses
//! what is in front of it.
//!
//! - the tokenizer floor: the real held-out images through the VQGAN, scored like any
//!   sample, since everything the generators draw goes through it;
//! - retrieval alone: the top retrieved document's image for each caption, raw and
//!   through the VQGAN, and its caption for each held-out image;
//! - the oracle context: the entity's own documents in other renditions in front of the
//!   prompt instead of the retrieved ones (in [`super::images::Prompting::Given`]);
//! - the copy probe: the mean loss per token on a held-out document's image codes and
//!   caption with a same-entity document of another rendition in front, a random document
//!   of another entity, and nothing. Random minus same is how much the model reads
//!   retrieval, in nats per token.

use std::collections::HashMap;

use candle_core::{D, IndexOp, Tensor};
use image::RgbImage;
use racm3_data::Document;
use racm3_evaluate::score_captions;
use racm3_memory::Memory;
use racm3_retrieve::{Query, retrieve_for_query};
use racm3_tokenize::{Special, Token};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use super::images::{ImageScoring, SeedScores};
use crate::Error;
use crate::tasks::{Generator, Retriever};

/// The image metrics of one set of images (a single "seed").
fn scored(
    scoring: &ImageScoring,
    images: &[RgbImage],
    captions: &[String],
) -> Result<Value, Error> {
    let mut scores = SeedScores::default();
    scores.push(scoring.score(images, captions)?);
    Ok(scores.summary(images.len()))
}

/// `images` encoded and decoded by the generator's VQGAN.
fn through_vqgan(generator: &Generator, images: &[RgbImage]) -> Result<Vec<RgbImage>, Error> {
    let vqgan = generator.vqgan();
    Ok(vqgan.decode(&vqgan.encode(images, 32)?)?)
}

/// The tokenizer floor and the retrieval-only rows: image metrics of the reconstructions
/// and of the top retrieved image (raw and through the VQGAN) for each caption, and the
/// caption metrics of the top retrieved caption for each image.
pub fn floor_and_retrieval_only(
    generator: &Generator,
    retriever: &Retriever,
    held_out: &[Document],
    scoring: &ImageScoring,
    references: &[Vec<String>],
) -> Result<Value, Error> {
    let captions: Vec<String> = held_out.iter().map(Document::caption).collect();
    let floor = through_vqgan(generator, scoring.real)?;
    let memory = retriever.memory;
    let top = |query: Query| -> Result<Option<Document>, Error> {
        let found = retrieve_for_query(retriever.encoder, memory, &query, &retriever.policy)?;
        Ok(match found.documents.first() {
            Some(hit) => Some(memory.document(hit.row)?),
            None => None,
        })
    };
    let blank = || RgbImage::from_pixel(64, 64, image::Rgb([255; 3]));
    let mut retrieved_images = Vec::with_capacity(held_out.len());
    let mut retrieved_captions = Vec::with_capacity(held_out.len());
    for (caption, real) in captions.iter().zip(scoring.real) {
        let by_text = top(Query {
            text: Some(caption),
            image: None,
        })?;
        let image = by_text.and_then(|d| d.images().next().map(|part| part.pixels.clone()));
        retrieved_images.push(image.unwrap_or_else(blank));
        let by_image = top(Query {
            text: None,
            image: Some(real),
        })?;
        retrieved_captions.push(by_image.map(|d| d.caption()).unwrap_or_default());
    }
    let through = through_vqgan(generator, &retrieved_images)?;
    let cider = score_captions(&retrieved_captions, references)?;
    Ok(json!({
        "tokenizer_floor": scored(scoring, &floor, &captions)?,
        "retrieval_only_raw": scored(scoring, &retrieved_images, &captions)?,
        "retrieval_only_vqgan": scored(scoring, &through, &captions)?,
        "retrieval_only_caption": {
            "samples": retrieved_captions.len(),
            "cider_d": cider.cider_d,
            "rouge_l": cider.rouge_l,
            "bleu_4": cider.bleu[3],
            "non_empty": retrieved_captions.iter().filter(|c| !c.trim().is_empty()).count(),
        },
    }))
}

/// For each held-out entity, up to `k` of its documents in `memory` (other renditions than
/// the held-out drawings), in memory order: the oracle's context.
pub fn oracle_documents(
    memory: &Memory,
    held_out: &[Document],
    k: usize,
) -> Result<HashMap<String, Vec<Document>>, Error> {
    let wanted: std::collections::HashSet<&str> =
        held_out.iter().map(|d| d.source.entity.as_str()).collect();
    let mut by_entity: HashMap<String, Vec<Document>> = HashMap::new();
    let rows: Vec<u64> = memory.ids().filter_map(|id| memory.row_of(id)).collect();
    for row in rows {
        let document = memory.document(row)?;
        if !wanted.contains(document.source.entity.as_str()) {
            continue;
        }
        let kept = by_entity.entry(document.source.entity.clone()).or_default();
        if kept.len() < k {
            kept.push(document);
        }
    }
    Ok(by_entity)
}

/// Mean loss per token on a sequence's targets from `start` on, split into image codes and
/// text: (sum image, count image, sum text, count text).
fn main_losses(generator: &Generator, tokens: &[u32], start: usize) -> Result<[f64; 4], Error> {
    let model = generator.model();
    let ids = generator.codec().ids();
    let input = Tensor::new(tokens, model.device())?.unsqueeze(0)?;
    // (1, t, vocab) → log-probabilities of each next token, (t, vocab).
    let log_probs = log_softmax_rows(&model.forward(&input, None)?.i(0)?)?;
    let rows: Vec<Vec<f32>> = log_probs.to_vec2()?;
    let mut sums = [0.0; 4];
    for position in start.max(1)..tokens.len() {
        let target = tokens[position];
        let loss = -f64::from(rows[position - 1][target as usize]);
        match ids.classify(target)? {
            Token::Image(_) => {
                sums[0] += loss;
                sums[1] += 1.0;
            }
            Token::Text(_) => {
                sums[2] += loss;
                sums[3] += 1.0;
            }
            Token::Special(_) => {}
        }
    }
    Ok(sums)
}

/// log-softmax over the last dimension, from tensor ops.
fn log_softmax_rows(logits: &Tensor) -> candle_core::Result<Tensor> {
    let top = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&top)?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// The copy probe on `held_out` (see the module header), with contexts drawn from `memory`
/// with `seed`: mean loss per image code and per caption token in each setting, and the
/// gap random − same.
pub fn copy_probe(
    generator: &Generator,
    memory: &Memory,
    held_out: &[Document],
    seed: u64,
) -> Result<Value, Error> {
    let oracle = oracle_documents(memory, held_out, 1)?;
    let rows: Vec<u64> = memory.ids().filter_map(|id| memory.row_of(id)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let break_token = generator.codec().ids().special(Special::Break);
    let eos = generator.codec().ids().special(Special::Eos);
    let mut totals: HashMap<&str, [f64; 4]> = HashMap::new();
    let mut probed = 0;
    for document in held_out {
        let Some(same) = oracle
            .get(&document.source.entity)
            .and_then(|docs| docs.first())
        else {
            continue;
        };
        // A random document of another entity; a few draws always find one here.
        let mut random = None;
        for _ in 0..64 {
            let Some(&row) = rows.choose(&mut rng) else {
                break;
            };
            let candidate = memory.document(row)?;
            if candidate.source.entity != document.source.entity {
                random = Some(candidate);
                break;
            }
        }
        let Some(random) = random else {
            continue;
        };
        probed += 1;
        let main = generator.document_tokens(document)?;
        for (setting, context) in [
            ("same_entity", Some(same)),
            ("random", Some(&random)),
            ("none", None),
        ] {
            let mut tokens = Vec::new();
            if let Some(context) = context {
                tokens.extend(generator.document_tokens(context)?);
                tokens.push(break_token);
            }
            let start = tokens.len();
            tokens.extend_from_slice(&main);
            tokens.push(eos);
            let sums = main_losses(generator, &tokens, start)?;
            let total = totals.entry(setting).or_default();
            for (sum, add) in total.iter_mut().zip(sums) {
                *sum += add;
            }
        }
    }
    let mean = |setting: &str, image: bool| {
        let total = totals.get(setting).copied().unwrap_or_default();
        let (sum, count) = if image {
            (total[0], total[1])
        } else {
            (total[2], total[3])
        };
        sum / count.max(1.0)
    };
    let mut settings = serde_json::Map::new();
    for setting in ["same_entity", "random", "none"] {
        settings.insert(
            setting.to_owned(),
            json!({"image": mean(setting, true), "caption": mean(setting, false)}),
        );
    }
    Ok(json!({
        "documents": probed,
        "settings": settings,
        "gap_image": mean("random", true) - mean("same_entity", true),
        "gap_caption": mean("random", false) - mean("same_entity", false),
    }))
}
