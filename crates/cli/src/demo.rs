//! `racm3 demo`: the whole system in one command. It fetches the emoji data when missing,
//! builds the memory (Twemoji train documents and the Noto documents of every entity) with
//! the committed CLIP, loads the committed generators (RA-CM3 and its baseline), and draws
//! held-out captions (entities no model saw in training) with and without retrieval.
//!
//! Checkpoints missing from `checkpoints/` (a run outside the repository root, or a
//! deleted one) are trained first with the commands that made the committed ones.
//!
//! It writes `samples.png` and `report.md` in `--out`: one row per caption, [the real
//! Twemoji | the K = 2 documents retrieved for the caption | RA-CM3 with retrieval | the
//! same model with K = 0 | the baseline], samples sorted by CLIP similarity. Then it
//! serves the memory and RA-CM3 (`racm3 serve`) and prints the page's URL, unless
//! `--no-serve`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use image::{Rgb, RgbImage, imageops};
use racm3::generate::sampler::SamplingConfig;
use racm3::memory::Memory;
use racm3::retrieve::RetrievalPolicy;
use racm3::tasks::{Generator, Retriever, SampleSettings};

use crate::clip::DEFAULT_CLIP;
use crate::progress::Terminal;
use crate::serve::ListenArgs;
use crate::tasks::DEFAULT_GENERATOR;
use crate::vq::DEFAULT_MODEL as DEFAULT_VQGAN;

/// The committed baseline: the same config and tokens as the generator, no retrieval.
pub const DEFAULT_BASELINE: &str = "checkpoints/cm3-emoji-small-baseline";

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

const SCALE: u32 = 2;
const GAP: u32 = 12;

/// A committed checkpoint, the command that trained it, and how long that took here.
struct Recipe {
    dir: &'static str,
    command: &'static [&'static str],
    time: &'static str,
}

/// The tokenizers, trained before the memory (which CLIP keys).
const TOKENIZERS: [Recipe; 2] = [
    Recipe {
        dir: DEFAULT_VQGAN,
        command: &[
            "vq",
            "train",
            "emoji",
            "--batch-size",
            "64",
            "--lr",
            "6e-4",
            "--steps",
            "1300",
            "--disc-start",
            "100000000",
        ],
        time: "221 s on one H200 with --device cuda, 20.45 dB; the committed model was then trained further, 1000 decoder-only steps on the GPU and 3600 whole-model steps with --loss l2 on 2 cores, to 22.04 dB (BENCHMARKS.md); on 2 cores this first stage takes about a minute a step, a day in all",
    },
    Recipe {
        dir: DEFAULT_CLIP,
        command: &[
            "clip",
            "train",
            "emoji",
            "fashion-mnist",
            "--limit",
            "6000",
            "--steps",
            "900",
        ],
        time: "about 50 minutes on 2 cores",
    },
];

/// The generators, trained on the demo's memory ("{memory}" is replaced by its folder).
const GENERATORS: [Recipe; 2] = [
    Recipe {
        dir: DEFAULT_GENERATOR,
        command: &[
            "train", "emoji", "--memory", "{memory}", "--preset", "small", "--steps", "1200",
        ],
        time: "about 30 minutes on 2 cores",
    },
    Recipe {
        dir: DEFAULT_BASELINE,
        command: &[
            "train",
            "emoji",
            "--baseline",
            "--preset",
            "small",
            "--steps",
            "1200",
        ],
        time: "about 13 minutes on 2 cores",
    },
];

/// Each recipe whose checkpoint is missing under `root`, with the `racm3` arguments that
/// train it (`--out` included).
fn missing<'a>(
    recipes: &'a [Recipe],
    root: &Path,
    memory: &Path,
) -> Vec<(&'a Recipe, Vec<String>)> {
    recipes
        .iter()
        .filter(|recipe| {
            let dir = root.join(recipe.dir);
            !(dir.join("config.json").exists() && dir.join("model.safetensors").exists())
        })
        .map(|recipe| {
            let mut command: Vec<String> = recipe
                .command
                .iter()
                .map(|arg| arg.replace("{memory}", &memory.display().to_string()))
                .collect();
            command.extend(["--out".to_owned(), recipe.dir.to_owned()]);
            (recipe, command)
        })
        .collect()
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
        let clip = racm3::memory::load_clip(Path::new(DEFAULT_CLIP))?;
        racm3::experiment::build_memory(&memory_dir, &clip, &Terminal)?
    };
    train_missing(&GENERATORS, &memory_dir)?;
    let clip = racm3::memory::encoder_for(&memory, None)?;
    let load = |dir: &str| {
        Generator::load(Path::new(dir), Path::new(DEFAULT_VQGAN), &device)
            .with_context(|| format!("loading the generator in {dir}"))
    };
    let (ra, baseline) = (load(DEFAULT_GENERATOR)?, load(DEFAULT_BASELINE)?);
    let retriever = Retriever {
        encoder: &clip,
        memory: &memory,
        policy: RetrievalPolicy::default(),
    };
    let held_out = racm3::datasets::held_out_twemoji(&Terminal)?;
    let step = (held_out.len() / args.captions.max(1)).max(1);
    let settings = SampleSettings {
        samples: args.samples.max(1),
        sampling: SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.9),
        },
        seed: 1,
    };
    let cell = 64 * SCALE;
    let columns = 3 + 3 * settings.samples;
    let rows = held_out.iter().step_by(step).take(args.captions).count() as u32;
    let width = columns as u32 * cell + 4 * GAP;
    let mut grid = RgbImage::from_pixel(width, rows * (cell + 4), Rgb([255; 3]));
    let mut report = String::from(
        "# racm3 demo: held-out emoji with and without retrieval\n\n\
         Each row of `samples.png`: the real Twemoji, the two documents retrieved for the \
         caption, four RA-CM3 samples with retrieval, four from the same model with K = 0, \
         four from the baseline (same config and tokens, trained without retrieval); \
         samples sorted by CLIP similarity to the caption.\n\n\
         ![samples](samples.png)\n\n\
         | row | held-out caption | retrieved (score) |\n| --- | --- | --- |\n",
    );
    for (row, doc) in held_out
        .iter()
        .step_by(step)
        .take(args.captions)
        .enumerate()
    {
        let caption = doc.caption();
        eprintln!("drawing \"{caption}\"");
        let with = ra.text_to_image(&caption, Some(&retriever), &settings, 3.0, Some(&clip))?;
        let without = ra.text_to_image(&caption, None, &settings, 3.0, Some(&clip))?;
        let base = baseline.text_to_image(&caption, None, &settings, 3.0, Some(&clip))?;
        let blank = || RgbImage::from_pixel(64, 64, Rgb([255; 3]));
        let truth = doc.images().next().map_or_else(blank, |i| i.pixels.clone());
        let mut tiles: Vec<(RgbImage, u32)> = vec![(truth, 0)];
        let mut described = Vec::new();
        for evidence in with.context.documents.iter().take(2) {
            let image = memory
                .row_of(&evidence.id)
                .and_then(|r| memory.document(r).ok())
                .and_then(|d| d.images().next().map(|i| i.pixels.clone()));
            tiles.push((image.unwrap_or_else(blank), 1));
            described.push(format!("{} ({:.2})", evidence.caption, evidence.score));
        }
        while tiles.len() < 3 {
            tiles.push((blank(), 1));
        }
        for (group, outputs) in [(2, &with), (3, &without), (4, &base)] {
            tiles.extend(outputs.samples.iter().map(|s| (s.image.clone(), group)));
        }
        for (column, (tile, group)) in tiles.iter().enumerate() {
            let big = imageops::resize(tile, cell, cell, imageops::FilterType::Nearest);
            let x = column as u32 * cell + group * GAP;
            imageops::replace(&mut grid, &big, x as i64, (row as u32 * (cell + 4)) as i64);
        }
        report.push_str(&format!(
            "| {} | {caption} | {} |\n",
            row + 1,
            described.join("; ")
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    // From the repository root every committed checkpoint is found and nothing is
    // trained; from elsewhere each is trained with its command, into its own folder, and
    // the RA generator reads the demo's memory.
    #[test]
    fn only_missing_checkpoints_are_trained() {
        let memory = Path::new("demo/memory");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let commands = |recipes: &[Recipe], root: &Path| -> Vec<Vec<String>> {
            missing(recipes, root, memory)
                .into_iter()
                .map(|(_, command)| command)
                .collect()
        };
        let at_root = (commands(&TOKENIZERS, &root), commands(&GENERATORS, &root));
        let empty = tempfile::tempdir().unwrap();
        let elsewhere = commands(&GENERATORS, empty.path());
        let tokenizers = commands(&TOKENIZERS, empty.path());
        assert!(at_root.0.is_empty() && at_root.1.is_empty(), "{at_root:?}");
        assert_eq!(tokenizers.len(), 2);
        assert_eq!(tokenizers[0][..2], ["vq", "train"]);
        assert_eq!(tokenizers[1][..2], ["clip", "train"]);
        assert_eq!(
            elsewhere[0].join(" "),
            "train emoji --memory demo/memory --preset small --steps 1200 --out checkpoints/cm3-emoji-small"
        );
        assert_eq!(
            elsewhere[1].join(" "),
            "train emoji --baseline --preset small --steps 1200 --out checkpoints/cm3-emoji-small-baseline"
        );
    }
}
