//! The generator's training loop on a tiny config: it learns, accumulates gradients and
//! resumes exactly.

use candle_core::Device;
use racm3_generate::{Cm3TrainConfig, Cm3Trainer, Config, Sequence, training_sequence};
use racm3_kernels::max_abs_diff;
use racm3_tokenize::{CausalMasked, IdSpace};

/// Sequences whose main document repeats its retrieved document, shifted by one.
fn data(ids: &IdSpace, count: usize) -> Vec<Sequence> {
    (0..count)
        .map(|i| {
            let retrieved: Vec<u32> = (0..6).map(|j| ((i * 7 + j * 3) % 20) as u32).collect();
            let main: Vec<u32> = retrieved.iter().map(|t| (t + 1) % 20).collect();
            let masked = CausalMasked {
                loss_mask: vec![true; main.len()],
                tokens: main,
                spans: vec![],
            };
            training_sequence(&[retrieved], &masked, ids, 64).unwrap()
        })
        .collect()
}

fn config(steps: usize) -> Cm3TrainConfig {
    Cm3TrainConfig {
        steps,
        batch_size: 4,
        grad_accum: 2,
        lr: 3e-3,
        warmup: 5,
        checkpoint_every: 20,
        ..Cm3TrainConfig::new(Config::tiny(IdSpace::new(20, 4).len() as usize))
    }
}

// Sixty steps cut the main loss by more than half and write a loadable run; a run
// stopped at step 20 and resumed ends with exactly the weights of one that never stopped.
#[test]
fn learns_and_resumes_exactly() {
    let ids = IdSpace::new(20, 4);
    let train = data(&ids, 16);
    let val = data(&ids, 4);
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Cm3Trainer::open(config(60), ids, dir.path(), &Device::Cpu).unwrap();
    let mut losses = Vec::new();
    trainer
        .train_until(60, &train, &val, |report| losses.push(report.main))
        .unwrap();
    assert!(
        losses[59] < losses[0] * 0.5,
        "main loss {} -> {}",
        losses[0],
        losses[59]
    );
    for file in ["config.json", "model.safetensors", "loss.csv", "loss.png"] {
        assert!(dir.path().join(file).exists(), "no {file}");
    }
    assert!(trainer.validation_loss(&val).unwrap().is_finite());

    let resumed = tempfile::tempdir().unwrap();
    Cm3Trainer::open(config(60), ids, resumed.path(), &Device::Cpu)
        .unwrap()
        .train_until(20, &train, &val, |_| {})
        .unwrap();
    let mut again = Cm3Trainer::open(config(60), ids, resumed.path(), &Device::Cpu).unwrap();
    assert_eq!(again.step(), 20);
    again.train_until(60, &train, &val, |_| {}).unwrap();
    let a =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(resumed.path().join("model.safetensors"), &Device::Cpu)
        .unwrap();
    for (name, tensor) in &a {
        let diff = max_abs_diff(tensor, &b[name]).unwrap();
        assert_eq!(diff, 0.0, "{name} differs after resuming");
    }
}

// A saved run loads back as the same model (to rounding: the loaded one runs the fused
// inference kernels, the trainer's the tensor-op forms); a config.json that disagrees with the tensors
// is an error naming the file, the tensor and both shapes.
#[test]
fn checkpoints_round_trip_and_mismatches_are_named() {
    let ids = IdSpace::new(20, 4);
    let train = data(&ids, 8);
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Cm3Trainer::open(config(3), ids, dir.path(), &Device::Cpu).unwrap();
    trainer.train_until(3, &train, &[], |_| {}).unwrap();
    let loaded = racm3_generate::Cm3Model::load(dir.path(), &Device::Cpu).unwrap();
    let input = candle_core::Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
    let a = trainer.model().forward(&input, None).unwrap();
    let b = loaded.forward(&input, None).unwrap();
    let diff = max_abs_diff(&a, &b).unwrap();
    assert!(diff < 1e-5, "{diff}");

    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["intermediate_size"] = 128.into();
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let err = racm3_generate::Cm3Model::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("fc1.weight") && err.contains("128"),
        "{err}"
    );
}
