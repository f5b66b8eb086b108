//! The experiment `racm3 eval` runs: RA-CM3 against its no-retrieval baseline on held-out
//! emoji entities, as a report value, rendered as Markdown and HTML by [`report`].
//!
//! The held-out set is one Twemoji document per val entity (no skin-tone variants); the
//! models never saw these entities in training, so what they know of them can come only
//! from the memory. Two tasks, the same settings for both models:
//! - caption to image: one image per caption and seed, scored against the real Twemoji
//!   images with FID and KID (the standard Inception network, when its weights are
//!   present), CLIP-FID and CLIPScore;
//! - image to caption (greedy): CIDEr-D and ROUGE-L against the entity's name and short
//!   names.
//!
//! Further tasks: the knowledge update, Fashion-MNIST few-shot classification, and the
//! ablations: at inference (K and the retrieval policy's skips, one trained model) and at
//! training (variants: runs trained with other K, alpha or query dropout).
//!
//! The report holds every number, with sample sizes and per-seed values; sample grids,
//! the few-shot curve and the work memories go into the settings' `out` folder.

pub mod demo;
mod diagnostics;
mod few_shot;
mod images;
mod knowledge;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use image::RgbImage;
use racm3_data::{Document, Split};
use racm3_evaluate::fid::InceptionFid;
use racm3_evaluate::score_captions;
use racm3_retrieve::RetrievalPolicy;
use serde_json::{Value, json};

pub use crate::scores::default_fid_weights;
pub use few_shot::SHOTS;
pub use images::{Drawing, Drawn, ImageScores, ImageScoring, Prompting, SeedScores, draw_images};

use crate::Error;
use crate::error::WithContext;
use crate::progress::Observer;
use crate::run::{RunSettings, decimal};
use crate::tasks::{Generator, Retriever, SampleSettings};

/// The experiment's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Task {
    /// Caption to image on the held-out entities.
    Image,
    /// Caption to image on as many entities seen in training (evenly spaced over the
    /// train split), scored against their real Twemoji images.
    ImageSeen,
    /// Image to caption on the held-out entities.
    Caption,
    /// The held-out entities before and after their documents join the memory.
    Knowledge,
    /// Fashion-MNIST classification in context with made-up labels.
    FewShot,
    /// RA-CM3's caption to image with K = 0..3 retrieved documents, and without the
    /// retrieval policy's near-copy and redundancy skips (inference only; no retraining).
    Ablation,
    /// Caption to image with each `--variant` run (trained with other K, alpha or query
    /// dropout), each with the K it was trained with.
    TrainingAblation,
    /// Retrieval alone, no generator: for each held-out entity, whether the K documents
    /// retrieved for its caption, and for its Twemoji drawing, include the same entity.
    Retrieval,
    /// The rows the generators are read against (the tokenizer floor; the top retrieved
    /// image, raw and through the VQGAN; the top retrieved caption) and the copy probe
    /// (loss with a same-entity document in front, a random one, none).
    Diagnostics,
    /// RA-CM3 with the entity's own documents of other renditions in front of the prompt
    /// instead of the retrieved ones: caption to image and image to caption.
    Oracle,
}

/// What the experiment compares and how.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The generator trained with retrieval.
    pub ra: PathBuf,
    /// The baseline: same config and tokens, trained without retrieval.
    pub baseline: PathBuf,
    /// The memory RA-CM3 retrieves from.
    pub memory: PathBuf,
    /// The VQGAN both generators were trained with.
    pub vqgan: PathBuf,
    /// Retrieved documents per prompt.
    pub k: usize,
    /// Skip retrieved documents whose joint key scores above this with the query's.
    pub query_threshold: f32,
    /// Seeds and guidance of caption to image.
    pub drawing: Drawing,
    /// The copy pointer's bias while writing captions ([`SampleSettings::copy_bias`]).
    pub caption_copy_bias: f32,
    /// Held-out entities to use; 0 is all.
    pub limit: usize,
    /// The split whose entities are held out: val while choosing, test once at the end
    /// (train only for tests on data with no other split).
    pub split: Split,
    /// The FID Inception weights; FID and KID are skipped, and say so, when absent.
    pub fid_weights: PathBuf,
    /// The folder for sample grids, the few-shot curve and the work memories.
    pub out: PathBuf,
    /// Which tasks to run.
    pub tasks: Vec<Task>,
    /// Episodes of the few-shot task.
    pub few_shot_queries: usize,
    /// Runs trained with other settings, for [`Task::TrainingAblation`].
    pub variants: Vec<PathBuf>,
}

struct Model {
    name: &'static str,
    generator: Generator,
    retrieval: bool,
}

/// `count` of `items`, evenly spaced from the first, in order (all of them if fewer).
fn evenly_spaced<T>(items: Vec<T>, count: usize) -> Vec<T> {
    let len = items.len();
    if count >= len {
        return items;
    }
    let mut wanted = (0..count).map(|i| i * len / count).peekable();
    items
        .into_iter()
        .enumerate()
        .filter_map(|(index, item)| {
            (wanted.peek() == Some(&index)).then(|| {
                wanted.next();
                item
            })
        })
        .collect()
}

/// The first image of each document.
fn images_of(documents: &[Document]) -> Vec<RgbImage> {
    documents
        .iter()
        .filter_map(|d| d.images().next().map(|i| i.pixels.clone()))
        .collect()
}

/// The datasets and splits of the experiment's memory: every rendition of the train
/// entities, and every rendition but Twemoji of the held-out (val and test) entities. The
/// held-out Twemoji drawings, which the generators are scored against and which are the
/// image queries, are never in it.
pub const MEMORY_SOURCES: [(&str, Option<Split>); 5] = [
    ("emoji-twitter", Some(Split::Train)),
    ("emoji-google", None),
    ("emoji-openmoji", None),
    ("emoji-fluent", None),
    ("emoji-noto-v1", None),
];

/// The experiment memory's keys for `clip`: the joint key, the text embedding and its
/// pixel keys where its folder has them (the committed CLIP's does), else the joint key and
/// the image embedding. Image queries (captioning's) find the same entity among 2 for 0.042
/// of the held-out drawings by joint keys, 0.132 by the committed CLIP's image embeddings
/// and 0.497 by its pixel keys (BENCHMARKS.md, "Pixel keys"); caption queries (drawing's)
/// for 0.704 by joint keys and 1.000 by the text part (BENCHMARKS.md, "Caption queries
/// scored against captions").
pub fn memory_keys(clip: &racm3_retrieve::ClipEncoder) -> racm3_retrieve::KeyLayout {
    if clip.pixel_keys().is_some() {
        racm3_retrieve::KeyLayout::JointTextAndPixels
    } else {
        racm3_retrieve::KeyLayout::JointAndImage
    }
}

/// The experiment memory's index: exact. An HNSW graph over joint+image keys, walked by a
/// text query that scores the joint half alone, found the same entity among 2 for 0.614 of
/// the held-out captions where exact search finds it for 0.714.
pub const MEMORY_INDEX: &str = "flat";

/// Builds the experiment's memory ([`MEMORY_SOURCES`]) in the new folder `dir`, keyed by
/// `clip` with [`memory_keys`] in a [`MEMORY_INDEX`] index.
pub fn build_memory(
    dir: &Path,
    clip: &racm3_retrieve::ClipEncoder,
    observer: &dyn Observer,
) -> Result<racm3_memory::Memory, Error> {
    let clip = &clip.clone().with_layout(memory_keys(clip))?;
    let mut memory =
        racm3_memory::Memory::create(dir, clip.key_dim(), MEMORY_INDEX, clip.describe())
            .context(|| format!("creating the memory in {}", dir.display()))?;
    for (dataset, split) in MEMORY_SOURCES {
        let documents: Vec<Document> = crate::datasets::load(dataset, false, observer)?
            .documents
            .into_iter()
            .filter(|d| split.is_none_or(|split| d.source.split == split))
            .collect();
        let stage = observer.stage("embedding");
        let added = crate::memory::add_new_documents(&mut memory, clip, documents, &*stage)?;
        drop(stage);
        observer.note(&format!(
            "added {} documents from {dataset}; the memory in {} holds {}",
            added.added,
            dir.display(),
            memory.len()
        ));
    }
    Ok(memory)
}

/// Runs the experiment: the report, with every number, sample size and per-seed value.
pub fn run(experiment: &Experiment, observer: &dyn Observer) -> Result<Value, Error> {
    let started = Instant::now();
    let device = Device::Cpu;
    let wants = |task: Task| experiment.tasks.contains(&task);
    std::fs::create_dir_all(&experiment.out)
        .map_err(|err| Error::BadInput(err.to_string()))
        .context(|| format!("creating {}", experiment.out.display()))?;
    if wants(Task::TrainingAblation) == experiment.variants.is_empty() {
        return Err(Error::BadInput(
            "--tasks training-ablation and --variant RUN go together".into(),
        ));
    }
    // Read first, so a wrong folder fails before the models load.
    let variants = experiment
        .variants
        .iter()
        .map(|run| {
            let settings =
                RunSettings::read(run).context(|| format!("--variant {}", run.display()))?;
            Ok((run, settings))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut held_out = crate::datasets::twemoji_entities(experiment.split, observer)?;
    if held_out.is_empty() && experiment.tasks.iter().any(|task| *task != Task::FewShot) {
        return Err(Error::BadInput(format!(
            "no Twemoji drawing of an entity in the {} split to hold out",
            experiment.split
        )));
    }
    if experiment.limit > 0 {
        held_out.truncate(experiment.limit);
    }
    let memory = crate::memory::open(&experiment.memory)?;
    let clip = crate::memory::encoder_for(&memory, None)?;
    let retriever = Retriever {
        encoder: &clip,
        memory: &memory,
        policy: RetrievalPolicy {
            query_threshold: experiment.query_threshold,
            ..RetrievalPolicy::top(experiment.k)
        },
    };
    let load = |run: &PathBuf| {
        Generator::load(run, &experiment.vqgan, &device)
            .context(|| format!("loading the generator in {}", run.display()))
    };
    let models = [
        Model {
            name: "ra-cm3",
            generator: load(&experiment.ra)?,
            retrieval: true,
        },
        Model {
            name: "baseline",
            generator: load(&experiment.baseline)?,
            retrieval: false,
        },
    ];
    let seen = if wants(Task::ImageSeen) {
        evenly_spaced(
            crate::datasets::twemoji_entities(Split::Train, observer)?,
            held_out.len(),
        )
    } else {
        Vec::new()
    };
    let captions: Vec<String> = held_out.iter().map(Document::caption).collect();
    let real = images_of(&held_out);
    let seen_real = images_of(&seen);
    let references: Vec<Vec<String>> = held_out
        .iter()
        .map(|d| {
            let mut refs = vec![d.caption()];
            refs.extend(d.source.references.iter().cloned());
            refs
        })
        .collect();
    let weights = &experiment.fid_weights;
    let inception = weights
        .exists()
        .then(|| InceptionFid::load(weights, &device))
        .transpose()?;
    let real_features = match &inception {
        Some(net) => net.features(&real, 16)?,
        None => {
            observer.note(&format!(
                "note: no FID weights at {}; FID and KID skipped (run .ci/fid-weights)",
                weights.display()
            ));
            Vec::new()
        }
    };
    let seen_features = match &inception {
        Some(net) if !seen_real.is_empty() => net.features(&seen_real, 16)?,
        _ => Vec::new(),
    };
    let images = ImageScoring {
        clip: &clip,
        inception: inception.as_ref(),
        real: &real,
        real_features: &real_features,
    };
    let seen_images = ImageScoring {
        real: &seen_real,
        real_features: &seen_features,
        ..images
    };
    let draw = &experiment.drawing;
    let mut results = serde_json::Map::new();
    for model in &models {
        let retriever = model.retrieval.then_some(&retriever);
        let prompting = Prompting::retrieved_or_alone(retriever);
        let mut entry = json!({});
        if wants(Task::Image) {
            let (summary, first) = images.over_seeds(
                &model.generator,
                &held_out,
                prompting,
                draw,
                model.name,
                observer,
            )?;
            entry["caption_to_image"] = summary;
            if let Some(first) = first {
                let grid: Vec<&RgbImage> = first.images.iter().take(32).collect();
                let path = experiment.out.join(format!("{}-samples.png", model.name));
                racm3_data::save_png(&racm3_data::image_grid(&grid, 16, 0), &path)?;
                if model.retrieval {
                    entry["retrieved_same_entity_share"] =
                        json!(first.same_entity as f64 / captions.len() as f64);
                    entry["copied_code_share"] =
                        json!(first.copied_codes as f64 / first.codes.max(1) as f64);
                    entry["copied_same_entity_share"] =
                        json!(first.copied_same_entity as f64 / captions.len() as f64);
                }
            }
        }
        if wants(Task::ImageSeen) {
            let label = format!("{} seen entities", model.name);
            entry["caption_to_image_seen"] = seen_images
                .over_seeds(&model.generator, &seen, prompting, draw, &label, observer)?
                .0;
        }
        if wants(Task::Caption) {
            entry["image_to_caption"] = caption_task(
                &model.generator,
                prompting,
                &held_out,
                &real,
                &references,
                experiment.caption_copy_bias,
            )?;
        }
        results.insert(model.name.to_owned(), entry);
    }
    let mut report = json!({
        "split": experiment.split.name(),
        "held_out_entities": held_out.len(),
        "seen_entities": seen.len(),
        "memory": experiment.memory,
        "memory_documents": memory.len(),
        "k": experiment.k,
        "query_threshold": decimal(experiment.query_threshold),
        "cfg": draw.cfg,
        "retrieval_guidance": draw.retrieval_guidance,
        "copy_bias": draw.copy_bias,
        "caption_copy_bias": experiment.caption_copy_bias,
        "sampling": if draw.samples > 1 {
            format!(
                "temperature 1, top-p 0.9, per caption and seed the best of {} images by CLIP \
                 similarity to the caption; captions greedy",
                draw.samples
            )
        } else {
            "temperature 1, top-p 0.9, one image per caption and seed; captions greedy".to_owned()
        },
        "models": results,
    });
    if wants(Task::Retrieval) {
        report["retrieval"] = same_entity_retrieval(&retriever, &held_out)?;
    }
    if wants(Task::Diagnostics) {
        let ra = &models[0].generator;
        let mut rows =
            diagnostics::floor_and_retrieval_only(ra, &retriever, &held_out, &images, &references)?;
        for model in &models {
            rows["copy_probe"][model.name] =
                diagnostics::copy_probe(&model.generator, &memory, &held_out, 0)?;
        }
        report["diagnostics"] = rows;
    }
    if wants(Task::Oracle) {
        let given = diagnostics::oracle_documents(&memory, &held_out, experiment.k)?;
        let ra = &models[0].generator;
        let (summary, _) = images.over_seeds(
            ra,
            &held_out,
            Prompting::Given(&given),
            draw,
            "oracle context",
            observer,
        )?;
        report["oracle"] = json!({
            "entities_with_documents": given.len(),
            "caption_to_image": summary,
            "image_to_caption": caption_task(ra, Prompting::Given(&given), &held_out, &real, &references, experiment.caption_copy_bias)?,
        });
    }
    if wants(Task::Knowledge) {
        report["knowledge_update"] = knowledge::run(
            &models[0].generator,
            &clip,
            &images,
            &experiment.memory,
            &held_out,
            retriever.policy,
            draw,
            &experiment.out,
            observer,
        )?;
    }
    if wants(Task::FewShot) {
        report["few_shot"] = few_shot::run(
            &models[0].generator,
            &models[1].generator,
            &clip,
            experiment.k,
            experiment.few_shot_queries,
            &experiment.out,
            observer,
        )?;
    }
    let ablate = |name: &str, generator: &Generator, policy: RetrievalPolicy| {
        let ablated = Retriever {
            policy,
            ..retriever
        };
        let with = Prompting::retrieved_or_alone((policy.k > 0).then_some(&ablated));
        let label = format!("ablation {name}");
        images
            .over_seeds(generator, &held_out, with, draw, &label, observer)
            .map(|(summary, _)| summary)
    };
    if wants(Task::Ablation) {
        let mut rows = serde_json::Map::new();
        let by_k = [0, 1, 2, 3].map(|k| {
            (
                format!("K = {k}"),
                RetrievalPolicy {
                    k,
                    ..retriever.policy
                },
            )
        });
        let without_skips = (
            "K = 2, no near-copy or redundancy skips".to_owned(),
            retriever.policy.without_skips(),
        );
        for (name, policy) in by_k.into_iter().chain([without_skips]) {
            let row = ablate(&name, &models[0].generator, policy)?;
            rows.insert(name, row);
        }
        report["ablation"] = Value::Object(rows);
    }
    if !variants.is_empty() {
        let mut rows = Vec::with_capacity(variants.len());
        for (run, trained) in &variants {
            let policy = RetrievalPolicy {
                k: trained.k,
                ..retriever.policy
            };
            let name = trained.label();
            let mut row = ablate(&name, &load(run)?, policy)?;
            row["setting"] = json!(name);
            row["run"] = json!(run);
            rows.push(row);
        }
        report["trained_ablation"] = Value::Array(rows);
    }
    report["seconds"] = json!(started.elapsed().as_secs_f64());
    Ok(report)
}

/// For each held-out document, whether the documents retrieved for its caption and for its
/// image hold its entity at rank 1 and among the first K: the shares, and the counts of
/// what the policy skipped.
fn same_entity_retrieval(retriever: &Retriever, held_out: &[Document]) -> Result<Value, Error> {
    let memory = retriever.memory;
    let entity_of = |hit: &racm3_retrieve::Retrieved| {
        memory
            .document(hit.row)
            .map(|document| document.source.entity)
    };
    let mut rows = serde_json::Map::new();
    for (name, by_text) in [("text", true), ("image", false)] {
        let (mut first, mut any, mut near_copies, mut redundant) = (0usize, 0usize, 0, 0);
        for document in held_out {
            let image = document.images().next().map(|part| &part.pixels);
            let caption = document.caption();
            let query = racm3_retrieve::Query {
                text: by_text.then_some(caption.as_str()),
                image: if by_text { None } else { image },
            };
            let found = racm3_retrieve::retrieve_for_query(
                retriever.encoder,
                memory,
                &query,
                &retriever.policy,
            )?;
            near_copies += found.near_copies;
            redundant += found.redundant;
            let entities = found
                .documents
                .iter()
                .map(entity_of)
                .collect::<Result<Vec<_>, _>>()?;
            let entity = &document.source.entity;
            first += usize::from(entities.first() == Some(entity));
            any += usize::from(entities.contains(entity));
        }
        let n = held_out.len().max(1) as f64;
        rows.insert(
            name.to_owned(),
            json!({
                "queries": held_out.len(),
                "same_entity_at_1": first as f64 / n,
                "same_entity_in_k": any as f64 / n,
                "near_copies_skipped": near_copies,
                "redundant_skipped": redundant,
            }),
        );
    }
    Ok(json!({"k": retriever.policy.k, "queries": rows}))
}

/// Image to caption, greedy at the copy pointer's `copy_bias`: CIDEr-D and ROUGE-L against
/// the names, and a few examples.
fn caption_task(
    generator: &Generator,
    prompting: Prompting,
    documents: &[Document],
    real: &[RgbImage],
    references: &[Vec<String>],
    copy_bias: f32,
) -> Result<Value, Error> {
    let greedy = SampleSettings {
        copy_bias,
        ..SampleSettings::greedy()
    };
    let mut written = Vec::with_capacity(real.len());
    for (image, document) in real.iter().zip(documents) {
        let out = match prompting {
            Prompting::Alone => generator.image_to_caption(image, None, &greedy, None)?,
            Prompting::Retrieved(retriever) => {
                generator.image_to_caption(image, Some(retriever), &greedy, None)?
            }
            Prompting::Given(by_entity) => {
                let given = by_entity
                    .get(&document.source.entity)
                    .map_or(&[][..], Vec::as_slice);
                let context = generator.context_of(given)?;
                generator.image_to_caption_in(context, image, &greedy, None)?
            }
        };
        written.push(out.samples[0].text.clone());
    }
    let cider = score_captions(&written, references)?;
    let examples: Vec<Value> = references
        .iter()
        .zip(&written)
        .take(12)
        .map(|(truth, text)| json!({"entity": truth[0], "caption": text}))
        .collect();
    Ok(json!({
        "samples": written.len(),
        "non_empty": written.iter().filter(|c| !c.trim().is_empty()).count(),
        "cider_d": cider.cider_d,
        "rouge_l": cider.rouge_l,
        "bleu_4": cider.bleu[3],
        "examples": examples,
    }))
}

/// A report read back from its JSON file, for rendering again.
pub fn read_report(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| Error::BadInput(err.to_string()))
        .context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|err| Error::BadInput(err.to_string()))
        .context(|| format!("{} is not a report", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_keeps_order_and_spread() {
        assert_eq!(evenly_spaced((0..10).collect(), 3), vec![0, 3, 6]);
        assert_eq!(evenly_spaced((0..4).collect(), 4), vec![0, 1, 2, 3]);
        assert_eq!(evenly_spaced((0..4).collect(), 9), vec![0, 1, 2, 3]);
        assert!(evenly_spaced((0..4).collect::<Vec<_>>(), 0).is_empty());
    }
}
