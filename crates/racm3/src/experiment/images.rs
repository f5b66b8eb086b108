//! Caption to image, scored: drawing one image per caption and seed, and the image metrics
//! over seeds (FID and KID with the standard Inception network when its weights are
//! present, CLIP-FID and CLIPScore always).

use std::collections::HashMap;

use image::RgbImage;
use racm3_data::Document;
use racm3_evaluate::fid::{
    FEATURES, InceptionFid, frechet_distance_of_samples, kernel_inception_distance,
};
use racm3_generate::sampler::SamplingConfig;
use racm3_retrieve::ClipEncoder;
use serde_json::{Value, json};

use crate::Error;
use crate::progress::Observer;
use crate::scores::{clip_fid, clip_score};
use crate::tasks::{Generator, Retriever, SampleSettings};

/// What goes in front of each prompt.
#[derive(Clone, Copy)]
pub enum Prompting<'a> {
    /// Nothing: K = 0.
    Alone,
    /// What the retriever finds for the caption.
    Retrieved(&'a Retriever<'a>),
    /// The documents given for each entity (the oracle's: the entity's own documents).
    Given(&'a HashMap<String, Vec<Document>>),
}

impl<'a> Prompting<'a> {
    /// Retrieval when there is a retriever, else nothing.
    pub fn retrieved_or_alone(retriever: Option<&'a Retriever<'a>>) -> Self {
        retriever.map_or(Prompting::Alone, Prompting::Retrieved)
    }
}

/// What scores generated images: racm3's CLIP, and the Inception network when present,
/// against the real images of the same captions.
#[derive(Clone, Copy)]
pub struct ImageScoring<'a> {
    /// CLIP, for CLIP-FID and CLIPScore.
    pub clip: &'a ClipEncoder,
    /// The FID network, when its weights are present.
    pub inception: Option<&'a InceptionFid>,
    /// The real images, one per caption.
    pub real: &'a [RgbImage],
    /// Their Inception features (empty without the network).
    pub real_features: &'a [f32],
}

/// One seed's image metrics; FID and KID only with the Inception network.
pub struct ImageScores {
    fid: Option<f64>,
    kid: Option<f64>,
    clip_fid: f64,
    clip_score: f64,
}

impl ImageScoring<'_> {
    /// The metrics of `generated`, drawn for `captions`, against the real images.
    pub fn score(&self, generated: &[RgbImage], captions: &[String]) -> Result<ImageScores, Error> {
        let prompts: Vec<&str> = captions.iter().map(String::as_str).collect();
        let clip_scores = clip_score(self.clip, generated, &prompts)?;
        let mut scores = ImageScores {
            fid: None,
            kid: None,
            clip_fid: clip_fid(self.clip, self.real, generated)?,
            clip_score: clip_scores.iter().sum::<f64>() / clip_scores.len() as f64,
        };
        if let Some(net) = self.inception {
            let features = net.features(generated, 16)?;
            let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
            scores.fid = Some(frechet_distance_of_samples(
                &widen(self.real_features),
                &widen(&features),
                FEATURES,
            )?);
            scores.kid = Some(kernel_inception_distance(
                self.real_features,
                &features,
                FEATURES,
            )?);
        }
        Ok(scores)
    }

    /// Caption to image for `documents` (whose images are `self.real`) at seeds
    /// 0..`seeds`: the summary over seeds, and what seed 0 drew.
    pub fn over_seeds(
        &self,
        generator: &Generator,
        documents: &[Document],
        prompting: Prompting,
        draw: &Drawing,
        label: &str,
        observer: &dyn Observer,
    ) -> Result<(Value, Option<Drawn>), Error> {
        let captions: Vec<String> = documents.iter().map(Document::caption).collect();
        let mut scores = SeedScores::default();
        let mut first = None;
        for seed in 0..draw.seeds {
            let label = format!("{label}, seed {seed}");
            let reranker = (draw.samples > 1).then_some(self.clip);
            let drawn = draw_images(
                generator, documents, prompting, seed, draw, reranker, &label, observer,
            )?;
            scores.push(self.score(&drawn.images, &captions)?);
            first.get_or_insert(drawn);
        }
        Ok((scores.summary(documents.len()), first))
    }
}

/// How images are drawn for scoring: seeds 0..`seeds`, classifier-free guidance `cfg`,
/// retrieval guidance `retrieval_guidance`, the copy pointer's `copy_bias`.
#[derive(Debug, Clone, Copy)]
pub struct Drawing {
    /// Seeds per caption; the spread over them is reported.
    pub seeds: u64,
    /// Classifier-free guidance scale.
    pub cfg: f32,
    /// Retrieval guidance scale (1 is none; [`SampleSettings::retrieval_guidance`]).
    pub retrieval_guidance: f32,
    /// The copy pointer's bias ([`SampleSettings::copy_bias`]).
    pub copy_bias: f32,
    /// Samples per caption; with more than one, the best by CLIP similarity to the caption
    /// is scored.
    pub samples: usize,
}

/// Image metrics over seeds.
#[derive(Default)]
pub struct SeedScores {
    seeds: Vec<ImageScores>,
}

impl SeedScores {
    /// Adds one seed's metrics.
    pub fn push(&mut self, scores: ImageScores) {
        self.seeds.push(scores);
    }

    /// Mean, spread and per-seed values of each metric, with the sample size.
    pub fn summary(&self, samples: usize) -> Value {
        let of = |get: fn(&ImageScores) -> Option<f64>| {
            let values: Vec<f64> = self.seeds.iter().filter_map(get).collect();
            (!values.is_empty()).then(|| mean_and_spread(&values))
        };
        let mut summary = json!({
            "samples": samples,
            "seeds": self.seeds.len(),
            "clip_fid": of(|s| Some(s.clip_fid)),
            "clip_score": of(|s| Some(s.clip_score)),
        });
        if let Some(fid) = of(|s| s.fid) {
            summary["fid"] = fid;
            summary["kid"] = of(|s| s.kid).unwrap_or(Value::Null);
        }
        summary
    }
}

/// Mean, population spread and the values themselves.
pub(crate) fn mean_and_spread(values: &[f64]) -> Value {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let spread = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    json!({"mean": mean, "std": spread, "per_seed": values})
}

/// Images drawn for documents' captions, and how many prompts held a retrieved document
/// of the caption's own entity.
pub struct Drawn {
    /// One image per document, in order.
    pub images: Vec<RgbImage>,
    /// Prompts whose retrieved documents include the caption's entity.
    pub same_entity: usize,
    /// Codes drawn.
    pub codes: usize,
    /// Of those, the ones equal to the code at the same place of the retrieved image each
    /// drawing follows most ([`crate::tasks::Copied`]).
    pub copied_codes: usize,
    /// Drawings that follow a retrieved image of the caption's entity for more than half
    /// their codes.
    pub copied_same_entity: usize,
}

/// One image per document's caption at `seed` (temperature 1, top-p 0.9): the first of
/// `draw.samples`, which `reranker` sorts by CLIP similarity to the caption when given.
#[allow(clippy::too_many_arguments)]
pub fn draw_images(
    generator: &Generator,
    documents: &[Document],
    prompting: Prompting,
    seed: u64,
    draw: &Drawing,
    reranker: Option<&ClipEncoder>,
    label: &str,
    observer: &dyn Observer,
) -> Result<Drawn, Error> {
    let stage = observer.stage(label);
    stage.set_total(documents.len() as u64);
    let settings = SampleSettings {
        samples: draw.samples.max(1),
        sampling: SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.9),
        },
        seed,
        retrieval_guidance: draw.retrieval_guidance,
        copy_bias: draw.copy_bias,
    };
    let cfg = draw.cfg;
    let mut drawn = Drawn {
        images: Vec::with_capacity(documents.len()),
        same_entity: 0,
        codes: 0,
        copied_codes: 0,
        copied_same_entity: 0,
    };
    for document in documents {
        let caption = document.caption();
        let out = match prompting {
            Prompting::Alone => {
                generator.text_to_image(&caption, None, &settings, cfg, reranker)?
            }
            Prompting::Retrieved(retriever) => {
                generator.text_to_image(&caption, Some(retriever), &settings, cfg, reranker)?
            }
            Prompting::Given(by_entity) => {
                let given = by_entity
                    .get(&document.source.entity)
                    .map_or(&[][..], Vec::as_slice);
                drawn.same_entity += usize::from(!given.is_empty());
                let context = generator.context_of(given)?;
                generator.text_to_image_in(context, &caption, &settings, cfg, reranker)?
            }
        };
        let sample = &out.samples[0];
        if let Prompting::Retrieved(retriever) = prompting {
            let memory = retriever.memory;
            let same_entity = |evidence: &crate::tasks::Evidence| {
                memory
                    .row_of(&evidence.id)
                    .and_then(|row| memory.document(row).ok())
                    .is_some_and(|d| d.source.entity == document.source.entity)
            };
            drawn.same_entity += usize::from(out.context.documents.iter().any(same_entity));
            if let Some(copied) = sample.copied {
                drawn.copied_codes += copied.codes;
                drawn.copied_same_entity += usize::from(
                    2 * copied.codes > sample.codes.len()
                        && out
                            .context
                            .documents
                            .get(copied.document)
                            .is_some_and(same_entity),
                );
            }
        }
        drawn.codes += sample.codes.len();
        drawn.images.push(sample.image.clone());
        stage.advance(1);
    }
    Ok(drawn)
}
