//! Training and sampling throughput of the CM3 decoder, for `benches/cm3_vs_torch.sh`,
//! which runs `tools/cm3_torch.py` (the same architecture in PyTorch) beside it.
//!
//! Prints one JSON object: training target tokens/s (a full optimizer step: forward,
//! loss, backward, clipping, AdamW) and KV-cache decoding tokens/s at each batch size.
//!
//! cargo run --release -p racm3-generate --example cm3_bench -- [preset] [train_steps]

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use racm3_generate::{Cm3Model, Cm3TrainConfig, Cm3Trainer, Config, KvCache, Role, Sequence};
use racm3_tokenize::IdSpace;
use rand::{RngExt, SeedableRng};

const SEQ_LEN: usize = 256;
const BATCH: usize = 8;
const PROMPT: usize = 32;
const NEW_TOKENS: usize = 128;
/// Timed decoding runs at each batch size; the fastest counts (as in tools/cm3_torch.py).
const DECODE_RUNS: usize = 6;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the racm3 binary does, so the figures are the command's.
    racm3_train::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map_or("small", String::as_str);
    let steps: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let ids = IdSpace::new(4096, 512);
    let config = Config::preset(preset, ids.len() as usize).ok_or("unknown preset")?;
    let device = Device::Cpu;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let text_ids = ids.image_range().start;
    let data: Vec<Sequence> = (0..64)
        .map(|_| Sequence {
            tokens: (0..SEQ_LEN)
                .map(|_| rng.random_range(0..text_ids))
                .collect(),
            roles: vec![Role::Main; SEQ_LEN],
            retrieved: 0,
        })
        .collect();

    let out = std::env::temp_dir().join(format!("cm3-bench-{}", std::process::id()));
    let train_config = Cm3TrainConfig {
        steps: steps + 2,
        batch_size: BATCH,
        checkpoint_every: usize::MAX,
        ..Cm3TrainConfig::new(config.clone())
    };
    // Zero training steps measures decoding alone, for profiling it.
    let mut train_tokens_per_s = 0.0;
    if steps > 0 {
        let mut trainer = Cm3Trainer::open(train_config, ids, &out, &device)?;
        for _ in 0..2 {
            trainer.train_step(&data)?;
        }
        let started = Instant::now();
        let mut tokens = 0;
        for _ in 0..steps {
            tokens += trainer.train_step(&data)?.tokens;
        }
        train_tokens_per_s = tokens as f64 / started.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&out).ok();
    }

    // Decoding runs on fixed weights, as after `Cm3Model::load`, not training variables.
    let vars = VarMap::new();
    Cm3Model::new(
        &config,
        racm3_train::seeded_var_builder(&vars, 0, DType::F32, &device),
    )?;
    let weights: HashMap<String, Tensor> = vars
        .data()
        .lock()
        .map_err(|_| "the variable map's lock is poisoned")?
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    let model = Cm3Model::new(
        &config,
        VarBuilder::from_tensors(weights, DType::F32, &device),
    )?;
    let mut decode = Vec::new();
    for batch in [1usize, BATCH] {
        let prompt: Vec<u32> = (0..batch * PROMPT)
            .map(|_| rng.random_range(0..text_ids))
            .collect();
        // The best of several runs: the first warms the allocator and the thread pool, and
        // this machine's timings are noisy.
        let mut rate: f64 = 0.0;
        for _ in 0..DECODE_RUNS {
            let started = Instant::now();
            let mut cache = KvCache::new();
            let input = Tensor::from_vec(prompt.clone(), (batch, PROMPT), &device)?;
            let mut logits = model
                .forward(&input, Some(&mut cache))?
                .i((.., PROMPT - 1))?;
            for _ in 0..NEW_TOKENS {
                let next = logits.argmax(1)?.unsqueeze(1)?;
                logits = model.forward(&next, Some(&mut cache))?.i((.., 0))?;
            }
            logits.to_vec2::<f32>()?;
            rate = rate.max((batch * NEW_TOKENS) as f64 / started.elapsed().as_secs_f64());
        }
        decode.push(format!("\"decode_batch{batch}_tokens_per_s\": {rate:.1}"));
    }
    let train_gflop_per_s = train_tokens_per_s * config.training_flops_per_token(SEQ_LEN) / 1e9;
    println!(
        "{{\"impl\": \"racm3\", \"preset\": \"{preset}\", \"train_batch\": {BATCH}, \
         \"seq_len\": {SEQ_LEN}, \"train_steps\": {steps}, \"train_tokens_per_s\": \
         {train_tokens_per_s:.1}, \"train_gflop_per_s\": {train_gflop_per_s:.1}, {}}}",
        decode.join(", ")
    );
    Ok(())
}
