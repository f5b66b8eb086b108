//! `racm3 generate`, `caption`, `infill` and `few-shot`: RA-CM3's tasks from the command
//! line, each showing the retrieved documents that informed its output.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use image::RgbImage;
use racm3::data::{image_grid, read_image, save_png};
use racm3::experiment::demo::{GENERATOR as DEFAULT_GENERATOR, VQGAN as DEFAULT_VQGAN};
use racm3::generate::sampler::{DEFAULT_CFG, SamplingConfig, validate_guidance};
use racm3::retrieve::{DEFAULT_K, DEFAULT_THRESHOLD, RetrievalPolicy};
use racm3::tasks::{
    CAPTION_COPY_BIAS, Context, DRAWING_COPY_BIAS, Demonstration, GeneratedImage, GeneratedText,
    Loaded, Outputs, SampleSettings,
};
use serde_json::json;

/// The generator, where retrieval comes from, and how outputs are shown.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The generator's folder (what `racm3 train --out` wrote).
    #[arg(long, default_value = DEFAULT_GENERATOR)]
    model: PathBuf,
    /// The VQGAN folder the generator was trained with.
    #[arg(long, default_value = DEFAULT_VQGAN)]
    vqgan: PathBuf,
    /// The memory to retrieve from; without it the model reads no retrieved documents.
    #[arg(long)]
    memory: Option<PathBuf>,
    /// The CLIP folder for retrieval and re-ranking; by default the one that built the
    /// memory.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Retrieved documents in front of the prompt (K); 0 turns retrieval off.
    #[arg(short, long, default_value_t = DEFAULT_K)]
    k: usize,
    /// Skip retrieved documents whose joint key scores above this with the query's (near copies).
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    query_threshold: f32,
    /// Skip retrieved documents scoring above this with one already chosen.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pairwise_threshold: f32,
    /// Where to run: cpu, cuda or cuda:N (a --features cuda build).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print the retrieved documents with their scores and the prompt's notes.
    #[arg(short, long)]
    verbose: bool,
    /// Print everything as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// How tokens are drawn.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Samples to draw; with a CLIP, the best by CLIP score comes first.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long)]
    temperature: Option<f64>,
    /// Keep the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Keep the smallest set of tokens with this much probability.
    #[arg(long)]
    top_p: Option<f64>,
    /// Sample i uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Retrieval guidance scale against a stream without the retrieved documents; 1 is none.
    #[arg(long, default_value_t = 1.0)]
    retrieval_guidance: f32,
    /// Added to the copy pointer's log-weight of each retrieved source (0: as trained;
    /// b multiplies the odds of copying by e^b); by default 8 for caption to image and
    /// image to caption, 0 for infilling.
    #[arg(long, allow_negative_numbers = true)]
    copy_bias: Option<f32>,
}

impl SamplingArgs {
    /// The settings, with `default_temperature` and `default_copy_bias` where not given.
    fn settings(&self, default_temperature: f64, default_copy_bias: f32) -> Result<SampleSettings> {
        let settings = SampleSettings {
            samples: self.samples,
            sampling: SamplingConfig {
                temperature: self.temperature.unwrap_or(default_temperature),
                top_k: self.top_k,
                top_p: self.top_p,
            },
            seed: self.seed,
            retrieval_guidance: self.retrieval_guidance,
            copy_bias: self.copy_bias.unwrap_or(default_copy_bias),
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// `racm3 generate`: caption to image.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The caption to draw.
    #[arg(long)]
    text: String,
    /// Where to write the best image (PNG).
    #[arg(long, default_value = "generated.png")]
    out: PathBuf,
    /// Also write every sample side by side, best first, to this PNG.
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Classifier-free guidance scale s in u + s (c - u); 1 is none.
    #[arg(long, default_value_t = DEFAULT_CFG)]
    cfg: f32,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// `racm3 caption`: image to caption.
#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// The image (PNG, JPEG, WebP; fitted to the VQGAN's size).
    image: PathBuf,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// `racm3 infill`: fill a hole in a caption or in an image.
#[derive(Debug, Args)]
pub struct InfillArgs {
    /// The document's image.
    image: PathBuf,
    /// The caption. With `<mask>` in it, the model writes the masked words; without, give
    /// --rows to redraw part of the image.
    #[arg(long)]
    caption: String,
    /// Rows of the code grid to redraw, as START..END (an 8-row grid for emoji64-f8).
    #[arg(long, value_parser = parse_rows)]
    rows: Option<Range<usize>>,
    /// Where to write the infilled image (with --rows).
    #[arg(long, default_value = "infilled.png")]
    out: PathBuf,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// `racm3 few-shot`: classify an image from labeled examples in context.
#[derive(Debug, Args)]
pub struct FewShotArgs {
    /// A demonstration as IMAGE=LABEL; repeat for each.
    #[arg(long = "demo", required = true, value_parser = parse_demo)]
    demos: Vec<(PathBuf, String)>,
    /// The image to classify.
    #[arg(long)]
    query: PathBuf,
    /// Candidate labels, comma-separated; by default the demonstrations' labels.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    #[command(flatten)]
    model: ModelArgs,
}

fn parse_rows(text: &str) -> Result<Range<usize>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("'{text}' is not START..END"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("'{s}' in '{text}' is not a row number"))
    };
    Ok(number(start)?..number(end)?)
}

fn parse_demo(text: &str) -> Result<(PathBuf, String), String> {
    let (path, label) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("'{text}' is not IMAGE=LABEL"))?;
    if label.trim().is_empty() {
        return Err(format!("'{text}' has an empty label"));
    }
    Ok((PathBuf::from(path), label.trim().to_owned()))
}

/// The generator, with the memory and its CLIP when retrieving.
fn load(args: &ModelArgs) -> Result<Loaded> {
    let policy = RetrievalPolicy {
        k: args.k,
        query_threshold: args.query_threshold,
        pairwise_threshold: args.pairwise_threshold,
        ..RetrievalPolicy::default()
    };
    let device = racm3::device(&args.device)?;
    Ok(Loaded::open(
        &args.model,
        &args.vqgan,
        args.memory.as_deref(),
        args.clip.as_deref(),
        policy,
        &device,
    )?)
}

/// Images side by side in one row.
fn row_of(images: &[&RgbImage]) -> RgbImage {
    image_grid(images, images.len(), 0)
}

/// The context on stderr: notes always (they say what changed the request), retrieved
/// documents with --verbose.
fn report_context(context: &Context, args: &ModelArgs) {
    for note in &context.notes {
        eprintln!("note: {note}");
    }
    if args.verbose && !args.json {
        if context.documents.is_empty() {
            eprintln!("retrieved: none (K = 0)");
        }
        for (rank, document) in context.documents.iter().enumerate() {
            eprintln!(
                "retrieved {}: {:.4}  {}  \"{}\"",
                rank + 1,
                document.score,
                document.id,
                document.caption
            );
        }
    }
}

/// Texts on stdout, one per line, or everything as JSON.
fn print_texts(out: &Outputs<GeneratedText>, args: &ModelArgs) -> Result<()> {
    report_context(&out.context, args);
    if args.json {
        println!("{}", serde_json::to_string_pretty(out)?);
    } else {
        for sample in &out.samples {
            println!("{}", sample.text);
        }
    }
    Ok(())
}

/// Where the images went, or everything as JSON (codes, seeds, CLIP similarities).
fn print_images(out: &Outputs<GeneratedImage>, args: &ModelArgs, written: &Path) -> Result<()> {
    report_context(&out.context, args);
    if args.json {
        let mut value = serde_json::to_value(out)?;
        value["out"] = json!(written);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let score = out.samples[0]
            .clip_similarity
            .map(|s| format!(" (CLIP similarity {s:.3}, best of {})", out.samples.len()))
            .unwrap_or_default();
        println!("wrote {}{score}", written.display());
    }
    Ok(())
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let settings = args.sampling.settings(1.0, DRAWING_COPY_BIAS)?;
    validate_guidance("cfg", args.cfg)?;
    let loaded = load(&args.model)?;
    let out = loaded.generator.text_to_image(
        &args.text,
        loaded.retriever().as_ref(),
        &settings,
        args.cfg,
        loaded.clip.as_ref(),
    )?;
    save_png(&out.samples[0].image, &args.out)?;
    if let Some(grid) = &args.grid {
        let images: Vec<&RgbImage> = out.samples.iter().map(|s| &s.image).collect();
        save_png(&row_of(&images), grid)?;
    }
    print_images(&out, &args.model, &args.out)?;
    Ok(())
}

pub fn caption(args: CaptionArgs) -> Result<()> {
    let settings = args.sampling.settings(0.0, CAPTION_COPY_BIAS)?;
    let image = read_image(&args.image)?;
    let loaded = load(&args.model)?;
    let out = loaded.generator.image_to_caption(
        &image,
        loaded.retriever().as_ref(),
        &settings,
        loaded.clip.as_ref(),
    )?;
    print_texts(&out, &args.model)?;
    Ok(())
}

pub fn infill(args: InfillArgs) -> Result<()> {
    let image = read_image(&args.image)?;
    let loaded = load(&args.model)?;
    let retriever = loaded.retriever();
    match (args.caption.split_once("<mask>"), &args.rows) {
        (Some((before, after)), None) => {
            let settings = args.sampling.settings(0.0, 0.0)?;
            let out = loaded.generator.infill_caption(
                &image,
                before,
                after,
                retriever.as_ref(),
                &settings,
            )?;
            print_texts(&out, &args.model)?;
        }
        (None, Some(rows)) => {
            let settings = args.sampling.settings(1.0, 0.0)?;
            let out = loaded.generator.infill_image(
                &image,
                &args.caption,
                rows.clone(),
                retriever.as_ref(),
                &settings,
            )?;
            let images: Vec<&RgbImage> = out.samples.iter().map(|s| &s.image).collect();
            save_png(&row_of(&images), &args.out)?;
            print_images(&out, &args.model, &args.out)?;
        }
        (Some(_), Some(_)) => bail!("give either <mask> in --caption or --rows, not both"),
        (None, None) => {
            bail!("nothing to fill: put <mask> in --caption, or give --rows to redraw")
        }
    }
    Ok(())
}

pub fn few_shot(args: FewShotArgs) -> Result<()> {
    let demos = args
        .demos
        .iter()
        .map(|(path, label)| {
            Ok(Demonstration {
                image: read_image(path)?,
                label: label.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let query = read_image(&args.query)?;
    let loaded = load(&args.model)?;
    let answer = loaded.generator.classify_in_context(
        &demos,
        &query,
        &args.labels,
        loaded.retriever().as_ref(),
    )?;
    report_context(&answer.context, &args.model);
    if args.model.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", answer.label);
        if args.model.verbose {
            for (label, score) in &answer.scores {
                eprintln!("log p = {score:.3}  {label}");
            }
        }
    }
    Ok(())
}
