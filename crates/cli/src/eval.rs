//! `racm3 eval`: RA-CM3 against its no-retrieval baseline on held-out emoji entities.
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
//! It writes `report.json` (every number, with sample sizes and per-seed values) and
//! `report.md`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use image::RgbImage;
use racm3::data::Document;
use racm3::evaluate::fid::{
    FEATURES, InceptionFid, frechet_distance_of_samples, kernel_inception_distance,
};
use racm3::evaluate::score_captions;
use racm3::generate::sampler::SamplingConfig;
use racm3::memory::Memory;
use racm3::retrieve::RetrievalPolicy;
use racm3::scores::{clip_fid, clip_score};
use racm3::tasks::{Generator, Retriever, SampleSettings};
use serde_json::{Value, json};

use crate::data::held_out_twemoji;
use crate::progress::Bar;
use crate::vq::DEFAULT_MODEL as DEFAULT_VQGAN;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The generator trained with retrieval.
    #[arg(long)]
    ra: PathBuf,
    /// The baseline: same config and tokens, trained without retrieval.
    #[arg(long)]
    baseline: PathBuf,
    /// The memory RA-CM3 retrieves from.
    #[arg(long)]
    memory: PathBuf,
    /// The VQGAN both generators were trained with.
    #[arg(long, default_value = DEFAULT_VQGAN)]
    vqgan: PathBuf,
    /// Retrieved documents per prompt.
    #[arg(short, long, default_value_t = 2)]
    k: usize,
    /// Skip retrieved documents scoring above this with the query.
    #[arg(long, default_value_t = 0.9)]
    query_threshold: f32,
    /// Seeds for caption to image (the spread is reported).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 3.0)]
    cfg: f32,
    /// Held-out entities to use; 0 is all.
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// The FID Inception weights ($RACM3_FID_WEIGHTS, else made by .ci/fid-weights); FID
    /// and KID are skipped, and say so, when absent.
    #[arg(long)]
    fid_weights: Option<PathBuf>,
    /// The report folder.
    #[arg(long)]
    out: PathBuf,
}

struct Model {
    name: &'static str,
    generator: Generator,
    retrieval: bool,
}

fn mean_and_spread(values: &[f64]) -> Value {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let spread = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    json!({"mean": mean, "std": spread, "per_seed": values})
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let started = Instant::now();
    let device = racm3::Device::Cpu;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut held_out = held_out_twemoji()?;
    if args.limit > 0 {
        held_out.truncate(args.limit);
    }
    let memory = Memory::open(&args.memory)
        .with_context(|| format!("opening the memory in {}", args.memory.display()))?;
    let clip = crate::memory::encoder_for(&memory, None)?;
    let retriever = Retriever {
        encoder: &clip,
        memory: &memory,
        policy: RetrievalPolicy {
            k: args.k,
            query_threshold: args.query_threshold,
            ..RetrievalPolicy::default()
        },
    };
    let load = |run: &PathBuf| {
        Generator::load(run, &args.vqgan, &device)
            .with_context(|| format!("loading the generator in {}", run.display()))
    };
    let models = [
        Model {
            name: "ra-cm3",
            generator: load(&args.ra)?,
            retrieval: true,
        },
        Model {
            name: "baseline",
            generator: load(&args.baseline)?,
            retrieval: false,
        },
    ];
    let captions: Vec<String> = held_out.iter().map(Document::caption).collect();
    let real: Vec<RgbImage> = held_out
        .iter()
        .filter_map(|d| d.images().next().map(|i| i.pixels.clone()))
        .collect();
    let references: Vec<Vec<String>> = held_out
        .iter()
        .map(|d| {
            let mut refs = vec![d.caption()];
            refs.extend(d.source.references.iter().cloned());
            refs
        })
        .collect();
    let weights = args
        .fid_weights
        .clone()
        .or_else(|| std::env::var_os("RACM3_FID_WEIGHTS").map(PathBuf::from))
        .unwrap_or_else(|| {
            racm3::data::Home::from_env()
                .path()
                .join("fid/inception-fid.safetensors")
        });
    let inception = weights
        .exists()
        .then(|| InceptionFid::load(&weights, &device))
        .transpose()?;
    let real_features = match &inception {
        Some(net) => net.features(&real, 16)?,
        None => {
            eprintln!(
                "note: no FID weights at {}; FID and KID skipped (run .ci/fid-weights)",
                weights.display()
            );
            Vec::new()
        }
    };

    let mut results = serde_json::Map::new();
    for model in &models {
        let retriever = model.retrieval.then_some(&retriever);
        let (mut fid, mut kid, mut clip_fids, mut clip_scores) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut retrieved_same_entity = 0usize;
        for seed in 0..args.seeds {
            let bar = Bar::new(&format!("{} seed {seed}", model.name));
            racm3::data::Progress::set_total(&bar, captions.len() as u64);
            let settings = SampleSettings {
                samples: 1,
                sampling: SamplingConfig {
                    temperature: 1.0,
                    top_k: None,
                    top_p: Some(0.9),
                },
                seed,
            };
            let mut generated = Vec::with_capacity(captions.len());
            for (caption, doc) in captions.iter().zip(&held_out) {
                let out = model
                    .generator
                    .text_to_image(caption, retriever, &settings, args.cfg, None)?;
                if seed == 0 {
                    retrieved_same_entity += usize::from(out.context.documents.iter().any(|e| {
                        memory
                            .row_of(&e.id)
                            .and_then(|row| memory.document(row).ok())
                            .is_some_and(|d| d.source.entity == doc.source.entity)
                    }));
                }
                generated.push(out.samples[0].image.clone());
                racm3::data::Progress::advance(&bar, 1);
            }
            bar.finish();
            if seed == 0 {
                let grid = generated.iter().take(32).collect::<Vec<_>>();
                save_row(&grid, &args.out.join(format!("{}-samples.png", model.name)))?;
            }
            let prompts: Vec<&str> = captions.iter().map(String::as_str).collect();
            let scores = clip_score(&clip, &generated, &prompts)?;
            clip_scores.push(scores.iter().sum::<f64>() / scores.len() as f64);
            clip_fids.push(clip_fid(&clip, &real, &generated)?);
            if let Some(net) = &inception {
                let features = net.features(&generated, 16)?;
                let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
                fid.push(frechet_distance_of_samples(
                    &widen(&real_features),
                    &widen(&features),
                    FEATURES,
                )?);
                kid.push(kernel_inception_distance(
                    &real_features,
                    &features,
                    FEATURES,
                )?);
            }
        }
        let caption_settings = SampleSettings {
            samples: 1,
            sampling: SamplingConfig {
                temperature: 0.0,
                top_k: None,
                top_p: None,
            },
            seed: 0,
        };
        let mut written = Vec::with_capacity(real.len());
        for image in &real {
            let out =
                model
                    .generator
                    .image_to_caption(image, retriever, &caption_settings, None)?;
            written.push(out.samples[0].text.clone());
        }
        let cider = score_captions(&written, &references)?;
        let examples: Vec<Value> = captions
            .iter()
            .zip(&written)
            .take(12)
            .map(|(truth, text)| json!({"entity": truth, "caption": text}))
            .collect();
        let mut entry = json!({
            "caption_to_image": {
                "samples": captions.len(),
                "seeds": args.seeds,
                "clip_fid": mean_and_spread(&clip_fids),
                "clip_score": mean_and_spread(&clip_scores),
            },
            "image_to_caption": {
                "samples": written.len(),
                "cider_d": cider.cider_d,
                "rouge_l": cider.rouge_l,
                "examples": examples,
            },
        });
        if !fid.is_empty() {
            entry["caption_to_image"]["fid"] = mean_and_spread(&fid);
            entry["caption_to_image"]["kid"] = mean_and_spread(&kid);
        }
        if model.retrieval {
            entry["retrieved_same_entity_share"] =
                json!(retrieved_same_entity as f64 / captions.len() as f64);
        }
        results.insert(model.name.to_owned(), entry);
    }
    let report = json!({
        "held_out_entities": held_out.len(),
        "memory": args.memory,
        "memory_documents": memory.len(),
        "k": args.k,
        // Through its decimal text, so 0.9 reads 0.9 and not 0.8999999761581421.
        "query_threshold": args.query_threshold.to_string().parse::<f64>().unwrap_or(f64::NAN),
        "cfg": args.cfg,
        "sampling": "temperature 1, top-p 0.9, one image per caption and seed; captions greedy",
        "models": results,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let json_path = args.out.join("report.json");
    racm3::data::write_atomic(
        &json_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let markdown = markdown(&report);
    racm3::data::write_atomic(&args.out.join("report.md"), markdown.as_bytes())?;
    println!("{markdown}");
    Ok(())
}

fn save_row(images: &[&RgbImage], path: &std::path::Path) -> Result<()> {
    let per_row = 16;
    let rows = images.len().div_ceil(per_row).max(1) as u32;
    let mut grid = RgbImage::from_pixel(64 * per_row as u32, 64 * rows, image::Rgb([255; 3]));
    for (index, image) in images.iter().enumerate() {
        let (x, y) = ((index % per_row) as i64 * 64, (index / per_row) as i64 * 64);
        image::imageops::replace(&mut grid, *image, x, y);
    }
    crate::tasks::save_png(&grid, path)
}

fn markdown(report: &Value) -> String {
    let cell = |model: &str, task: &str, metric: &str| -> String {
        let value = &report["models"][model][task][metric];
        match (value.get("mean"), value.as_f64()) {
            (Some(mean), _) => format!(
                "{:.3} ± {:.3}",
                mean.as_f64().unwrap_or(f64::NAN),
                value["std"].as_f64().unwrap_or(f64::NAN)
            ),
            (None, Some(v)) => format!("{v:.3}"),
            _ => "not measured".into(),
        }
    };
    let mut out = format!(
        "# RA-CM3 against its baseline on {} held-out emoji entities\n\n\
         Memory: {} documents; K = {}, query threshold {}, CFG {}; {}.\n\n\
         | task | metric | RA-CM3 | baseline |\n| --- | --- | --- | --- |\n",
        report["held_out_entities"],
        report["memory_documents"],
        report["k"],
        report["query_threshold"],
        report["cfg"],
        report["sampling"].as_str().unwrap_or_default()
    );
    for (task, metric, label) in [
        ("caption_to_image", "fid", "FID (lower is better)"),
        ("caption_to_image", "kid", "KID"),
        ("caption_to_image", "clip_fid", "CLIP-FID"),
        ("caption_to_image", "clip_score", "CLIPScore"),
        ("image_to_caption", "cider_d", "CIDEr-D"),
        ("image_to_caption", "rouge_l", "ROUGE-L"),
    ] {
        out.push_str(&format!(
            "| {task} | {label} | {} | {} |\n",
            cell("ra-cm3", task, metric),
            cell("baseline", task, metric)
        ));
    }
    out.push_str(&format!(
        "\nShare of held-out captions whose retrieved documents include the same entity: {:.3}.\n",
        report["models"]["ra-cm3"]["retrieved_same_entity_share"]
            .as_f64()
            .unwrap_or(f64::NAN)
    ));
    out
}
