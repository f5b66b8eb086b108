//! CM3's causal masking objective (Aghajanyan et al., 2022, arXiv:2201.07520, section 3.1).
//!
//! A few spans of a sequence move to its end, each behind a `<mask:i>` sentinel, and a
//! `<mask:i>` placeholder marks the hole they left. A left-to-right model then predicts the
//! spans with the whole remaining document as context, which gives it infilling for free.
//! The number of spans is n ~ clamp(Poisson(1), 1, 16), as in the paper; the 2n span
//! boundaries are distinct positions drawn uniformly, so spans never overlap or touch.

use std::ops::Range;

use rand::SeedableRng;
use rand_distr::{Distribution, Poisson};

use crate::error::{Error, Result};
use crate::ids::{IdSpace, MASK_COUNT, Special};

/// A masked sequence ready for training.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CausalMasked {
    /// `body-with-placeholders <mask:0> span_0 <mask:1> span_1 ...`
    pub tokens: Vec<u32>,
    /// Whether each position of `tokens` counts in the loss. The placeholders in the body
    /// do not: where a span was cut is random, so predicting it teaches nothing.
    pub loss_mask: Vec<bool>,
    /// The spans that moved, as ranges of the input, in order.
    pub spans: Vec<Range<usize>>,
}

/// Masks `tokens` with spans drawn from a generator seeded with `seed`; the same seed
/// gives the same result.
pub fn causal_mask_seeded(tokens: &[u32], ids: &IdSpace, seed: u64) -> Result<CausalMasked> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    causal_mask(tokens, ids, &mut rng)
}

/// Masks `tokens` with spans drawn from `rng`. The input must hold no `<mask:i>` of its
/// own, or the result could not be undone. An empty input comes back unchanged.
pub fn causal_mask(
    tokens: &[u32],
    ids: &IdSpace,
    rng: &mut impl rand::Rng,
) -> Result<CausalMasked> {
    if let Some(position) = tokens.iter().position(|&id| ids.mask_index(id).is_some()) {
        return Err(Error::Malformed {
            position,
            problem: "the input already holds a <mask:i> sentinel".into(),
        });
    }
    let len = tokens.len();
    // 2n distinct boundaries must fit among the len + 1 positions.
    let most_spans = len.div_ceil(2).min(MASK_COUNT as usize);
    let poisson = Poisson::new(1.0).map_err(|err| Error::Malformed {
        position: 0,
        problem: err.to_string(),
    })?;
    let drawn = poisson.sample(rng) as usize;
    let span_count = drawn.clamp(1, MASK_COUNT as usize).min(most_spans);

    let mut boundaries = rand::seq::index::sample(rng, len + 1, 2 * span_count).into_vec();
    boundaries.sort_unstable();
    let spans: Vec<Range<usize>> = boundaries.chunks_exact(2).map(|b| b[0]..b[1]).collect();
    mask_spans(tokens, ids, &spans)
}

/// Masks exactly the caption of `tokens`' first image, the text between `<img alt="` and
/// `" src="`: the body keeps the image with `<mask:0>` for its caption and the caption
/// follows `<mask:0>` at the end, which is the prompt captioning gives a model. `None`
/// when there is no image with a caption.
pub fn caption_mask(tokens: &[u32], ids: &IdSpace) -> Result<Option<CausalMasked>> {
    let find = |special: Special, from: usize| {
        tokens[from..]
            .iter()
            .position(|&id| id == ids.special(special))
            .map(|at| from + at)
    };
    let Some(alt) = find(Special::ImgAlt, 0) else {
        return Ok(None);
    };
    match find(Special::ImgSrc, alt + 1) {
        Some(src) if src > alt + 1 => {
            let caption = alt + 1..src;
            mask_spans(tokens, ids, std::slice::from_ref(&caption)).map(Some)
        }
        _ => Ok(None),
    }
}

/// Moves each of `spans` (ordered, disjoint ranges of `tokens`) to the end behind its
/// `<mask:i>`, leaving `<mask:i>` in its hole.
fn mask_spans(tokens: &[u32], ids: &IdSpace, spans: &[Range<usize>]) -> Result<CausalMasked> {
    let len = tokens.len();
    let mut masked = Vec::with_capacity(len + 2 * spans.len());
    let mut loss_mask = Vec::with_capacity(len + 2 * spans.len());
    let mut cursor = 0;
    for (i, span) in spans.iter().enumerate() {
        masked.extend_from_slice(&tokens[cursor..span.start]);
        loss_mask.extend(std::iter::repeat_n(true, span.start - cursor));
        masked.push(ids.mask(i as u32)?);
        loss_mask.push(false);
        cursor = span.end;
    }
    masked.extend_from_slice(&tokens[cursor..]);
    loss_mask.extend(std::iter::repeat_n(true, len - cursor));
    for (i, span) in spans.iter().enumerate() {
        masked.push(ids.mask(i as u32)?);
        masked.extend_from_slice(&tokens[span.clone()]);
        loss_mask.extend(std::iter::repeat_n(true, span.len() + 1));
    }
    Ok(CausalMasked {
        tokens: masked,
        loss_mask,
        spans: spans.to_vec(),
    })
}

/// Undoes [`causal_mask`]: puts every span back in its hole.
pub fn restore(masked: &[u32], ids: &IdSpace) -> Result<Vec<u32>> {
    let malformed = |position: usize, problem: String| Error::Malformed { position, problem };
    let sentinels: Vec<(usize, u32)> = masked
        .iter()
        .enumerate()
        .filter_map(|(position, &id)| ids.mask_index(id).map(|i| (position, i)))
        .collect();
    if sentinels.is_empty() {
        return Ok(masked.to_vec());
    }
    // Sentinels are <mask:0..n> in the body, then <mask:0..n> again before the spans.
    let span_count = sentinels.len() / 2;
    if !sentinels.len().is_multiple_of(2) {
        return Err(malformed(
            sentinels[0].0,
            "an odd number of <mask:i> sentinels".into(),
        ));
    }
    for (k, &(position, i)) in sentinels.iter().enumerate() {
        if i as usize != k % span_count {
            return Err(malformed(
                position,
                format!("expected <mask:{}>", k % span_count),
            ));
        }
    }
    let (holes, heads) = sentinels.split_at(span_count);
    let mut restored = Vec::with_capacity(masked.len());
    let mut cursor = 0;
    for (k, &(hole, _)) in holes.iter().enumerate() {
        restored.extend_from_slice(&masked[cursor..hole]);
        let span_start = heads[k].0 + 1;
        let span_end = heads.get(k + 1).map_or(masked.len(), |&(next, _)| next);
        restored.extend_from_slice(&masked[span_start..span_end]);
        cursor = hole + 1;
    }
    restored.extend_from_slice(&masked[cursor..heads[0].0]);
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids() -> IdSpace {
        IdSpace::new(50, 20)
    }

    proptest! {
        // Undoing the masking restores any input exactly, for any seed.
        #[test]
        fn restore_inverts_masking(tokens in prop::collection::vec(0u32..92, 0..200), seed: u64) {
            // Any id of the space but the sentinels, which an input may not hold.
            let tokens: Vec<u32> = tokens.into_iter().filter(|&id| ids().mask_index(id).is_none()).collect();
            let masked = causal_mask_seeded(&tokens, &ids(), seed).unwrap();
            prop_assert_eq!(masked.tokens.len(), masked.loss_mask.len());
            prop_assert_eq!(restore(&masked.tokens, &ids()).unwrap(), tokens);
        }

        // Spans are non-empty, in order and apart; there are 1..=16 of them for non-empty input.
        #[test]
        fn spans_are_disjoint_and_bounded(len in 1usize..300, seed: u64) {
            let tokens: Vec<u32> = (0..len as u32).map(|i| i % 50).collect();
            let masked = causal_mask_seeded(&tokens, &ids(), seed).unwrap();
            prop_assert!((1..=16).contains(&masked.spans.len()));
            for pair in masked.spans.windows(2) {
                prop_assert!(pair[0].end < pair[1].start);
            }
            prop_assert!(masked.spans.iter().all(|s| !s.is_empty() && s.end <= len));
            // Exactly one loss-free position per span: its placeholder.
            let excluded = masked.loss_mask.iter().filter(|&&keep| !keep).count();
            prop_assert_eq!(excluded, masked.spans.len());
        }
    }

    // The same seed gives the same masking; the loss mask excludes the placeholders only.
    #[test]
    fn masking_is_deterministic_and_marks_placeholders() {
        let tokens: Vec<u32> = (0..40).collect();
        let a = causal_mask_seeded(&tokens, &ids(), 7).unwrap();
        let b = causal_mask_seeded(&tokens, &ids(), 7).unwrap();
        assert_eq!(a, b);
        let body_len = a.tokens.len() - a.spans.iter().map(|s| s.len() + 1).sum::<usize>();
        for (position, &id) in a.tokens.iter().enumerate() {
            let is_placeholder = position < body_len && ids().mask_index(id).is_some();
            assert_eq!(a.loss_mask[position], !is_placeholder, "at {position}");
        }
    }

    // A worked example: one span [2, 4) of [a b c d e] becomes [a b <m0> e <m0> c d].
    #[test]
    fn layout_matches_cm3() {
        let ids = ids();
        let m0 = ids.mask(0).unwrap();
        let masked = vec![1, 2, m0, 5, m0, 3, 4];
        assert_eq!(restore(&masked, &ids).unwrap(), vec![1, 2, 3, 4, 5]);
    }

    // Input that already holds a sentinel is refused, and so is a malformed masked sequence.
    #[test]
    fn bad_input_is_an_error() {
        let ids = ids();
        let m0 = ids.mask(0).unwrap();
        assert!(causal_mask_seeded(&[1, m0, 2], &ids, 0).is_err());
        assert!(restore(&[1, m0, 2], &ids).is_err());
        assert!(restore(&[m0, 1, ids.mask(1).unwrap(), 2], &ids).is_err());
    }

    // The caption between <img alt=" and " src=" moves behind <mask:0>, exactly, and the
    // result restores; a document with no caption, or no image, is left alone.
    #[test]
    fn caption_mask_takes_exactly_the_alt_text() {
        let ids = ids();
        let special = |s: Special| ids.special(s);
        let image = |code: u32| ids.image(code).unwrap();
        let tokens = vec![
            7,
            special(Special::ImgAlt),
            3,
            4,
            special(Special::ImgSrc),
            image(1),
            image(2),
            special(Special::ImgEnd),
        ];
        let masked = caption_mask(&tokens, &ids).unwrap().unwrap();
        let mask0 = ids.mask(0).unwrap();
        assert_eq!(
            masked.tokens,
            vec![
                7,
                special(Special::ImgAlt),
                mask0,
                special(Special::ImgSrc),
                image(1),
                image(2),
                special(Special::ImgEnd),
                mask0,
                3,
                4
            ]
        );
        assert_eq!(masked.spans, vec![2..4]);
        assert_eq!(restore(&masked.tokens, &ids).unwrap(), tokens);
        let no_caption = vec![special(Special::ImgAlt), special(Special::ImgSrc), image(1)];
        assert!(caption_mask(&no_caption, &ids).unwrap().is_none());
        assert!(caption_mask(&[1, 2, 3], &ids).unwrap().is_none());
    }
}
