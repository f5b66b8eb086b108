//! RA-CM3's tasks on a tiny random generator with the committed VQGAN and CLIP: the
//! retrieved documents reach the prompt and the output, every image is a full grid, the
//! policies that change a request say so, and in-context scores are the model's own
//! log-likelihoods.

use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarMap;
use image::{Rgb, RgbImage};
use racm3::data::{Document, Source, Split};
use racm3::generate::sampler::SamplingConfig;
use racm3::generate::{Cm3Model, Config, ImageCopy, ImagePositions};
use racm3::memory::Memory;
use racm3::retrieve::{ClipEncoder, RetrievalPolicy};
use racm3::tasks::{Demonstration, GeneratedImage, Generator, Outputs, Retriever, SampleSettings};
use racm3::tokenize::vqgan::ImageTokenizer;
use racm3::tokenize::{IdSpace, Special, TextTokenizer, TrainOptions};

fn checkpoint(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../checkpoints")
        .join(name)
}

const CAPTIONS: [&str; 4] = [
    "red apple",
    "green apple",
    "blue whale",
    "yellow sun with face",
];

fn picture(seed: u8) -> RgbImage {
    RgbImage::from_fn(64, 64, |x, y| {
        if (x / 8 + y / 8 + seed as u32).is_multiple_of(3) {
            Rgb([seed.wrapping_mul(60), 200 - seed * 30, 40])
        } else {
            Rgb([250, 250, 250])
        }
    })
}

fn document(index: usize) -> Document {
    let source = Source {
        dataset: "test".into(),
        entity: CAPTIONS[index].into(),
        split: Split::Train,
        references: vec![],
        attributes: Default::default(),
    };
    Document::image_caption(
        format!("doc-{index}"),
        CAPTIONS[index],
        picture(index as u8),
        source,
    )
}

struct Setup {
    generator: Generator,
    clip: ClipEncoder,
    memory: Memory,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    setup_with(false)
}

/// The tiny generator, with a copy pointer over two retrieved images if `pointer`.
fn setup_with(pointer: bool) -> Setup {
    let device = Device::Cpu;
    let captions: Vec<String> = CAPTIONS.iter().map(|c| c.to_string()).collect();
    let text = TextTokenizer::train(&captions, &TrainOptions::default()).unwrap();
    let vqgan = ImageTokenizer::load(&checkpoint("vqgan-emoji64-f8"), &device).unwrap();
    let ids = IdSpace::new(text.vocab_size(), vqgan.codebook_size());
    let mut config = Config {
        max_seq_len: 320,
        ..Config::tiny(ids.len() as usize)
    };
    if pointer {
        config.image_positions = Some(ImagePositions {
            first_id: ids.image_range().start,
            codebook: vqgan.codebook_size(),
            grid: vqgan.tokens_per_image(),
        });
        config.image_copy = Some(ImageCopy {
            image_start: ids.special(Special::ImgSrc),
            sources: 2,
            pointer: true,
            features: false,
            images: true,
            captions: None,
        });
    }
    let vars = VarMap::new();
    let vb = racm3::train::seeded_var_builder(&vars, 5, DType::F32, &device);
    let model = Cm3Model::new(&config, vb).unwrap();
    let generator = Generator::new(model, text, vqgan).unwrap();
    let clip = ClipEncoder::load(&checkpoint("clip-emoji-small"), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let documents: Vec<Document> = (0..CAPTIONS.len()).map(document).collect();
    let keys = clip.document_keys(&documents).unwrap();
    let mut memory = Memory::create(
        &dir.path().join("memory"),
        clip.dim(),
        "flat",
        clip.describe(),
    )
    .unwrap();
    memory.add(&documents, &keys).unwrap();
    memory.commit().unwrap();
    Setup {
        generator,
        clip,
        memory,
        _dir: dir,
    }
}

fn settings(samples: usize, temperature: f64) -> SampleSettings {
    SampleSettings {
        samples,
        sampling: SamplingConfig {
            temperature,
            ..Default::default()
        },
        seed: 7,
        retrieval_guidance: 1.0,
        copy_bias: 0.0,
    }
}

fn policy(k: usize) -> RetrievalPolicy {
    RetrievalPolicy {
        k,
        exact: true,
        // CLIP scores these synthetic pictures close together; keep them all.
        query_threshold: 1.1,
        pairwise_threshold: 1.1,
        ..RetrievalPolicy::default()
    }
}

fn codes(outputs: &Outputs<GeneratedImage>) -> Vec<Vec<u32>> {
    outputs.samples.iter().map(|s| s.codes.clone()).collect()
}

// Caption to image: K documents come back with their ids, captions and falling scores;
// every sample is a full 8x8 grid of codes decoded to 64x64, and with CLIP re-ranking the
// samples are sorted by their similarity to the caption. The same seeds draw the same
// images.
#[test]
fn caption_to_image_shows_its_evidence_and_writes_full_grids() {
    let s = setup();
    let retriever = Retriever {
        encoder: &s.clip,
        memory: &s.memory,
        policy: policy(2),
    };
    let run = || {
        s.generator
            .text_to_image(
                "red apple",
                Some(&retriever),
                &settings(3, 1.0),
                3.0,
                Some(&s.clip),
            )
            .unwrap()
    };
    let out = run();
    let evidence = &out.context.documents;
    assert_eq!(evidence.len(), 2);
    assert!(evidence[0].score >= evidence[1].score);
    for hit in evidence {
        let index: usize = hit.id.strip_prefix("doc-").unwrap().parse().unwrap();
        assert_eq!(hit.caption, CAPTIONS[index]);
    }
    assert_eq!(out.samples.len(), 3);
    let similarities: Vec<f32> = out
        .samples
        .iter()
        .map(|sample| sample.clip_similarity.unwrap())
        .collect();
    assert!(
        similarities.windows(2).all(|w| w[0] >= w[1]),
        "{similarities:?}"
    );
    for sample in &out.samples {
        assert_eq!(sample.codes.len(), 64);
        assert!(sample.codes.iter().all(|&code| code < 512));
        assert_eq!(sample.image.dimensions(), (64, 64));
    }
    assert_eq!(codes(&out), codes(&run()));
}

// A generator with a copy pointer: at a large copy bias each drawing is one retrieved
// image's codes, all 64 in place, and `copied` names that image; as trained (bias 0) the
// random pointer leaves most codes to the vocabulary. Without retrieval nothing is copied.
#[test]
fn a_copy_bias_draws_one_retrieved_image_and_says_which() {
    let s = setup_with(true);
    let retriever = Retriever {
        encoder: &s.clip,
        memory: &s.memory,
        policy: policy(2),
    };
    let draw = |copy_bias, retriever| {
        let settings = SampleSettings {
            copy_bias,
            ..settings(4, 1.0)
        };
        s.generator
            .text_to_image("red apple", retriever, &settings, 3.0, None)
            .unwrap()
    };
    let copied = draw(20.0, Some(&retriever));
    for sample in &copied.samples {
        let from = sample.copied.unwrap();
        assert_eq!(from.codes, 64, "{from:?}");
        let index: usize = copied.context.documents[from.document]
            .id
            .strip_prefix("doc-")
            .unwrap()
            .parse()
            .unwrap();
        let source = s
            .generator
            .vqgan()
            .encode(&[picture(index as u8)], 1)
            .unwrap();
        assert_eq!(sample.codes, source[0]);
    }
    let as_trained = draw(0.0, Some(&retriever));
    let most = as_trained
        .samples
        .iter()
        .map(|s| s.copied.unwrap().codes)
        .max();
    assert!(most.unwrap() < 48, "{most:?}");
    assert!(draw(20.0, None).samples.iter().all(|s| s.copied.is_none()));
}

// An empty memory falls back to K = 0 and says so; a caption longer than the prompt
// allows is cut and says so.
#[test]
fn policies_that_change_a_request_say_so() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let empty = Memory::create(
        &dir.path().join("empty"),
        s.clip.dim(),
        "flat",
        s.clip.describe(),
    )
    .unwrap();
    let retriever = Retriever {
        encoder: &s.clip,
        memory: &empty,
        policy: policy(2),
    };
    let long = "red apple ".repeat(80);
    let out = s
        .generator
        .text_to_image(&long, Some(&retriever), &settings(1, 1.0), 1.0, None)
        .unwrap();
    assert!(out.context.documents.is_empty());
    let notes = out.context.notes.join("\n");
    assert!(
        notes.contains("empty") && notes.contains("K = 0"),
        "{notes}"
    );
    assert!(notes.contains("kept the first 64"), "{notes}");
    assert_eq!(out.samples[0].codes.len(), 64);
}

// Greedy captioning is deterministic whatever the seed, and retrieval puts documents in
// front.
#[test]
fn greedy_captions_are_deterministic() {
    let s = setup();
    let retriever = Retriever {
        encoder: &s.clip,
        memory: &s.memory,
        policy: policy(1),
    };
    let image = picture(1);
    let caption = |seed| {
        let settings = SampleSettings {
            seed,
            ..settings(1, 0.0)
        };
        s.generator
            .image_to_caption(&image, Some(&retriever), &settings, None)
            .unwrap()
    };
    let first = caption(7);
    assert_eq!(first.samples[0].text, caption(1234).samples[0].text);
    assert_eq!(first.context.documents.len(), 1);
}

// Image infilling redraws exactly the rows asked for and keeps the others; a range outside
// the grid is an error naming it.
#[test]
fn image_infilling_changes_only_the_hole() {
    let s = setup();
    let image = picture(2);
    let original = s
        .generator
        .vqgan()
        .encode(std::slice::from_ref(&image), 1)
        .unwrap()
        .remove(0);
    let out = s
        .generator
        .infill_image(&image, "blue whale", 2..5, None, &settings(2, 1.0))
        .unwrap();
    for sample in &out.samples {
        assert_eq!(sample.codes[..16], original[..16]);
        assert_eq!(sample.codes[40..], original[40..]);
    }
    assert!(
        out.samples
            .iter()
            .any(|s| s.codes[16..40] != original[16..40])
    );
    let err = s
        .generator
        .infill_image(&image, "blue whale", 6..9, None, &settings(1, 1.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("6..9"), "{err}");
}

// In-context classification scores each label by log p(label <eos> | prompt): the cached
// computation matches a plain forward pass over prompt + label, and the labels come back
// best first.
#[test]
fn in_context_scores_are_the_models_log_likelihoods() {
    let s = setup();
    let demos: Vec<Demonstration> = [(0, "wug"), (2, "blicket"), (1, "wug")]
        .iter()
        .map(|&(index, label)| Demonstration {
            image: picture(index),
            label: label.into(),
        })
        .collect();
    let query = picture(2);
    let answer = s
        .generator
        .classify_in_context(&demos, &query, &[], None)
        .unwrap();
    assert_eq!(answer.scores.len(), 2);
    assert!(answer.scores[0].1 >= answer.scores[1].1);
    assert_eq!(answer.label, answer.scores[0].0);

    // The prompt by hand, and "blicket" scored with one uncached pass.
    let g = &s.generator;
    let ids = *g.codec().ids();
    let mask0 = ids.mask(0).unwrap();
    let image_document = |alt: Vec<u32>, image: &RgbImage| {
        let codes = g
            .vqgan()
            .encode(std::slice::from_ref(image), 1)
            .unwrap()
            .remove(0);
        let mut tokens = vec![ids.special(Special::ImgAlt)];
        tokens.extend(alt);
        tokens.push(ids.special(Special::ImgSrc));
        tokens.extend(codes.iter().map(|&c| ids.image(c).unwrap()));
        tokens.push(ids.special(Special::ImgEnd));
        tokens
    };
    let mut tokens = Vec::new();
    for demo in &demos {
        let label = g.codec().text().encode(&demo.label).unwrap();
        tokens.extend(image_document(label, &demo.image));
        tokens.push(ids.special(Special::Break));
    }
    tokens.extend(image_document(vec![mask0], &query));
    tokens.push(mask0);
    let prompt_len = tokens.len();
    tokens.extend(g.codec().text().encode("blicket").unwrap());
    tokens.push(ids.special(Special::Eos));
    let input = Tensor::new(tokens.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = g.model().forward(&input, None).unwrap().i(0).unwrap();
    let log_probs = candle_nn::ops::log_softmax(&logits, 1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let expected: f64 = (prompt_len..tokens.len())
        .map(|position| log_probs[position - 1][tokens[position] as usize] as f64)
        .sum();
    let blicket = answer
        .scores
        .iter()
        .find(|(label, _)| label == "blicket")
        .unwrap()
        .1;
    assert!((blicket - expected).abs() < 1e-3, "{blicket} vs {expected}");
}

// A generator whose vocabulary is not its tokenizers' id space is refused with both sizes.
#[test]
fn a_mismatched_vocabulary_is_an_error() {
    let device = Device::Cpu;
    let text = TextTokenizer::train(&["a b".to_string()], &TrainOptions::default()).unwrap();
    let vqgan = ImageTokenizer::load(&checkpoint("vqgan-emoji64-f8"), &device).unwrap();
    let vars = VarMap::new();
    let vb = racm3::train::seeded_var_builder(&vars, 5, DType::F32, &device);
    let model = Cm3Model::new(&Config::tiny(100), vb).unwrap();
    let err = Generator::new(model, text, vqgan)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("vocab_size is 100"), "{err}");
}
