//! Training and coding throughput of the `emoji64-f8` VQGAN on the CPU, for
//! `benches/vqgan_vs_torch.py`, which runs `tools/vqgan_torch.py` (taming-transformers' own
//! encoder, decoder and quantizer at the same shape) beside it.
//!
//! Prints one JSON object: training images/s (a whole step: forward, L1 and VQ losses,
//! backward, AdamW; no discriminator) and encoding and decoding images/s (batch 64).
//!
//! cargo run --release -p racm3-tokenize --example vqgan_bench -- [batch] [train_steps]

use std::time::Instant;

use candle_core::{Device, Tensor};
use racm3_tokenize::vqgan::{VqTrainConfig, VqTrainer, Vqgan, VqganConfig};

const CODING_BATCH: usize = 64;
/// Timed encoding and decoding runs; the fastest counts (as in tools/vqgan_torch.py).
const CODING_RUNS: usize = 3;

fn best_seconds(
    runs: usize,
    mut run: impl FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let started = Instant::now();
        run()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the racm3 binary does, so the figures are the command's.
    racm3_train::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).map_or(Ok(8), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(4), |s| s.parse())?;
    let device = Device::Cpu;
    let model = VqganConfig::emoji64_f8();
    let side = model.resolution;
    let images = Tensor::rand(-1f32, 1.0, (256, 3, side, side), &device)?;
    let warmup = 1;
    let config = VqTrainConfig {
        steps: warmup + steps,
        batch_size: batch,
        disc_start: usize::MAX,
        checkpoint_every: usize::MAX,
        log_every: usize::MAX,
        ..VqTrainConfig::new(model)
    };
    let out = tempfile::tempdir()?;
    let mut trainer = VqTrainer::open(config, out.path(), &device)?;
    trainer.train_until(&images, warmup, |_| {})?;
    let started = Instant::now();
    // The last step also writes the run's checkpoint, as every finished run does.
    trainer.train_until(&images, warmup + steps, |_| {})?;
    let train_images_per_s = (steps * batch) as f64 / started.elapsed().as_secs_f64();

    // Coding runs on the saved model, as `racm3 vq encode` does: plain tensors, no graph.
    let vqgan = Vqgan::load(out.path(), &device)?;
    let xs = images.narrow(0, 0, CODING_BATCH)?;
    let indices = vqgan.encode(&xs)?.indices;
    let encode = best_seconds(CODING_RUNS, || vqgan.encode(&xs).map(drop))?;
    let decode = best_seconds(CODING_RUNS, || vqgan.decode_indices(&indices).map(drop))?;
    println!(
        "{}",
        serde_json::json!({
            "batch": batch,
            "train_images_per_s": train_images_per_s,
            "encode_images_per_s": CODING_BATCH as f64 / encode,
            "decode_images_per_s": CODING_BATCH as f64 / decode,
            "threads": candle_core::utils::get_num_threads(),
        })
    );
    Ok(())
}
