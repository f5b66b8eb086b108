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
    let mut drawn = sample_batch(
        model,
        prompt,
        guidance_stream,
        std::slice::from_mut(structure),
        std::slice::from_mut(sampler),
        max_new,
        stop,
    )?;
    Ok(drawn.pop().unwrap_or_default())
}

/// [`sample`] for several continuations of one prompt at once, continuation i under
/// `structures[i]` and `samplers[i]`: they decode as one batch, which reads each weight
/// once per step for all of them. The prompt runs once and its cache is copied to every
/// row. A continuation that has stopped keeps a row until all have, its further tokens
/// discarded. Returns the new tokens of each.
pub fn sample_batch(
    model: &Cm3Model,
    prompt: &[u32],
    guidance_stream: Option<Guidance>,
    structures: &mut [Structure],
    samplers: &mut [Sampler],
    max_new: usize,
    stop: impl Fn(u32) -> bool,
) -> Result<Vec<Vec<u32>>> {
    let rows = structures.len();
    if samplers.len() != rows {
        candle_core::bail!(
            "{rows} structures but {} samplers: one of each per continuation",
            samplers.len()
        );
    }
    if rows == 0 {
        return Ok(Vec::new());
    }
    if prompt.is_empty()
        || guidance_stream.is_some_and(|stream| stream.unconditional_prompt.is_empty())
    {
        candle_core::bail!("sampling needs a prompt of at least one token");
    }
    let device = model.device();
    // The prompt once, then its cache and last logits for every row.
    let start = |prompt: &[u32]| -> Result<(KvCache, Vec<Vec<f32>>)> {
        let mut cache = KvCache::new();
        let logits = model.forward(
            &Tensor::new(prompt, device)?.unsqueeze(0)?,
            Some(&mut cache),
        )?;
        let last = logits.i((0, prompt.len() - 1))?.to_vec1::<f32>()?;
        Ok((cache.repeat(rows)?, vec![last; rows]))
    };
    // (rows, 1, vocab) -> each row's logits.
    let step = |cache: &mut KvCache, tokens: &[u32]| -> Result<Vec<Vec<f32>>> {
        let next = Tensor::new(tokens, device)?.unsqueeze(1)?;
        model
            .forward(&next, Some(cache))?
            .squeeze(1)?
            .to_vec2::<f32>()
    };
    let (mut cache, mut logits) = start(prompt)?;
    let mut unconditional = match guidance_stream {
        Some(stream) => {
            let (cache, logits) = start(stream.unconditional_prompt)?;
            Some((cache, logits, stream.scale))
        }
        None => None,
    };
    let mut generated: Vec<Vec<u32>> = vec![Vec::with_capacity(max_new); rows];
    let mut stopped = vec![false; rows];
    for position in 0..max_new {
        let mut tokens = Vec::with_capacity(rows);
        for row in 0..rows {
            if stopped[row] {
                tokens.push(generated[row].last().copied().unwrap_or(0));
                continue;
            }
            let mut next = match &unconditional {
                Some((_, unconditional_logits, scale)) => {
                    guidance(&logits[row], &unconditional_logits[row], *scale)
                }
                None => logits[row].clone(),
            };
            structures[row].apply(&mut next);
            let Some(token) = samplers[row].sample(&next) else {
                candle_core::bail!("every token was banned at step {position}");
            };
            structures[row].observe(token);
            generated[row].push(token);
            stopped[row] = stop(token) || generated[row].len() == max_new;
            tokens.push(token);
        }
        if stopped.iter().all(|&done| done) {
            break;
        }
        logits = step(&mut cache, &tokens)?;
        if let Some((cache, unconditional_logits, _)) = &mut unconditional {
            *unconditional_logits = step(cache, &tokens)?;
        }
    }
    Ok(generated)
}
