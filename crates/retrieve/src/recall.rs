//! How well a CLIP retrieves: recall@k between images and captions
//! ([`recall_at_k`], a pair counts as found when the caption matches), and between an
//! entity's renditions ([`entity_recall`]: a caption or a drawing finds the same entity
//! drawn another way), which is what retrieval for an unseen entity rests on.

use std::collections::HashSet;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::encoder::ClipEncoder;
use crate::error::Result;
use crate::train::Pair;
use racm3_memory::dot;

/// Recall@1/5/10 in both directions. A retrieved item counts as correct when its caption
/// equals the query's: the same emoji drawn by two vendors shares one caption.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// Pairs evaluated.
    pub pairs: usize,
    /// Text query, image results: recall at 1, 5, 10.
    pub text_to_image: [f64; 3],
    /// Image query, text results: recall at 1, 5, 10.
    pub image_to_text: [f64; 3],
}

/// Recall@1/5/10 of `encoder` on `pairs`, by exact search over their embeddings.
pub fn recall_at_k(encoder: &ClipEncoder, pairs: &[Pair]) -> Result<Recall> {
    let dim = encoder.dim();
    let texts: Vec<&str> = pairs.iter().map(|pair| pair.text.as_str()).collect();
    let images: Vec<RgbImage> = pairs.iter().map(|pair| pair.image.clone()).collect();
    let text_keys = encoder.embed_texts(&texts)?;
    let image_keys = encoder.embed_images(&images)?;
    let direction = |queries: &[f32], keys: &[f32]| -> [f64; 3] {
        let mut found = [0usize; 3];
        for (query_index, query) in queries.chunks_exact(dim).enumerate() {
            let own = dot(query, &keys[query_index * dim..(query_index + 1) * dim]);
            // The rank of the best correct item: items scoring above it that are wrong.
            let best_correct = keys
                .chunks_exact(dim)
                .enumerate()
                .filter(|(index, _)| texts[*index] == texts[query_index])
                .map(|(_, key)| dot(query, key))
                .fold(own, f32::max);
            let rank = keys
                .chunks_exact(dim)
                .enumerate()
                .filter(|(index, key)| {
                    texts[*index] != texts[query_index] && dot(query, key) > best_correct
                })
                .count();
            for (slot, k) in [1, 5, 10].into_iter().enumerate() {
                found[slot] += usize::from(rank < k);
            }
        }
        found.map(|count| count as f64 / pairs.len().max(1) as f64)
    };
    Ok(Recall {
        pairs: pairs.len(),
        text_to_image: direction(&text_keys, &image_keys),
        image_to_text: direction(&image_keys, &text_keys),
    })
}

/// Recall of the same entity at 1, 2 and 10, the two ways a memory is queried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntityRecall {
    /// Text queries: the distinct captions.
    pub texts: usize,
    /// Image queries: every image.
    pub images: usize,
    /// A caption against every image: the same entity among the first 1, 2, 10.
    pub text_to_entity: [f64; 3],
    /// An image against the images of every other rendition (never its own): the same
    /// entity among the first 1, 2, 10.
    pub image_to_other_rendition: [f64; 3],
    /// The same by the encoder's pixel keys, where its folder has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_to_other_rendition_by_pixels: Option<[f64; 3]>,
}

/// The ranks at which recall is reported.
pub const ENTITY_RECALL_AT: [usize; 3] = [1, 2, 10];

/// [`EntityRecall`] of `encoder` on `pairs`, by exact search over their embeddings.
pub fn entity_recall(encoder: &ClipEncoder, pairs: &[Pair]) -> Result<EntityRecall> {
    let dim = encoder.dim();
    let images: Vec<RgbImage> = pairs.iter().map(|pair| pair.image.clone()).collect();
    let image_keys = encoder.embed_images(&images)?;
    let mut seen = HashSet::new();
    let texts: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|pair| seen.insert(pair.text.as_str()))
        .map(|pair| (pair.text.as_str(), pair.entity.as_str()))
        .collect();
    let text_keys =
        encoder.embed_texts(&texts.iter().map(|(text, _)| *text).collect::<Vec<_>>())?;
    // The share of queries whose entity is among the first k images (keys of `dim` values).
    let recall = |queries: Vec<(&[f32], &str, Option<&str>)>, keys: &[f32], dim: usize| {
        let mut found = [0usize; 3];
        for (query, entity, own_rendition) in &queries {
            let mut scored: Vec<(f32, &str)> = pairs
                .iter()
                .zip(keys.chunks_exact(dim))
                .filter(|(pair, _)| Some(pair.rendition.as_str()) != *own_rendition)
                .map(|(pair, key)| (dot(query, key), pair.entity.as_str()))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let first = scored.iter().position(|(_, candidate)| candidate == entity);
            for (slot, k) in ENTITY_RECALL_AT.into_iter().enumerate() {
                found[slot] += usize::from(first.is_some_and(|rank| rank < k));
            }
        }
        found.map(|count| count as f64 / queries.len().max(1) as f64)
    };
    let text_queries = texts
        .iter()
        .zip(text_keys.chunks_exact(dim))
        .map(|((_, entity), key)| (key, *entity, None))
        .collect();
    fn image_queries<'a>(
        pairs: &'a [Pair],
        keys: &'a [f32],
        dim: usize,
    ) -> Vec<(&'a [f32], &'a str, Option<&'a str>)> {
        pairs
            .iter()
            .zip(keys.chunks_exact(dim))
            .map(|(pair, key)| (key, pair.entity.as_str(), Some(pair.rendition.as_str())))
            .collect()
    }
    let by_pixels = match encoder.pixel_keys() {
        Some(pixel_keys) => {
            let keys = pixel_keys.embed(&images)?;
            let dim = pixel_keys.dims();
            Some(recall(image_queries(pairs, &keys, dim), &keys, dim))
        }
        None => None,
    };
    Ok(EntityRecall {
        texts: texts.len(),
        images: pairs.len(),
        text_to_entity: recall(text_queries, &image_keys, dim),
        image_to_other_rendition: recall(image_queries(pairs, &image_keys, dim), &image_keys, dim),
        image_to_other_rendition_by_pixels: by_pixels,
    })
}
