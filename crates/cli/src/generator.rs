//! `racm3 train`: train the CM3 generator on documents with the documents the retriever
//! finds for them (or, with --baseline, on the same tokens without retrieval).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use racm3::corpus::{CorpusConfig, Tokens, cached, retrieve_all, sequences, tokenize_documents};
use racm3::data::{Document, Split};
use racm3::generate::{Cm3TrainConfig, Cm3Trainer, Config, RETRIEVED_LOSS_WEIGHT};
use racm3::memory::Memory;
use racm3::retrieve::{QUERY_DROPOUT, RetrievalPolicy};
use racm3::tokenize::vqgan::{ImageTokenizer, codes_fingerprint};
use racm3::tokenize::{Cm3Codec, TextTokenizer, TrainOptions};

use crate::data::load_dataset;
use crate::progress::Bar;
use crate::vq::DEFAULT_MODEL as DEFAULT_VQGAN;

/// What a run was trained with, kept in its folder as `train.json`, for reports that
/// compare runs (`racm3 eval --variant`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainSettings {
    pub dataset: String,
    pub preset: String,
    /// Retrieved documents per sequence; 0 for the baseline.
    pub k: usize,
    pub baseline: bool,
    pub alpha: f64,
    /// 0 for the baseline, which retrieves nothing.
    pub query_dropout: f64,
    pub steps: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub seed: u64,
}

impl TrainSettings {
    const FILE: &str = "train.json";

    /// The settings in the run folder `run`.
    pub fn read(run: &Path) -> Result<Self> {
        let path = run.join(Self::FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}, which racm3 train writes into a run folder",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))
    }

    fn write(&self, run: &Path) -> Result<()> {
        racm3::data::write_atomic(
            &run.join(Self::FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        Ok(())
    }
}

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
    #[arg(short, long, default_value_t = 2)]
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
    let device = crate::device(&args.device)?;
    if !args.baseline && args.memory.is_none() {
        bail!("give --memory to retrieve from, or --baseline to train without retrieval");
    }
    if !(args.alpha.is_finite() && args.alpha >= 0.0) {
        bail!("--alpha must be a finite weight >= 0, not {}", args.alpha);
    }
    if !(0.0..1.0).contains(&args.query_dropout) {
        bail!(
            "--query-dropout must be in [0, 1), not {}",
            args.query_dropout
        );
    }
    let documents = load_dataset(&args.dataset, false)?.documents;
    let of_split = |split: Split| -> Vec<Document> {
        documents
            .iter()
            .filter(|doc| doc.source.split == split)
            .cloned()
            .collect()
    };
    let (train_docs, val_docs) = (of_split(Split::Train), of_split(Split::Val));
    if train_docs.is_empty() {
        bail!("{} has no training documents", args.dataset);
    }
    // Before the caches are made: a folder holding a trained model is not a new run's.
    racm3::train::Checkpoints::new(&args.out).resume_point::<serde::de::IgnoredAny>()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // Deterministic on the same captions, so a baseline run gets the same tokenizer.
    let tokenizer_path = args.out.join("tokenizer.json");
    let text = if tokenizer_path.exists() {
        TextTokenizer::from_file(&tokenizer_path)?
    } else {
        let captions: Vec<String> = train_docs.iter().map(Document::caption).collect();
        let text = TextTokenizer::train(&captions, &TrainOptions::default())?;
        text.save(&tokenizer_path)?;
        text
    };
    let vqgan = ImageTokenizer::load(&args.vqgan, &device)
        .with_context(|| format!("loading the VQGAN in {}", args.vqgan.display()))?;
    let codec = Cm3Codec::new(text, vqgan.codebook_size());
    let ids = *codec.ids();
    let Some(model) = Config::preset(&args.preset, ids.len() as usize) else {
        bail!(
            "unknown preset '{}': expected one of {}",
            args.preset,
            Config::PRESETS.join(", ")
        );
    };
    let corpus = CorpusConfig {
        policy: RetrievalPolicy {
            k: args.k,
            ..RetrievalPolicy::default()
        },
        no_retrieval_share: 0.1,
        baseline: args.baseline,
        max_len: model.max_seq_len,
        query_dropout: args.query_dropout,
        seed: args.seed,
    };

    // The memory is read only to make the caches, so a run folder that has them trains
    // (and resumes) without it.
    let open_memory =
        || -> Result<Option<Memory>> { Ok(args.memory.as_deref().map(Memory::open).transpose()?) };
    let cache = args.out.join("corpus");
    // Named by the codes' fingerprint, so another VQGAN never reads this one's codes.
    let codes = codes_fingerprint(&args.vqgan)
        .with_context(|| format!("reading the VQGAN in {}", args.vqgan.display()))?;
    let tokens_cache = cache.join(format!("tokens-codes-{codes:08x}.json"));
    let tokens: Tokens = cached(&tokens_cache, || {
        let mut everything: Vec<Document> = train_docs.iter().chain(&val_docs).cloned().collect();
        if let Some(memory) = open_memory()? {
            for id in memory.ids() {
                let row = memory.row_of(id).expect("a live id has a row");
                everything.push(memory.document(row)?);
            }
        }
        let bar = Bar::new("tokenizing");
        racm3::data::Progress::set_total(&bar, everything.len() as u64);
        let tokens = tokenize_documents(&everything, &codec, &vqgan, |n| {
            racm3::data::Progress::advance(&bar, n as u64)
        });
        bar.finish();
        anyhow::Ok(tokens?)
    })?;
    let retrieved = if args.baseline {
        Default::default()
    } else {
        let name = format!("retrieved-k{}-dropout{}.json", args.k, args.query_dropout);
        cached(&cache.join(name), || {
            let Some(memory) = open_memory()? else {
                bail!("give --memory to retrieve from");
            };
            let encoder = crate::memory::encoder_for(&memory, args.clip.as_deref())?;
            let queries: Vec<Document> = train_docs.iter().chain(&val_docs).cloned().collect();
            let bar = Bar::new("retrieving");
            racm3::data::Progress::set_total(&bar, queries.len() as u64);
            let found = retrieve_all(&queries, &encoder, &memory, &corpus, |n| {
                racm3::data::Progress::advance(&bar, n as u64)
            });
            bar.finish();
            anyhow::Ok(found?)
        })?
    };
    let (train_set, skipped) = sequences(&train_docs, &tokens, &retrieved, &codec, &corpus)?;
    let val_corpus = CorpusConfig {
        no_retrieval_share: 0.0,
        ..corpus
    };
    let (val_set, _) = sequences(&val_docs, &tokens, &retrieved, &codec, &val_corpus)?;
    let mean_len = train_set.iter().map(|s| s.tokens.len()).sum::<usize>() as f64
        / train_set.len().max(1) as f64;
    eprintln!(
        "{} training sequences ({} skipped), {} val; mean length {mean_len:.0} tokens; {}",
        train_set.len(),
        skipped,
        val_set.len(),
        if args.baseline {
            "baseline: no retrieval".to_string()
        } else {
            format!("K = {}", args.k)
        }
    );

    if args.steps == 0 {
        eprintln!(
            "--steps 0: the corpus caches are in {}; nothing trained",
            cache.display()
        );
        return Ok(());
    }

    let config = Cm3TrainConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        grad_accum: args.grad_accum,
        lr: args.lr,
        alpha: args.alpha,
        seed: args.seed,
        ..Cm3TrainConfig::new(model)
    };
    TrainSettings {
        dataset: args.dataset.clone(),
        preset: args.preset.clone(),
        k: if args.baseline { 0 } else { args.k },
        baseline: args.baseline,
        // Through its decimal text, so 0.1 reads 0.1 and not 0.10000000149011612.
        alpha: args.alpha.to_string().parse::<f64>()?,
        query_dropout: if args.baseline {
            0.0
        } else {
            args.query_dropout
        },
        steps: args.steps,
        batch_size: args.batch_size,
        grad_accum: args.grad_accum,
        lr: args.lr,
        seed: args.seed,
    }
    .write(&args.out)?;
    let mut trainer = Cm3Trainer::open(config, ids, &args.out, &device)?;
    let bar = Bar::new("training");
    racm3::data::Progress::set_total(&bar, args.steps as u64);
    racm3::data::Progress::advance(&bar, trainer.step() as u64);
    let started = Instant::now();
    let first = trainer.step();
    let mut seen_tokens = 0usize;
    let outcome = trainer.train_until(args.steps, &train_set, &val_set, |report| {
        seen_tokens += report.tokens;
        racm3::data::Progress::advance(&bar, 1);
        bar.set_message(format!(
            "main {:.3} retr {:.3} {:.0} tok/s",
            report.main,
            report.retrieved,
            seen_tokens as f64 / started.elapsed().as_secs_f64()
        ));
    });
    bar.finish();
    outcome?;
    let elapsed = started.elapsed().as_secs_f64();
    let val = trainer.validation_loss(&val_set)?;
    println!(
        "trained steps {first}..{} in {elapsed:.0} s ({:.0} target tokens/s); val main loss {val:.4}; model in {}",
        args.steps,
        seen_tokens as f64 / elapsed.max(1e-9),
        args.out.display()
    );
    Ok(())
}
