//! What the endpoints do, as blocking functions over the shared models: retrieval,
//! generation, captioning, clip-retrieval's k-NN query, and adding documents to the
//! memory. One [`Service`] is shared by every request through an `Arc`; each generation
//! makes its own KV cache, so requests never share decoding state.

use std::io::Cursor;
use std::sync::{PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use image::RgbImage;
use racm3::data::{Document, Source, Split};
use racm3::generate::sampler::SamplingConfig;
use racm3::memory::Memory;
use racm3::retrieve::{ClipEncoder, Query, RetrievalPolicy, retrieve};
use racm3::tasks::{Evidence, Generator, Retriever, SampleSettings};
use serde::{Deserialize, Serialize};

use crate::Limits;
use crate::error::ApiError;

/// The models a server shares between requests: CLIP and the memory it keyed, and
/// optionally a generator (without one, `/generate` and `/caption` answer 503).
pub struct Service {
    encoder: ClipEncoder,
    memory: RwLock<Memory>,
    generator: Option<Generator>,
    limits: Limits,
}

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
    /// Skip documents scoring above this with the query (near copies); RA-CM3's 0.9.
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
    /// A query key of the memory's dimension.
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
    4
}
fn default_prompt_k() -> usize {
    2
}
fn default_cfg() -> f32 {
    3.0
}
fn default_top_p() -> Option<f64> {
    Some(0.9)
}
fn one() -> usize {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn one_u64() -> u64 {
    1
}
fn yes() -> bool {
    true
}

impl Service {
    /// A service over `memory`, keyed by `encoder`, with an optional generator.
    pub fn new(
        encoder: ClipEncoder,
        memory: Memory,
        generator: Option<Generator>,
        limits: Limits,
    ) -> Result<Self, ApiError> {
        if encoder.dim() != memory.dim() {
            return Err(ApiError::Invalid(format!(
                "the CLIP makes {}-d keys but the memory in {} holds {}-d keys",
                encoder.dim(),
                memory.dir().display(),
                memory.dim()
            )));
        }
        Ok(Self {
            encoder,
            memory: RwLock::new(memory),
            generator,
            limits,
        })
    }

    /// The limits requests are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Documents in the memory.
    pub fn memory_size(&self) -> usize {
        self.memory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when `/generate` and `/caption` can answer.
    pub fn has_generator(&self) -> bool {
        self.generator.is_some()
    }

    fn generator(&self) -> Result<&Generator, ApiError> {
        self.generator.as_ref().ok_or_else(|| {
            ApiError::Unavailable(
                "this server has no generator; start it with `racm3 serve --model DIR`".into(),
            )
        })
    }

    /// `/retrieve`.
    pub fn retrieve(&self, request: RetrieveRequest) -> Result<RetrieveResponse, ApiError> {
        self.check_limit("k", request.k, self.limits.max_k)?;
        let key = self.query_key(request.text.as_deref(), request.image.as_deref())?;
        let memory = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        let defaults = RetrievalPolicy::default();
        let policy = RetrievalPolicy {
            k: request.k.min(memory.len()),
            query_threshold: request.query_threshold.unwrap_or(defaults.query_threshold),
            pairwise_threshold: request
                .pairwise_threshold
                .unwrap_or(defaults.pairwise_threshold),
            exact: request.exact,
            ef_search: None,
        };
        if policy.k == 0 {
            return Ok(RetrieveResponse {
                documents: Vec::new(),
                near_copies: 0,
                redundant: 0,
                memory_size: memory.len(),
            });
        }
        let found = retrieve(&memory, &key, &policy, None)?;
        let documents = found
            .documents
            .iter()
            .enumerate()
            .map(|(rank, hit)| view(&memory, hit.row, rank, hit.score, request.images))
            .collect::<Result<_, _>>()?;
        Ok(RetrieveResponse {
            documents,
            near_copies: found.near_copies,
            redundant: found.redundant,
            memory_size: memory.len(),
        })
    }

    /// `/generate`.
    pub fn generate(&self, request: GenerateRequest) -> Result<Generated<ImageView>, ApiError> {
        let generator = self.generator()?;
        let text = self.text(&request.text)?;
        if !request.cfg.is_finite() || request.cfg < 0.0 {
            return Err(ApiError::Invalid(format!(
                "cfg is {}; it must be a finite number, 1 for no guidance",
                request.cfg
            )));
        }
        let streams = if request.cfg == 1.0 { 1 } else { 2 };
        let steps = request.sampling.samples * generator.vqgan().tokens_per_image() * streams;
        let settings = self.sample_settings(&request.sampling, steps)?;
        let memory = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        let retriever = self.retriever(&memory, &request.sampling);
        let outputs = generator.text_to_image(
            text,
            retriever.as_ref(),
            &settings,
            request.cfg,
            Some(&self.encoder),
        )?;
        Ok(Generated {
            outputs: outputs
                .samples
                .iter()
                .map(|sample| {
                    Ok(ImageView {
                        png: png_base64(&sample.image)?,
                        clip_similarity: sample.clip_similarity,
                        seed: sample.seed,
                    })
                })
                .collect::<Result<_, ApiError>>()?,
            retrieved: evidence(&memory, &outputs.context.documents)?,
            notes: outputs.context.notes,
        })
    }

    /// `/caption`.
    pub fn caption(&self, request: CaptionRequest) -> Result<Generated<CaptionView>, ApiError> {
        let generator = self.generator()?;
        let image = self.image(&request.image)?;
        // A caption is at most 64 tokens and its end.
        let steps = request.sampling.samples * 65;
        let settings = self.sample_settings(&request.sampling, steps)?;
        let memory = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        let retriever = self.retriever(&memory, &request.sampling);
        let outputs = generator.image_to_caption(
            &image,
            retriever.as_ref(),
            &settings,
            Some(&self.encoder),
        )?;
        Ok(Generated {
            outputs: outputs
                .samples
                .into_iter()
                .map(|sample| CaptionView {
                    text: sample.text,
                    clip_similarity: sample.clip_similarity,
                    seed: sample.seed,
                })
                .collect(),
            retrieved: evidence(&memory, &outputs.context.documents)?,
            notes: outputs.context.notes,
        })
    }

    /// `/knn-service`.
    pub fn knn(&self, request: KnnRequest) -> Result<Vec<KnnResult>, ApiError> {
        self.check_limit("num_images", request.num_images, self.limits.max_k)?;
        if request.image_url.is_some() {
            return Err(ApiError::Invalid(
                "image_url is not supported: racm3 does not fetch URLs; send the image as base64 in `image`"
                    .into(),
            ));
        }
        let key = match &request.embedding_input {
            Some(embedding) => self.embedding(embedding)?,
            None => self.query_key(request.text.as_deref(), request.image.as_deref())?,
        };
        let memory = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        let k = request.num_images.min(memory.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        // A search service returns exact matches; deduplication is the pairwise rule.
        let policy = RetrievalPolicy {
            k,
            query_threshold: f32::INFINITY,
            pairwise_threshold: if request.deduplicate {
                RetrievalPolicy::default().pairwise_threshold
            } else {
                f32::INFINITY
            },
            exact: false,
            ef_search: None,
        };
        let found = retrieve(&memory, &key, &policy, None)?;
        found
            .documents
            .iter()
            .map(|hit| {
                let document = memory.document(hit.row).map_err(|e| ApiError::from(&e))?;
                Ok(KnnResult {
                    id: hit.row,
                    document_id: hit.id.clone(),
                    similarity: hit.score,
                    caption: document.caption(),
                    url: None,
                    image: first_image(&document)?,
                })
            })
            .collect()
    }

    /// `/documents`: keys the documents, adds them and commits before answering, so an
    /// acknowledged document survives the server being killed.
    pub fn add(&self, request: AddRequest) -> Result<AddResponse, ApiError> {
        self.check_limit(
            "documents",
            request.documents.len(),
            self.limits.max_documents,
        )?;
        if request.documents.is_empty() {
            return Err(ApiError::Invalid("documents is empty".into()));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let mut documents = Vec::with_capacity(request.documents.len());
        for (index, new) in request.documents.iter().enumerate() {
            let caption = self.text(&new.caption)?.trim();
            let id = match &new.id {
                Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
                Some(_) => return Err(ApiError::Invalid("a document's id is empty".into())),
                None => format!("api/{caption}/{stamp}-{index}"),
            };
            let source = Source {
                dataset: "api".into(),
                entity: caption.to_owned(),
                split: Split::of_key(&id),
                references: Vec::new(),
                attributes: Default::default(),
            };
            let document = match &new.image {
                Some(data) => Document::image_caption(&id, caption, self.image(data)?, source),
                None => {
                    let mut document = Document::new(&id, source);
                    document.push_text(caption);
                    document
                }
            };
            documents.push(document);
        }
        let keys = self.encoder.document_keys(&documents)?;
        let mut memory = self.memory.write().unwrap_or_else(PoisonError::into_inner);
        memory
            .add(&documents, &keys)
            .map_err(|e| ApiError::from(&e))?;
        if let Err(error) = memory.commit() {
            // Not acknowledged, so not kept: searches stop seeing them at once.
            for document in &documents {
                let _ = memory.remove(document.id());
            }
            return Err(ApiError::Internal(format!(
                "could not write the memory: {error}"
            )));
        }
        Ok(AddResponse {
            added: documents.iter().map(|d| d.id().to_owned()).collect(),
            memory_size: memory.len(),
        })
    }

    /// `DELETE /documents/{id}`: removes a document and commits before answering.
    pub fn remove(&self, id: &str) -> Result<RemoveResponse, ApiError> {
        let mut memory = self.memory.write().unwrap_or_else(PoisonError::into_inner);
        memory.remove(id).map_err(|error| match error {
            racm3::memory::Error::NoSuchId { .. } => ApiError::NotFoundId(error.to_string()),
            other => ApiError::from(&other),
        })?;
        memory
            .commit()
            .map_err(|error| ApiError::Internal(format!("could not write the memory: {error}")))?;
        Ok(RemoveResponse {
            removed: id.to_owned(),
            memory_size: memory.len(),
        })
    }

    fn retriever<'a>(&'a self, memory: &'a Memory, sampling: &Sampling) -> Option<Retriever<'a>> {
        (sampling.k > 0).then(|| Retriever {
            encoder: &self.encoder,
            memory,
            policy: RetrievalPolicy {
                k: sampling.k,
                query_threshold: sampling
                    .query_threshold
                    .unwrap_or(RetrievalPolicy::default().query_threshold),
                ..RetrievalPolicy::default()
            },
        })
    }

    fn sample_settings(
        &self,
        sampling: &Sampling,
        steps: usize,
    ) -> Result<SampleSettings, ApiError> {
        self.check_limit("k", sampling.k, self.limits.max_prompt_k)?;
        self.check_limit("samples", sampling.samples, self.limits.max_samples)?;
        self.check_limit("steps", steps, self.limits.max_steps)?;
        if sampling.samples == 0 {
            return Err(ApiError::Invalid("samples must be at least 1".into()));
        }
        if !sampling.temperature.is_finite() || sampling.temperature < 0.0 {
            return Err(ApiError::Invalid(format!(
                "temperature is {}; it must be 0 (greedy) or positive",
                sampling.temperature
            )));
        }
        if let Some(p) = sampling.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::Invalid(format!(
                "top_p is {p}; it must be in (0, 1]"
            )));
        }
        Ok(SampleSettings {
            samples: sampling.samples,
            sampling: SamplingConfig {
                temperature: sampling.temperature,
                top_k: sampling.top_k,
                top_p: sampling.top_p,
            },
            seed: sampling.seed,
        })
    }

    fn check_limit(&self, name: &'static str, got: usize, limit: usize) -> Result<(), ApiError> {
        if got > limit {
            return Err(ApiError::Limit {
                name,
                limit: limit as u64,
                got: got as u64,
            });
        }
        Ok(())
    }

    fn text<'a>(&self, text: &'a str) -> Result<&'a str, ApiError> {
        self.check_limit(
            "text_chars",
            text.chars().count(),
            self.limits.max_text_chars,
        )?;
        if text.trim().is_empty() {
            return Err(ApiError::Invalid("the text is empty".into()));
        }
        Ok(text)
    }

    /// Decodes a base64 image after checking its pixel count from the header alone.
    fn image(&self, data: &str) -> Result<RgbImage, ApiError> {
        let encoded = data.split_once(";base64,").map_or(data, |(_, rest)| rest);
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|err| ApiError::Invalid(format!("the image is not base64: {err}")))?;
        let not_an_image = |err: image::ImageError| {
            ApiError::Invalid(format!("the image is not a PNG, JPEG or WebP: {err}"))
        };
        let (width, height) = image::ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|err| ApiError::Invalid(format!("the image cannot be read: {err}")))?
            .into_dimensions()
            .map_err(not_an_image)?;
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.limits.max_image_pixels {
            return Err(ApiError::Limit {
                name: "image_pixels",
                limit: self.limits.max_image_pixels,
                got: pixels,
            });
        }
        racm3::data::decode_rgb(&bytes, "the image")
            .map_err(|err| ApiError::Invalid(err.to_string()))
    }

    /// The key of a text and/or base64 image query.
    fn query_key(&self, text: Option<&str>, image: Option<&str>) -> Result<Vec<f32>, ApiError> {
        let text = text.map(|t| self.text(t)).transpose()?;
        let image = image.map(|data| self.image(data)).transpose()?;
        if text.is_none() && image.is_none() {
            return Err(ApiError::Invalid(
                "a query needs text, an image, or both (or embedding_input for /knn-service)"
                    .into(),
            ));
        }
        Ok(self.encoder.query_key(&Query {
            text,
            image: image.as_ref(),
        })?)
    }

    fn embedding(&self, embedding: &[f32]) -> Result<Vec<f32>, ApiError> {
        if embedding.len() != self.encoder.dim() {
            return Err(ApiError::Invalid(format!(
                "embedding_input has {} values; the memory's keys have {}",
                embedding.len(),
                self.encoder.dim()
            )));
        }
        let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(ApiError::Invalid(
                "embedding_input must be finite and not all zero".into(),
            ));
        }
        Ok(embedding.iter().map(|v| v / norm).collect())
    }
}

fn view(
    memory: &Memory,
    row: u64,
    rank: usize,
    score: f32,
    with_image: bool,
) -> Result<DocumentView, ApiError> {
    let document = memory.document(row).map_err(|e| ApiError::from(&e))?;
    Ok(DocumentView {
        rank: rank + 1,
        id: document.id().to_owned(),
        caption: document.caption(),
        score,
        dataset: document.source.dataset.clone(),
        entity: document.source.entity.clone(),
        image: if with_image {
            first_image(&document)?
        } else {
            None
        },
    })
}

fn evidence(memory: &Memory, documents: &[Evidence]) -> Result<Vec<DocumentView>, ApiError> {
    documents
        .iter()
        .enumerate()
        .filter_map(|(rank, found)| {
            memory
                .row_of(&found.id)
                .map(|row| view(memory, row, rank, found.score, true))
        })
        .collect()
}

fn first_image(document: &Document) -> Result<Option<String>, ApiError> {
    document
        .images()
        .next()
        .map(|image| png_base64(&image.pixels))
        .transpose()
}

fn png_base64(image: &RgbImage) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|err| ApiError::Internal(format!("encoding a PNG: {err}")))?;
    Ok(BASE64.encode(bytes))
}
