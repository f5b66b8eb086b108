//! CLIP against Hugging Face transformers (fixture made once by tools/make_clip_fixture.py),
//! checkpoint errors, gradients, and contrastive training on a tiny config.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use racm3_kernels::max_abs_diff;
use racm3_retrieve::clip::{ClipModel, Config};
use racm3_retrieve::train::Pair;
use racm3_retrieve::{ClipEncoder, ClipTrainConfig, ClipTrainer, Query, pixel_values, recall_at_k};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip/hf-tiny")
}

fn expected(name: &str) -> Tensor {
    let tensors =
        candle_core::safetensors::load(fixture().join("expected.safetensors"), &Device::Cpu)
            .unwrap();
    tensors[name].clone()
}

// HF's own checkpoint loads unchanged and gives HF's text and image features within 1e-4
// (legacy end-of-text pooling at the largest id; quick GELU and exact GELU towers).
#[test]
fn matches_transformers_features() {
    let model = ClipModel::load(&fixture(), &Device::Cpu).unwrap();
    let ids = expected("input_ids").to_dtype(DType::U32).unwrap();
    let text = model.text_features(&ids).unwrap();
    let diff = max_abs_diff(&text, &expected("text_features")).unwrap();
    assert!(diff < 1e-4, "text features differ by {diff}");
    let image = model.image_features(&expected("pixel_values")).unwrap();
    let diff = max_abs_diff(&image, &expected("image_features")).unwrap();
    assert!(diff < 1e-4, "image features differ by {diff}");
    let scale = model.logit_scale().to_scalar::<f32>().unwrap();
    let hf_scale = expected("logit_scale")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0];
    assert!((scale - hf_scale).abs() < 1e-6);
}

// OpenAI preprocessing: images at the model's size give CLIPImageProcessor's pixel values
// exactly (1e-5); a larger, non-square image is resized and cropped to within a few
// levels of PIL's bicubic.
#[test]
fn preprocessing_matches_clip_image_processor() {
    let hf = expected("pixel_values");
    for index in 0..3 {
        let image = image::open(fixture().join(format!("image{index}.png")))
            .unwrap()
            .to_rgb8();
        let ours = pixel_values(&[image], 32, &Device::Cpu).unwrap();
        let theirs = hf.narrow(0, index, 1).unwrap();
        let diff = max_abs_diff(&ours, &theirs).unwrap();
        // Normalized units: one 8-bit level is 1/255/0.27 = 0.0146.
        let tolerance = if index < 2 { 1e-5 } else { 0.25 };
        assert!(
            diff < tolerance,
            "image{index}: pixel values differ by {diff}"
        );
        if index == 2 {
            let mean = (&ours - &theirs)
                .unwrap()
                .abs()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(mean < 0.03, "image2: mean difference {mean}");
        }
    }
}

fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(name), to.join(name)).unwrap();
    }
}

// A checkpoint that does not fit its config fails naming the tensor and both shapes; a
// missing tensor is named too.
#[test]
fn mismatched_checkpoint_names_tensor_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["projection_dim"] = 20.into();
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let err = ClipModel::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors")
            && err.contains("projection")
            && err.contains("24")
            && err.contains("20"),
        "{err}"
    );

    config["projection_dim"] = 24.into();
    config["text_config"]["num_hidden_layers"] = 3.into();
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let err = ClipModel::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("text_model.encoder.layers.2"), "{err}");

    std::fs::write(&config_path, b"{ not json").unwrap();
    let err = ClipModel::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("malformed JSON"),
        "{err}"
    );
}

// Every parameter of a fresh model receives a non-zero gradient from the contrastive loss
// (candle's fused LayerNorm and softmax_last_dim would leave some at zero).
#[test]
fn every_parameter_gets_a_gradient() {
    let vars = VarMap::new();
    let config = Config::tiny(50, 48, 49);
    let vb = racm3_train::seeded_var_builder(&vars, 1, DType::F32, &Device::Cpu);
    let model = ClipModel::new(&config, vb).unwrap();
    let ids = Tensor::new(&[[48u32, 5, 6, 49], [48, 7, 49, 49]], &Device::Cpu).unwrap();
    let pixels = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let image =
        racm3_retrieve::clip::l2_normalize(&model.image_features(&pixels).unwrap()).unwrap();
    let text = racm3_retrieve::clip::l2_normalize(&model.text_features(&ids).unwrap()).unwrap();
    let logits = image
        .matmul(&text.t().unwrap())
        .unwrap()
        .broadcast_mul(&model.logit_scale().exp().unwrap())
        .unwrap();
    let targets = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let data = vars.data().lock().unwrap();
    assert!(data.len() > 40);
    for (name, var) in data.iter() {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let norm = grad
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "{name}: zero gradient");
    }
}

/// Eight distinct pictures with distinct captions: a coloured shape each.
fn pairs() -> Vec<Pair> {
    let colours = [
        ("red", [220, 30, 30]),
        ("green", [30, 180, 40]),
        ("blue", [30, 60, 220]),
        ("yellow", [240, 220, 20]),
    ];
    let mut pairs = Vec::new();
    for (name, rgb) in colours {
        for shape in ["square", "stripe"] {
            let image = image::RgbImage::from_fn(32, 32, |x, y| {
                let inside = if shape == "square" {
                    (8..24).contains(&x) && (8..24).contains(&y)
                } else {
                    (12..20).contains(&y)
                };
                image::Rgb(if inside { rgb } else { [255, 255, 255] })
            });
            pairs.push(Pair {
                text: format!("a {name} {shape}"),
                image,
                entity: format!("{name} {shape}"),
                rendition: "drawn".into(),
            });
        }
    }
    pairs
}

// A tiny CLIP trained on eight pairs learns to match them (recall@1 of 1 both ways), and
// a run stopped and resumed ends with the same weights as one that never stopped.
#[test]
fn trains_to_perfect_recall_and_resumes_exactly() {
    let config = ClipTrainConfig {
        preset: "tiny".into(),
        vocab_size: 300,
        steps: 120,
        batch_size: 8,
        lr: 3e-3,
        warmup: 10,
        weight_decay: 0.0,
        seed: 4,
        checkpoint_every: 60,
        renditions_per_entity: 1,
        image_image_weight: 0.0,
    };
    let data = pairs();
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = ClipTrainer::open(config.clone(), &data, dir.path(), &Device::Cpu).unwrap();
    let mut losses = Vec::new();
    trainer
        .train(|report| losses.push(report.loss), |_| Ok(()))
        .unwrap();
    assert!(
        losses[losses.len() - 1] < losses[0] * 0.3,
        "loss {} -> {}",
        losses[0],
        losses[losses.len() - 1]
    );
    let encoder = ClipEncoder::load(dir.path(), &Device::Cpu).unwrap();
    let recall = recall_at_k(&encoder, &data).unwrap();
    assert_eq!(recall.text_to_image[0], 1.0, "{recall:?}");
    assert_eq!(recall.image_to_text[0], 1.0, "{recall:?}");
    // A text query finds its own picture first.
    let key = encoder
        .query_key(&Query {
            text: Some("A Blue Stripe"),
            image: None,
        })
        .unwrap()
        .vector;
    let images: Vec<_> = data.iter().map(|p| p.image.clone()).collect();
    let keys = encoder.embed_images(&images).unwrap();
    let best = keys
        .chunks_exact(encoder.dim())
        .map(|k| racm3_memory::dot(&key, k))
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0;
    assert_eq!(data[best].text, "a blue stripe");

    let resumed_dir = tempfile::tempdir().unwrap();
    let mut first =
        ClipTrainer::open(config.clone(), &data, resumed_dir.path(), &Device::Cpu).unwrap();
    first.train_until(50, |_| {}, |_| Ok(())).unwrap();
    drop(first);
    let mut resumed = ClipTrainer::open(config, &data, resumed_dir.path(), &Device::Cpu).unwrap();
    assert_eq!(resumed.step(), 50);
    resumed.train(|_| {}, |_| Ok(())).unwrap();
    let straight =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let again =
        candle_core::safetensors::load(resumed_dir.path().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    for (name, tensor) in &straight {
        assert_eq!(
            max_abs_diff(tensor, &again[name]).unwrap(),
            0.0,
            "{name} differs after resuming"
        );
    }
}

// Two renditions of four entities (a colour drawn as a square and as a stripe, one caption
// each): trained with both renditions of an entity in a batch as positives, a caption
// finds its entity first and each drawing finds the other rendition first.
#[test]
fn renditions_of_an_entity_become_neighbours() {
    let config = ClipTrainConfig {
        preset: "tiny".into(),
        vocab_size: 300,
        steps: 150,
        batch_size: 8,
        lr: 3e-3,
        warmup: 10,
        weight_decay: 0.0,
        seed: 5,
        checkpoint_every: 150,
        renditions_per_entity: 2,
        image_image_weight: 1.0,
    };
    let data: Vec<Pair> = pairs()
        .into_iter()
        .map(|pair| {
            let (colour, shape) = pair.entity.split_once(' ').unwrap();
            Pair {
                text: format!("a {colour} thing"),
                entity: colour.to_owned(),
                rendition: shape.to_owned(),
                ..pair
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = ClipTrainer::open(config, &data, dir.path(), &Device::Cpu).unwrap();
    let mut losses = Vec::new();
    trainer
        .train(|report| losses.push(report.loss), |_| Ok(()))
        .unwrap();
    assert!(losses[losses.len() - 1] < losses[0] * 0.5, "{losses:?}");
    let encoder = ClipEncoder::load(dir.path(), &Device::Cpu).unwrap();
    let recall = racm3_retrieve::entity_recall(&encoder, &data).unwrap();
    assert_eq!((recall.texts, recall.images), (4, 8));
    assert_eq!(recall.text_to_entity[0], 1.0, "{recall:?}");
    assert_eq!(recall.image_to_other_rendition[0], 1.0, "{recall:?}");
    assert_eq!(
        recall.image_to_other_rendition_by_pixels, None,
        "no pixel keys"
    );
}
