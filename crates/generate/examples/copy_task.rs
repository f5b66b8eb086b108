//! Can the CM3 decoder learn to copy its context at all? The cleanest form of what
//! retrieval asks of it: sequences `[x1..x40 <break> x1..x40]` of random text ids, the
//! first half as a retrieved document (its loss weighted α) and the second as the main
//! one. A model that forms an induction circuit drives the main loss far below ln V
//! while the retrieved half stays at ln V. Prints the two losses every 25 steps.
//!
//! cargo run --release -p racm3-generate --example copy_task -- [preset] [steps] [text vocabulary]
use candle_core::Device;
use racm3_generate::{Cm3TrainConfig, Cm3Trainer, Config, Role, Sequence};
use racm3_tokenize::IdSpace;
use rand::{RngExt, SeedableRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map_or("tiny", String::as_str);
    let steps: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    let vocab_text: u32 = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let ids = IdSpace::new(vocab_text, 16);
    let config = Config::preset(preset, ids.len() as usize).ok_or("preset")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let n = 40;
    let data: Vec<Sequence> = (0..2000)
        .map(|_| {
            let x: Vec<u32> = (0..n).map(|_| rng.random_range(0..vocab_text)).collect();
            let mut tokens = x.clone();
            tokens.push(ids.special(racm3_tokenize::Special::Break));
            tokens.extend(&x);
            let mut roles = vec![Role::Retrieved; n + 1];
            roles.extend(vec![Role::Main; n]);
            Sequence {
                tokens,
                roles,
                retrieved: 1,
            }
        })
        .collect();
    let out = std::env::temp_dir().join(format!("copy-task-{}", std::process::id()));
    let train = Cm3TrainConfig {
        steps,
        checkpoint_every: usize::MAX,
        ..Cm3TrainConfig::new(config)
    };
    let mut trainer = Cm3Trainer::open(train, ids, &out, &Device::Cpu)?;
    for step in 0..steps {
        let report = trainer.train_step(&data)?;
        if step % 25 == 0 || step == steps - 1 {
            println!(
                "step {step}: main {:.3} retrieved {:.3} (ln V = {:.3})",
                report.main,
                report.retrieved,
                (vocab_text as f64).ln()
            );
        }
    }
    std::fs::remove_dir_all(&out).ok();
    Ok(())
}
