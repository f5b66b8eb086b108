//! Which scorer picks, of the two documents retrieved for a held-out caption, the one of the
//! caption's own entity? The retriever's order against the generators' own likelihoods
//! (an image's codes given the caption, alone and over the unconditional; the caption given
//! the image; the RA model's mixture with both documents in context, copy bias 0 and 8, and
//! its first code) and CLIP's caption-to-caption similarity. BENCHMARKS.md, "Picking the
//! source by the generator's likelihood".
//!
//! cargo run --release -p racm3 --example pick_probe -- RA BASELINE MEMORY VQGAN [LIMIT]

use std::path::Path;

use racm3::data::{Document, Split};
use racm3::generate::Cm3Model;
use racm3::progress::Quiet;
use racm3::retrieve::{Query, RetrievalPolicy};
use racm3::tasks::{Generator, Retriever};
use racm3::tokenize::{Special, Token};

/// log p of each token from `start` on, under the model's mixture at `copy_bias`.
fn log_probs_of(
    model: &Cm3Model,
    tokens: &[u32],
    start: usize,
    copy_bias: f32,
) -> candle_core::Result<Vec<f32>> {
    use candle_core::{D, IndexOp, Tensor};
    let input = Tensor::new(tokens, model.device())?.unsqueeze(0)?;
    let output = model.forward_output(&input, None)?;
    let scores = output.scores_without(&[], copy_bias)?.i(0)?;
    let top = scores.max_keepdim(D::Minus1)?;
    let shifted = scores.broadcast_sub(&top)?;
    let log_probs = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
    let rows: Vec<Vec<f32>> = log_probs.to_vec2()?;
    Ok((start..tokens.len())
        .map(|p| rows[p - 1][tokens[p] as usize])
        .collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: pick_probe RA BASELINE MEMORY VQGAN [LIMIT]".into());
    }
    let ra = Generator::load(
        Path::new(&args[1]),
        Path::new(&args[4]),
        &racm3::Device::Cpu,
    )?;
    let base = Generator::load(
        Path::new(&args[2]),
        Path::new(&args[4]),
        &racm3::Device::Cpu,
    )?;
    let memory = racm3::memory::open(Path::new(&args[3]))?;
    let limit: usize = args.get(5).map_or(Ok(189), |s| s.parse())?;
    let clip = racm3::memory::encoder_for(&memory, None)?;
    let retriever = Retriever {
        encoder: &clip,
        memory: &memory,
        policy: RetrievalPolicy::top(2),
    };
    let mut held_out = racm3::datasets::twemoji_entities(Split::Val, &Quiet)?;
    held_out.truncate(limit);
    let ids = *ra.codec().ids();
    let sp = |s| ids.special(s);
    let mask0 = ids.mask(0)?;
    let names = [
        "retriever",
        "ra_none",
        "ra_pmi",
        "base_none",
        "base_pmi",
        "ra_caption",
        "base_caption",
        "ra_ctx_b0",
        "ra_ctx_b8",
        "ra_first_b8",
        "clip_text",
    ];
    let mut right = vec![0usize; names.len()];
    let mut either = 0;
    let mut counted = 0;
    for document in &held_out {
        let caption = document.caption();
        let context = ra.retrieve(
            Some(&retriever),
            &Query {
                text: Some(&caption),
                image: None,
            },
        )?;
        let docs: Vec<Document> = context
            .documents
            .iter()
            .filter_map(|e| memory.row_of(&e.id))
            .map(|row| memory.document(row))
            .collect::<Result<_, _>>()?;
        if docs.len() < 2 {
            continue;
        }
        counted += 1;
        let same: Vec<bool> = docs
            .iter()
            .map(|d| d.source.entity == document.source.entity)
            .collect();
        either += usize::from(same.iter().any(|&s| s));
        let doc_tokens: Vec<Vec<u32>> = docs
            .iter()
            .map(|d| ra.document_tokens(d))
            .collect::<Result<_, _>>()?;
        let codes: Vec<Vec<u32>> = doc_tokens
            .iter()
            .map(|t| {
                t.iter()
                    .copied()
                    .filter(|&x| matches!(ids.classify(x), Ok(Token::Image(_))))
                    .collect()
            })
            .collect();
        let caption_ids = ra.codec().text().encode(&caption)?;
        let opening = |alt: &[u32]| {
            let mut t = vec![sp(Special::ImgAlt)];
            t.extend_from_slice(alt);
            t.push(sp(Special::ImgSrc));
            t
        };
        let image_given = |g: &Generator, alt: &[u32], c: &[u32], prefix: &[u32], bias: f32| {
            let mut t = prefix.to_vec();
            t.extend(opening(alt));
            let start = t.len();
            t.extend_from_slice(c);
            log_probs_of(g.model(), &t, start, bias)
        };
        let caption_given = |g: &Generator, c: &[u32]| {
            let mut t = opening(&[mask0]);
            t.extend_from_slice(c);
            t.push(sp(Special::ImgEnd));
            t.push(mask0);
            let start = t.len();
            t.extend_from_slice(&caption_ids);
            t.push(sp(Special::Eos));
            Ok::<f32, candle_core::Error>(log_probs_of(g.model(), &t, start, 0.0)?.iter().sum())
        };
        let mut prefix = Vec::new();
        for t in &doc_tokens {
            prefix.extend_from_slice(t);
            prefix.push(sp(Special::Break));
        }
        let sum = |v: candle_core::Result<Vec<f32>>| v.map(|v| v.iter().sum::<f32>());
        let text = clip.embed_texts(&[caption.as_str()])?;
        let mut scores: Vec<Vec<f32>> = vec![vec![]; names.len()];
        for (k, c) in codes.iter().enumerate() {
            scores[0].push(-(k as f32));
            let ra_none = sum(image_given(&ra, &caption_ids, c, &[], 0.0))?;
            let ra_unc = sum(image_given(&ra, &[mask0], c, &[], 0.0))?;
            let base_none = sum(image_given(&base, &caption_ids, c, &[], 0.0))?;
            let base_unc = sum(image_given(&base, &[mask0], c, &[], 0.0))?;
            scores[1].push(ra_none);
            scores[2].push(ra_none - ra_unc);
            scores[3].push(base_none);
            scores[4].push(base_none - base_unc);
            scores[5].push(caption_given(&ra, c)?);
            scores[6].push(caption_given(&base, c)?);
            scores[7].push(sum(image_given(&ra, &caption_ids, c, &prefix, 0.0))?);
            let b8 = image_given(&ra, &caption_ids, c, &prefix, 8.0)?;
            scores[8].push(b8.iter().sum());
            scores[9].push(b8[0]);
            let doc_text = clip.embed_texts(&[docs[k].caption().as_str()])?;
            scores[10].push(text.iter().zip(&doc_text).map(|(a, b)| a * b).sum());
        }
        for (n, s) in scores.iter().enumerate() {
            let best = if s[1] > s[0] { 1 } else { 0 };
            right[n] += usize::from(same[best]);
        }
        if counted % 20 == 0 {
            eprintln!("{counted} done");
        }
    }
    println!("{counted} queries, same entity among 2: {either}");
    for (n, name) in names.iter().enumerate() {
        println!(
            "{name:>14}: {:.3} ({} / {counted})",
            right[n] as f64 / counted as f64,
            right[n]
        );
    }
    Ok(())
}
