//! Can the CM3 decoder learn to copy its context at all? The cleanest form of what
//! retrieval asks of it: a retrieved document (its loss weighted α), `<break>`, then the
//! main document repeating it. A model that copies drives the main loss far below ln V
//! while the retrieved one stays at ln V. Prints the two losses every 25 steps.
//!
//! Kinds: `text`, random strings of 40 text ids (a copy needs an induction circuit);
//! `image`, a caption and a random 8x8 grid of image codes in CM3's `<img>` form, with
//! image positions; `pointer`, the same with the image copy pointer (`ImageCopy`);
//! `features`, with the aligned source codes as input features instead.
//!
//! cargo run --release -p racm3-generate --example copy_task -- [preset] [steps] [vocabulary] [kind]
use candle_core::Device;
use racm3_generate::{
    Cm3TrainConfig, Cm3Trainer, Config, ImageCopy, ImagePositions, Role, Sequence,
};
use racm3_tokenize::{IdSpace, Special};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const GRID: usize = 64;

/// Draws one random document of a kind.
type MakeDocument = fn(&IdSpace, u32, &mut StdRng) -> Vec<u32>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map_or("tiny", String::as_str);
    let steps: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    let vocabulary: u32 = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let kind = args.get(4).map_or("text", String::as_str);
    let (ids, document): (IdSpace, MakeDocument) = match kind {
        "text" => (IdSpace::new(vocabulary, 16), random_text),
        "image" | "pointer" | "features" => (IdSpace::new(64, vocabulary), random_image),
        other => {
            return Err(format!("kind {other}: expected text, image, pointer or features").into());
        }
    };
    let mut config = Config::preset(preset, ids.len() as usize).ok_or("preset")?;
    if kind != "text" {
        let positions = ImagePositions {
            first_id: ids.image_range().start,
            codebook: vocabulary,
            grid: GRID,
        };
        config.image_positions = Some(positions);
        config.image_copy = (kind != "image").then_some(ImageCopy {
            image_start: ids.special(Special::ImgSrc),
            sources: 2,
            pointer: kind == "pointer",
            features: kind == "features",
            images: true,
            captions: None,
        });
    }
    let mut rng = StdRng::seed_from_u64(1);
    let data: Vec<Sequence> = (0..2000)
        .map(|_| {
            let x = document(&ids, vocabulary, &mut rng);
            let mut tokens = x.clone();
            tokens.push(ids.special(Special::Break));
            tokens.extend(&x);
            let mut roles = vec![Role::Retrieved; x.len() + 1];
            roles.extend(vec![Role::Main; x.len()]);
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
                (vocabulary as f64).ln()
            );
        }
    }
    std::fs::remove_dir_all(&out).ok();
    Ok(())
}

fn random_text(_: &IdSpace, vocabulary: u32, rng: &mut StdRng) -> Vec<u32> {
    (0..40).map(|_| rng.random_range(0..vocabulary)).collect()
}

/// `<img alt="t t" src="[64 codes]">`.
fn random_image(ids: &IdSpace, _: u32, rng: &mut StdRng) -> Vec<u32> {
    let mut tokens = vec![ids.special(Special::ImgAlt)];
    tokens.extend((0..2).map(|_| rng.random_range(0..64)));
    tokens.push(ids.special(Special::ImgSrc));
    tokens.extend((0..GRID).map(|_| rng.random_range(ids.image_range())));
    tokens.push(ids.special(Special::ImgEnd));
    tokens
}
