//! The decoding loop: feed a prompt, then sample one token at a time with the KV cache,
//! optionally against an unconditional stream for classifier-free guidance, with the
//! structural constraint applied to every step's logits.

use candle_core::{IndexOp, Result, Tensor};

use crate::model::{Cm3Model, KvCache};
use crate::sampler::{Sampler, Structure, guidance};

/// Classifier-free guidance: the unconditional prompt (the caption replaced by
/// `<mask:0>`) and the scale s in u + s · (c − u).
#[derive(Debug, Clone, Copy)]
pub struct Guidance<'a> {
    /// The unconditional stream's prompt.
    pub unconditional_prompt: &'a [u32],
    /// The guidance scale; 1 is no guidance.
    pub scale: f32,
}

/// Samples up to `max_new` tokens after `prompt`, stopping after a token for which `stop`
/// is true. `structure` must already have observed the prompt; it observes each new
/// token. Returns the new tokens.
pub fn sample(
    model: &Cm3Model,
    prompt: &[u32],
    guidance_stream: Option<Guidance>,
    structure: &mut Structure,
    sampler: &mut Sampler,
    max_new: usize,
    stop: impl Fn(u32) -> bool,
) -> Result<Vec<u32>> {
    let device = model.device();
    let row = |tokens: &[u32]| Tensor::new(tokens, device)?.unsqueeze(0);
    // (1, t, vocab) -> the last position's logits.
    let last = |logits: Tensor| -> Result<Vec<f32>> {
        let t = logits.dim(1)?;
        logits.i((0, t - 1))?.to_vec1::<f32>()
    };
    let mut cache = KvCache::new();
    let mut logits = last(model.forward(&row(prompt)?, Some(&mut cache))?)?;
    let mut unconditional = match guidance_stream {
        Some(stream) => {
            let mut cache = KvCache::new();
            let logits =
                last(model.forward(&row(stream.unconditional_prompt)?, Some(&mut cache))?)?;
            Some((cache, logits, stream.scale))
        }
        None => None,
    };
    let mut generated = Vec::with_capacity(max_new);
    while generated.len() < max_new {
        let mut step = match &unconditional {
            Some((_, unconditional_logits, scale)) => {
                guidance(&logits, unconditional_logits, *scale)
            }
            None => logits.clone(),
        };
        structure.apply(&mut step);
        let Some(token) = sampler.sample(&step) else {
            candle_core::bail!("every token was banned at step {}", generated.len());
        };
        structure.observe(token);
        generated.push(token);
        if stop(token) {
            break;
        }
        let next = row(&[token])?;
        logits = last(model.forward(&next, Some(&mut cache))?)?;
        if let Some((cache, unconditional_logits, _)) = &mut unconditional {
            *unconditional_logits = last(model.forward(&next, Some(cache))?)?;
        }
    }
    Ok(generated)
}
