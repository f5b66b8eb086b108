//! The demo (`racm3 demo`): the committed checkpoints, the command that trained each (so a
//! checkout without them can make them), and the demo's sheet: held-out captions drawn
//! with and without retrieval beside the real drawing and what was retrieved.

use std::path::Path;

use image::{Rgb, RgbImage, imageops};
use racm3_data::Document;
use racm3_generate::sampler::{DEFAULT_CFG, SamplingConfig};

use crate::Error;
use crate::progress::Observer;
use crate::tasks::{DRAWING_COPY_BIAS, Generator, Retriever, SampleSettings};

/// The committed VQGAN, relative to the repository root.
pub const VQGAN: &str = "checkpoints/vqgan-emoji64-f8";
/// The committed CLIP.
pub const CLIP: &str = "checkpoints/clip-emoji-small";
/// The committed RA-CM3 generator: trained on all five renditions with the copy pointer
/// over retrieved images and captions (f16).
pub const GENERATOR: &str = "checkpoints/runs/gen5-ra-pointer";
/// The committed baseline: the same config and tokens as the generator, no retrieval (f16).
pub const BASELINE: &str = "checkpoints/runs/gen5-base";

/// A committed checkpoint, the `racm3` command that trained it, and how long that took.
pub struct Recipe {
    /// The checkpoint's folder, relative to the repository root.
    pub dir: &'static str,
    /// The command's arguments after `racm3`, without `--out`; `{memory}` stands for the
    /// demo's memory folder.
    pub command: &'static [&'static str],
    /// How long it took, and where.
    pub time: &'static str,
}

/// The tokenizers, trained before the memory (which the CLIP keys).
pub const TOKENIZERS: [Recipe; 2] = [
    Recipe {
        dir: VQGAN,
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
        dir: CLIP,
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

/// The generators, trained on the demo's memory.
pub const GENERATORS: [Recipe; 2] = [
    Recipe {
        dir: GENERATOR,
        command: &[
            "train",
            "emoji",
            "--memory",
            "{memory}",
            "--train-query-threshold",
            "1",
            "--caption-share",
            "0.25",
            "--image-copy",
            "--caption-copy",
            "--preset",
            "small",
            "--steps",
            "1200",
        ],
        time: "about 35 minutes on 2 cores, its caches included",
    },
    Recipe {
        dir: BASELINE,
        command: &[
            "train",
            "emoji",
            "--baseline",
            "--caption-share",
            "0.25",
            "--preset",
            "small",
            "--steps",
            "1200",
        ],
        time: "about 20 minutes on 2 cores",
    },
];

/// Each recipe whose checkpoint is missing under `root`, with the `racm3` arguments that
/// train it (`--out` included, `{memory}` replaced by `memory`).
pub fn missing<'a>(
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

/// What the sheet holds.
pub struct SheetSettings {
    /// Held-out captions to draw (every n-th of the held-out entities).
    pub captions: usize,
    /// Samples per caption and model.
    pub samples: usize,
}

const SCALE: u32 = 2;
const GAP: u32 = 12;

/// The demo's sheet and its Markdown report. Each row: the real drawing, the two documents
/// retrieved for the caption, RA-CM3's samples with retrieval, the same model's with
/// K = 0, the baseline's; samples sorted by the retriever's CLIP similarity, drawn with the default
/// classifier-free guidance.
pub fn sheet(
    held_out: &[Document],
    ra: &Generator,
    baseline: &Generator,
    retriever: &Retriever,
    settings: &SheetSettings,
    observer: &dyn Observer,
) -> Result<(RgbImage, String), Error> {
    let step = (held_out.len() / settings.captions.max(1)).max(1);
    let chosen: Vec<&Document> = held_out
        .iter()
        .step_by(step)
        .take(settings.captions)
        .collect();
    let sampling = SampleSettings {
        samples: settings.samples.max(1),
        sampling: SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.9),
        },
        seed: 1,
        retrieval_guidance: 1.0,
        copy_bias: DRAWING_COPY_BIAS,
    };
    let cell = 64 * SCALE;
    let columns = 3 + 3 * sampling.samples as u32;
    let mut grid = RgbImage::from_pixel(
        columns * cell + 4 * GAP,
        chosen.len() as u32 * (cell + 4),
        Rgb([255; 3]),
    );
    let mut report = String::from(
        "# racm3 demo: held-out emoji with and without retrieval\n\n\
         Each row of `samples.png`: the real Twemoji, the two documents retrieved for the \
         caption, four RA-CM3 samples with retrieval, four from the same model with K = 0, \
         four from the baseline (same config and tokens, trained without retrieval); \
         samples sorted by CLIP similarity to the caption.\n\n\
         ![samples](samples.png)\n\n\
         | row | held-out caption | retrieved (score) |\n| --- | --- | --- |\n",
    );
    let stage = observer.stage("drawing held-out captions");
    stage.set_total(chosen.len() as u64);
    let (clip, memory, guidance) = (retriever.encoder, retriever.memory, DEFAULT_CFG);
    for (row, doc) in chosen.into_iter().enumerate() {
        let caption = doc.caption();
        let with = ra.text_to_image(&caption, Some(retriever), &sampling, guidance, Some(clip))?;
        let without = ra.text_to_image(&caption, None, &sampling, guidance, Some(clip))?;
        let base = baseline.text_to_image(&caption, None, &sampling, guidance, Some(clip))?;
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
        stage.advance(1);
    }
    Ok((grid, report))
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
            "train emoji --memory demo/memory --train-query-threshold 1 --caption-share 0.25 \
             --image-copy --caption-copy --preset small --steps 1200 \
             --out checkpoints/runs/gen5-ra-pointer"
        );
        assert_eq!(
            elsewhere[1].join(" "),
            "train emoji --baseline --caption-share 0.25 --preset small --steps 1200 \
             --out checkpoints/runs/gen5-base"
        );
    }
}
