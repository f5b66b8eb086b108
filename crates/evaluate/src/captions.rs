//! Caption metrics as pycocoevalcap computes them (Chen et al., "Microsoft COCO Captions",
//! 2015; the `coco-caption` code on PyPI as `pycocoevalcap`).
//!
//! COCOEvalCap first runs Stanford's PTBTokenizer (3.4.1, `-lowerCase -preserveLines`) over
//! every caption and drops punctuation tokens; [`ptb_tokenize`] reproduces that for the
//! text captions are made of. Then:
//! - CIDEr-D (Vedantam et al., 2015) ([`cider_d`]): TF-IDF vectors of 1- to 4-grams, with
//!   document frequencies counted over the reference sets of the whole corpus; for each
//!   reference, the cosine per n with the candidate's weights clipped at the reference's
//!   and a Gaussian penalty on the length difference (σ = 6). pycocoevalcap's quirks are
//!   kept: the length is the number of bigrams, the IDF uses log(number of images), and
//!   the score is the mean over n and references, times 10.
//! - ROUGE-L ([`rouge_l`]): the F-measure (β = 1.2) of the best LCS precision and the best
//!   LCS recall over the references.
//! - BLEU-1..4 ([`bleu`]) with pycocoevalcap's "closest" reference length and smoothing.
//!
//! What the tokenizer does not reproduce: PTB's rarer rules ("'twas" → "'t was", SGML,
//! phone numbers, British spellings of quotes inside words). Captions are short phrases;
//! the committed fixture holds the cases they use.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::Error;

/// Tokens pycocoevalcap removes after PTB tokenization. The bracket escapes are listed in
/// upper case there but come out lower-cased (`-lrb-`), so brackets survive: a quirk kept.
const PUNCTUATION: [&str; 13] = [
    "''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";",
];

/// Abbreviations PTB keeps whole with their period.
const ABBREVIATIONS: [&str; 24] = [
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co", "corp", "prof",
    "mt", "ft", "no", "jan", "feb", "aug", "sept", "oct", "nov", "dec",
];

/// The contraction endings PTB splits off, as they come out (with a straight apostrophe).
const CONTRACTIONS: [&str; 6] = ["'s", "'re", "'ve", "'ll", "'d", "'m"];

/// A caption as COCOEvalCap scores it: PTB tokens, lower case, punctuation removed, joined
/// by single spaces. An empty or all-punctuation caption gives "".
pub fn ptb_tokenize(caption: &str) -> String {
    let lower = caption.to_lowercase();
    let mut tokens = Vec::new();
    for chunk in lower.split_whitespace() {
        split_chunk(chunk, &mut tokens);
    }
    tokens.retain(|token| !PUNCTUATION.contains(&token.as_str()));
    tokens.join(" ")
}

/// PTB tokens of one whitespace-free chunk: opening brackets and quotes, the word(s), then
/// closing punctuation.
fn split_chunk(chunk: &str, out: &mut Vec<String>) {
    let mut core: &str = chunk;
    // Opening punctuation.
    loop {
        let token = match core.chars().next() {
            Some('(') => "-lrb-",
            Some('[') => "-lsb-",
            Some('{') => "-lcb-",
            Some('"' | '“') => "``",
            Some('‘' | '\'') if core.chars().nth(1).is_some() => "`",
            Some('`') if core.starts_with("``") => {
                out.push("``".into());
                core = &core[2..];
                continue;
            }
            Some('`') => "`",
            _ => break,
        };
        out.push(token.into());
        core = &core[core.chars().next().map_or(0, char::len_utf8)..];
    }
    // Closing punctuation, collected from the end.
    let mut closing: Vec<String> = Vec::new();
    while let Some(last) = core.chars().next_back() {
        let before = &core[..core.len() - last.len_utf8()];
        let token: String = match last {
            ')' => "-rrb-".into(),
            ']' => "-rsb-".into(),
            '}' => "-rcb-".into(),
            '"' | '”' => "''".into(),
            '’' | '\'' => "'".into(),
            ',' | ';' | ':' => last.to_string(),
            '…' => "...".into(),
            '!' | '?' => {
                let start = core.trim_end_matches(['!', '?']).len();
                let run = core[start..].to_owned();
                core = &core[..start];
                closing.push(run);
                continue;
            }
            '.' => {
                let dots = core.len() - core.trim_end_matches('.').len();
                if dots >= 3 {
                    closing.push(core[core.len() - dots..].to_owned());
                    core = &core[..core.len() - dots];
                    continue;
                }
                if dots == 1 && is_abbreviation(before) {
                    break;
                }
                ".".into()
            }
            _ => break,
        };
        closing.push(token);
        core = before;
    }
    for piece in core.split("--").enumerate() {
        let (index, piece) = piece;
        if index > 0 {
            out.push("--".into());
        }
        split_word(piece, out);
    }
    out.extend(closing.into_iter().rev());
}

/// True for what PTB keeps with its period: a single letter ("a."), letters joined by
/// periods ("u.s", "e.g"), and the common abbreviations.
fn is_abbreviation(word: &str) -> bool {
    let mut letters = word.split('.');
    let initials = word.contains(|c: char| c.is_alphabetic())
        && letters.all(|part| part.chars().count() == 1 && part.chars().all(char::is_alphabetic));
    initials || ABBREVIATIONS.contains(&word)
}

/// A word without outer punctuation: symbols PTB splits off (`* & % $ #`), and
/// contractions (`do n't`, `it 's`).
fn split_word(word: &str, out: &mut Vec<String>) {
    let mut piece = String::new();
    for c in word.chars() {
        if matches!(c, '*' | '&' | '%' | '$' | '#') {
            if !piece.is_empty() {
                split_contraction(&piece, out);
                piece.clear();
            }
            out.push(c.to_string());
        } else {
            piece.push(c);
        }
    }
    if !piece.is_empty() {
        split_contraction(&piece, out);
    }
}

fn split_contraction(word: &str, out: &mut Vec<String>) {
    let straight = word.replace('’', "'");
    if straight.len() > 3 && straight.ends_with("n't") {
        let stem = &straight[..straight.len() - 3];
        // PTB's irregular stems: can't → ca n't, won't → wo n't.
        out.push(stem.to_owned());
        out.push("n't".into());
        return;
    }
    for ending in CONTRACTIONS {
        if straight.len() > ending.len() && straight.ends_with(ending) {
            out.push(straight[..straight.len() - ending.len()].to_owned());
            out.push(ending.into());
            return;
        }
    }
    out.push(word.to_owned());
}

/// n-gram counts of a tokenized sentence, n = 1..=4.
type Counts<'a> = HashMap<&'a [&'a str], u32>;

fn ngram_counts<'a>(words: &'a [&'a str]) -> Counts<'a> {
    let mut counts = Counts::new();
    for n in 1..=4 {
        for gram in words.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// TF-IDF vector of one sentence, per n, with its norms and its length (bigram count, as
/// pycocoevalcap counts it).
struct Weighted<'a> {
    vec: [HashMap<&'a [&'a str], f64>; 4],
    norm: [f64; 4],
    length: f64,
}

fn weigh<'a>(counts: &Counts<'a>, df: &HashMap<&[&str], f64>, log_images: f64) -> Weighted<'a> {
    let mut weighted = Weighted {
        vec: Default::default(),
        norm: [0.0; 4],
        length: 0.0,
    };
    for (&gram, &tf) in counts {
        let n = gram.len() - 1;
        let idf = log_images - df.get(gram).copied().unwrap_or(0.0).max(1.0).ln();
        let value = tf as f64 * idf;
        weighted.vec[n].insert(gram, value);
        weighted.norm[n] += value * value;
        if n == 1 {
            weighted.length += tf as f64;
        }
    }
    weighted.norm = weighted.norm.map(f64::sqrt);
    weighted
}

fn words(sentence: &str) -> Vec<&str> {
    sentence.split_whitespace().collect()
}

/// CIDEr-D's σ for the length penalty.
const SIGMA: f64 = 6.0;

/// CIDEr-D of each candidate against its references, all already tokenized (space
/// separated, as [`ptb_tokenize`] returns them). Document frequencies come from these
/// reference sets, so the scores depend on the whole corpus, as in pycocoevalcap.
/// Returns one score per candidate; the corpus score is their mean.
pub fn cider_d(candidates: &[String], references: &[Vec<String>]) -> Result<Vec<f64>, Error> {
    check_lengths(candidates, references)?;
    let candidate_words: Vec<Vec<&str>> = candidates.iter().map(|s| words(s)).collect();
    let reference_words: Vec<Vec<Vec<&str>>> = references
        .iter()
        .map(|refs| refs.iter().map(|s| words(s)).collect())
        .collect();
    let reference_counts: Vec<Vec<Counts>> = reference_words
        .iter()
        .map(|refs| refs.iter().map(|words| ngram_counts(words)).collect())
        .collect();
    let mut df: HashMap<&[&str], f64> = HashMap::new();
    for refs in &reference_counts {
        let mut seen: Vec<&[&str]> = refs
            .iter()
            .flat_map(|counts| counts.keys().copied())
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for gram in seen {
            *df.entry(gram).or_insert(0.0) += 1.0;
        }
    }
    let log_images = (references.len() as f64).ln();
    let scores = candidate_words
        .iter()
        .zip(&reference_counts)
        .map(|(words, refs)| {
            let hyp = weigh(&ngram_counts(words), &df, log_images);
            let mut per_n = [0.0f64; 4];
            for counts in refs {
                let reference = weigh(counts, &df, log_images);
                let delta = hyp.length - reference.length;
                let penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
                for (n, total) in per_n.iter_mut().enumerate() {
                    let mut value: f64 = hyp.vec[n]
                        .iter()
                        .map(|(gram, &weight)| {
                            let reference_weight =
                                reference.vec[n].get(gram).copied().unwrap_or(0.0);
                            weight.min(reference_weight) * reference_weight
                        })
                        .sum();
                    if hyp.norm[n] != 0.0 && reference.norm[n] != 0.0 {
                        value /= hyp.norm[n] * reference.norm[n];
                    }
                    *total += value * penalty;
                }
            }
            per_n.iter().sum::<f64>() / 4.0 / refs.len() as f64 * 10.0
        })
        .collect();
    Ok(scores)
}

/// ROUGE-L of each tokenized candidate against its tokenized references (pycocoevalcap's
/// `Rouge`: the best precision and the best recall over the references, β = 1.2).
pub fn rouge_l(candidates: &[String], references: &[Vec<String>]) -> Result<Vec<f64>, Error> {
    check_lengths(candidates, references)?;
    const BETA: f64 = 1.2;
    Ok(candidates
        .iter()
        .zip(references)
        .map(|(candidate, refs)| {
            // pycocoevalcap splits on single spaces: an empty caption is one empty token.
            let hyp: Vec<&str> = candidate.split(' ').collect();
            let (mut precision, mut recall) = (0.0f64, 0.0f64);
            for reference in refs {
                let reference: Vec<&str> = reference.split(' ').collect();
                let lcs = lcs_length(&hyp, &reference) as f64;
                precision = precision.max(lcs / hyp.len() as f64);
                recall = recall.max(lcs / reference.len() as f64);
            }
            if precision != 0.0 && recall != 0.0 {
                ((1.0 + BETA * BETA) * precision * recall) / (recall + BETA * BETA * precision)
            } else {
                0.0
            }
        })
        .collect())
}

/// BLEU-1 to BLEU-4 as pycocoevalcap's `Bleu(4)` computes them on tokenized captions: the
/// reference length closest to the candidate's (ties to the shorter), clipped n-gram
/// counts, its smoothing constants (1e-15 and 1e-9) and brevity penalty. Returns the corpus
/// scores (from summed counts, not a mean) and each image's.
pub fn bleu(
    candidates: &[String],
    references: &[Vec<String>],
) -> Result<([f64; 4], Vec<[f64; 4]>), Error> {
    check_lengths(candidates, references)?;
    const TINY: f64 = 1e-15;
    const SMALL: f64 = 1e-9;
    let (mut total_guess, mut total_correct) = ([0usize; 4], [0usize; 4]);
    let (mut total_test, mut total_ref) = (0usize, 0usize);
    let brevity = |test: f64, reference: f64| {
        let ratio = (test + TINY) / (reference + SMALL);
        if ratio < 1.0 {
            (1.0 - 1.0 / ratio).exp()
        } else {
            1.0
        }
    };
    let mut per_image = Vec::with_capacity(candidates.len());
    for (candidate, refs) in candidates.iter().zip(references) {
        let test = words(candidate);
        let counts = ngram_counts(&test);
        let reference_words: Vec<Vec<&str>> = refs.iter().map(|r| words(r)).collect();
        let mut max_counts: HashMap<&[&str], u32> = HashMap::new();
        for reference in &reference_words {
            for (gram, count) in ngram_counts(reference) {
                let slot = max_counts.entry(gram).or_insert(0);
                *slot = (*slot).max(count);
            }
        }
        let closest = reference_words
            .iter()
            .map(|r| (r.len().abs_diff(test.len()), r.len()))
            .min()
            .map_or(0, |(_, len)| len);
        let mut correct = [0usize; 4];
        for (gram, &count) in &counts {
            correct[gram.len() - 1] +=
                count.min(max_counts.get(gram).copied().unwrap_or(0)) as usize;
        }
        let guess: [usize; 4] = std::array::from_fn(|k| (test.len() + 1).saturating_sub(k + 1));
        let penalty = brevity(test.len() as f64, closest as f64);
        let mut product = 1.0;
        per_image.push(std::array::from_fn(|k| {
            product *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
            product.powf(1.0 / (k as f64 + 1.0)) * penalty
        }));
        for k in 0..4 {
            total_guess[k] += guess[k];
            total_correct[k] += correct[k];
        }
        total_test += test.len();
        total_ref += closest;
    }
    let penalty = brevity(total_test as f64, total_ref as f64);
    let mut product = 1.0;
    let corpus = std::array::from_fn(|k| {
        product *= (total_correct[k] as f64 + TINY) / (total_guess[k] as f64 + SMALL);
        product.powf(1.0 / (k as f64 + 1.0)) * penalty
    });
    Ok((corpus, per_image))
}

fn lcs_length(a: &[&str], b: &[&str]) -> usize {
    let mut previous = vec![0usize; b.len() + 1];
    for x in a {
        let mut current = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = if x == y {
                previous[j] + 1
            } else {
                previous[j + 1].max(current[j])
            };
        }
        previous = current;
    }
    previous[b.len()]
}

fn check_lengths(candidates: &[String], references: &[Vec<String>]) -> Result<(), Error> {
    if candidates.len() != references.len() {
        return Err(Error::Mismatch(format!(
            "{} candidates but {} reference sets",
            candidates.len(),
            references.len()
        )));
    }
    if candidates.is_empty() {
        return Err(Error::Mismatch("no captions to score".into()));
    }
    if let Some(index) = references.iter().position(Vec::is_empty) {
        return Err(Error::Mismatch(format!(
            "candidate {index} has no reference captions"
        )));
    }
    Ok(())
}

/// Every caption metric of a corpus, per image and overall.
#[derive(Debug, Clone, Serialize)]
pub struct CaptionScores {
    /// CIDEr-D, the mean over images.
    pub cider_d: f64,
    /// ROUGE-L, the mean over images.
    pub rouge_l: f64,
    /// BLEU-1 to BLEU-4 of the corpus.
    pub bleu: [f64; 4],
    /// Per image, in input order.
    pub per_image: Vec<ImageScores>,
}

/// One image's scores and its tokenized caption.
#[derive(Debug, Clone, Serialize)]
pub struct ImageScores {
    /// The candidate after PTB tokenization.
    pub candidate: String,
    /// CIDEr-D.
    pub cider_d: f64,
    /// ROUGE-L.
    pub rouge_l: f64,
    /// BLEU-1 to BLEU-4.
    pub bleu: [f64; 4],
}

/// Tokenizes raw candidates and references as COCOEvalCap does and scores them.
pub fn score_captions(
    candidates: &[String],
    references: &[Vec<String>],
) -> Result<CaptionScores, Error> {
    let candidates: Vec<String> = candidates.iter().map(|c| ptb_tokenize(c)).collect();
    let references: Vec<Vec<String>> = references
        .iter()
        .map(|refs| refs.iter().map(|r| ptb_tokenize(r)).collect())
        .collect();
    let cider = cider_d(&candidates, &references)?;
    let rouge = rouge_l(&candidates, &references)?;
    let (bleu_corpus, bleu_images) = bleu(&candidates, &references)?;
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    Ok(CaptionScores {
        cider_d: mean(&cider),
        rouge_l: mean(&rouge),
        bleu: bleu_corpus,
        per_image: candidates
            .into_iter()
            .zip(cider.iter().zip(&rouge).zip(bleu_images))
            .map(|(candidate, ((&cider_d, &rouge_l), bleu))| ImageScores {
                candidate,
                cider_d,
                rouge_l,
                bleu,
            })
            .collect(),
    })
}
