//! A generator training run, as `racm3 train` makes one: one settings struct
//! ([`RunSettings`], kept in the run folder as `train.json`), the corpus built from a
//! dataset, a memory and the tokenizers with its caches in the folder ([`corpus`]), and the
//! trainer, which resumes a run found there.
//!
//! The lower-level settings of the stages, the trainer's [`Cm3TrainConfig`] and the
//! corpus's [`CorpusConfig`], are derived from [`RunSettings`] here and nowhere else.

pub mod corpus;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use racm3_data::{Document, Split};
use racm3_generate::{
    CaptionCopy, Cm3TrainConfig, Cm3Trainer, Config, ImageCopy, ImagePositions,
    RETRIEVED_LOSS_WEIGHT, Sequence,
};
use racm3_retrieve::{DEFAULT_THRESHOLD, QUERY_DROPOUT, RetrievalPolicy, TrainingQuery};
use racm3_tokenize::vqgan::{ImageTokenizer, codes_fingerprint};
use racm3_tokenize::{Cm3Codec, IdSpace, Special, TextTokenizer, TrainOptions};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::WithContext;
use crate::progress::{Observer, stage_from};
use corpus::{
    CorpusConfig, RetrievalStats, Tokens, cached, retrieve_all, sequences, tokenize_documents,
};

/// Everything a generator run is trained with, kept in its folder as `train.json`, for
/// reports that compare runs (`racm3 eval --variant`). With the `clap` feature it is also
/// `racm3 train`'s flags, so each default and its help are written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct RunSettings {
    /// The dataset whose train split is the main documents (val split: validation loss).
    #[cfg_attr(feature = "clap", arg(default_value = "emoji"))]
    pub dataset: String,
    /// Model shape: tiny, small or ra-cm3-2.7b.
    #[cfg_attr(feature = "clap", arg(long, default_value = "small"))]
    pub preset: String,
    /// Retrieved documents per sequence (K).
    #[cfg_attr(feature = "clap", arg(short, long, default_value_t = RetrievalPolicy::default().k))]
    pub k: usize,
    /// Train the no-retrieval baseline: K = 0 always, the same tokens otherwise.
    #[cfg_attr(feature = "clap", arg(long))]
    pub baseline: bool,
    /// Weight of the retrieved documents' loss against the main document's (α).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = decimal(RETRIEVED_LOSS_WEIGHT)))]
    pub alpha: f64,
    /// Share of a text query's tokens dropped when retrieving for a training document.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = QUERY_DROPOUT))]
    pub query_dropout: f64,
    /// Optimizer steps in all; 0 only makes the corpus caches (tokens, retrievals) in the
    /// run folder, e.g. on a CPU machine before training on a GPU one.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 2000))]
    pub steps: usize,
    /// Sequences per micro-batch.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 8))]
    pub batch_size: usize,
    /// Micro-batches per step.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1))]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1e-3))]
    pub lr: f64,
    /// Seed for weights, masking and batches.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0))]
    pub seed: u64,
    /// Skip candidates scoring above this with a training document's query (the paper's
    /// 0.9); 1 keeps every other rendition of its entity (the document itself is always
    /// left out).
    #[serde(default = "default_threshold")]
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULT_THRESHOLD))]
    pub train_query_threshold: f32,
    /// Share of training documents whose caption alone is masked, as a captioning prompt;
    /// the rest get CM3's random spans.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub caption_share: f64,
    /// Copy-friendly image positions: a learned embedding of each code's place in its
    /// grid, shared by every image in the sequence (`ImagePositions`).
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub image_positions: bool,
    /// An image copy pointer over the retrieved images (`ImageCopy`): each image code may
    /// be copied from the same grid place of a retrieved image, with learned weights.
    /// Implies `image_positions`.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub image_copy: bool,
    /// The retrieved images' codes at each place as input features of the position that
    /// predicts that place (`ImageCopy::features`). Implies `image_positions`.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub image_features: bool,
    /// A copy pointer over the retrieved documents' captions, token j for token j
    /// (`CaptionCopy`); with `--image-copy` or `--image-features` their copy reads
    /// captions too.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub caption_copy: bool,
    /// Captioning prompts (the documents whose caption alone is masked, `--caption-share`)
    /// read documents retrieved by their image, as captioning does at inference, instead
    /// of by their text or image at random (their text is the answer).
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub caption_image_query: bool,
    /// Share of sequences with retrieval whose first retrieved document is the main
    /// document itself (an exact copy), to teach reading the context.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub copy_share: f64,
}

fn default_threshold() -> f32 {
    DEFAULT_THRESHOLD
}

impl Default for RunSettings {
    /// The recipe of the committed RA-CM3 (but its step count): `small`, K = 2, α = 0.1,
    /// query dropout 0.2.
    fn default() -> Self {
        Self {
            dataset: "emoji".into(),
            preset: "small".into(),
            k: RetrievalPolicy::default().k,
            baseline: false,
            // Through its decimal text, so 0.1 reads 0.1 and not 0.10000000149011612.
            alpha: decimal(RETRIEVED_LOSS_WEIGHT),
            query_dropout: QUERY_DROPOUT,
            steps: 2000,
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-3,
            seed: 0,
            train_query_threshold: DEFAULT_THRESHOLD,
            caption_share: 0.0,
            image_positions: false,
            image_copy: false,
            image_features: false,
            caption_copy: false,
            caption_image_query: false,
            copy_share: 0.0,
        }
    }
}

/// An f32 as the f64 its decimal text reads as (0.1f32 as 0.1, not 0.10000000149011612).
pub fn decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::NAN)
}

impl RunSettings {
    const FILE: &str = "train.json";

    /// The settings in the run folder `run`.
    pub fn read(run: &Path) -> Result<Self, Error> {
        let path = run.join(Self::FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|err| Error::BadInput(err.to_string()))
            .context(|| {
                format!(
                    "reading {}, which racm3 train writes into a run folder",
                    path.display()
                )
            })?;
        serde_json::from_str(&text)
            .map_err(|err| Error::BadInput(err.to_string()))
            .context(|| format!("{} is malformed", path.display()))
    }

    fn write(&self, run: &Path) -> Result<(), Error> {
        let json = serde_json::to_string_pretty(self).map_err(|err| Error::Cache {
            path: run.join(Self::FILE),
            problem: err.to_string(),
        })?;
        Ok(racm3_data::write_atomic(
            &run.join(Self::FILE),
            json.as_bytes(),
        )?)
    }

    /// These settings as a baseline records them (K = 0, no query dropout) or as given.
    pub fn as_trained(&self) -> Self {
        if !self.baseline {
            return self.clone();
        }
        Self {
            k: 0,
            query_dropout: 0.0,
            ..self.clone()
        }
    }

    /// Refuses settings no run can train with, naming the flag.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(Error::BadInput(format!(
                "--alpha must be a finite weight >= 0, not {}",
                self.alpha
            )));
        }
        if !(0.0..=1.0).contains(&self.caption_share) {
            return Err(Error::BadInput(format!(
                "--caption-share must be in [0, 1], not {}",
                self.caption_share
            )));
        }
        if !(0.0..=1.0).contains(&self.copy_share) {
            return Err(Error::BadInput(format!(
                "--copy-share must be in [0, 1], not {}",
                self.copy_share
            )));
        }
        if !(0.0..1.0).contains(&self.query_dropout) {
            return Err(Error::BadInput(format!(
                "--query-dropout must be in [0, 1), not {}",
                self.query_dropout
            )));
        }
        Ok(())
    }

    /// A row label for a report: what the run was trained with.
    pub fn label(&self) -> String {
        if self.baseline {
            return format!(
                "baseline, trained without retrieval; {} steps of {}",
                self.steps, self.batch_size
            );
        }
        let skip = if self.train_query_threshold == DEFAULT_THRESHOLD {
            String::new()
        } else {
            format!(", near-copy skip {}", self.train_query_threshold)
        };
        let skip = if self.caption_share > 0.0 {
            format!("{skip}, captions masked in {}", self.caption_share)
        } else {
            skip
        };
        let skip = if self.copy_share > 0.0 {
            format!("{skip}, exact copies retrieved in {}", self.copy_share)
        } else {
            skip
        };
        let skip = match (self.image_copy, self.image_features) {
            (true, true) => format!("{skip}, image copy pointer and source features"),
            (true, false) => format!("{skip}, image copy pointer"),
            (false, true) => format!("{skip}, image source features"),
            (false, false) => skip,
        };
        let skip = match (self.caption_copy, self.image_copy || self.image_features) {
            (true, true) => format!("{skip} over captions too"),
            (true, false) => format!("{skip}, caption copy pointer"),
            (false, _) => skip,
        };
        let skip = if self.caption_image_query {
            format!("{skip}, captioning prompts retrieved by image")
        } else {
            skip
        };
        let skip = if self.image_positions || self.image_copy || self.image_features {
            format!("{skip}, image positions")
        } else {
            skip
        };
        // α is an f32 in training; as one it prints as given (0.1), whichever way it was stored.
        format!(
            "trained with K = {}, α = {}, query dropout {}{skip}; {} steps of {}",
            self.k, self.alpha as f32, self.query_dropout, self.steps, self.batch_size
        )
    }

    fn corpus_config(&self, max_len: usize) -> CorpusConfig {
        CorpusConfig {
            policy: RetrievalPolicy {
                query_threshold: self.train_query_threshold,
                ..RetrievalPolicy::top(self.k)
            },
            // The paper's share of sequences with no retrieved document (10%).
            no_retrieval_share: 0.1,
            baseline: self.baseline,
            max_len,
            query_dropout: self.query_dropout,
            seed: self.seed,
            caption_share: self.caption_share,
            copy_share: self.copy_share,
        }
    }

    fn train_config(&self, model: Config) -> Cm3TrainConfig {
        Cm3TrainConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            lr: self.lr,
            alpha: self.alpha as f32,
            seed: self.seed,
            ..Cm3TrainConfig::new(model)
        }
    }
}

/// Where a run reads from and writes to.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// The run folder: model, tokenizer, corpus caches, checkpoints, loss curves.
    pub out: PathBuf,
    /// The memory to retrieve from (not needed for a baseline, nor once the caches exist).
    pub memory: Option<PathBuf>,
    /// The CLIP folder; by default the one that built the memory.
    pub clip: Option<PathBuf>,
    /// The VQGAN folder that turns images into codes.
    pub vqgan: PathBuf,
}

/// A run's sequences, ready to train on.
pub struct Corpus {
    /// Training sequences.
    pub train: Vec<Sequence>,
    /// Validation sequences (every one with its retrieved documents).
    pub val: Vec<Sequence>,
    /// Training documents left out: no tokens, or too long for the model.
    pub skipped: usize,
    /// The id space of the tokens.
    pub ids: IdSpace,
    /// The model shape the sequences were cut for.
    pub model: Config,
    /// The folder of the corpus caches.
    pub cache: PathBuf,
    /// What retrieval found for the training documents, when it was measured (a cache
    /// made before the statistics were kept has none).
    pub retrieval: Option<RetrievalStats>,
    /// The copy probe measured at every checkpoint, when the memory was at hand.
    pub probe: Option<racm3_generate::CopyProbe>,
}

/// Builds (or reads from the run folder's caches) the corpus of a run: the text tokenizer,
/// every document's tokens, and the retrieval for every training and val document.
pub fn prepare(
    settings: &RunSettings,
    paths: &RunPaths,
    device: &Device,
    observer: &dyn Observer,
) -> Result<Corpus, Error> {
    if !settings.baseline && paths.memory.is_none() {
        return Err(Error::BadInput(
            "give --memory to retrieve from, or --baseline to train without retrieval".into(),
        ));
    }
    settings.validate()?;
    let documents = crate::datasets::load(&settings.dataset, false, observer)?.documents;
    let of_split = |split: Split| -> Vec<Document> {
        documents
            .iter()
            .filter(|doc| doc.source.split == split)
            .cloned()
            .collect()
    };
    let (train_docs, val_docs) = (of_split(Split::Train), of_split(Split::Val));
    if train_docs.is_empty() {
        return Err(Error::BadInput(format!(
            "{} has no training documents",
            settings.dataset
        )));
    }
    let out = &paths.out;
    // Before the caches are made: a folder holding a trained model is not a new run's.
    racm3_train::Checkpoints::new(out).resume_point::<serde::de::IgnoredAny>()?;
    std::fs::create_dir_all(out)
        .map_err(|err| Error::BadInput(err.to_string()))
        .context(|| format!("creating {}", out.display()))?;
    // Deterministic on the same captions, so a baseline run gets the same tokenizer.
    let tokenizer_path = out.join("tokenizer.json");
    let text = if tokenizer_path.exists() {
        TextTokenizer::from_file(&tokenizer_path)?
    } else {
        let captions: Vec<String> = train_docs.iter().map(Document::caption).collect();
        let text = TextTokenizer::train(&captions, &TrainOptions::default())?;
        text.save(&tokenizer_path)?;
        text
    };
    let vqgan = ImageTokenizer::load(&paths.vqgan, device)
        .context(|| format!("loading the VQGAN in {}", paths.vqgan.display()))?;
    let codec = Cm3Codec::new(text, vqgan.codebook_size());
    let ids = *codec.ids();
    let Some(mut model) = Config::preset(&settings.preset, ids.len() as usize) else {
        return Err(Error::BadInput(format!(
            "unknown preset '{}': expected one of {}",
            settings.preset,
            Config::PRESETS.join(", ")
        )));
    };
    if settings.image_positions
        || settings.image_copy
        || settings.image_features
        || settings.caption_copy
    {
        model.image_positions = Some(ImagePositions {
            first_id: ids.image_range().start,
            codebook: vqgan.codebook_size(),
            grid: vqgan.tokens_per_image(),
        });
    }
    if settings.image_copy || settings.image_features || settings.caption_copy {
        model.image_copy = Some(ImageCopy {
            image_start: ids.special(Special::ImgSrc),
            sources: settings.k.max(1),
            pointer: settings.image_copy || settings.caption_copy,
            features: settings.image_features,
            images: settings.image_copy || settings.image_features,
            captions: settings.caption_copy.then(|| {
                let first_mask = ids.special(Special::Mask(0));
                CaptionCopy {
                    alt: ids.special(Special::ImgAlt),
                    eos: ids.special(Special::Eos),
                    first_mask,
                    masks: ids.len() - first_mask,
                }
            }),
        });
    }
    let corpus = settings.corpus_config(model.max_seq_len);

    // The memory is read only to make the caches, so a run folder that has them trains
    // (and resumes) without it.
    let open_memory = || -> Result<Option<racm3_memory::Memory>, Error> {
        Ok(paths
            .memory
            .as_deref()
            .map(racm3_memory::Memory::open)
            .transpose()?)
    };
    let cache = out.join("corpus");
    // Named by the codes' fingerprint, so another VQGAN never reads this one's codes.
    let codes = codes_fingerprint(&paths.vqgan)
        .context(|| format!("reading the VQGAN in {}", paths.vqgan.display()))?;
    let tokens_cache = cache.join(format!("tokens-codes-{codes:08x}.json"));
    let tokens: Tokens = cached(&tokens_cache, || {
        let mut everything: Vec<Document> = train_docs.iter().chain(&val_docs).cloned().collect();
        if let Some(memory) = open_memory()? {
            for id in memory.ids() {
                if let Some(row) = memory.row_of(id) {
                    everything.push(memory.document(row)?);
                }
            }
        }
        let stage = observer.stage("tokenizing");
        stage.set_total(everything.len() as u64);
        tokenize_documents(&everything, &codec, &vqgan, |n| stage.advance(n as u64))
    })?;
    let mut retrieval_stats = None;
    let mut retrieved_by_image = None;
    let retrieved = if settings.baseline {
        Default::default()
    } else {
        // The paper's skip keeps the names caches had before the skip could be set.
        let skip = if settings.train_query_threshold == DEFAULT_THRESHOLD {
            String::new()
        } else {
            format!("-skip{}", settings.train_query_threshold)
        };
        let name = format!(
            "retrieved-k{}-dropout{}{skip}",
            settings.k, settings.query_dropout
        );
        let retrieve_by = |name: &str, query: TrainingQuery| {
            let stats_path = cache.join(format!("{name}-stats.json"));
            let found = cached(&cache.join(format!("{name}.json")), || {
                let Some(memory) = open_memory()? else {
                    return Err(Error::BadInput("give --memory to retrieve from".into()));
                };
                let encoder = crate::memory::encoder_for(&memory, paths.clip.as_deref())?;
                let queries: Vec<Document> = train_docs.iter().chain(&val_docs).cloned().collect();
                let stage = observer.stage("retrieving");
                stage.set_total(queries.len() as u64);
                let (found, stats) = retrieve_all(
                    &queries,
                    &encoder,
                    &memory,
                    &corpus,
                    query,
                    train_docs.len(),
                    |n| stage.advance(n as u64),
                )?;
                cached(&stats_path, || Ok::<_, Error>(stats))?;
                Ok(found)
            })?;
            let stats: Option<RetrievalStats> = std::fs::read(&stats_path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            Ok::<_, Error>((found, stats))
        };
        let (found, stats) = retrieve_by(&name, TrainingQuery::TextOrImage)?;
        retrieval_stats = stats;
        if settings.caption_image_query {
            retrieved_by_image =
                Some(retrieve_by(&format!("{name}-image"), TrainingQuery::Image)?.0);
        }
        found
    };
    let (train, skipped) = sequences(
        &train_docs,
        &tokens,
        &retrieved,
        retrieved_by_image.as_ref(),
        &codec,
        &corpus,
    )?;
    let val_corpus = CorpusConfig {
        no_retrieval_share: 0.0,
        ..corpus
    };
    let (val, _) = sequences(
        &val_docs,
        &tokens,
        &retrieved,
        retrieved_by_image.as_ref(),
        &codec,
        &val_corpus,
    )?;
    let probe_path = cache.join(format!("probe-cases-seed{}.json", settings.seed));
    let probe = if probe_path.exists() || paths.memory.is_some() {
        let cases = cached(&probe_path, || match open_memory()? {
            Some(memory) => corpus::probe_cases(&val_docs, &memory, settings.seed),
            None => Ok(Vec::new()),
        })?;
        Some(corpus::copy_probe(
            &cases,
            &tokens,
            codec.ids(),
            model.max_seq_len,
        ))
    } else {
        None
    };
    Ok(Corpus {
        train,
        val,
        skipped,
        ids,
        model,
        cache,
        retrieval: retrieval_stats,
        probe,
    })
}

impl Corpus {
    /// The corpus in numbers: sequences, their mean length, and what retrieval found.
    pub fn summary(&self) -> serde_json::Value {
        let mean_len = self.train.iter().map(|s| s.tokens.len()).sum::<usize>() as f64
            / self.train.len().max(1) as f64;
        let with_retrieved = self.train.iter().filter(|s| s.retrieved > 0).count();
        serde_json::json!({
            "train_sequences": self.train.len(),
            "val_sequences": self.val.len(),
            "skipped": self.skipped,
            "mean_tokens": mean_len,
            "train_sequences_with_retrieved": with_retrieved,
            "retrieval": self.retrieval.as_ref().map(|stats| serde_json::json!({
                "queries": stats.queries,
                "same_entity_share": stats.same_entity_share(),
                "near_copies_skipped": stats.near_copies_skipped,
                "redundant_skipped": stats.redundant_skipped,
                "retrieved": stats.retrieved,
            })),
        })
    }
}

/// The corpus summary a run keeps in its folder, for reports.
pub const CORPUS_FILE: &str = "corpus.json";

/// What a stretch of training did.
#[derive(Debug, Clone, Copy)]
pub struct Trained {
    /// The step it started from (more than 0 for a resumed run).
    pub first_step: usize,
    /// The step it ended at.
    pub steps: usize,
    /// Wall time.
    pub seconds: f64,
    /// Target tokens seen.
    pub tokens: usize,
    /// Mean main-document loss on the val sequences at the end.
    pub val_loss: f64,
}

/// Trains the run in `out` on `corpus` to `settings.steps`, resuming a run found there,
/// and writes `train.json`. A "training" stage counts steps and shows the losses.
pub fn train(
    settings: &RunSettings,
    out: &Path,
    corpus: &Corpus,
    device: &Device,
    observer: &dyn Observer,
) -> Result<Trained, Error> {
    let config = settings.train_config(corpus.model.clone());
    settings.as_trained().write(out)?;
    let summary = serde_json::to_vec_pretty(&corpus.summary()).map_err(|err| Error::Cache {
        path: out.join(CORPUS_FILE),
        problem: err.to_string(),
    })?;
    racm3_data::write_atomic(&out.join(CORPUS_FILE), &summary)?;
    let mut trainer = Cm3Trainer::open(config, corpus.ids, out, device)?;
    if let Some(probe) = &corpus.probe {
        trainer.set_probe(probe.clone());
    }
    let first_step = trainer.step();
    let stage = stage_from(
        observer,
        "training",
        settings.steps as u64,
        first_step as u64,
    );
    let started = Instant::now();
    let mut tokens = 0usize;
    trainer.train_until(settings.steps, &corpus.train, &corpus.val, |report| {
        tokens += report.tokens;
        stage.advance(1);
        stage.message(&format!(
            "main {:.3} retr {:.3} {:.0} tok/s",
            report.main,
            report.retrieved,
            tokens as f64 / started.elapsed().as_secs_f64()
        ));
    })?;
    drop(stage);
    let seconds = started.elapsed().as_secs_f64();
    Ok(Trained {
        first_step,
        steps: settings.steps,
        seconds,
        tokens,
        val_loss: trainer.validation_loss(&corpus.val)?,
    })
}
