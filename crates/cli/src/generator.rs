//! `racm3 train`: train the CM3 generator on documents with the documents the retriever
//! finds for them (or, with --baseline, on the same tokens without retrieval). The run
//! itself is the library's [`racm3::run`]; this is its flags and its output.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use racm3::experiment::demo::VQGAN as DEFAULT_VQGAN;
use racm3::run::{RunPaths, RunSettings};

use crate::progress::Terminal;

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    settings: RunSettings,
    /// The memory to retrieve from (not needed with --baseline).
    #[arg(long)]
    memory: Option<PathBuf>,
    /// The CLIP folder; by default the one that built the memory.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// The VQGAN folder that turns images into codes.
    #[arg(long, default_value = DEFAULT_VQGAN)]
    vqgan: PathBuf,
    /// The run folder: model, tokenizer, corpus caches, checkpoints, loss curves.
    #[arg(long)]
    out: PathBuf,
    /// Where to train: cpu, cuda or cuda:N (a --features cuda build).
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn train(args: TrainArgs) -> Result<()> {
    let device = racm3::device(&args.device)?;
    let settings = &args.settings;
    let paths = RunPaths {
        out: args.out.clone(),
        memory: args.memory.clone(),
        clip: args.clip.clone(),
        vqgan: args.vqgan.clone(),
    };
    let corpus = racm3::run::prepare(settings, &paths, &device, &Terminal)?;
    let mean_len = corpus.train.iter().map(|s| s.tokens.len()).sum::<usize>() as f64
        / corpus.train.len().max(1) as f64;
    eprintln!(
        "{} training sequences ({} skipped), {} val; mean length {mean_len:.0} tokens; {}",
        corpus.train.len(),
        corpus.skipped,
        corpus.val.len(),
        if settings.baseline {
            "baseline: no retrieval".to_string()
        } else {
            format!("K = {}", settings.k)
        }
    );
    if let Some(stats) = &corpus.retrieval {
        eprintln!(
            "retrieval for the {} training documents: their own entity among the retrieved for {:.1}%; {} near copies and {} redundant candidates skipped",
            stats.queries,
            100.0 * stats.same_entity_share(),
            stats.near_copies_skipped,
            stats.redundant_skipped
        );
    }
    if settings.steps == 0 {
        eprintln!(
            "--steps 0: the corpus caches are in {}; nothing trained",
            corpus.cache.display()
        );
        return Ok(());
    }
    let trained = racm3::run::train(settings, &args.out, &corpus, &device, &Terminal)?;
    println!(
        "trained steps {}..{} in {:.0} s ({:.0} target tokens/s); val main loss {:.4}; model in {}",
        trained.first_step,
        trained.steps,
        trained.seconds,
        trained.tokens as f64 / trained.seconds.max(1e-9),
        trained.val_loss,
        args.out.display()
    );
    Ok(())
}
