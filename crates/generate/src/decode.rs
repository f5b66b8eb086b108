//! The decoding loop: feed a prompt, then sample one token at a time with the KV cache,
//! optionally against guidance streams (classifier-free guidance's, retrieval guidance's),
//! with the structural constraint applied to every step's logits.

use candle_core::{IndexOp, Result, Tensor};

use crate::model::{Cm3Model, CopyMix, KvCache};
use crate::sampler::{Sampler, Structure, guidance};

/// A guidance stream: a prompt without the condition (for classifier-free guidance the
/// caption replaced by `<mask:0>`, for retrieval guidance the prompt without its retrieved
/// documents) and the scale s in u + s · (c − u). Several streams add their terms:
/// c + Σ (s_i − 1) · (c − u_i).
#[derive(Debug, Clone, Copy)]
pub struct Guidance<'a> {
    /// The stream's prompt.
    pub unconditional_prompt: &'a [u32],
    /// The guidance scale; 1 is no guidance.
    pub scale: f32,
}

/// How a decoder with a copy pointer mixes its sources while it samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyDecoding {
    /// Every source in every step's mixture, as trained: a caption may take one word from
    /// one retrieved caption and the next from another.
    #[default]
    Mixed,
    /// A source leaves the mixture once a sampled token differs from the token it offered
    /// for that place, so what is copied comes from one source (RAG-Sequence's one
    /// document per output, made hard). The vocabulary always stays.
    OneSource,
    /// A source leaves the mixture once a sampled token is another source's offer and not
    /// its own, so copies come from one source, while tokens from the vocabulary, which
    /// follow no source, drop none: for images, where a drawing may depart from its source
    /// in a few places and copy again after.
    FollowOne,
}

/// How a decoder with a copy pointer copies while it samples: which sources stay in the
/// mixture, and how much more than trained it copies.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Copying {
    /// Which sources each step mixes.
    pub sources: CopyDecoding,
    /// Added to every source's log-weight before the mixture is renormalized: 0 samples
    /// as trained, b > 0 multiplies the odds of copying by e^b.
    pub bias: f32,
}

/// Samples up to `max_new` tokens after `prompt`, stopping after a token for which `stop`
/// is true, a copy pointer (if any) mixing its sources as trained. `structure` must already
/// have observed the prompt; it observes each new token. Returns the new tokens.
pub fn sample(
    model: &Cm3Model,
    prompt: &[u32],
    streams: &[Guidance],
    structure: &mut Structure,
    sampler: &mut Sampler,
    max_new: usize,
    stop: impl Fn(u32) -> bool,
) -> Result<Vec<u32>> {
    let mut drawn = sample_batch(
        model,
        prompt,
        streams,
        std::slice::from_mut(structure),
        std::slice::from_mut(sampler),
        max_new,
        stop,
        Copying::default(),
    )?;
    Ok(drawn.pop().unwrap_or_default())
}

/// [`sample`] for several continuations of one prompt at once, continuation i under
/// `structures[i]` and `samplers[i]`, the copy pointer (if any) copying as `copy` says:
/// they decode as one batch, which reads each weight once per step for all of them. The
/// prompt runs once and its cache is copied to every row. A continuation that has stopped
/// keeps a row until all have, its further tokens discarded. Returns the new tokens of each.
#[allow(clippy::too_many_arguments)]
pub fn sample_batch(
    model: &Cm3Model,
    prompt: &[u32],
    streams: &[Guidance],
    structures: &mut [Structure],
    samplers: &mut [Sampler],
    max_new: usize,
    stop: impl Fn(u32) -> bool,
    copy: Copying,
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
        || streams
            .iter()
            .any(|stream| stream.unconditional_prompt.is_empty())
    {
        candle_core::bail!("sampling needs a prompt of at least one token");
    }
    let device = model.device();
    // With one source per output, each row's sources still in the mixture (no flags: all).
    let one_source = copy.sources != CopyDecoding::Mixed && model.config().image_copy.is_some();
    let sources = model.config().image_copy.map_or(0, |copy| copy.sources);
    let mut dropped = vec![false; if one_source { rows * sources } else { 0 }];
    // The prompt once, then its cache, its last scores for every row, and what each source
    // offers next (every row alike).
    let start = |prompt: &[u32]| -> Result<(KvCache, Vec<Vec<f32>>, Vec<u32>)> {
        let mut cache = KvCache::new();
        let output = model.forward_output(
            &Tensor::new(prompt, device)?.unsqueeze(0)?,
            Some(&mut cache),
        )?;
        let last = prompt.len() - 1;
        let scores = output
            .scores_without(&[], copy.bias)?
            .i((0, last))?
            .to_vec1::<f32>()?;
        let offers = output.copy.as_ref().map_or_else(Vec::new, |mix| {
            mix.codes[last * sources..(last + 1) * sources].repeat(rows)
        });
        Ok((cache.repeat(rows)?, vec![scores; rows], offers))
    };
    // (rows, 1, vocab) -> each row's scores without the `dropped` sources, and what each
    // source offers next.
    let step = |cache: &mut KvCache,
                tokens: &[u32],
                dropped: &[bool]|
     -> Result<(Vec<Vec<f32>>, Vec<u32>)> {
        let next = Tensor::new(tokens, device)?.unsqueeze(1)?;
        let output = model.forward_output(&next, Some(cache))?;
        let scores = output
            .scores_without(dropped, copy.bias)?
            .squeeze(1)?
            .to_vec2::<f32>()?;
        Ok((scores, output.copy.map_or_else(Vec::new, |mix| mix.codes)))
    };
    // `offered`: the token each source offers for the place about to be sampled.
    let (mut cache, mut logits, mut offered) = start(prompt)?;
    let mut guides = streams
        .iter()
        .map(|stream| {
            let (cache, logits, _) = start(stream.unconditional_prompt)?;
            Ok((cache, logits, stream.scale))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut generated: Vec<Vec<u32>> = vec![Vec::with_capacity(max_new); rows];
    let mut stopped = vec![false; rows];
    for position in 0..max_new {
        let mut tokens = Vec::with_capacity(rows);
        for row in 0..rows {
            if stopped[row] {
                tokens.push(generated[row].last().copied().unwrap_or(0));
                continue;
            }
            let conditional = &logits[row];
            let mut next = match guides.split_first() {
                Some(((_, first, scale), rest)) => {
                    let mut next = guidance(conditional, &first[row], *scale);
                    for (_, unconditional, scale) in rest {
                        let add = scale - 1.0;
                        for ((value, &c), &u) in
                            next.iter_mut().zip(conditional).zip(&unconditional[row])
                        {
                            *value += add * (c - u);
                        }
                    }
                    next
                }
                None => conditional.clone(),
            };
            structures[row].apply(&mut next);
            let Some(token) = samplers[row].sample(&next) else {
                candle_core::bail!("every token was banned at step {position}");
            };
            structures[row].observe(token);
            if let (true, Some(row_offers)) =
                (one_source, offered.get(row * sources..(row + 1) * sources))
            {
                let followed_one = row_offers.contains(&token);
                if copy.sources == CopyDecoding::OneSource || followed_one {
                    let row_dropped = &mut dropped[row * sources..(row + 1) * sources];
                    for (drop, &offer) in row_dropped.iter_mut().zip(row_offers) {
                        *drop |= offer != CopyMix::NONE && offer != token;
                    }
                }
            }
            generated[row].push(token);
            stopped[row] = stop(token) || generated[row].len() == max_new;
            tokens.push(token);
        }
        if stopped.iter().all(|&done| done) {
            break;
        }
        (logits, offered) = step(&mut cache, &tokens, &dropped)?;
        for (cache, unconditional_logits, _) in &mut guides {
            *unconditional_logits = step(cache, &tokens, &[])?.0;
        }
    }
    Ok(generated)
}
