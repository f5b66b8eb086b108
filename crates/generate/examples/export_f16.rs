//! Copies a generator run folder's ready-to-use files (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `loss.csv`, `loss.png`, and `train.json` where the run has one) with the weights stored as f16, half the size,
//! for committing; `Cm3Model::load` reads them back as f32.
//!
//! cargo run --release -p racm3-generate --example export_f16 -- RUN OUT

use std::path::Path;

use candle_core::{DType, Device};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, run, out] = &args[..] else {
        return Err("usage: export_f16 RUN OUT".into());
    };
    let (run, out) = (Path::new(run), Path::new(out));
    std::fs::create_dir_all(out)?;
    let tensors = candle_core::safetensors::load(run.join("model.safetensors"), &Device::Cpu)?;
    let half = tensors
        .into_iter()
        .map(|(name, tensor)| Ok((name, tensor.to_dtype(DType::F16)?)))
        .collect::<candle_core::Result<std::collections::HashMap<_, _>>>()?;
    let tmp = out.join("model.safetensors.tmp");
    candle_core::safetensors::save(&half, &tmp)?;
    std::fs::rename(&tmp, out.join("model.safetensors"))?;
    for file in ["config.json", "tokenizer.json", "loss.csv", "loss.png"] {
        std::fs::copy(run.join(file), out.join(file))?;
    }
    // Runs of racm3 train record their settings; older run folders lack the file.
    if run.join("train.json").exists() {
        std::fs::copy(run.join("train.json"), out.join("train.json"))?;
    }
    println!("exported {} to {} as f16", run.display(), out.display());
    Ok(())
}
