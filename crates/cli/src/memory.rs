//! `racm3 memory` and `racm3 retrieve`: build the external memory from a dataset, update
//! it, and query it with text, an image, or both.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use racm3::data::{Document, Split, printable};
use racm3::experiment::demo::CLIP as DEFAULT_CLIP;
use racm3::memory::{Memory, add_new_documents, encoder_for, load_clip, open};
use racm3::retrieve::{
    ClipEncoder, DEFAULT_SEARCH_K, DEFAULT_THRESHOLD, Query, RetrievalPolicy, retrieve_for_query,
};
use serde_json::json;

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
        use Splits::*;
        matches!(
            (self, split),
            (All, _) | (Train, Split::Train) | (Val, Split::Val) | (Test, Split::Test)
        )
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
        /// What a key holds: joint (RA-CM3's mean of the text and image embeddings),
        /// joint+image (that, and the image embedding beside it, so a query that is only an
        /// image is scored image against image; twice the size) or joint+pixels (the joint
        /// key and the CLIP folder's pixel keys, from `racm3 clip fit-pixel-keys`, which find
        /// an entity across renditions more often) or joint+text+pixels (the text embedding
        /// between them, so a caption alone is scored caption against caption).
        #[arg(long, default_value = "joint")]
        keys: String,
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
        /// Wait for another process writing to the memory instead of failing.
        #[arg(long)]
        wait: bool,
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
        /// Wait for another process writing to the memory instead of failing.
        #[arg(long)]
        wait: bool,
    },
    /// Rewrite a memory as one segment without the records of removed documents, and
    /// rebuild its HNSW graph if it held removed rows. (Every commit merges segments by
    /// itself once there are more than 16; only this reclaims removed documents' space.)
    ///
    /// Example: racm3 memory compact --memory mem/emoji
    Compact {
        /// The memory folder.
        #[arg(long)]
        memory: PathBuf,
        /// Wait for another process writing to the memory instead of failing.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    #[arg(short, long, default_value_t = DEFAULT_SEARCH_K)]
    k: usize,
    /// Skip documents whose joint key scores above this with the query's (near copies).
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    query_threshold: f32,
    /// Skip documents scoring above this with one already chosen.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
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
            keys,
        } => {
            let encoder =
                load_clip(&clip)?.with_layout(racm3::retrieve::KeyLayout::from_name(&keys)?)?;
            let mut memory = Memory::create_on_servers(
                &out,
                encoder.key_dim(),
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
            wait,
        } => {
            let mut opened = open(&memory)?;
            opened.wait_for_writer(wait);
            let encoder = encoder_for(&opened, clip.as_deref())?;
            add_documents(&source, &encoder, &mut opened)
        }
        MemoryCommand::Remove { ids, memory, wait } => {
            let mut opened = open(&memory)?;
            opened.wait_for_writer(wait);
            racm3::memory::remove_documents(&mut opened, &ids)?;
            println!(
                "removed {} documents; {} remain in {}",
                ids.len(),
                opened.len(),
                memory.display()
            );
            Ok(())
        }
        MemoryCommand::Compact { memory, wait, json } => {
            let mut opened = open(&memory)?;
            opened.wait_for_writer(wait);
            let done = opened
                .compact()
                .with_context(|| format!("compacting the memory in {}", memory.display()))?;
            if json {
                let report = json!({
                    "memory": memory,
                    "segments_before": done.segments_before,
                    "segments_after": done.segments_after,
                    "removed_dropped": done.removed_dropped,
                    "documents": done.documents,
                });
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{}: {} segments into {}, {} removed documents dropped; {} documents",
                    memory.display(),
                    done.segments_before,
                    done.segments_after,
                    done.removed_dropped,
                    done.documents
                );
            }
            Ok(())
        }
        MemoryCommand::Info { memory, json } => {
            let opened = open(&memory)?;
            let (documents, dim, index) = (opened.len(), opened.dim(), opened.index_spec());
            if json {
                let encoder = opened.encoder();
                let info = json!({"memory": memory, "documents": documents, "dim": dim, "index": index, "encoder": encoder});
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                let encoder = opened.encoder()["name"].as_str().unwrap_or("unknown");
                let dir = memory.display();
                println!(
                    "{dir}: {documents} documents, keys of dimension {dim}, index {index}, encoder {encoder}"
                );
            }
            Ok(())
        }
    }
}

fn add_documents(source: &Source, encoder: &ClipEncoder, memory: &mut Memory) -> Result<()> {
    let documents: Vec<Document> = load_dataset(&source.dataset, source.skip_bad)?
        .documents
        .into_iter()
        .filter(|doc| source.split.admits(doc.source.split))
        .collect();
    if documents.is_empty() {
        bail!("{} has no documents in the chosen split", source.dataset);
    }
    let started = Instant::now();
    let done = add_new_documents(memory, encoder, documents, &Bar::new("embedding"))?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "added {} documents from {} in {elapsed:.1} s ({:.0} documents/s){}; the memory in {} holds {}",
        done.added,
        source.dataset,
        done.added as f64 / elapsed.max(1e-9),
        if done.already_stored == 0 {
            String::new()
        } else {
            format!(", skipped {} already stored", done.already_stored)
        },
        memory.dir().display(),
        memory.len()
    );
    Ok(())
}

pub fn retrieve(args: RetrieveArgs) -> Result<()> {
    let memory = open(&args.memory)?;
    let encoder = encoder_for(&memory, args.clip.as_deref())?;
    let image = args
        .image
        .as_deref()
        .map(racm3::data::read_image)
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
    policy.validate()?;
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
            printable(row["id"].as_str().unwrap_or_default()),
            printable(row["caption"].as_str().unwrap_or_default())
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
            "skipped {} near copies of the query (joint score above {}); --query-threshold 1 keeps them",
            found.near_copies, args.query_threshold
        );
    }
    Ok(())
}
