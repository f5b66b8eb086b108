//! `racm3 vq`: train the VQGAN image tokenizer, and turn images into codes and back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use racm3::Device;
use racm3::data::{Split, image_grid, save_png};
use racm3::experiment::demo::VQGAN as DEFAULT_MODEL;
use racm3::scores::{default_fid_weights, tokenizer_floor};
use racm3::tokenize::vqgan::{
    ImageTokenizer, ReconstructionLoss, VqTrainConfig, Vqgan, VqganConfig, evaluate, fit_image,
    read_config,
};
use serde_json::json;

use crate::data::DatasetArgs;
use crate::progress::Terminal;
/// Where `vq train` writes a run unless told: beside the committed model, never over it.
const DEFAULT_RUN: &str = "runs/vqgan-emoji64-f8";

const FIT_POLICY: &str = "Images of another size are fitted: the short side is resized to the \
model's resolution (Catmull-Rom) and the center square is cropped; transparency is \
composited over white and grey images become RGB.";

#[derive(Debug, Subcommand)]
pub enum VqCommand {
    /// Train a VQGAN on a dataset's train split (L1 or L2 + VQ losses, PatchGAN after warm-up).
    /// Resumes the run in --out if there is one; raising --steps trains it longer.
    ///
    /// Example: racm3 vq train emoji --preset emoji64-f8 --steps 3000 --out runs/vqgan-emoji64-f8
    ///
    /// Sharpen a trained model's decoder, keeping every image's tokens:
    /// racm3 vq train emoji --init checkpoints/vqgan-emoji64-f8 --decoder-only --steps 2000 --out runs/vq-decoder
    #[command(after_help = FIT_POLICY)]
    Train(TrainArgs),
    /// Print the codebook indices of images, one grid row per line.
    ///
    /// Example: racm3 vq encode apple.png --model checkpoints/vqgan-emoji64-f8
    #[command(after_help = FIT_POLICY)]
    Encode {
        /// Image files (PNG, JPEG, WebP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// The VQGAN folder (config.json, model.safetensors).
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decode codebook indices (as `vq encode` prints them) to an image.
    ///
    /// Example: racm3 vq encode apple.png | racm3 vq decode --out apple-vq.png
    Decode {
        /// The indices, separated by spaces, commas or newlines; read from stdin if absent.
        codes: Option<String>,
        /// The VQGAN folder.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// Where to write the PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Reconstruct a split, report PSNR and codebook usage, and write originals above
    /// their reconstructions as one PNG.
    ///
    /// Example: racm3 vq reconstruct emoji --split val --out grid.png
    #[command(after_help = FIT_POLICY)]
    Reconstruct {
        #[command(flatten)]
        input: DatasetArgs,
        /// The VQGAN folder.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// The split to measure.
        #[arg(long, default_value = "val")]
        split: Split,
        /// Where to write the grid.
        #[arg(long, default_value = "reconstructions.png")]
        out: PathBuf,
        /// Images shown in the grid.
        #[arg(long, default_value_t = 16)]
        show: usize,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        /// Also score the reconstructions of the held-out val Twemoji drawings (the 189
        /// images `racm3 eval` scores against, the same every time) against the drawings:
        /// FID and KID with the standard Inception network ($RACM3_FID_WEIGHTS, else made
        /// by .ci/fid-weights).
        #[arg(long)]
        fid: bool,
    },
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    input: DatasetArgs,
    /// Model shape: emoji64-f8, taming-f16-1024, taming-f16-16384 or tiny.
    #[arg(long, default_value = "emoji64-f8")]
    preset: String,
    /// Optimizer steps in all.
    #[arg(long)]
    steps: Option<usize>,
    /// Images per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Step at which the PatchGAN discriminator starts.
    #[arg(long)]
    disc_start: Option<usize>,
    /// Steps the discriminator trains alone from --disc-start before its loss reaches the
    /// model (default 0).
    #[arg(long)]
    disc_lead: Option<usize>,
    /// Factor on the adversarial loss's adaptive weight (taming's discriminator_weight):
    /// 1 makes the discriminator's gradient at the decoder's last layer as large as the
    /// reconstruction loss's.
    #[arg(long)]
    disc_weight: Option<f64>,
    /// Seed for initialization and batches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Start a new run from this trained model folder (its config.json replaces --preset).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Train only the decoder, on the frozen encoder's codes: images keep their tokens, so
    /// generators trained on them stay valid. Use with --init.
    #[arg(long, requires = "init")]
    decoder_only: bool,
    /// The reconstruction loss: l1 (taming's) or l2 (the mean squared error PSNR measures;
    /// for fine-tuning a decoder toward PSNR).
    #[arg(long, default_value = "l1")]
    loss: ReconstructionLoss,
    /// Base channel count of the encoder (and of the decoder without --decoder-ch),
    /// replacing the preset's: a wider model of the same grid and codebook. Not with --init.
    #[arg(long, conflicts_with = "init")]
    ch: Option<usize>,
    /// Base channel count of the decoder, when it should differ from the encoder's: with
    /// --init, a decoder of a new width starts fresh on the trained encoder and codebook.
    #[arg(long)]
    decoder_ch: Option<usize>,
    /// The run's folder: model, checkpoints, loss.csv and loss.png. A folder holding a
    /// trained model without checkpoints (a committed one) is refused, not overwritten.
    #[arg(long, default_value = DEFAULT_RUN)]
    out: PathBuf,
    /// Where to train: cpu, cuda or cuda:N (a --features cuda build).
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(command: VqCommand) -> Result<()> {
    match command {
        VqCommand::Train(args) => train(args),
        VqCommand::Encode {
            images,
            model,
            json,
        } => encode(&images, &model, json),
        VqCommand::Decode { codes, model, out } => decode(codes, &model, &out),
        VqCommand::Reconstruct {
            input,
            model,
            split,
            out,
            show,
            json,
            fid,
        } => reconstruct(&input, &model, split, &out, show, json, fid),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let mut model = match &args.init {
        Some(init) => read_config(init)?,
        None => VqganConfig::preset(&args.preset).with_context(|| {
            format!(
                "unknown preset '{}': expected one of {}",
                args.preset,
                VqganConfig::PRESETS.join(", ")
            )
        })?,
    };
    // Presets and --init configs are valid, so a failure here comes from the widths.
    model.ch = args.ch.unwrap_or(model.ch);
    model.decoder_ch = args.decoder_ch.or(model.decoder_ch);
    model
        .validate()
        .map_err(|message| anyhow::anyhow!("--ch/--decoder-ch: {message}"))?;
    let mut config = VqTrainConfig::new(model);
    config.init = args.init.clone();
    config.decoder_only = args.decoder_only;
    config.reconstruction = args.loss;
    config.seed = args.seed;
    config.steps = args.steps.unwrap_or(config.steps);
    config.batch_size = args.batch_size.unwrap_or(config.batch_size);
    config.lr = args.lr.unwrap_or(config.lr);
    config.disc_start = args.disc_start.unwrap_or(config.disc_start);
    config.disc_weight = args.disc_weight.unwrap_or(config.disc_weight);
    config.disc_lead = args.disc_lead.unwrap_or(config.disc_lead);
    let device = racm3::device(&args.device)?;
    let trained = racm3::training::train_vqgan(
        &args.input.dataset,
        args.input.skip_bad,
        config,
        &args.out,
        &device,
        &Terminal,
    )?;
    let val = &trained.val;
    println!(
        "trained to step {} in {:.1} s; val ({} images): PSNR {:.2} dB, codebook usage {:.1}%, perplexity {:.1}",
        trained.config.steps,
        trained.seconds,
        val.images,
        val.psnr,
        100.0 * val.usage,
        val.perplexity
    );
    println!(
        "model in {}; loss curve in {}",
        args.out.display(),
        args.out.join("loss.png").display()
    );
    Ok(())
}

fn load_tokenizer(model: &Path) -> Result<ImageTokenizer> {
    ImageTokenizer::load(model, &Device::Cpu)
        .with_context(|| format!("loading the VQGAN in {}", model.display()))
}

fn encode(images: &[PathBuf], model: &Path, json: bool) -> Result<()> {
    let tokenizer = load_tokenizer(model)?;
    let side = tokenizer.model().config().grid_size();
    let pixels = images
        .iter()
        .map(|path| racm3::data::read_image(path))
        .collect::<Result<Vec<_>, _>>()?;
    let codes = tokenizer.encode(&pixels, 32)?;
    if json {
        let items: Vec<_> = images
            .iter()
            .zip(&codes)
            .map(|(path, codes)| json!({"image": path, "grid": side, "codes": codes}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    for (path, codes) in images.iter().zip(&codes) {
        if images.len() > 1 {
            println!("# {}", path.display());
        }
        for row in codes.chunks(side) {
            let row: Vec<String> = row.iter().map(u32::to_string).collect();
            println!("{}", row.join(" "));
        }
    }
    Ok(())
}

fn decode(codes: Option<String>, model: &Path, out: &Path) -> Result<()> {
    let text = match codes {
        Some(text) => text,
        None => std::io::read_to_string(std::io::stdin()).context("reading codes from stdin")?,
    };
    let codes = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|field| !field.is_empty() && !field.starts_with('#'))
        .map(|field| {
            field
                .parse::<u32>()
                .with_context(|| format!("'{field}' is not a code index"))
        })
        .collect::<Result<Vec<u32>>>()?;
    let tokenizer = load_tokenizer(model)?;
    let image = tokenizer
        .decode(&[codes])?
        .pop()
        .context("the decoder returned no image")?;
    save_png(&image, out)?;
    println!("wrote {}", out.display());
    Ok(())
}

fn reconstruct(
    input: &DatasetArgs,
    model_dir: &Path,
    split: Split,
    out: &Path,
    show: usize,
    json: bool,
    fid: bool,
) -> Result<()> {
    let device = Device::Cpu;
    let model = Vqgan::load(model_dir, &device)
        .with_context(|| format!("loading the VQGAN in {}", model_dir.display()))?;
    let loaded = input.load()?;
    let images = racm3::training::split_images(&loaded.documents, split);
    if images.is_empty() {
        bail!("the {split} split of {} has no images", input.dataset);
    }
    let started = std::time::Instant::now();
    let evaluation = evaluate(&model, &images, 64, &device)?;
    let seconds = started.elapsed().as_secs_f64();
    let shown: Vec<image::RgbImage> = images.iter().take(show.max(1)).cloned().collect();
    let tokenizer = ImageTokenizer::new(model, device);
    let decoded = tokenizer.decode(&tokenizer.encode(&shown, 64)?)?;
    let resolution = tokenizer.model().config().resolution as u32;
    let originals: Vec<_> = shown
        .iter()
        .map(|image| fit_image(image, resolution))
        .collect();
    // Originals in the top row, reconstructions under them, with a 2-pixel white gutter.
    let tiles: Vec<&image::RgbImage> = originals.iter().chain(&decoded).collect();
    save_png(&image_grid(&tiles, originals.len(), 2), out)?;
    let held_out = fid
        .then(|| tokenizer_floor(&tokenizer, &default_fid_weights(), &Terminal))
        .transpose()?;
    if json {
        let mut report = json!({
            "dataset": input.dataset, "split": split, "images": evaluation.images,
            "psnr_db": evaluation.psnr, "codebook_usage": evaluation.usage,
            "perplexity": evaluation.perplexity, "seconds": seconds, "grid": out,
        });
        if let Some(distance) = held_out {
            report["held_out_twemoji"] = json!({
                "images": distance.samples.0, "fid": distance.fid, "kid": distance.kid,
            });
        }
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} {split} ({} images): PSNR {:.2} dB, codebook usage {:.1}% of {}, perplexity {:.1} ({:.1} s)",
            input.dataset,
            evaluation.images,
            evaluation.psnr,
            100.0 * evaluation.usage,
            tokenizer.codebook_size(),
            evaluation.perplexity,
            seconds
        );
        if let Some(distance) = held_out {
            println!(
                "held-out val Twemoji ({} drawings) against their reconstructions: FID {:.2}, KID {:.4}",
                distance.samples.0, distance.fid, distance.kid
            );
        }
        println!(
            "wrote {} (originals above, reconstructions below)",
            out.display()
        );
    }
    Ok(())
}
