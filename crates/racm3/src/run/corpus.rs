//! Training corpora for the generator: documents as CM3 tokens, each with the documents
//! the retriever found for it, laid out as RA-CM3 trains on them.
//!
//! The two expensive parts are done once and cached in the run folder, so training is
//! never bound by them: the VQGAN codes and text ids of every document
//! (`corpus/tokens-codes-<fingerprint of the VQGAN's codes>.json`), and the retrieval for
//! every training document (`corpus/retrieved-k<K>-dropout<d>.json`), with the copy
//! probe's cases (`corpus/probe-cases-seed<seed>.json`). A baseline run
//! reads the same tokens and ignores retrieval.

use std::collections::HashMap;
use std::path::Path;

use racm3_data::Document;
use racm3_generate::{CopyProbe, Sequence, training_sequence};
use racm3_memory::Memory;
use racm3_retrieve::{ClipEncoder, RetrievalPolicy, TrainingQuery, retrieve_for_training};
use racm3_tokenize::vqgan::ImageTokenizer;
use racm3_tokenize::{
    CausalMasked, Cm3Codec, IdSpace, caption_mask, causal_mask_seeded, segments_of,
};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::Error;

/// How sequences are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusConfig {
    /// The retrieval policy; its k is K, the retrieved documents per sequence (paper: 2).
    pub policy: RetrievalPolicy,
    /// Share of sequences built with no retrieved document, so the model also works
    /// without retrieval (paper: 10%).
    pub no_retrieval_share: f64,
    /// Baseline mode: K = 0 for every sequence, the same tokens otherwise.
    pub baseline: bool,
    /// Longest sequence.
    pub max_len: usize,
    /// Share of a text query's tokens dropped when retrieving for training (paper: 0.2).
    pub query_dropout: f64,
    /// Seeds masking, the no-retrieval draw and query dropout.
    pub seed: u64,
    /// Share of main documents whose caption alone is masked, as captioning prompts (the
    /// rest get CM3's random spans), so image to caption is a trained path and not a rare
    /// mask.
    pub caption_share: f64,
    /// Share of sequences with retrieval whose first retrieved document is the main
    /// document itself, unmasked (the other K − 1 as retrieved): exact copies that teach
    /// the model to read its context before it must read another rendition.
    pub copy_share: f64,
}

/// Token ids of documents, keyed by id.
pub type Tokens = HashMap<String, Vec<u32>>;

/// CM3 token ids of `documents`: text through the codec's BPE, images through the VQGAN
/// in batches. `progress` is told how many documents are done.
pub fn tokenize_documents(
    documents: &[Document],
    codec: &Cm3Codec,
    vqgan: &ImageTokenizer,
    mut progress: impl FnMut(usize),
) -> Result<Tokens, Error> {
    let mut tokens = Tokens::with_capacity(documents.len());
    for chunk in documents.chunks(64) {
        let images: Vec<image::RgbImage> = chunk
            .iter()
            .flat_map(|doc| doc.images().map(|image| image.pixels.clone()))
            .collect();
        let mut codes = vqgan.encode(&images, 32)?.into_iter();
        for document in chunk {
            let segments = segments_of(document, |_| {
                codes
                    .next()
                    .ok_or_else(|| racm3_tokenize::Error::Malformed {
                        position: 0,
                        problem: "fewer codes than images".into(),
                    })
            })?;
            tokens.insert(document.id().to_owned(), codec.encode(&segments)?);
        }
        progress(chunk.len());
    }
    Ok(tokens)
}

/// What retrieval for a set of training documents found: how often the document's own
/// entity (drawn another way) was among its retrieved documents, and what the policy's
/// skips took out on the way.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievalStats {
    /// Documents retrieved for.
    pub queries: usize,
    /// Queries whose retrieved documents include the document's own entity.
    pub with_same_entity: usize,
    /// Candidates skipped as near copies of the query.
    pub near_copies_skipped: usize,
    /// Candidates skipped as too close to a document already chosen.
    pub redundant_skipped: usize,
    /// Documents retrieved in all.
    pub retrieved: usize,
}

impl RetrievalStats {
    /// The share of queries that retrieved their own entity.
    pub fn same_entity_share(&self) -> f64 {
        self.with_same_entity as f64 / self.queries.max(1) as f64
    }
}

/// The ids of the documents retrieved for each training document (the query is its text
/// or its image at random, with query dropout; the document itself is excluded), and for
/// each document whether its entity was among them, with the skips counted: the retrieval
/// statistics of the first `stats_over` documents (the training ones).
pub fn retrieve_all(
    documents: &[Document],
    encoder: &ClipEncoder,
    memory: &Memory,
    config: &CorpusConfig,
    query: TrainingQuery,
    stats_over: usize,
    mut progress: impl FnMut(usize),
) -> Result<(HashMap<String, Vec<String>>, RetrievalStats), Error> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed ^ 0x5e7);
    let mut found = HashMap::with_capacity(documents.len());
    let mut stats = RetrievalStats::default();
    for (index, document) in documents.iter().enumerate() {
        let hits = retrieve_for_training(
            encoder,
            memory,
            document,
            &config.policy,
            query,
            config.query_dropout,
            &mut rng,
        )?;
        if index < stats_over {
            stats.queries += 1;
            stats.near_copies_skipped += hits.near_copies;
            stats.redundant_skipped += hits.redundant;
            stats.retrieved += hits.documents.len();
            let mut same = false;
            for hit in &hits.documents {
                same |= memory.document(hit.row)?.source.entity == document.source.entity;
            }
            stats.with_same_entity += usize::from(same);
        }
        found.insert(
            document.id().to_owned(),
            hits.documents.into_iter().map(|hit| hit.id).collect(),
        );
        progress(1);
    }
    Ok((found, stats))
}

/// The training sequences of `documents`: `[ret_1 <break> … ret_K <break> main <eos>]`
/// with CM3 masking on the main document, the retrieved documents from `retrieved`, or for
/// captioning prompts from `retrieved_by_image` when given. Documents whose tokens are missing or too long
/// are skipped and counted.
pub fn sequences(
    documents: &[Document],
    tokens: &Tokens,
    retrieved: &HashMap<String, Vec<String>>,
    retrieved_by_image: Option<&HashMap<String, Vec<String>>>,
    codec: &Cm3Codec,
    config: &CorpusConfig,
) -> Result<(Vec<Sequence>, usize), Error> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    // Its own draws, so a corpus without caption masks is the one it always was.
    let mut caption_rng = rand::rngs::StdRng::seed_from_u64(config.seed ^ 0xca97);
    let mut copy_rng = rand::rngs::StdRng::seed_from_u64(config.seed ^ 0xc0b1);
    let mut out = Vec::with_capacity(documents.len());
    let mut skipped = 0;
    for (index, document) in documents.iter().enumerate() {
        let Some(main) = tokens.get(document.id()) else {
            skipped += 1;
            continue;
        };
        let caption_masked = if config.caption_share > 0.0
            && caption_rng.random_bool(config.caption_share.clamp(0.0, 1.0))
        {
            caption_mask(main, codec.ids())?
        } else {
            None
        };
        let captioning = caption_masked.is_some();
        let masked = match caption_masked {
            Some(masked) => masked,
            None => causal_mask_seeded(main, codec.ids(), config.seed.wrapping_add(index as u64))?,
        };
        let without = config.baseline || rng.random_bool(config.no_retrieval_share.clamp(0.0, 1.0));
        let retrieved = match retrieved_by_image {
            Some(by_image) if captioning => by_image,
            _ => retrieved,
        };
        let mut neighbours: Vec<Vec<u32>> = if without {
            Vec::new()
        } else {
            retrieved
                .get(document.id())
                .into_iter()
                .flatten()
                .filter_map(|id| tokens.get(id).cloned())
                .collect()
        };
        if !without
            && config.copy_share > 0.0
            && copy_rng.random_bool(config.copy_share.clamp(0.0, 1.0))
        {
            neighbours.pop();
            neighbours.insert(0, main.clone());
        }
        match training_sequence(&neighbours, &masked, codec.ids(), config.max_len) {
            Some(sequence) => out.push(sequence),
            None => skipped += 1,
        }
    }
    Ok((out, skipped))
}

/// A JSON cache file in the run folder: read it if present, else make and write it.
pub fn cached<T: Serialize + for<'de> Deserialize<'de>, E: From<Error>>(
    path: &Path,
    make: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    if let Ok(bytes) = std::fs::read(path) {
        return serde_json::from_slice(&bytes).map_err(|source| {
            Error::Cache {
                path: path.to_owned(),
                problem: format!("{source}; delete it to rebuild"),
            }
            .into()
        });
    }
    let value = make()?;
    let json = serde_json::to_vec(&value).map_err(|source| Error::Cache {
        path: path.to_owned(),
        problem: source.to_string(),
    })?;
    racm3_data::write_atomic(path, &json).map_err(Error::from)?;
    Ok(value)
}

/// Val documents the copy probe reads, at most.
const PROBE_DOCUMENTS: usize = 64;

/// One copy-probe case: a val document, a document of its entity in the memory (another
/// rendition, never the document itself) and a random document of another entity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeCase {
    /// The val document whose image codes are scored.
    pub document: String,
    /// A memory document of the same entity.
    pub same_entity: String,
    /// A memory document of another entity.
    pub random: String,
}

/// The copy probe's cases: for the val documents in order, until [`PROBE_DOCUMENTS`]
/// have a same-entity document in `memory`; random documents drawn with `seed`. Cached
/// in the run folder like retrieval, so a run trains and resumes without the memory.
pub fn probe_cases(val: &[Document], memory: &Memory, seed: u64) -> Result<Vec<ProbeCase>, Error> {
    let mut by_entity: HashMap<String, Vec<String>> = HashMap::new();
    let mut all = Vec::new();
    for id in memory.ids() {
        if let Some(row) = memory.row_of(id) {
            let entity = memory.document(row)?.source.entity;
            by_entity
                .entry(entity.clone())
                .or_default()
                .push(id.to_owned());
            all.push((id.to_owned(), entity));
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x9806e);
    let mut cases = Vec::new();
    if all.is_empty() {
        return Ok(cases);
    }
    for document in val {
        if cases.len() == PROBE_DOCUMENTS {
            break;
        }
        let same = by_entity
            .get(&document.source.entity)
            .into_iter()
            .flatten()
            .find(|id| id.as_str() != document.id());
        let random = (0..64)
            .map(|_| &all[rng.random_range(0..all.len())])
            .find(|(_, entity)| *entity != document.source.entity)
            .map(|(id, _)| id);
        if let (Some(same), Some(random)) = (same, random) {
            cases.push(ProbeCase {
                document: document.id().to_owned(),
                same_entity: same.clone(),
                random: random.clone(),
            });
        }
    }
    Ok(cases)
}

/// The copy probe over training ([`CopyProbe`]): each case's document, only its image
/// codes counted, after its same-entity document and after its random one. Cases whose
/// sequences do not fit `max_len` with the context are left out.
pub fn copy_probe(
    cases: &[ProbeCase],
    tokens: &Tokens,
    ids: &IdSpace,
    max_len: usize,
) -> CopyProbe {
    let mut probe = CopyProbe::default();
    let image = ids.image_range();
    for case in cases {
        let Some(main) = tokens.get(&case.document) else {
            continue;
        };
        let masked = CausalMasked {
            tokens: main.clone(),
            loss_mask: main.iter().map(|id| image.contains(id)).collect(),
            spans: Vec::new(),
        };
        let sequence = |context: &str| {
            let neighbours: Vec<Vec<u32>> = tokens.get(context).cloned().into_iter().collect();
            training_sequence(&neighbours, &masked, ids, max_len)
                .filter(|sequence| sequence.retrieved == 1)
        };
        if let (Some(same), Some(random)) = (sequence(&case.same_entity), sequence(&case.random)) {
            probe.same_entity.push(same);
            probe.random.push(random);
        }
    }
    probe
}

#[cfg(test)]
mod tests {
    use super::*;
    use racm3_data::{Source, Split};
    use racm3_tokenize::{Segment, TextTokenizer, TrainOptions};

    fn document(id: &str) -> Document {
        let source = Source {
            dataset: "test".into(),
            entity: id.into(),
            split: Split::Train,
            references: Vec::new(),
            attributes: Default::default(),
        };
        let mut document = Document::new(id, source);
        document.push_text(id);
        document
    }

    const WORDS: [&str; 3] = ["red apple", "blue whale", "green tree"];

    /// A codec whose BPE learned [`WORDS`], and a text document of each.
    fn codec_and_documents() -> (Cm3Codec, Vec<Document>) {
        let texts: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
        let text = TextTokenizer::train(&texts, &TrainOptions::default()).unwrap();
        (
            Cm3Codec::new(text, 16),
            WORDS.iter().map(|w| document(w)).collect(),
        )
    }

    /// The corpus settings with K retrieved documents and the given caption and copy
    /// shares; no retrieval dropped, no query dropout.
    fn corpus_config(k: usize, caption_share: f64, copy_share: f64) -> CorpusConfig {
        CorpusConfig {
            policy: RetrievalPolicy::top(k),
            no_retrieval_share: 0.0,
            baseline: false,
            max_len: 256,
            query_dropout: 0.0,
            seed: 3,
            caption_share,
            copy_share,
        }
    }

    /// At copy share 1 every sequence starts with its main document itself, then its first
    /// retrieved one; at 0 with its two retrieved ones. K stays K either way.
    #[test]
    fn copy_share_puts_the_document_itself_first() {
        let words = WORDS;
        let (codec, documents) = codec_and_documents();
        let tokens: Tokens = words
            .iter()
            .map(|w| {
                (
                    w.to_string(),
                    codec.encode(&[Segment::Text(w.to_string())]).unwrap(),
                )
            })
            .collect();
        let others = |word: &str| -> Vec<String> {
            words
                .iter()
                .filter(|w| **w != word)
                .map(|w| w.to_string())
                .collect()
        };
        let retrieved: HashMap<String, Vec<String>> =
            words.iter().map(|w| (w.to_string(), others(w))).collect();
        let config = |copy_share| corpus_config(2, 0.0, copy_share);
        for copy_share in [1.0, 0.0] {
            let (made, skipped) = sequences(
                &documents,
                &tokens,
                &retrieved,
                None,
                &codec,
                &config(copy_share),
            )
            .unwrap();
            assert_eq!((made.len(), skipped), (3, 0));
            for (sequence, word) in made.iter().zip(words) {
                assert_eq!(sequence.retrieved, 2);
                let context = if copy_share == 1.0 {
                    vec![word.to_string(), others(word)[0].clone()]
                } else {
                    others(word)
                };
                let mut expected = tokens[&context[0]].clone();
                expected.push(codec.ids().special(racm3_tokenize::Special::Break));
                expected.extend(&tokens[&context[1]]);
                assert!(
                    sequence.tokens.starts_with(&expected),
                    "copy share {copy_share}, {word}: {:?}",
                    codec.render(&sequence.tokens)
                );
            }
        }
    }

    /// Captioning prompts read `retrieved_by_image` when it is given, every other
    /// sequence `retrieved`.
    #[test]
    fn captioning_prompts_read_the_retrieval_by_image() {
        let words = WORDS;
        let (codec, documents) = codec_and_documents();
        let tokens: Tokens = words
            .iter()
            .map(|w| {
                let image = Segment::Image {
                    alt: w.to_string(),
                    codes: vec![1, 2, 3, 4],
                };
                (w.to_string(), codec.encode(&[image]).unwrap())
            })
            .collect();
        let by_text: HashMap<String, Vec<String>> = words
            .iter()
            .map(|w| (w.to_string(), vec![words[0].to_string()]))
            .collect();
        let by_image: HashMap<String, Vec<String>> = words
            .iter()
            .map(|w| (w.to_string(), vec![words[2].to_string()]))
            .collect();
        let config = |caption_share| corpus_config(1, caption_share, 0.0);
        for (caption_share, first) in [(1.0, words[2]), (0.0, words[0])] {
            let (made, _) = sequences(
                &documents,
                &tokens,
                &by_text,
                Some(&by_image),
                &codec,
                &config(caption_share),
            )
            .unwrap();
            assert_eq!(made.len(), 3);
            for sequence in &made {
                assert!(
                    sequence.tokens.starts_with(&tokens[first]),
                    "caption share {caption_share}: {:?}",
                    codec.render(&sequence.tokens)
                );
            }
        }
    }
}
