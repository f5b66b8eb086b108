//! `racm3 memory` and `racm3 retrieve`: build the external memory from a dataset, update
//! it, and query it with text, an image, or both.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use racm3::data::{Document, Split};
use racm3::memory::Memory;
use racm3::retrieve::{ClipEncoder, Query, RetrievalPolicy, retrieve_for_query};
use serde_json::json;

use crate::clip::{DEFAULT_CLIP, load_clip};
use crate::data::load_dataset;
use crate::progress::Bar;

/// Which documents of a dataset go into the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Splits {
    /// The train split only.
    Train,
    /// The val split only.
    Val,
    /// The test split only.
    Test,
    /// Every document.
    All,
}

impl Splits {
    fn admits(self, split: Split) -> bool {
        match self {
            Splits::Train => split == Split::Train,
            Splits::Val => split == Split::Val,
            Splits::Test => split == Split::Test,
            Splits::All => true,
        }
    }
}

#[derive(Debug, Args)]
pub struct Source {
    /// A built-in dataset, a folder of image-caption pairs, or .tar shards.
    #[arg(default_value = "emoji")]
    dataset: String,
    /// Which split's documents to store.
    #[arg(long, value_enum, default_value = "all")]
    split: Splits,
    /// Leave out unreadable samples instead of stopping.
    #[arg(long)]
    skip_bad: bool,
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Build a memory: embed every document with CLIP (key = normalized mean of its text
    /// and image embeddings) and store documents, keys and an index in a new folder.
    ///
    /// Example: racm3 memory build emoji --clip checkpoints/clip-emoji-small --out mem/emoji
    Build {
        #[command(flatten)]
        source: Source,
        /// The CLIP folder that makes the keys.
        #[arg(long, default_value = DEFAULT_CLIP)]
        clip: PathBuf,
        /// The memory folder to create.
        #[arg(long)]
        out: PathBuf,
        /// The index: flat (exact), hnsw<M> such as hnsw32 (approximate), or
        /// pgvector:<table> (keys sharded over the --pg-server servers).
        #[arg(long, default_value = "hnsw32")]
        index: String,
        /// A PostgreSQL + pgvector server for a pgvector:<table> index, as a libpq
        /// connection string ("host=10.0.0.5 port=5432 user=racm3 dbname=racm3"); repeat
        /// the flag to shard the keys over several servers.
        #[arg(long = "pg-server")]
        pg_servers: Vec<String>,
    },
    /// Add a dataset's documents to an existing memory (a knowledge update, no rebuild).
    /// Documents whose ids are already stored are skipped.
    ///
    /// Example: racm3 memory add emoji-google --memory mem/emoji
    Add {
        #[command(flatten)]
        source: Source,
        /// The memory folder.
        #[arg(long)]
        memory: PathBuf,
        /// The CLIP folder; by default the one that built the memory.
        #[arg(long)]
        clip: Option<PathBuf>,
    },
    /// Remove documents by id.
    ///
    /// Example: racm3 memory remove emoji/twitter/1f34e --memory mem/emoji
    Remove {
        /// Document ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// The memory folder.
        #[arg(long)]
        memory: PathBuf,
    },
    /// Describe a memory: documents, key dimension, index, encoder.
    ///
    /// Example: racm3 memory info mem/emoji
    Info {
        /// The memory folder.
        memory: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `racm3 retrieve`.
#[derive(Debug, Args)]
pub struct RetrieveArgs {
    /// The memory folder.
    #[arg(long)]
    memory: PathBuf,
    /// Query text.
    #[arg(long)]
    text: Option<String>,
    /// Query image (PNG, JPEG, WebP).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Documents to return.
    #[arg(short, long, default_value_t = 4)]
    k: usize,
    /// Skip documents scoring above this with the query (near copies).
    #[arg(long, default_value_t = 0.9)]
    query_threshold: f32,
    /// Skip documents scoring above this with one already chosen.
    #[arg(long, default_value_t = 0.9)]
    pairwise_threshold: f32,
    /// Search exactly even if the memory has an approximate index.
    #[arg(long)]
    exact: bool,
    /// The CLIP folder; by default the one that built the memory.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: MemoryCommand) -> Result<()> {
    match command {
        MemoryCommand::Build {
            source,
            clip,
            out,
            index,
            pg_servers,
        } => {
            let encoder = load_clip(&clip)?;
            let mut memory = Memory::create_on_servers(
                &out,
                encoder.dim(),
                &index,
                &pg_servers,
                encoder.describe(),
            )
            .with_context(|| format!("creating the memory in {}", out.display()))?;
            add_documents(&source, &encoder, &mut memory)
        }
        MemoryCommand::Add {
            source,
            memory,
            clip,
        } => {
            let mut opened = open_memory(&memory)?;
            let encoder = encoder_for(&opened, clip.as_deref())?;
            add_documents(&source, &encoder, &mut opened)
        }
        MemoryCommand::Remove { ids, memory } => {
            let mut opened = open_memory(&memory)?;
            for id in &ids {
                opened.remove(id)?;
            }
            opened.commit()?;
            println!(
                "removed {} documents; {} remain in {}",
                ids.len(),
                opened.len(),
                memory.display()
            );
            Ok(())
        }
        MemoryCommand::Info { memory, json } => {
            let opened = open_memory(&memory)?;
            let info = json!({
                "memory": memory,
                "documents": opened.len(),
                "dim": opened.dim(),
                "index": opened.index_spec(),
                "encoder": opened.encoder(),
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "{}: {} documents, keys of dimension {}, index {}, encoder {}",
                    memory.display(),
                    opened.len(),
                    opened.dim(),
                    opened.index_spec(),
                    opened.encoder()["name"].as_str().unwrap_or("unknown")
                );
            }
            Ok(())
        }
    }
}

fn open_memory(dir: &Path) -> Result<Memory> {
    Memory::open(dir).with_context(|| format!("opening the memory in {}", dir.display()))
}

/// The CLIP named by `--clip`, else the one the memory records.
pub fn encoder_for(memory: &Memory, clip: Option<&Path>) -> Result<ClipEncoder> {
    let recorded = memory.encoder()["name"].as_str().map(PathBuf::from);
    let Some(dir) = clip.map(Path::to_owned).or(recorded) else {
        bail!(
            "the memory in {} does not record its CLIP; pass --clip",
            memory.dir().display()
        );
    };
    let encoder = load_clip(&dir)?;
    if encoder.dim() != memory.dim() {
        bail!(
            "the CLIP in {} makes {}-d keys but the memory in {} holds {}-d keys; pass the --clip that built it",
            dir.display(),
            encoder.dim(),
            memory.dir().display(),
            memory.dim()
        );
    }
    Ok(encoder)
}

/// Documents per embedding batch and per commit: a crash loses at most one chunk.
const CHUNK: usize = 2048;

/// Adds the `split` documents of `dataset` that the memory does not hold yet.
pub fn add_split(
    dataset: &str,
    split: Splits,
    encoder: &ClipEncoder,
    memory: &mut Memory,
) -> Result<()> {
    let source = Source {
        dataset: dataset.to_owned(),
        split,
        skip_bad: false,
    };
    add_documents(&source, encoder, memory)
}

fn add_documents(source: &Source, encoder: &ClipEncoder, memory: &mut Memory) -> Result<()> {
    let loaded = load_dataset(&source.dataset, source.skip_bad)?;
    let (fresh, present): (Vec<Document>, Vec<Document>) = loaded
        .documents
        .into_iter()
        .filter(|doc| source.split.admits(doc.source.split))
        .partition(|doc| memory.row_of(doc.id()).is_none());
    if fresh.is_empty() && present.is_empty() {
        bail!("{} has no documents in the chosen split", source.dataset);
    }
    let bar = Bar::new("embedding");
    racm3::data::Progress::set_total(&bar, fresh.len() as u64);
    let started = Instant::now();
    for chunk in fresh.chunks(CHUNK) {
        let keys = encoder.document_keys(chunk)?;
        memory.add(chunk, &keys)?;
        memory.commit()?;
        racm3::data::Progress::advance(&bar, chunk.len() as u64);
    }
    bar.finish();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "added {} documents from {} in {elapsed:.1} s ({:.0} documents/s){}; the memory in {} holds {}",
        fresh.len(),
        source.dataset,
        fresh.len() as f64 / elapsed.max(1e-9),
        if present.is_empty() {
            String::new()
        } else {
            format!(", skipped {} already stored", present.len())
        },
        memory.dir().display(),
        memory.len()
    );
    Ok(())
}

pub fn retrieve(args: RetrieveArgs) -> Result<()> {
    let memory = open_memory(&args.memory)?;
    let encoder = encoder_for(&memory, args.clip.as_deref())?;
    let image = args
        .image
        .as_deref()
        .map(crate::data::read_image)
        .transpose()?;
    if args.text.is_none() && image.is_none() {
        bail!("give a query: --text, --image, or both");
    }
    let policy = RetrievalPolicy {
        k: args.k,
        query_threshold: args.query_threshold,
        pairwise_threshold: args.pairwise_threshold,
        exact: args.exact,
        ef_search: None,
    };
    let query = Query {
        text: args.text.as_deref(),
        image: image.as_ref(),
    };
    let found = retrieve_for_query(&encoder, &memory, &query, &policy)?;
    let mut rows = Vec::with_capacity(found.documents.len());
    for (rank, hit) in found.documents.iter().enumerate() {
        let document = memory.document(hit.row)?;
        rows.push(json!({
            "rank": rank + 1,
            "id": hit.id,
            "score": hit.score,
            "caption": document.caption(),
            "dataset": document.source.dataset,
            "entity": document.source.entity,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for row in &rows {
        println!(
            "{:>2}. {:.4}  {}  {}",
            row["rank"],
            row["score"].as_f64().unwrap_or_default(),
            row["id"].as_str().unwrap_or_default(),
            row["caption"].as_str().unwrap_or_default()
        );
    }
    if rows.len() < args.k {
        eprintln!(
            "only {} documents passed the thresholds (query {}, pairwise {})",
            rows.len(),
            args.query_threshold,
            args.pairwise_threshold
        );
    }
    if found.near_copies > 0 {
        eprintln!(
            "skipped {} near copies of the query (score above {}); --query-threshold 1 keeps them",
            found.near_copies, args.query_threshold
        );
    }
    Ok(())
}
