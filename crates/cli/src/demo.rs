//! `racm3 demo`: the whole system in one command. It fetches the emoji data when missing,
//! builds the experiment's memory (every rendition of the train entities, the held-out
//! entities' non-Twemoji renditions) with the committed CLIP, trains any checkpoint missing
//! from `checkpoints/` with the command that made it, and writes the sheet of
//! [`racm3::experiment::demo::sheet`] (`samples.png`, `report.md`) in `--out`: held-out
//! captions drawn with and without retrieval. Then it serves the memory and RA-CM3
//! (`racm3 serve`) and prints the page's URL, unless `--no-serve`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use racm3::experiment::demo::{
    BASELINE, CLIP, GENERATOR, GENERATORS, Recipe, SheetSettings, TOKENIZERS, VQGAN, missing,
};
use racm3::memory::Memory;
use racm3::retrieve::RetrievalPolicy;
use racm3::tasks::{Generator, Retriever};

use crate::progress::Terminal;
use crate::serve::ListenArgs;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the memory, the pictures and the report go.
    #[arg(long, default_value = "demo")]
    out: PathBuf,
    /// Held-out captions to draw (every n-th entity of the Twemoji val split).
    #[arg(long, default_value_t = 6)]
    captions: usize,
    /// Samples per caption and model.
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Exit after the report instead of serving the page.
    #[arg(long)]
    no_serve: bool,
    #[command(flatten)]
    listen: ListenArgs,
}

/// Trains the checkpoints of `recipes` that are missing, with the commands that made the
/// committed ones, by running this same binary.
fn train_missing(recipes: &[Recipe], memory: &Path) -> Result<()> {
    for (recipe, command) in missing(recipes, Path::new("."), memory) {
        let (out, time) = (recipe.dir, recipe.time);
        eprintln!(
            "{out} is missing, so the demo trains it ({time}): racm3 {}\n\
             (run the demo from the repository root to use the committed checkpoint instead)",
            command.join(" ")
        );
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(&command)
            .status()
            .context("running racm3 to train a missing checkpoint")?;
        anyhow::ensure!(status.success(), "training {out} failed");
    }
    Ok(())
}

pub fn demo(args: DemoArgs) -> Result<()> {
    let device = racm3::Device::Cpu;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let memory_dir = args.out.join("memory");
    train_missing(&TOKENIZERS, &memory_dir)?;
    let memory = if memory_dir.join("manifest.bin").exists() {
        Memory::open(&memory_dir)?
    } else {
        eprintln!("building the memory in {}", memory_dir.display());
        let clip = racm3::memory::load_clip(Path::new(CLIP))?;
        racm3::experiment::build_memory(&memory_dir, &clip, &Terminal)?
    };
    train_missing(&GENERATORS, &memory_dir)?;
    let clip = racm3::memory::encoder_for(&memory, None)?;
    let load = |dir: &str| {
        Generator::load(Path::new(dir), Path::new(VQGAN), &device)
            .with_context(|| format!("loading the generator in {dir}"))
    };
    let (ra, baseline) = (load(GENERATOR)?, load(BASELINE)?);
    let retriever = Retriever {
        encoder: &clip,
        memory: &memory,
        policy: RetrievalPolicy::default(),
    };
    let held_out = racm3::datasets::held_out_twemoji(&Terminal)?;
    let settings = SheetSettings {
        captions: args.captions,
        samples: args.samples,
    };
    let (grid, report) = racm3::experiment::demo::sheet(
        &held_out, &ra, &baseline, &retriever, &settings, &Terminal,
    )?;
    let pictures = args.out.join("samples.png");
    racm3::data::save_png(&grid, &pictures)?;
    let report_path = args.out.join("report.md");
    racm3::data::write_atomic(&report_path, report.as_bytes())?;
    println!("wrote {} and {}", report_path.display(), pictures.display());
    if args.no_serve {
        return Ok(());
    }
    drop(baseline);
    crate::serve::run(clip, memory, Some(ra), &args.listen)
}
