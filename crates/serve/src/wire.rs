//! The JSON bodies of the API: what each endpoint reads and answers, with the defaults a
//! request may leave out (the library's, so the CLI and the server agree).

use racm3::generate::sampler::{DEFAULT_CFG, DEFAULT_TOP_P};
use racm3::retrieve::{DEFAULT_K, DEFAULT_SEARCH_K};
use racm3::tasks::Copied;
use serde::{Deserialize, Serialize};

/// A document as a client sees it.
#[derive(Debug, Serialize)]
pub struct DocumentView {
    /// 1 for the best.
    pub rank: usize,
    /// The memory's id.
    pub id: String,
    /// The caption.
    pub caption: String,
    /// Inner product of its key with the query's.
    pub score: f32,
    /// Where it came from.
    pub dataset: String,
    /// What it depicts.
    pub entity: String,
    /// Its first image as base64 PNG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// `POST /retrieve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrieveRequest {
    /// A text query.
    pub text: Option<String>,
    /// An image query as base64 (a `data:` URL prefix is allowed).
    pub image: Option<String>,
    /// Documents to return.
    #[serde(default = "default_search_k")]
    pub k: usize,
    /// Skip documents whose joint key scores above this with the query's (near copies);
    /// RA-CM3's 0.9.
    pub query_threshold: Option<f32>,
    /// Skip documents scoring above this with one already chosen; RA-CM3's 0.9.
    pub pairwise_threshold: Option<f32>,
    /// Exact search even when the memory has an approximate index.
    #[serde(default)]
    pub exact: bool,
    /// Include each document's image (default true).
    #[serde(default = "yes")]
    pub images: bool,
}

/// The answer to `/retrieve`.
#[derive(Debug, Serialize)]
pub struct RetrieveResponse {
    /// Best first.
    pub documents: Vec<DocumentView>,
    /// Candidates skipped as near copies of the query.
    pub near_copies: usize,
    /// Candidates skipped as near copies of a chosen document.
    pub redundant: usize,
    /// Documents in the memory.
    pub memory_size: usize,
}

/// Sampling settings shared by `/generate` and `/caption`.
#[derive(Debug, Deserialize)]
pub struct Sampling {
    /// Documents retrieved into the prompt; 0 generates without retrieval.
    #[serde(default = "default_prompt_k")]
    pub k: usize,
    /// Samples to draw; re-ranked by CLIP, best first.
    #[serde(default = "one")]
    pub samples: usize,
    /// Softmax temperature; 0 is greedy.
    #[serde(default = "one_f64")]
    pub temperature: f64,
    /// Nucleus sampling.
    #[serde(default = "default_top_p")]
    pub top_p: Option<f64>,
    /// Keep the k most likely tokens.
    pub top_k: Option<usize>,
    /// Sample i uses seed + i.
    #[serde(default = "one_u64")]
    pub seed: u64,
    /// The retrieval policy's near-copy threshold.
    pub query_threshold: Option<f32>,
    /// Retrieval guidance scale against a stream without the retrieved documents; 1 is
    /// none.
    #[serde(default = "one_f32")]
    pub retrieval_guidance: f32,
    /// Added to the copy pointer's log-weight of each retrieved source; 0 samples as
    /// trained. Unset: 8 for `/generate` and `/caption`, 0 for infilling.
    #[serde(default)]
    pub copy_bias: Option<f32>,
}

/// `POST /generate`: caption to image.
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    /// The caption.
    pub text: String,
    /// Classifier-free guidance scale; 1 is none.
    #[serde(default = "default_cfg")]
    pub cfg: f32,
    /// Everything else.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `POST /caption`: image to caption.
#[derive(Debug, Deserialize)]
pub struct CaptionRequest {
    /// The image as base64.
    pub image: String,
    /// Everything else.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A generated image.
#[derive(Debug, Serialize)]
pub struct ImageView {
    /// Base64 PNG.
    pub png: String,
    /// Cosine with the caption under CLIP.
    pub clip_similarity: Option<f32>,
    /// The seed that drew it.
    pub seed: u64,
    /// The retrieved image it copies most codes from, and how many.
    pub copied: Option<Copied>,
}

/// A generated caption.
#[derive(Debug, Serialize)]
pub struct CaptionView {
    /// The text.
    pub text: String,
    /// Cosine with the image under CLIP.
    pub clip_similarity: Option<f32>,
    /// The seed that drew it.
    pub seed: u64,
}

/// The answer to `/generate` or `/caption`: outputs and what informed them.
#[derive(Debug, Serialize)]
pub struct Generated<T> {
    /// Best first.
    pub outputs: Vec<T>,
    /// The documents in front of the prompt.
    pub retrieved: Vec<DocumentView>,
    /// Policies that changed the request (truncation, an empty memory).
    pub notes: Vec<String>,
}

/// `POST /knn-service`, as clip-retrieval's `ClipClient` sends it. racm3's keys mix text
/// and image, so `modality` and the index name are accepted and not used; the safety
/// and aesthetic fields have no model here and are ignored.
#[derive(Debug, Deserialize)]
pub struct KnnRequest {
    /// A text query.
    pub text: Option<String>,
    /// An image query, base64.
    pub image: Option<String>,
    /// clip-retrieval fetches this URL; racm3 refuses to fetch URLs.
    pub image_url: Option<String>,
    /// A CLIP embedding (text or image) of the CLIP's dimension, scored against the
    /// memory's joint keys.
    pub embedding_input: Option<Vec<f32>>,
    /// Results to return.
    pub num_images: usize,
    /// Skip results that are near copies of a better one.
    #[serde(default)]
    pub deduplicate: bool,
}

/// One k-NN result in clip-retrieval's shape.
#[derive(Debug, Serialize)]
pub struct KnnResult {
    /// The row in the memory.
    pub id: u64,
    /// The memory's id of the document.
    pub document_id: String,
    /// The score.
    pub similarity: f32,
    /// The caption.
    pub caption: String,
    /// clip-retrieval's URL field; racm3 serves images inline.
    pub url: Option<String>,
    /// The first image as base64 PNG.
    pub image: Option<String>,
}

/// `POST /documents`: documents to add to the memory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    /// The documents.
    pub documents: Vec<NewDocument>,
}

/// One document to add.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    /// Its id; new to the memory. Default: `api/<caption>/<nanoseconds>`.
    pub id: Option<String>,
    /// The caption.
    pub caption: String,
    /// The image as base64; without one, a text-only document.
    pub image: Option<String>,
}

/// The answer to `/documents`: sent only after the documents are on disk.
#[derive(Debug, Serialize)]
pub struct AddResponse {
    /// The ids added.
    pub added: Vec<String>,
    /// Documents in the memory now.
    pub memory_size: usize,
}

/// The answer to `DELETE /documents/{id}`: sent only after the removal is on disk.
#[derive(Debug, Serialize)]
pub struct RemoveResponse {
    /// The id removed.
    pub removed: String,
    /// Documents in the memory now.
    pub memory_size: usize,
}

fn default_search_k() -> usize {
    DEFAULT_SEARCH_K
}
fn default_prompt_k() -> usize {
    DEFAULT_K
}
fn default_cfg() -> f32 {
    DEFAULT_CFG
}
fn default_top_p() -> Option<f64> {
    Some(DEFAULT_TOP_P)
}
fn one() -> usize {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn one_f32() -> f32 {
    1.0
}
fn one_u64() -> u64 {
    1
}
fn yes() -> bool {
    true
}
