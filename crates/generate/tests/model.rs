//! The CM3 decoder on a tiny random config: cached decoding, causality, gradients and
//! length limits.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarMap;
use racm3_generate::{Cm3Model, Config, KvCache};

fn model(seed: u64) -> (Cm3Model, VarMap) {
    let vars = VarMap::new();
    let vb = racm3_train::seeded_var_builder(&vars, seed, DType::F32, &Device::Cpu);
    (Cm3Model::new(&Config::tiny(97), vb).unwrap(), vars)
}

fn ids(values: &[u32]) -> Tensor {
    Tensor::new(values, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

// Decoding with a KV cache (a prompt, then one token at a time) gives the same logits as
// one pass over the whole sequence.
#[test]
fn cached_decoding_matches_full_forward() {
    let (model, _vars) = model(1);
    let sequence: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 97).collect();
    let full = model.forward(&ids(&sequence), None).unwrap();
    let mut cache = KvCache::new();
    let prompt = model
        .forward(&ids(&sequence[..5]), Some(&mut cache))
        .unwrap();
    assert!(max_abs_diff(&prompt, &full.narrow(1, 0, 5).unwrap()) < 1e-4);
    for position in 5..12 {
        let step = model
            .forward(&ids(&sequence[position..=position]), Some(&mut cache))
            .unwrap();
        let diff = max_abs_diff(&step, &full.narrow(1, position, 1).unwrap());
        assert!(diff < 1e-4, "position {position}: {diff}");
    }
    assert_eq!(cache.len(), 12);
}

// A later token never changes an earlier position's logits.
#[test]
fn attention_is_causal() {
    let (model, _vars) = model(2);
    let mut sequence: Vec<u32> = (0..10).collect();
    let before = model.forward(&ids(&sequence), None).unwrap();
    sequence[7] = 50;
    let after = model.forward(&ids(&sequence), None).unwrap();
    assert!(
        max_abs_diff(
            &before.narrow(1, 0, 7).unwrap(),
            &after.narrow(1, 0, 7).unwrap()
        ) < 1e-6
    );
    assert!(max_abs_diff(&before.i((.., 7..)).unwrap(), &after.i((.., 7..)).unwrap()) > 1e-4);
}

// Every parameter receives a non-zero gradient from the next-token loss.
#[test]
fn every_parameter_gets_a_gradient() {
    let (model, vars) = model(3);
    let sequence: Vec<u32> = (0..16).map(|i| (i * 11) % 97).collect();
    let logits = model
        .forward(&ids(&sequence[..15]), None)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let targets = Tensor::new(&sequence[1..], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let data = vars.data().lock().unwrap();
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

// A sequence past max_seq_len (256 for tiny) is an error that says so, with or without a
// cache.
#[test]
fn too_long_is_an_error() {
    let (model, _vars) = model(4);
    let long: Vec<u32> = vec![1; 257];
    let err = model.forward(&ids(&long), None).unwrap_err().to_string();
    assert!(
        err.contains("257") && err.contains("max_seq_len 256"),
        "{err}"
    );
    let mut cache = KvCache::new();
    model.forward(&ids(&long[..250]), Some(&mut cache)).unwrap();
    let err = model
        .forward(&ids(&long[..7]), Some(&mut cache))
        .unwrap_err()
        .to_string();
    assert!(err.contains("257"), "{err}");
}

mod sampling {
    use super::*;
    use racm3_generate::decode::{Guidance, sample};
    use racm3_generate::sampler::{Sampler, SamplingConfig, Structure};
    use racm3_tokenize::{IdSpace, Special};

    fn setup() -> (Cm3Model, IdSpace, Vec<u32>) {
        let ids = IdSpace::new(60, 16);
        let vars = VarMap::new();
        let vb = racm3_train::seeded_var_builder(&vars, 9, DType::F32, &Device::Cpu);
        let model = Cm3Model::new(&Config::tiny(ids.len() as usize), vb).unwrap();
        let prompt = vec![
            ids.special(Special::ImgAlt),
            5,
            6,
            ids.special(Special::ImgSrc),
        ];
        (model, ids, prompt)
    }

    fn image(
        model: &Cm3Model,
        ids: IdSpace,
        prompt: &[u32],
        guidance: Option<Guidance>,
        seed: u64,
    ) -> Vec<u32> {
        let mut structure = Structure::new(ids, 9);
        prompt.iter().for_each(|&t| structure.observe(t));
        let mut sampler = Sampler::new(
            SamplingConfig {
                top_p: Some(0.9),
                ..Default::default()
            },
            seed,
        );
        let end = ids.special(Special::ImgEnd);
        sample(
            model,
            prompt,
            guidance,
            &mut structure,
            &mut sampler,
            20,
            |t| t == end,
        )
        .unwrap()
    }

    // An untrained model still writes a well-formed image: exactly 9 codes, then ">;
    // the same seed gives the same image; guidance at scale 1 changes nothing.
    #[test]
    fn writes_well_formed_images_reproducibly() {
        let (model, ids, prompt) = setup();
        let out = image(&model, ids, &prompt, None, 3);
        assert_eq!(out.len(), 10);
        assert!(out[..9].iter().all(|t| ids.image_range().contains(t)));
        assert_eq!(out[9], ids.special(Special::ImgEnd));
        assert_eq!(out, image(&model, ids, &prompt, None, 3));
        let unconditional = vec![
            ids.special(Special::ImgAlt),
            ids.mask(0).unwrap(),
            ids.special(Special::ImgSrc),
        ];
        let scale_one = Guidance {
            unconditional_prompt: &unconditional,
            scale: 1.0,
        };
        assert_eq!(image(&model, ids, &prompt, Some(scale_one), 3), out);
        let strong = Guidance {
            unconditional_prompt: &unconditional,
            scale: 3.0,
        };
        let guided = image(&model, ids, &prompt, Some(strong), 3);
        assert_eq!(guided.len(), 10);
    }
}
