//! `racm3 data`: fetch, count and inspect datasets.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use racm3::data::{Dataset, Loaded, Part, Stats, fetch, printable, save_png};
use racm3::datasets::describe_fetch;
use serde_json::json;

use crate::progress::Terminal;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download a built-in dataset into $RACM3_HOME. Safe to repeat: present data is kept.
    ///
    /// Example: racm3 data fetch emoji
    Fetch {
        /// emoji (five renditions via npm: Twemoji and Noto PNGs; OpenMoji, Fluent Emoji
        /// Flat and Noto v1 SVGs, drawn into PNGs once), fashion-mnist (Debian package), or
        /// all.
        #[arg(value_parser = ["emoji", "fashion-mnist", "all"])]
        dataset: String,
        /// Leave out SVG drawings that fail the checks (listed in the rendition's coverage)
        /// instead of stopping.
        #[arg(long)]
        skip_bad: bool,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Count documents, entities, vendors and splits, and check that no entity is shared
    /// between train and test.
    ///
    /// Example: racm3 data stats emoji
    Stats {
        #[command(flatten)]
        input: DatasetArgs,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one document: its caption, split, entity and metadata; optionally save its image.
    ///
    /// Example: racm3 data show emoji/twitter/1f34e --out apple.png
    Show {
        /// The document id, as `data stats` and retrieval print them.
        id: String,
        /// The dataset holding it; by default the id's first part (emoji, fashion-mnist).
        #[arg(long)]
        dataset: Option<String>,
        /// Save the document's first image here (PNG).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Leave out unreadable samples instead of failing.
        #[arg(long)]
        skip_bad: bool,
        /// Print the document as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which dataset to read, and what to do with bad samples.
#[derive(Debug, Clone, Args)]
pub struct DatasetArgs {
    /// A built-in dataset (emoji: every rendition; emoji-twitter, emoji-google, emoji-openmoji,
    /// emoji-fluent, emoji-noto-v1: one; fashion-mnist), a folder of
    /// image-caption pairs (00001.jpg beside 00001.txt), or WebDataset .tar shards.
    #[arg(default_value = "emoji")]
    pub dataset: String,
    /// Leave out unreadable samples (corrupt image, missing or non-UTF-8 caption) and count
    /// them, instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
}

impl DatasetArgs {
    /// Reads the dataset with a progress bar, reporting skipped samples on stderr.
    pub fn load(&self) -> Result<Loaded> {
        load_dataset(&self.dataset, self.skip_bad)
    }
}

/// Reads a dataset by name, fetching a built-in one on first use, with a progress bar.
pub fn load_dataset(name: &str, skip_bad: bool) -> Result<Loaded> {
    Ok(racm3::datasets::load(name, skip_bad, &Terminal)?)
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Fetch {
            dataset,
            skip_bad,
            json,
        } => fetch_command(&dataset, skip_bad, json),
        DataCommand::Stats { input, json } => stats_command(&input, json),
        DataCommand::Show {
            id,
            dataset,
            out,
            skip_bad,
            json,
        } => show_command(&id, dataset, out, skip_bad, json),
    }
}

fn fetch_command(dataset: &str, skip_bad: bool, json: bool) -> Result<()> {
    let done = racm3::datasets::fetch(dataset, skip_bad, &Terminal)?;
    if json {
        let report: Vec<_> = done
            .iter()
            .map(|(package, fetched)| match fetched {
                fetch::Fetched::AlreadyPresent(path) => {
                    json!({"package": package, "action": "already present", "path": path})
                }
                fetch::Fetched::Downloaded { path, files } => {
                    json!({"package": package, "action": "downloaded", "path": path, "files": files})
                }
                fetch::Fetched::Drawn { path, coverage } => {
                    json!({"package": package, "action": "drawn", "path": path, "coverage": coverage})
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    for (package, fetched) in &done {
        println!("{}", describe_fetch(package, fetched));
    }
    Ok(())
}

fn stats_command(input: &DatasetArgs, json: bool) -> Result<()> {
    let loaded = input.load()?;
    let stats = Stats::of(&loaded.documents);
    let coverage = racm3::datasets::emoji_coverage(&input.dataset)?;
    if json {
        let mut value = serde_json::to_value(&stats)?;
        value["dataset"] = json!(input.dataset);
        value["skipped"] = json!(loaded.skipped.len());
        if let Some(coverage) = &coverage {
            value["renditions"] = json!(coverage);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{}: {stats}", input.dataset);
    for rendition in coverage.iter().flatten() {
        println!(
            "  {:<9} {:>4} of {} entities, {} images ({}; {} unmatched, {} skipped: --json lists them)",
            rendition.vendor,
            rendition.entities_matched,
            rendition.entities,
            rendition.images,
            rendition.package,
            rendition.unmatched.len(),
            rendition.skipped.len()
        );
    }
    println!("skipped: {}", loaded.skipped.len());
    Ok(())
}

fn show_command(
    id: &str,
    dataset: Option<String>,
    out: Option<PathBuf>,
    skip_bad: bool,
    json: bool,
) -> Result<()> {
    let dataset = match dataset {
        Some(dataset) => dataset,
        None => match id.split('/').next() {
            Some(prefix) if Dataset::BUILT_IN.contains(&prefix) => prefix.to_owned(),
            _ => bail!("cannot tell the dataset of '{id}' from its id; pass --dataset"),
        },
    };
    let loaded = load_dataset(&dataset, skip_bad)?;
    let Some(document) = loaded.documents.iter().find(|doc| doc.id() == id) else {
        return Err(racm3::data::Error::NoSuchDocument {
            id: id.to_owned(),
            dataset,
        }
        .into());
    };
    if let Some(out) = &out {
        let image = document
            .images()
            .next()
            .with_context(|| format!("{id} has no image to save"))?;
        save_png(&image.pixels, out)?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&document.summary_json())?
        );
        return Ok(());
    }
    let source = &document.source;
    println!("id:       {}", printable(document.id()));
    println!("caption:  {}", printable(&document.caption()));
    println!("dataset:  {}", source.dataset);
    println!("entity:   {}", source.entity);
    println!("split:    {}", source.split);
    if !source.references.is_empty() {
        println!("also:     {}", source.references.join("; "));
    }
    for (key, value) in &source.attributes {
        println!("{key:<9} {value}");
    }
    for part in document.parts() {
        match part {
            Part::Text(text) => println!("text:     {}", printable(text)),
            Part::Image(image) => println!(
                "image:    {}x{} alt=\"{}\"",
                image.pixels.width(),
                image.pixels.height(),
                image.alt
            ),
        }
    }
    if let Some(out) = out {
        println!("saved:    {}", out.display());
    }
    Ok(())
}
