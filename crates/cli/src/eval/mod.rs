//! `racm3 eval`: RA-CM3 against its no-retrieval baseline on held-out emoji entities. The
//! experiment is the library's [`racm3::experiment`]; this is its flags and its report,
//! written as `report.json` (every number, with sample sizes and per-seed values),
//! `report.md` and `report.html`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use racm3::experiment::demo::VQGAN as DEFAULT_VQGAN;
use racm3::experiment::{Drawing, Experiment, Task, default_fid_weights, read_report};
use racm3::generate::sampler::{DEFAULT_CFG, validate_guidance};
use racm3::retrieve::{DEFAULT_K, DEFAULT_THRESHOLD};
use racm3::tasks::{CAPTION_COPY_BIAS, DRAWING_COPY_BIAS, MAX_SAMPLES, validate_copy_bias};
use serde_json::Value;

use crate::progress::Terminal;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The generator trained with retrieval.
    #[arg(long, required_unless_present = "render")]
    ra: Option<PathBuf>,
    /// The baseline: same config and tokens, trained without retrieval.
    #[arg(long, required_unless_present = "render")]
    baseline: Option<PathBuf>,
    /// The memory RA-CM3 retrieves from.
    #[arg(long, required_unless_present = "render")]
    memory: Option<PathBuf>,
    /// Only write report.md and report.html into --out from this report.json (one that
    /// merges several runs, say), running nothing.
    #[arg(long, conflicts_with_all = ["ra", "baseline", "memory"])]
    render: Option<PathBuf>,
    /// The VQGAN both generators were trained with.
    #[arg(long, default_value = DEFAULT_VQGAN)]
    vqgan: PathBuf,
    /// Retrieved documents per prompt.
    #[arg(short, long, default_value_t = DEFAULT_K)]
    k: usize,
    /// Skip retrieved documents whose joint key scores above this with the query's.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    query_threshold: f32,
    /// Seeds for caption to image (the spread is reported).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = DEFAULT_CFG)]
    cfg: f32,
    /// Retrieval guidance scale against a stream without the retrieved documents; 1 is none.
    #[arg(long, default_value_t = 1.0)]
    retrieval_guidance: f32,
    /// Added to the copy pointer's log-weight of each retrieved source while drawing
    /// images (0: as trained; b multiplies the odds of copying by e^b).
    #[arg(long, default_value_t = DRAWING_COPY_BIAS, allow_negative_numbers = true)]
    copy_bias: f32,
    /// Added to the copy pointer's log-weight of each retrieved source while writing
    /// captions (0: as trained).
    #[arg(long, default_value_t = CAPTION_COPY_BIAS, allow_negative_numbers = true)]
    caption_copy_bias: f32,
    /// Images drawn per caption and seed; with more than one, the best by the CLIP's
    /// similarity to the caption is scored (for both models alike).
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// The split whose entities are held out: val while choosing settings, test once at
    /// the end.
    #[arg(long, default_value = "val")]
    split: racm3::data::Split,
    /// Held-out entities to use; 0 is all.
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// The FID Inception weights ($RACM3_FID_WEIGHTS, else made by .ci/fid-weights); FID
    /// and KID are skipped, and say so, when absent.
    #[arg(long)]
    fid_weights: Option<PathBuf>,
    /// The report folder.
    #[arg(long)]
    out: PathBuf,
    /// Which tasks to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "image,image-seen,caption,knowledge,few-shot,retrieval,diagnostics,oracle"
    )]
    tasks: Vec<Task>,
    /// Episodes of the Fashion-MNIST few-shot task.
    #[arg(long, default_value_t = 500)]
    few_shot_queries: usize,
    /// A generator run trained with other settings (its train.json, written by `racm3
    /// train`, names them) for `--tasks training-ablation`. Repeat for several runs.
    #[arg(long)]
    variant: Vec<PathBuf>,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .map_err(|err| anyhow::anyhow!("creating {}: {err}", args.out.display()))?;
    if let Some(json_path) = &args.render {
        return write_reports(&read_report(json_path)?, &args.out);
    }
    let (Some(ra), Some(baseline), Some(memory)) = (&args.ra, &args.baseline, &args.memory) else {
        anyhow::bail!("give --ra, --baseline and --memory, or --render REPORT.json");
    };
    validate_guidance("cfg", args.cfg)?;
    validate_guidance("retrieval_guidance", args.retrieval_guidance)?;
    validate_copy_bias("copy_bias", args.copy_bias)?;
    validate_copy_bias("caption_copy_bias", args.caption_copy_bias)?;
    anyhow::ensure!(
        (1..=MAX_SAMPLES).contains(&args.samples),
        "samples is {}; it must be 1 to {MAX_SAMPLES}",
        args.samples
    );
    let experiment = Experiment {
        ra: ra.clone(),
        baseline: baseline.clone(),
        memory: memory.clone(),
        vqgan: args.vqgan.clone(),
        k: args.k,
        query_threshold: args.query_threshold,
        drawing: Drawing {
            seeds: args.seeds,
            cfg: args.cfg,
            retrieval_guidance: args.retrieval_guidance,
            copy_bias: args.copy_bias,
            samples: args.samples,
        },
        caption_copy_bias: args.caption_copy_bias,
        limit: args.limit,
        split: args.split,
        fid_weights: args.fid_weights.clone().unwrap_or_else(default_fid_weights),
        out: args.out.clone(),
        tasks: args.tasks.clone(),
        few_shot_queries: args.few_shot_queries,
        variants: args.variant.clone(),
    };
    let report = racm3::experiment::run(&experiment, &Terminal)?;
    racm3::data::write_atomic(
        &args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    write_reports(&report, &args.out)
}

/// report.md and report.html in `out`, and the Markdown on stdout.
fn write_reports(report: &Value, out: &Path) -> Result<()> {
    let markdown = racm3::experiment::report::markdown(report);
    racm3::data::write_atomic(&out.join("report.md"), markdown.as_bytes())?;
    racm3::data::write_atomic(
        &out.join("report.html"),
        racm3::experiment::report::html(&markdown).as_bytes(),
    )?;
    println!("{markdown}");
    Ok(())
}
