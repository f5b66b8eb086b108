//! `racm3 train`: train the CM3 generator on documents with the documents the retriever
//! finds for them (or, with --baseline, on the same tokens without retrieval). The run
//! itself is the library's [`racm3::run`]; this is its flags and its output.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use racm3::experiment::demo::VQGAN as DEFAULT_VQGAN;
use racm3::generate::RETRIEVED_LOSS_WEIGHT;
use racm3::retrieve::{DEFAULT_K, QUERY_DROPOUT};
use racm3::run::{RunPaths, RunSettings, decimal};

use crate::progress::Terminal;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The dataset whose train split is the main documents (val split: validation loss).
    #[arg(default_value = "emoji")]
    dataset: String,
    /// The memory to retrieve from (not needed with --baseline).
    #[arg(long)]
    memory: Option<PathBuf>,
    /// The CLIP folder; by default the one that built the memory.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// The VQGAN folder that turns images into codes.
    #[arg(long, default_value = DEFAULT_VQGAN)]
    vqgan: PathBuf,
    /// Model shape: tiny, small or ra-cm3-2.7b.
    #[arg(long, default_value = "small")]
    preset: String,
    /// Retrieved documents per sequence (K).
    #[arg(short, long, default_value_t = DEFAULT_K)]
    k: usize,
    /// Train the no-retrieval baseline: K = 0 always, the same tokens otherwise.
    #[arg(long)]
    baseline: bool,
    /// Optimizer steps in all; 0 only makes the corpus caches (tokens, retrievals) in the
    /// run folder, e.g. on a CPU machine before training on a GPU one.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Micro-batches per step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Weight of the retrieved documents' loss against the main document's (α).
    #[arg(long, default_value_t = RETRIEVED_LOSS_WEIGHT)]
    alpha: f32,
    /// Skip candidates scoring above this with a training document's query (the paper's
    /// 0.9); 1 keeps every other rendition of its entity (the document itself is always
    /// left out).
    #[arg(long, default_value_t = racm3::retrieve::DEFAULT_THRESHOLD)]
    train_query_threshold: f32,
    /// Share of training documents whose caption alone is masked, as a captioning prompt;
    /// the rest get CM3's random spans.
    #[arg(long, default_value_t = 0.0)]
    caption_share: f64,
    /// Share of a text query's tokens dropped when retrieving for a training document.
    #[arg(long, default_value_t = QUERY_DROPOUT)]
    query_dropout: f64,
    /// Seed for weights, masking and batches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The run folder: model, tokenizer, corpus caches, checkpoints, loss curves.
    #[arg(long)]
    out: PathBuf,
    /// Where to train: cpu, cuda or cuda:N (a --features cuda build).
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn train(args: TrainArgs) -> Result<()> {
    let device = racm3::device(&args.device)?;
    let settings = RunSettings {
        dataset: args.dataset.clone(),
        preset: args.preset.clone(),
        k: args.k,
        baseline: args.baseline,
        alpha: decimal(args.alpha),
        query_dropout: args.query_dropout,
        steps: args.steps,
        batch_size: args.batch_size,
        grad_accum: args.grad_accum,
        lr: args.lr,
        seed: args.seed,
        train_query_threshold: args.train_query_threshold,
        caption_share: args.caption_share,
    };
    let paths = RunPaths {
        out: args.out.clone(),
        memory: args.memory.clone(),
        clip: args.clip.clone(),
        vqgan: args.vqgan.clone(),
    };
    let corpus = racm3::run::prepare(&settings, &paths, &device, &Terminal)?;
    let mean_len = corpus.train.iter().map(|s| s.tokens.len()).sum::<usize>() as f64
        / corpus.train.len().max(1) as f64;
    eprintln!(
        "{} training sequences ({} skipped), {} val; mean length {mean_len:.0} tokens; {}",
        corpus.train.len(),
        corpus.skipped,
        corpus.val.len(),
        if args.baseline {
            "baseline: no retrieval".to_string()
        } else {
            format!("K = {}", args.k)
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
    if args.steps == 0 {
        eprintln!(
            "--steps 0: the corpus caches are in {}; nothing trained",
            corpus.cache.display()
        );
        return Ok(());
    }
    let trained = racm3::run::train(&settings, &args.out, &corpus, &device, &Terminal)?;
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
