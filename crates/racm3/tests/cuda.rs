//! candle's CUDA backend against the references and the CPU, on a machine with a GPU: the
//! taming and Hugging Face fixtures hold on CUDA as on the CPU, the committed generator
//! gives the CPU's logits (with and without a KV cache), and short training runs of the
//! generator and the VQGAN follow the CPU's losses. Built only with the `cuda` feature:
//! `cargo test -p racm3 --features cuda --test cuda`.
#![cfg(feature = "cuda")]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use racm3::generate::{Cm3Model, Cm3TrainConfig, Cm3Trainer, Config, KvCache, training_sequence};
use racm3::kernels::max_abs_diff;
use racm3::retrieve::clip::ClipModel;
use racm3::tokenize::vqgan::{VqTrainConfig, VqTrainer, Vqgan, VqganConfig, images_to_tensor};
use racm3::tokenize::{CausalMasked, IdSpace};

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA device (this test file is for machines with a GPU)")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn on_cpu(tensor: &Tensor) -> Tensor {
    tensor.to_device(&Device::Cpu).unwrap()
}

/// The GPU's losses step by step within 1e-3 (relative above 1) of the CPU's.
fn assert_same_losses(cpu: &[f64], gpu: &[f64]) {
    assert_eq!(cpu.len(), gpu.len());
    for (step, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        assert!(
            (c - g).abs() < 1e-3 * c.abs().max(1.0),
            "step {step}: {c} on the CPU, {g} on the GPU"
        );
    }
}

fn expected(fixture: &str, device: &Device) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(repo(fixture).join("expected.safetensors"), device).unwrap()
}

// taming's VQModel fixture holds on the GPU: latents and decodings within 1e-4, indices
// exactly.
#[test]
fn vqgan_matches_taming_on_cuda() {
    let (device, fixture) = (gpu(), "tests/fixtures/vqgan/taming-tiny");
    let model = Vqgan::load(&repo(fixture), &device).unwrap();
    let expected = expected(fixture, &device);
    let input = &expected["input"];
    let latents = model.latents(input).unwrap();
    let diff = max_abs_diff(&latents, &expected["latents"]).unwrap();
    assert!(diff < 1e-4, "latents differ by {diff}");
    let quantized = model.encode(input).unwrap();
    let want = expected["indices"]
        .to_dtype(DType::U32)
        .unwrap()
        .flatten_all()
        .unwrap();
    let got = quantized.indices.flatten_all().unwrap();
    assert_eq!(
        got.to_vec1::<u32>().unwrap(),
        want.to_vec1::<u32>().unwrap()
    );
    let decoded = model.decode_indices(&quantized.indices).unwrap();
    let diff = max_abs_diff(&decoded, &expected["decoded"]).unwrap();
    assert!(diff < 1e-4, "decodings differ by {diff}");
}

// Hugging Face's CLIPModel fixture holds on the GPU within 1e-4.
#[test]
fn clip_matches_transformers_on_cuda() {
    let (device, fixture) = (gpu(), "tests/fixtures/clip/hf-tiny");
    let model = ClipModel::load(&repo(fixture), &device).unwrap();
    let expected = expected(fixture, &device);
    let ids = expected["input_ids"].to_dtype(DType::U32).unwrap();
    let text = model.text_features(&ids).unwrap();
    let diff = max_abs_diff(&text, &expected["text_features"]).unwrap();
    assert!(diff < 1e-4, "text features differ by {diff}");
    let image = model.image_features(&expected["pixel_values"]).unwrap();
    let diff = max_abs_diff(&image, &expected["image_features"]).unwrap();
    assert!(diff < 1e-4, "image features differ by {diff}");
}

// The committed generator gives the CPU's logits on the GPU, over a whole sequence and one
// cached token at a time (the decoding path: fused kernels, the KV cache's buffers).
#[test]
fn generator_logits_match_cpu() {
    let dir = repo("checkpoints/cm3-emoji-small");
    let (cpu, device) = (Cm3Model::load(&dir, &Device::Cpu).unwrap(), gpu());
    let model = Cm3Model::load(&dir, &device).unwrap();
    let vocab = cpu.config().vocab_size as u32;
    let sequence: Vec<u32> = (0..48u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let ids = |values: &[u32], device: &Device| {
        Tensor::new(values, device).unwrap().unsqueeze(0).unwrap()
    };
    let want = cpu.forward(&ids(&sequence, &Device::Cpu), None).unwrap();
    let full = model.forward(&ids(&sequence, &device), None).unwrap();
    let diff = max_abs_diff(&on_cpu(&full), &want).unwrap();
    assert!(diff < 1e-3, "full forward differs by {diff}");

    let mut cache = KvCache::new();
    model
        .forward(&ids(&sequence[..40], &device), Some(&mut cache))
        .unwrap();
    for position in 40..sequence.len() {
        let step = model
            .forward(
                &ids(&sequence[position..=position], &device),
                Some(&mut cache),
            )
            .unwrap();
        let diff = max_abs_diff(&on_cpu(&step), &want.narrow(1, position, 1).unwrap()).unwrap();
        assert!(diff < 1e-3, "cached step {position} differs by {diff}");
    }
}

// Ten steps of generator training on the GPU follow the CPU's losses: the backward pass and
// the optimizer agree across backends.
#[test]
fn generator_training_follows_cpu() {
    let ids = IdSpace::new(20, 4);
    let sequences: Vec<_> = (0..8)
        .map(|i| {
            let retrieved: Vec<u32> = (0..6).map(|j| ((i * 5 + j * 3) % 20) as u32).collect();
            let masked = CausalMasked {
                loss_mask: vec![true; 6],
                tokens: retrieved.iter().rev().copied().collect(),
                spans: vec![],
            };
            training_sequence(&[retrieved], &masked, &ids, 64).unwrap()
        })
        .collect();
    let config = Cm3TrainConfig {
        steps: 10,
        batch_size: 4,
        lr: 3e-3,
        warmup: 2,
        checkpoint_every: 10,
        ..Cm3TrainConfig::new(Config::tiny(ids.len() as usize))
    };
    let losses = |device: &Device| {
        let dir = tempfile::tempdir().unwrap();
        let mut trainer =
            Cm3Trainer::open(config.clone(), ids.clone(), dir.path(), device).unwrap();
        let mut losses = Vec::new();
        trainer
            .train_until(10, &sequences, &sequences, |report| {
                losses.push(report.main)
            })
            .unwrap();
        losses
    };
    assert_same_losses(&losses(&Device::Cpu), &losses(&gpu()));
}

// Eight steps of VQGAN training on the GPU (convolutions, group norms, the codebook and the
// discriminator from step 6) follow the CPU's reconstruction losses.
#[test]
fn vqgan_training_follows_cpu() {
    let dir = repo("tests/fixtures/data/emoji/emoji-datasource-twitter-16.0.0/img/twitter/64");
    let images: Vec<image::RgbImage> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| image::open(entry.unwrap().path()).unwrap().to_rgb8())
        .collect();
    let config = VqTrainConfig {
        steps: 8,
        batch_size: 4,
        lr: 3e-3,
        warmup: 2,
        disc_start: 6,
        restart_every: 100,
        log_every: 1,
        checkpoint_every: 8,
        ..VqTrainConfig::new(VqganConfig::tiny())
    };
    let losses = |device: &Device| {
        let tensor = images_to_tensor(&images, 16, device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut trainer = VqTrainer::open(config.clone(), dir.path(), device).unwrap();
        let mut losses = Vec::new();
        trainer
            .train(&tensor, |report| losses.push(report.l1))
            .unwrap();
        losses
    };
    assert_same_losses(&losses(&Device::Cpu), &losses(&gpu()));
}
