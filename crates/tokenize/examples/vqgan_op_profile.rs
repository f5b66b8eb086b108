//! Times the operations that dominate a VQGAN training step on the CPU, at the shapes of
//! the `emoji64-f8` preset (batch 16): 3x3 convolutions and GroupNorm, forward alone and
//! forward plus backward. It is how the preset was sized; see BENCHMARKS.md.
//!
//! cargo run --release -p racm3-tokenize --example vqgan_op_profile

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder, VarMap};

fn time_ms(run: impl Fn() -> candle_core::Result<Tensor>) -> candle_core::Result<f64> {
    run()?;
    let started = Instant::now();
    for _ in 0..3 {
        run()?;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / 3.0)
}

fn main() -> candle_core::Result<()> {
    // As the racm3 binary does, so the figures are the command's.
    racm3_train::keep_freed_memory();
    let device = Device::Cpu;
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &device);
    println!("| op | shape (b, c, h, w) | forward ms | forward + backward ms |");
    println!("| --- | --- | --- | --- |");
    for (channels, side) in [(16usize, 64usize), (32, 32), (64, 16), (64, 8)] {
        let xs = candle_core::Var::randn(0f32, 1.0, (16, channels, side, side), &device)?;
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv = candle_nn::conv2d(
            channels,
            channels,
            3,
            cfg,
            vb.pp(format!("conv{channels}x{side}")),
        )?;
        let norm =
            candle_nn::group_norm(8, channels, 1e-6, vb.pp(format!("norm{channels}x{side}")))?;
        let layers: [(&str, &dyn Module); 2] = [("conv 3x3", &conv), ("GroupNorm(8)", &norm)];
        for (name, layer) in layers {
            let forward = time_ms(|| layer.forward(&xs))?;
            let both = time_ms(|| {
                let loss = layer.forward(&xs)?.sqr()?.mean_all()?;
                loss.backward()?;
                Ok(loss)
            })?;
            println!("| {name} | (16, {channels}, {side}, {side}) | {forward:.1} | {both:.1} |");
        }
    }
    Ok(())
}
