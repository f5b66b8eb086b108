//! Embedding and training throughput of racm3's CLIP, for `benches/clip_vs_transformers.py`,
//! which runs `tools/clip_torch.py` (Hugging Face transformers' CLIPModel on the same
//! folder) beside it.
//!
//! Prints one JSON object: text and image embeddings/s at batch 1 and 64 (token ids and
//! pixel tensors in, normalized features out; 16 tokens a caption, 64×64 images), and
//! training pairs/s at batch 64 (a whole step: both towers, the contrastive loss,
//! backward, clipping, AdamW), training the `emoji-small` preset from scratch.
//!
//! cargo run --release -p racm3-retrieve --example clip_bench -- [clip folder] [train_steps]

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use racm3_retrieve::clip::l2_normalize;
use racm3_retrieve::train::Pair;
use racm3_retrieve::{ClipEncoder, ClipTrainConfig, ClipTrainer, pixel_values};
use rand::{RngExt, SeedableRng};

const TOKENS: usize = 16;
const BATCH: usize = 64;
/// Timed runs of each embedding figure; the fastest counts (as in tools/clip_torch.py).
const RUNS: usize = 5;

/// Items/s of `work` on `items` items, best of [`RUNS`] after one warm-up.
fn best_rate(items: usize, mut work: impl FnMut() -> candle_core::Result<()>) -> f64 {
    let _ = work();
    // Enough repeats for a measurable time at batch 1.
    let repeats = if items == 1 { 20 } else { 1 };
    let mut best: f64 = 0.0;
    for _ in 0..RUNS {
        let started = Instant::now();
        for _ in 0..repeats {
            work().expect("the model runs");
        }
        best = best.max((items * repeats) as f64 / started.elapsed().as_secs_f64());
    }
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    racm3_train::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let folder = PathBuf::from(
        args.get(1)
            .map_or("checkpoints/clip-emoji-small", String::as_str),
    );
    let steps: usize = args.get(2).map_or(Ok(6), |s| s.parse())?;
    if steps < 2 {
        return Err("train_steps must be at least 2".into());
    }
    let device = Device::Cpu;
    let encoder = ClipEncoder::load(&folder, &device)?;
    let model = encoder.model();
    let config = model.config().clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let vocab = config.text_config.vocab_size as u32;
    let side = config.vision_config.image_size as u32;
    let images: Vec<image::RgbImage> = (0..BATCH)
        .map(|_| image::RgbImage::from_fn(side, side, |_, _| image::Rgb(rng.random())))
        .collect();
    let pixels = pixel_values(&images, side, &device)?;
    let rows: Vec<Vec<u32>> = (0..BATCH)
        .map(|_| {
            let words: Vec<u32> = (0..TOKENS - 2)
                .map(|_| rng.random_range(0..vocab - 2))
                .collect();
            encoder.tokenizer().frame(&words)
        })
        .collect();
    let ids = encoder.tokenizer().batch(&rows, &device)?;

    let mut figures = Vec::new();
    for batch in [1, BATCH] {
        let ids = ids.narrow(0, 0, batch)?;
        let pixels = pixels.narrow(0, 0, batch)?;
        let text = best_rate(batch, || {
            l2_normalize(&model.text_features(&ids)?)?
                .to_vec2::<f32>()
                .map(drop)
        });
        let image = best_rate(batch, || {
            l2_normalize(&model.image_features(&pixels)?)?
                .to_vec2::<f32>()
                .map(drop)
        });
        figures.push(format!("\"text_batch{batch}_per_s\": {text:.1}"));
        figures.push(format!("\"image_batch{batch}_per_s\": {image:.1}"));
    }

    let words = [
        "red", "blue", "apple", "face", "hand", "tree", "with", "a", "smiling", "flag",
    ];
    let pairs: Vec<Pair> = images
        .iter()
        .enumerate()
        .map(|(index, image)| Pair {
            text: (0..6)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect::<Vec<_>>()
                .join(" "),
            image: image.clone(),
            entity: format!("entity {index}"),
            rendition: "random".into(),
        })
        .collect();
    let out = std::env::temp_dir().join(format!("clip-bench-{}", std::process::id()));
    let train_config = ClipTrainConfig {
        preset: "emoji-small".into(),
        steps: steps + 2,
        batch_size: BATCH,
        checkpoint_every: usize::MAX,
        vocab_size: 512,
        ..ClipTrainConfig::default()
    };
    let mut trainer = ClipTrainer::open(train_config, &pairs, &out, &device)?;
    trainer.train_until(2, |_| {}, |_| Ok(()))?;
    // Timed between the first and the last step's report, so the checkpoint written at
    // the stop is not counted.
    let mut reported = Vec::new();
    trainer.train_until(steps + 2, |_| reported.push(Instant::now()), |_| Ok(()))?;
    let (first, last) = (reported[0], reported[reported.len() - 1]);
    let train = ((steps - 1) * BATCH) as f64 / (last - first).as_secs_f64();
    std::fs::remove_dir_all(&out).ok();
    println!(
        "{{\"impl\": \"racm3\", \"folder\": {:?}, \"tokens\": {TOKENS}, \"train_batch\": {BATCH}, \
         \"train_steps\": {steps}, \"train_pairs_per_s\": {train:.1}, {}}}",
        folder.display().to_string(),
        figures.join(", ")
    );
    Ok(())
}
