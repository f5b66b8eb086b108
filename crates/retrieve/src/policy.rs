//! RA-CM3's retrieval policy (Yasunaga et al., 2023, §3.2 "Retrieval strategy"): take the
//! top documents by inner product with the query, but skip near copies of the query and of
//! each other, so the k documents bring k different pieces of evidence. In training, the
//! query document itself is excluded and 20% of the query's text tokens are dropped
//! (query dropout), so the generator learns to use imperfect retrievals.

use racm3_data::Document;
use racm3_memory::{Memory, MemorySearch};
use rand::RngExt;
use rand::seq::SliceRandom;

use crate::encoder::{ClipEncoder, KeyLayout, Query, SearchQuery, document_text};
use crate::error::{Error, Result};

/// Documents retrieved into a prompt unless told (the paper's K).
pub const DEFAULT_K: usize = 2;
/// Documents a search returns unless told (`racm3 retrieve`, `/retrieve`).
pub const DEFAULT_SEARCH_K: usize = 4;
/// The paper's near-copy and redundancy thresholds.
pub const DEFAULT_THRESHOLD: f32 = 0.9;
/// The most documents retrieved into one prompt: each image document alone is about 70
/// tokens, and more do not fit a context.
pub const MAX_PROMPT_K: usize = 16;

/// How many documents to retrieve and which to skip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrievalPolicy {
    /// Documents to return.
    pub k: usize,
    /// Skip a candidate whose joint key scores above this with the query's (RA-CM3's score,
    /// whatever part of the keys the search ranks by): a near copy.
    pub query_threshold: f32,
    /// Skip a candidate whose key scores above this with an already chosen document's.
    pub pairwise_threshold: f32,
    /// Search exactly even when the memory has an approximate index.
    pub exact: bool,
    /// HNSW's candidate list size, `None` for the memory's default.
    pub ef_search: Option<usize>,
}

impl Default for RetrievalPolicy {
    /// The paper's settings: k = 2 and both thresholds 0.9.
    fn default() -> Self {
        Self {
            k: DEFAULT_K,
            query_threshold: DEFAULT_THRESHOLD,
            pairwise_threshold: DEFAULT_THRESHOLD,
            exact: false,
            ef_search: None,
        }
    }
}

impl RetrievalPolicy {
    /// The paper's policy for `k` documents.
    pub fn top(k: usize) -> Self {
        Self {
            k,
            ..Self::default()
        }
    }

    /// This policy with both skips off: plain top-k.
    pub fn without_skips(self) -> Self {
        Self {
            query_threshold: f32::INFINITY,
            pairwise_threshold: f32::INFINITY,
            ..self
        }
    }

    /// Refuses thresholds that compare with nothing (NaN); infinity is allowed and turns
    /// a skip off.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("query_threshold", self.query_threshold),
            ("pairwise_threshold", self.pairwise_threshold),
        ] {
            if value.is_nan() {
                return Err(Error::BadInput(format!(
                    "{name} is NaN; it must be a number (inner products lie in [-1, 1])"
                )));
            }
        }
        Ok(())
    }
}

/// A retrieved document's row, id and score with the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    /// The row in the memory.
    pub row: u64,
    /// The document's id.
    pub id: String,
    /// Inner product of its key with the query's.
    pub score: f32,
}

/// What a retrieval found, and what the policy skipped on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Retrieval {
    /// The documents, best first.
    pub documents: Vec<Retrieved>,
    /// Candidates skipped as near copies of the query (joint score above the query
    /// threshold).
    pub near_copies: usize,
    /// Candidates skipped as too close to a document already chosen.
    pub redundant: usize,
}

/// Up to `policy.k` documents for a query, best first, following the policy. `exclude`
/// names a document never to return (the query document, in training). Fewer than k come
/// back only when the memory has fewer documents, or fewer that pass the thresholds: a k
/// beyond the memory's size is clamped here, for every caller. k = 0 and an empty memory
/// are errors.
pub fn retrieve(
    memory: &Memory,
    query: &SearchQuery,
    policy: &RetrievalPolicy,
    exclude: Option<&str>,
) -> Result<Retrieval> {
    policy.validate()?;
    let excluded_row = exclude.and_then(|id| memory.row_of(id));
    let available = memory.len() - usize::from(excluded_row.is_some());
    if policy.k == 0 || available == 0 {
        return Err(racm3_memory::Error::BadK {
            k: policy.k,
            len: available,
            what: format!("the memory at {}", memory.dir().display()),
        }
        .into());
    }
    let policy = &RetrievalPolicy {
        k: policy.k.min(available),
        ..*policy
    };
    let layout = KeyLayout::of_description(memory.encoder())?;
    let joint_dim = layout.joint_dim(memory.encoder(), memory.dim())?;
    if query.joint.len() != joint_dim {
        return Err(Error::BadInput(format!(
            "the query's joint key has {} values but the joint keys of the memory at {} have {}",
            query.joint.len(),
            memory.dir().display(),
            joint_dim
        )));
    }
    let keep = |row: u64| Some(row) != excluded_row;
    let how = MemorySearch {
        exact: policy.exact,
        ef_search: policy.ef_search,
        keep: Some(&keep),
    };
    // Near copies are rare, so a few extra candidates usually suffice; widen if not.
    let mut wanted = (policy.k * 4 + 8).min(available);
    loop {
        let hits = memory.search(&query.vector, wanted, &how)?.remove(0);
        let mut found = Retrieval::default();
        for hit in &hits {
            let candidate = memory.key(hit.label).expect("a searched row has a key");
            if layout.near_copy_score(joint_dim, &query.joint, candidate) > policy.query_threshold {
                found.near_copies += 1;
                continue;
            }
            let redundant = found.documents.iter().any(|taken| {
                let taken_key = memory.key(taken.row).expect("a chosen row has a key");
                layout.joint_similarity(joint_dim, candidate, taken_key) > policy.pairwise_threshold
            });
            if redundant {
                found.redundant += 1;
                continue;
            }
            found.documents.push(Retrieved {
                row: hit.label,
                id: memory.id(hit.label).unwrap_or_default().to_owned(),
                score: hit.score,
            });
            if found.documents.len() == policy.k {
                return Ok(found);
            }
        }
        if wanted >= available || hits.len() < wanted {
            return Ok(found);
        }
        wanted = (wanted * 4).min(available);
    }
}

/// Query dropout: `ids` with round(rate · len) tokens removed at random positions (at least
/// one token always stays).
pub fn drop_tokens(ids: &[u32], rate: f64, rng: &mut impl rand::Rng) -> Vec<u32> {
    let drop = ((ids.len() as f64 * rate).round() as usize).min(ids.len().saturating_sub(1));
    let mut positions: Vec<usize> = (0..ids.len()).collect();
    positions.shuffle(rng);
    let mut dropped = vec![false; ids.len()];
    for &position in &positions[..drop] {
        dropped[position] = true;
    }
    ids.iter()
        .zip(dropped)
        .filter(|(_, dropped)| !dropped)
        .map(|(id, _)| *id)
        .collect()
}

/// The share of query text tokens dropped in training (the paper's 20%).
pub const QUERY_DROPOUT: f64 = 0.2;

/// What a training document is retrieved by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingQuery {
    /// Its text or its image, chosen at random (the paper's).
    TextOrImage,
    /// Its image whenever it has one: the query a captioning prompt has, whose caption
    /// is what is asked for.
    Image,
}

/// Retrieval for a training document: the query is its text or its image as `query` says
/// (the text with `query_dropout` of its tokens dropped), and the document itself is
/// excluded.
pub fn retrieve_for_training(
    encoder: &ClipEncoder,
    memory: &Memory,
    document: &Document,
    policy: &RetrievalPolicy,
    query: TrainingQuery,
    query_dropout: f64,
    rng: &mut impl rand::Rng,
) -> Result<Retrieval> {
    check_dims(encoder, memory)?;
    let text = document_text(document);
    let image = document.images().next().map(|image| &image.pixels);
    let use_text = match (&text, image) {
        (Some(_), Some(_)) => query == TrainingQuery::TextOrImage && rng.random_bool(0.5),
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => {
            return Err(Error::BadInput(format!(
                "document '{}' has neither text nor an image to query with",
                document.id()
            )));
        }
    };
    let key = if use_text {
        let words = encoder
            .tokenizer()
            .encode_words(text.as_deref().unwrap_or_default())?;
        let kept = drop_tokens(&words, query_dropout, rng);
        let text = encoder.embed_token_rows(&[encoder.tokenizer().frame(&kept)])?;
        encoder.query_of_embeddings(Some(&text), None)?
    } else {
        encoder.query_key(&Query { text: None, image })?
    };
    retrieve(memory, &key, policy, Some(document.id()))
}

/// Retrieval for a user's query.
pub fn retrieve_for_query(
    encoder: &ClipEncoder,
    memory: &Memory,
    query: &Query,
    policy: &RetrievalPolicy,
) -> Result<Retrieval> {
    check_dims(encoder, memory)?;
    let key = encoder.query_key(query)?;
    retrieve(memory, &key, policy, None)
}

fn check_dims(encoder: &ClipEncoder, memory: &Memory) -> Result<()> {
    let layout = KeyLayout::of_description(memory.encoder())?;
    if encoder.key_dim() != memory.dim() || encoder.layout() != layout {
        return Err(Error::EncoderMismatch {
            memory: memory.dir().to_owned(),
            memory_dim: memory.dim(),
            memory_layout: layout.name(),
            clip_dim: encoder.key_dim(),
            clip_layout: encoder.layout().name(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn memory_with(keys: &[[f32; 3]], dir: &std::path::Path) -> Memory {
        let mut memory = Memory::create(dir, 3, "flat", serde_json::Value::Null).unwrap();
        let documents: Vec<Document> = (0..keys.len())
            .map(|i| {
                let source = racm3_data::Source {
                    dataset: "t".into(),
                    entity: format!("e{i}"),
                    split: racm3_data::Split::Train,
                    references: vec![],
                    attributes: Default::default(),
                };
                let mut doc = Document::new(format!("d{i}"), source);
                doc.push_text("x");
                doc
            })
            .collect();
        let flat: Vec<f32> = keys.iter().flat_map(|key| normalized(*key)).collect();
        memory.add(&documents, &flat).unwrap();
        memory
    }

    fn normalized(key: [f32; 3]) -> [f32; 3] {
        let norm = key.iter().map(|v| v * v).sum::<f32>().sqrt();
        key.map(|v| v / norm)
    }

    fn ids(found: &Retrieval) -> Vec<&str> {
        found.documents.iter().map(|r| r.id.as_str()).collect()
    }

    // The policy skips a near copy of the query (score > 0.9), then a document too close
    // to one already chosen (> 0.9 with it), and never returns the excluded document;
    // with both thresholds off it is plain top-k.
    #[test]
    fn skips_near_copies_and_redundant_documents() {
        let dir = tempfile::tempdir().unwrap();
        let memory = memory_with(
            &[
                [1.0, 0.0, 0.0],   // d0: the query itself
                [1.0, 0.6, 0.0],   // d1: close to the query (0.857)
                [1.0, 0.62, 0.05], // d2: near copy of d1 (0.849; 0.999 with d1)
                [1.0, 0.0, 0.9],   // d3: another direction (0.743)
                [0.0, 1.0, 0.0],   // d4: far
            ],
            dir.path(),
        );
        let query = SearchQuery::of_joint_key(normalized([1.0, 0.0, 0.0]).to_vec());
        let policy = RetrievalPolicy {
            k: 2,
            exact: true,
            ..RetrievalPolicy::default()
        };
        let found = retrieve(&memory, &query, &policy, None).unwrap();
        assert_eq!(ids(&found), vec!["d1", "d3"]);
        assert!(found.documents[0].score > found.documents[1].score);
        assert_eq!((found.near_copies, found.redundant), (1, 1));
        let plain = RetrievalPolicy {
            k: 3,
            query_threshold: 2.0,
            pairwise_threshold: 2.0,
            ..policy
        };
        assert_eq!(
            ids(&retrieve(&memory, &query, &plain, None).unwrap()),
            vec!["d0", "d1", "d2"]
        );
        assert_eq!(
            ids(&retrieve(&memory, &query, &plain, Some("d0")).unwrap()),
            vec!["d1", "d2", "d3"]
        );
        // k past the documents that could come back returns them all; k = 0 and a NaN
        // threshold are errors.
        let too_many = RetrievalPolicy { k: 5, ..plain };
        let all = retrieve(&memory, &query, &too_many, Some("d0")).unwrap();
        assert_eq!(ids(&all), vec!["d1", "d2", "d3", "d4"]);
        let none = RetrievalPolicy { k: 0, ..plain };
        assert!(retrieve(&memory, &query, &none, None).is_err());
        let nan = RetrievalPolicy {
            query_threshold: f32::NAN,
            ..plain
        };
        let err = retrieve(&memory, &query, &nan, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("query_threshold is NaN"), "{err}");
    }

    // Dropout removes exactly round(20%) of the tokens, keeps order, and never empties.
    #[test]
    fn drops_a_fifth_in_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let ids: Vec<u32> = (0..10).collect();
        let kept = drop_tokens(&ids, 0.2, &mut rng);
        assert_eq!(kept.len(), 8);
        assert!(kept.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(drop_tokens(&[7], 0.9, &mut rng), vec![7]);
    }
}
