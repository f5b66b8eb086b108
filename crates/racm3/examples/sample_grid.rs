//! Sample grids for held-out captions: for every n-th entity of the Twemoji val split (no
//! cherry-picking), one row of [the real Twemoji | the K = 2 documents retrieved for the
//! caption | RA-CM3 samples with retrieval | the same model with K = 0 | the baseline],
//! samples sorted by CLIP similarity. Prints the captions and retrieved documents as a
//! Markdown table.
//!
//! cargo run --release -p racm3 --example sample_grid -- RA_RUN BASELINE_RUN MEMORY OUT.png [ROWS] [SAMPLES]

use std::path::Path;

use image::{Rgb, RgbImage, imageops};
use racm3::data::{Dataset, Home, OnBadSample, Silent, Split};
use racm3::generate::sampler::SamplingConfig;
use racm3::memory::Memory;
use racm3::retrieve::{ClipEncoder, RetrievalPolicy};
use racm3::tasks::{Generator, Retriever, SampleSettings};

const VQGAN: &str = "checkpoints/vqgan-emoji64-f8";
const SCALE: u32 = 2;
const GAP: u32 = 12;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err(
            "usage: sample_grid RA_RUN BASELINE_RUN MEMORY OUT.png [ROWS] [SAMPLES]".into(),
        );
    }
    let rows: usize = args.get(5).map_or(Ok(6), |s| s.parse())?;
    let samples: usize = args.get(6).map_or(Ok(4), |s| s.parse())?;
    let device = racm3::Device::Cpu;
    let ra = Generator::load(Path::new(&args[1]), Path::new(VQGAN), &device)?;
    let baseline = Generator::load(Path::new(&args[2]), Path::new(VQGAN), &device)?;
    let memory = Memory::open(Path::new(&args[3]))?;
    let clip_dir = memory.encoder()["name"]
        .as_str()
        .ok_or("memory records no CLIP")?
        .to_owned();
    let clip = ClipEncoder::load(Path::new(&clip_dir), &device)?;
    let retriever = Retriever {
        encoder: &clip,
        memory: &memory,
        policy: RetrievalPolicy::default(),
    };
    let twemoji = Dataset::resolve("emoji-twitter", &Home::from_env())?
        .load(OnBadSample::Fail, &Silent)?
        .documents;
    let held_out: Vec<_> = twemoji
        .iter()
        .filter(|doc| doc.source.split == Split::Val && !doc.id().contains('-'))
        .collect();
    let step = (held_out.len() / rows).max(1);
    let settings = SampleSettings {
        samples,
        sampling: SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.9),
        },
        seed: 1,
    };
    let cell = 64 * SCALE;
    let columns = 3 + 3 * samples;
    let width = columns as u32 * cell + 4 * GAP;
    let mut grid = RgbImage::from_pixel(width, rows as u32 * (cell + 4), Rgb([255; 3]));
    println!("| row | held-out caption | retrieved (score) |\n| --- | --- | --- |");
    for (row, doc) in held_out.iter().step_by(step).take(rows).enumerate() {
        let caption = doc.caption();
        let with = ra.text_to_image(&caption, Some(&retriever), &settings, 3.0, Some(&clip))?;
        let without = ra.text_to_image(&caption, None, &settings, 3.0, Some(&clip))?;
        let base = baseline.text_to_image(&caption, None, &settings, 3.0, Some(&clip))?;
        let truth = doc
            .images()
            .next()
            .ok_or("a document without an image")?
            .pixels
            .clone();
        let mut tiles: Vec<(RgbImage, u32)> = vec![(truth, 0)];
        let mut described = Vec::new();
        for evidence in with.context.documents.iter().take(2) {
            let row_in_memory = memory.row_of(&evidence.id).ok_or("retrieved id vanished")?;
            let document = memory.document(row_in_memory)?;
            let image = document.images().next().map(|i| i.pixels.clone());
            tiles.push((image.unwrap_or_else(|| RgbImage::new(64, 64)), 1));
            described.push(format!("{} ({:.2})", evidence.caption, evidence.score));
        }
        while tiles.len() < 3 {
            tiles.push((RgbImage::from_pixel(64, 64, Rgb([255; 3])), 1));
        }
        for (group, outputs) in [(2, &with), (3, &without), (4, &base)] {
            tiles.extend(outputs.samples.iter().map(|s| (s.image.clone(), group)));
        }
        let y = row as u32 * (cell + 4);
        for (column, (tile, group)) in tiles.iter().enumerate() {
            let big = imageops::resize(tile, cell, cell, imageops::FilterType::Nearest);
            let x = column as u32 * cell + group * GAP;
            imageops::replace(&mut grid, &big, x as i64, y as i64);
        }
        println!("| {} | {caption} | {} |", row + 1, described.join("; "));
    }
    let out = Path::new(&args[4]);
    grid.save(out)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
