//! The CM3 decoder on a tiny random config: cached decoding, causality, gradients and
//! length limits; decoding with the structural constraint, guidance and greedy sampling.

use candle_core::{DType, Device, IndexOp, Tensor};
use std::collections::HashMap;

use candle_nn::{VarBuilder, VarMap};
use racm3_generate::{
    CaptionCopy, Cm3Model, Config, CopyMix, ImageCopy, ImagePositions, KvCache, Role, rag_loss,
};
use racm3_kernels::max_abs_diff;

/// The tiny config with image positions on ids 40..70 in grids of 4, so the sequences
/// below hold runs of image codes of every length: the cache must carry a run across calls.
fn config() -> Config {
    Config {
        image_positions: Some(ImagePositions {
            first_id: 40,
            codebook: 30,
            grid: 4,
        }),
        ..Config::tiny(97)
    }
}

fn model(seed: u64) -> (Cm3Model, VarMap) {
    model_of(&config(), seed)
}

fn model_of(config: &Config, seed: u64) -> (Cm3Model, VarMap) {
    let vars = VarMap::new();
    let vb = racm3_train::seeded_var_builder(&vars, seed, DType::F32, &Device::Cpu);
    (Cm3Model::new(config, vb).unwrap(), vars)
}

fn fixed(vars: &VarMap) -> Cm3Model {
    fixed_of(&config(), vars)
}

/// The same weights as fixed tensors, as `Cm3Model::load` gives them: no gradient is
/// tracked, so the model runs candle's fused kernels and a contiguous weight layout.
fn fixed_of(config: &Config, vars: &VarMap) -> Cm3Model {
    let weights: HashMap<String, Tensor> = vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    Cm3Model::new(config, vb).unwrap()
}

/// Asserts that every variable in `vars` received a non-zero gradient.
fn assert_every_variable_has_a_gradient(vars: &VarMap, grads: &candle_core::backprop::GradStore) {
    for (name, var) in vars.data().lock().unwrap().iter() {
        let norm = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"))
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "{name}: zero gradient");
    }
}

fn ids(values: &[u32]) -> Tensor {
    Tensor::new(values, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
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
    assert!(max_abs_diff(&prompt, &full.narrow(1, 0, 5).unwrap()).unwrap() < 1e-4);
    for position in 5..12 {
        let step = model
            .forward(&ids(&sequence[position..=position]), Some(&mut cache))
            .unwrap();
        let diff = max_abs_diff(&step, &full.narrow(1, position, 1).unwrap()).unwrap();
        assert!(diff < 1e-4, "position {position}: {diff}");
    }
    assert_eq!(cache.len(), 12);
}

// Fixed weights (the fused inference path) give the training path's logits for a batch of
// two sequences, over one pass and when decoding 140 tokens one at a time, which grows
// each layer's cache buffers twice.
#[test]
fn fixed_weights_match_the_training_path() {
    let (training, vars) = model(5);
    let inference = fixed(&vars);
    let rows: Vec<Vec<u32>> = (0..2u32)
        .map(|row| (0..140).map(|i| (i * 29 + 3 + row * 11) % 97).collect())
        .collect();
    let batch = |range: std::ops::Range<usize>| {
        let slices: Vec<&[u32]> = rows.iter().map(|row| &row[range.clone()]).collect();
        Tensor::new(slices, &Device::Cpu).unwrap()
    };
    let full = training.forward(&batch(0..140), None).unwrap();
    let diff = max_abs_diff(&inference.forward(&batch(0..140), None).unwrap(), &full).unwrap();
    assert!(diff < 1e-4, "one pass: {diff}");
    let mut cache = KvCache::new();
    inference.forward(&batch(0..3), Some(&mut cache)).unwrap();
    for position in 3..140 {
        let step = inference
            .forward(&batch(position..position + 1), Some(&mut cache))
            .unwrap();
        let diff = max_abs_diff(&step, &full.narrow(1, position, 1).unwrap()).unwrap();
        assert!(diff < 1e-4, "position {position}: {diff}");
    }
}

// A branch of a cache decodes on by itself: the cache it came from still continues as if
// the branch never ran.
#[test]
fn a_branch_leaves_its_source_unchanged() {
    let (_, vars) = model(6);
    let inference = fixed(&vars);
    let mut cache = KvCache::new();
    inference
        .forward(&ids(&[4, 8, 15, 16]), Some(&mut cache))
        .unwrap();
    let mut branch = cache.branch().unwrap();
    inference.forward(&ids(&[23]), Some(&mut branch)).unwrap();
    let step = inference.forward(&ids(&[42]), Some(&mut cache)).unwrap();
    let full = inference.forward(&ids(&[4, 8, 15, 16, 42]), None).unwrap();
    assert!(max_abs_diff(&step, &full.narrow(1, 4, 1).unwrap()).unwrap() < 1e-4);
    assert_eq!((cache.len(), branch.len()), (5, 5));
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
        )
        .unwrap()
            < 1e-6
    );
    assert!(
        max_abs_diff(&before.i((.., 7..)).unwrap(), &after.i((.., 7..)).unwrap()).unwrap() > 1e-4
    );
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
    assert_every_variable_has_a_gradient(&vars, &loss.backward().unwrap());
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

mod copy_pointer {
    use super::*;

    /// `config()` with a pointer reading 2 earlier images; `src="` is id 3.
    fn copy_config() -> Config {
        Config {
            image_copy: Some(ImageCopy {
                image_start: 3,
                sources: 2,
                pointer: true,
                features: true,
                images: true,
                captions: Some(CaptionCopy {
                    alt: 1,
                    eos: 2,
                    first_mask: 90,
                    masks: 4,
                }),
            }),
            ..config()
        }
    }

    /// Documents `<img alt="t t" src="[4 codes]"> t` (alt 1, src 3, text 4..40, codes
    /// 40..70, `">` 71), so that later documents have one and then two sources to copy
    /// from.
    fn with_images(len: usize, seed: usize) -> Vec<u32> {
        (0..len)
            .map(|i| match i % 10 {
                0 => 1,
                3 => 3,
                4..=7 => (40 + (i * 13 + seed) % 30) as u32,
                8 => 71,
                _ => (4 + (i * 7 + seed) % 36) as u32,
            })
            .collect()
    }

    // The pointer's scores are log-probabilities where it can copy (each row sums to 1),
    // are π₀ p_vocab + Σ πₖ at the sources' codes, and decoding with a cache,
    // token by token, batch 2, with fixed weights gives the training path's one pass.
    #[test]
    fn scores_are_a_mixture_and_decode_as_one_pass() {
        let (training, vars) = model_of(&copy_config(), 7);
        let inference = fixed_of(&copy_config(), &vars);
        let rows = [with_images(70, 0), with_images(70, 5)];
        let batch = |range: std::ops::Range<usize>| {
            let slices: Vec<&[u32]> = rows.iter().map(|row| &row[range.clone()]).collect();
            Tensor::new(slices, &Device::Cpu).unwrap()
        };
        let output = training.forward_output(&batch(0..70), None).unwrap();
        let copy = output.copy.as_ref().unwrap();
        let full = training.forward(&batch(0..70), None).unwrap();
        let scores: Vec<Vec<Vec<f32>>> = full.to_vec3().unwrap();
        let logits: Vec<Vec<Vec<f32>>> = output.logits.to_vec3().unwrap();
        let weights: Vec<Vec<Vec<f32>>> = copy.log_weights.to_vec3().unwrap();
        let mut copying = 0;
        for (row, (scores, logits)) in scores.iter().zip(&logits).enumerate() {
            for (position, (scores, logits)) in scores.iter().zip(logits).enumerate() {
                let codes = &copy.codes[(row * 70 + position) * 2..][..2];
                if codes[0] == CopyMix::NONE {
                    assert_eq!(scores, logits);
                    continue;
                }
                copying += 1;
                let total: f32 = scores.iter().map(|s| s.exp()).sum();
                assert!((total - 1.0).abs() < 1e-4, "({row}, {position}): {total}");
                // p(c) = π₀ p_vocab(c) + Σ_j π_j [c_j = c], for the first source's code.
                let vocabulary = log_softmax(logits);
                let weights: Vec<f32> = weights[row][position].iter().map(|w| w.exp()).collect();
                let code = codes[0];
                let want = weights[0] * vocabulary[code as usize].exp()
                    + (0..2)
                        .filter(|&j| codes[j] == code)
                        .map(|j| weights[1 + j])
                        .sum::<f32>();
                let got = scores[code as usize].exp();
                assert!(
                    (got - want).abs() < 1e-5,
                    "({row}, {position}): {got} vs {want}"
                );
                // A masked source would weigh e^-10000 = 0.
                assert!(
                    weights[1] > 1e-12,
                    "({row}, {position}): the source has no weight"
                );
            }
        }
        // Documents 2 to 7 of each row copy: their 2 caption tokens, the `" src="` after
        // them, and their 4 codes.
        assert_eq!(copying, 2 * 6 * 7);
        let diff = max_abs_diff(&inference.forward(&batch(0..70), None).unwrap(), &full).unwrap();
        assert!(diff < 1e-4, "one pass: {diff}");
        let mut cache = KvCache::new();
        inference.forward(&batch(0..3), Some(&mut cache)).unwrap();
        for position in 3..70 {
            let step = inference
                .forward(&batch(position..position + 1), Some(&mut cache))
                .unwrap();
            let diff = max_abs_diff(&step, &full.narrow(1, position, 1).unwrap()).unwrap();
            assert!(diff < 1e-4, "position {position}: {diff}");
        }
    }

    // Taking a source out of the mixture renormalizes it over the vocabulary and the rest,
    // and a copy bias b scales the sources' weights by e^b first: with the second source
    // out, p(c) = (π₀ p_vocab(c) + e^b π₁ [c₁ = c]) / (π₀ + e^b π₁).
    #[test]
    fn a_dropped_source_leaves_the_mixture_and_a_bias_scales_the_rest() {
        let (model, _) = model_of(&copy_config(), 7);
        let sequence = with_images(40, 3);
        let output = model.forward_output(&ids(&sequence), None).unwrap();
        let copy = output.copy.as_ref().unwrap();
        let logits: Vec<Vec<f32>> = output.logits.i(0).unwrap().to_vec2().unwrap();
        let weights: Vec<Vec<f32>> = copy.log_weights.i(0).unwrap().to_vec2().unwrap();
        for bias in [0.0f32, 1.5, -2.0] {
            let kept: Vec<Vec<f32>> = output
                .scores_without(&[false, true], bias)
                .unwrap()
                .i(0)
                .unwrap()
                .to_vec2()
                .unwrap();
            let mut checked = 0;
            for position in 0..sequence.len() {
                let codes = &copy.codes[position * 2..position * 2 + 2];
                if codes[1] == CopyMix::NONE {
                    continue;
                }
                let vocabulary_weight = weights[position][0].exp();
                let source_weight = (weights[position][1] + bias).exp();
                let vocabulary = log_softmax(&logits[position]);
                let total = vocabulary_weight + source_weight;
                for code in [codes[0], codes[1]] {
                    let want = (vocabulary_weight * vocabulary[code as usize].exp()
                        + if codes[0] == code { source_weight } else { 0.0 })
                        / total;
                    let got = kept[position][code as usize].exp();
                    assert!(
                        (got - want).abs() < 1e-5,
                        "{bias} {position}: {got} vs {want}"
                    );
                }
                checked += 1;
            }
            assert!(checked > 0);
        }
        assert!(
            output.scores_without(&[true], 0.0).is_err(),
            "one flag per source"
        );
    }

    /// Greedy decoding of a caption after two documents with `sources` at `copy_bias`,
    /// against the whole sequence's scores step by step, the sources dropped by `sources`'
    /// rule: with `OneSource` each that offered a token other than the one sampled, with
    /// `FollowOne` the same but only when the token was some source's offer. The pointer
    /// starts with the vocabulary's weight at e^`vocabulary_bias` of the sources'. Returns
    /// whether a source was dropped and whether a token from the vocabulary alone (no
    /// source's offer) was sampled while a source was still in the mixture.
    fn decode_against_reference(
        sources: racm3_generate::decode::CopyDecoding,
        vocabulary_bias: f32,
        copy_bias: f32,
    ) -> (bool, bool) {
        use racm3_generate::decode::{CopyDecoding, Copying, sample_batch};
        use racm3_generate::sampler::{Sampler, SamplingConfig, Structure, argmax};
        let (_, vars) = model_of(&copy_config(), 11);
        for (name, var) in vars.data().lock().unwrap().iter() {
            if name.ends_with("vocabulary_bias") {
                var.set(&Tensor::new(&[vocabulary_bias], &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        let model = fixed_of(&copy_config(), &vars);
        // Two whole documents, then a third's `<img alt="`: its caption can copy from two.
        let prompt = with_images(21, 4);
        let ids_space = racm3_tokenize::IdSpace::new(40, 30);
        let structure = || Structure::new(ids_space, 4);
        let greedy = SamplingConfig {
            temperature: 0.0,
            ..SamplingConfig::default()
        };
        let steps = 6;
        let drawn = sample_batch(
            &model,
            &prompt,
            &[],
            &mut [structure()],
            &mut [Sampler::new(greedy, 0)],
            steps,
            |_| false,
            Copying {
                sources,
                bias: copy_bias,
            },
        )
        .unwrap()
        .remove(0);
        let mut sequence = prompt.clone();
        let mut dropped = [false, false];
        let (mut ever_dropped, mut vocabulary_kept) = (false, false);
        let mut reference = structure();
        prompt.iter().for_each(|&t| reference.observe(t));
        for _ in 0..steps {
            let output = model.forward_output(&ids(&sequence), None).unwrap();
            let last = sequence.len() - 1;
            let mut scores: Vec<f32> = output
                .scores_without(&dropped, copy_bias)
                .unwrap()
                .i((0, last))
                .unwrap()
                .to_vec1()
                .unwrap();
            reference.apply(&mut scores);
            let token = argmax(&scores).unwrap();
            reference.observe(token);
            let offers = &output.copy.as_ref().unwrap().codes[last * 2..last * 2 + 2];
            let followed = offers.contains(&token);
            let live = offers
                .iter()
                .zip(&dropped)
                .any(|(&offer, &out)| offer != CopyMix::NONE && !out);
            vocabulary_kept |= !followed && live;
            if sources == CopyDecoding::OneSource || followed {
                for (drop, &offer) in dropped.iter_mut().zip(offers) {
                    *drop |= offer != CopyMix::NONE && offer != token;
                }
            }
            ever_dropped |= dropped.iter().any(|&d| d);
            sequence.push(token);
        }
        assert_eq!(drawn, sequence[prompt.len()..].to_vec(), "{sources:?}");
        (ever_dropped, vocabulary_kept)
    }

    // Decoding with one source per output is, step by step, the whole sequence's scores
    // with the sources dropped that its rule drops; the loop applies the copy bias at every
    // step, the prompt's last included.
    #[test]
    fn one_source_decoding_drops_a_source_that_was_not_followed() {
        use racm3_generate::decode::CopyDecoding;
        let (dropped, _) = decode_against_reference(CopyDecoding::OneSource, -10.0, 0.7);
        assert!(
            dropped,
            "the untrained pointer's sources were never dropped"
        );
        let (dropped, vocabulary_kept) =
            decode_against_reference(CopyDecoding::FollowOne, 0.0, 0.0);
        assert!(dropped && vocabulary_kept, "{dropped} {vocabulary_kept}");
    }

    fn log_softmax(row: &[f32]) -> Vec<f32> {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        row.iter().map(|v| v - max - sum.ln()).collect()
    }

    // The training loss is the mean of −ln of the sampled distribution at each target, and
    // every parameter, the pointer's included, receives a gradient from it.
    #[test]
    fn the_loss_is_the_sampled_distributions_and_reaches_every_parameter() {
        let (model, vars) = model_of(&copy_config(), 8);
        let sequence = with_images(60, 2);
        let output = model.forward_output(&ids(&sequence), None).unwrap();
        let roles = vec![vec![Role::Main; sequence.len()]];
        let loss = rag_loss(&output, &ids(&sequence), &roles, 0.1).unwrap();
        let scores: Vec<Vec<f32>> = output.scores().unwrap().i(0).unwrap().to_vec2().unwrap();
        let want = (0..sequence.len() - 1)
            .map(|i| -log_softmax(&scores[i])[sequence[i + 1] as usize])
            .sum::<f32>()
            / (sequence.len() - 1) as f32;
        assert!((loss.main - want).abs() < 1e-4, "{} vs {want}", loss.main);
        assert_every_variable_has_a_gradient(&vars, &loss.total.backward().unwrap());
    }
}

mod decoding {
    use super::*;
    use racm3_generate::decode::{Copying, Guidance, sample, sample_batch};
    use racm3_generate::sampler::{Sampler, SamplingConfig, Structure};
    use racm3_tokenize::{IdSpace, Special};

    const GRID: usize = 9;

    fn setup() -> (Cm3Model, IdSpace, Vec<u32>) {
        let ids = IdSpace::new(40, 32);
        let vars = VarMap::new();
        let vb = racm3_train::seeded_var_builder(&vars, 3, DType::F32, &Device::Cpu);
        let model = Cm3Model::new(&Config::tiny(ids.len() as usize), vb).unwrap();
        let prompt = vec![
            ids.special(Special::ImgAlt),
            5,
            6,
            7,
            ids.special(Special::ImgSrc),
        ];
        (model, ids, prompt)
    }

    /// A constraint that has observed the prompt, ready for the first new token.
    fn structure_after(ids: IdSpace, prompt: &[u32]) -> Structure {
        let mut structure = Structure::new(ids, GRID);
        prompt.iter().for_each(|&token| structure.observe(token));
        structure
    }

    fn draw(
        model: &Cm3Model,
        ids: IdSpace,
        prompt: &[u32],
        guidance: &[Guidance],
        config: SamplingConfig,
        seed: u64,
    ) -> Vec<u32> {
        let mut structure = structure_after(ids, prompt);
        let end = ids.special(Special::ImgEnd);
        let mut sampler = Sampler::new(config, seed);
        sample(
            model,
            prompt,
            guidance,
            &mut structure,
            &mut sampler,
            GRID + 5,
            |t| t == end,
        )
        .unwrap()
    }

    // From inside src=", a random model writes exactly the grid's number of image ids and
    // then ">, whatever the seed and the guidance.
    #[test]
    fn every_image_span_holds_exactly_a_grid() {
        let (model, ids, prompt) = setup();
        let mut unconditional = prompt.clone();
        unconditional[1..4].copy_from_slice(&[ids.mask(0).unwrap(); 3]);
        for seed in 0..6 {
            let guidance = (seed % 2 == 1).then_some(Guidance {
                unconditional_prompt: &unconditional,
                scale: 3.0,
            });
            let tokens = draw(
                &model,
                ids,
                &prompt,
                guidance.as_slice(),
                SamplingConfig::default(),
                seed,
            );
            assert_eq!(tokens.len(), GRID + 1, "seed {seed}: {tokens:?}");
            assert!(tokens[..GRID].iter().all(|t| ids.image_range().contains(t)));
            assert_eq!(tokens[GRID], ids.special(Special::ImgEnd));
        }
    }

    // Guidance at scale 1 is plain conditional sampling: the same seed draws the same
    // tokens, though the unconditional stream sees another prompt.
    #[test]
    fn guidance_at_scale_one_is_conditional_sampling() {
        let (model, ids, prompt) = setup();
        let mut unconditional = prompt.clone();
        unconditional[1] = ids.mask(0).unwrap();
        for seed in 0..3 {
            let plain = draw(&model, ids, &prompt, &[], SamplingConfig::default(), seed);
            let guided = Guidance {
                unconditional_prompt: &unconditional,
                scale: 1.0,
            };
            let with = draw(
                &model,
                ids,
                &prompt,
                &[guided],
                SamplingConfig::default(),
                seed,
            );
            assert_eq!(plain, with);
            let strong = Guidance {
                scale: 4.0,
                ..guided
            };
            let other = draw(
                &model,
                ids,
                &prompt,
                &[strong],
                SamplingConfig::default(),
                seed,
            );
            assert_eq!(other.len(), GRID + 1);
        }
        // Strong guidance changes some draw (the test would pass vacuously if the
        // unconditional stream were ignored).
        let changed = (0..6).any(|seed| {
            let strong = Guidance {
                unconditional_prompt: &unconditional,
                scale: 4.0,
            };
            draw(&model, ids, &prompt, &[], SamplingConfig::default(), seed)
                != draw(
                    &model,
                    ids,
                    &prompt,
                    &[strong],
                    SamplingConfig::default(),
                    seed,
                )
        });
        assert!(changed);
    }

    // A second stream (retrieval guidance's) at scale 1 adds nothing to the first; at a
    // larger scale it changes some draw.
    #[test]
    fn a_second_stream_adds_its_own_term() {
        let (model, ids, prompt) = setup();
        let mut masked = prompt.clone();
        masked[1] = ids.mask(0).unwrap();
        let cfg = Guidance {
            unconditional_prompt: &masked,
            scale: 3.0,
        };
        let without = Guidance {
            unconditional_prompt: &prompt[2..],
            scale: 1.0,
        };
        let config = SamplingConfig::default();
        for seed in 0..3 {
            let one = draw(&model, ids, &prompt, &[cfg], config, seed);
            assert_eq!(
                one,
                draw(&model, ids, &prompt, &[cfg, without], config, seed)
            );
        }
        let strong = Guidance {
            scale: 6.0,
            ..without
        };
        assert!((0..6).any(|seed| {
            draw(&model, ids, &prompt, &[cfg], config, seed)
                != draw(&model, ids, &prompt, &[cfg, strong], config, seed)
        }));
    }

    // Greedy decoding (temperature 0) gives the same tokens for any seed; sampling at
    // temperature 1 differs between seeds.
    #[test]
    fn greedy_decoding_is_deterministic() {
        let (model, ids, prompt) = setup();
        let greedy = SamplingConfig {
            temperature: 0.0,
            ..Default::default()
        };
        let first = draw(&model, ids, &prompt, &[], greedy, 1);
        for seed in [2, 99] {
            assert_eq!(draw(&model, ids, &prompt, &[], greedy, seed), first);
        }
        let sampled: Vec<Vec<u32>> = (0..4)
            .map(|seed| draw(&model, ids, &prompt, &[], SamplingConfig::default(), seed))
            .collect();
        assert!(sampled.iter().any(|tokens| tokens != &sampled[0]));
    }

    // Continuations decoded as one batch draw what each draws alone with its seed, with
    // guidance, and when they stop at different steps (here at an image id divisible by 5);
    // an empty prompt is an error, not a panic.
    #[test]
    fn a_batch_draws_what_each_draws_alone() {
        let (model, ids, prompt) = setup();
        let mut unconditional = prompt.clone();
        unconditional[1] = ids.mask(0).unwrap();
        let guidance = Guidance {
            unconditional_prompt: &unconditional,
            scale: 3.0,
        };
        let end = ids.special(Special::ImgEnd);
        let stop = |t: u32| t == end || t.is_multiple_of(5);
        let seeds = 0..6u64;
        let mut structures: Vec<Structure> = seeds
            .clone()
            .map(|_| structure_after(ids, &prompt))
            .collect();
        let mut samplers: Vec<Sampler> = seeds
            .clone()
            .map(|seed| Sampler::new(SamplingConfig::default(), seed))
            .collect();
        let together = sample_batch(
            &model,
            &prompt,
            &[guidance],
            &mut structures,
            &mut samplers,
            GRID + 5,
            stop,
            Copying::default(),
        )
        .unwrap();
        for (seed, batched) in seeds.zip(&together) {
            let mut structure = structure_after(ids, &prompt);
            let mut sampler = Sampler::new(SamplingConfig::default(), seed);
            let alone = sample(
                &model,
                &prompt,
                &[guidance],
                &mut structure,
                &mut sampler,
                GRID + 5,
                stop,
            )
            .unwrap();
            assert_eq!(batched, &alone, "seed {seed}");
        }
        let err = sample(
            &model,
            &[],
            &[],
            &mut structure_after(ids, &[]),
            &mut Sampler::new(SamplingConfig::default(), 0),
            GRID,
            stop,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("prompt"), "{err}");
        let lengths: std::collections::BTreeSet<usize> = together.iter().map(Vec::len).collect();
        assert!(
            lengths.len() > 1,
            "every continuation stopped at once: {lengths:?}"
        );
    }
}
