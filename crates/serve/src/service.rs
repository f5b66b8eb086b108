//! What the endpoints do, as blocking functions over the shared models: retrieval,
//! generation, captioning, clip-retrieval's k-NN query, and adding documents to the
//! memory. One [`Service`] is shared by every request through an `Arc`; each generation
//! makes its own KV cache, so requests never share decoding state.

use std::io::Cursor;
use std::sync::{PoisonError, RwLock};

use crate::Limits;
use crate::error::ApiError;
use crate::wire::{
    AddRequest, AddResponse, CaptionRequest, CaptionView, DocumentView, GenerateRequest, Generated,
    ImageView, KnnRequest, KnnResult, RemoveResponse, RetrieveRequest, RetrieveResponse, Sampling,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use image::RgbImage;
use racm3::data::{Document, Source, Split};
use racm3::generate::sampler::{SamplingConfig, validate_guidance};
use racm3::memory::Memory;
use racm3::retrieve::{
    ClipEncoder, DEFAULT_THRESHOLD, Query, RetrievalPolicy, SearchQuery, retrieve,
};
use racm3::tasks::{
    CAPTION_COPY_BIAS, DRAWING_COPY_BIAS, Evidence, Generator, Retriever, SampleSettings,
};

/// The models a server shares between requests: CLIP and the memory it keyed, and
/// optionally a generator (without one, `/generate` and `/caption` answer 503).
pub struct Service {
    encoder: ClipEncoder,
    memory: RwLock<Memory>,
    generator: Option<Generator>,
    limits: Limits,
}

impl Service {
    /// A service over `memory`, keyed by `encoder`, with an optional generator.
    pub fn new(
        encoder: ClipEncoder,
        memory: Memory,
        generator: Option<Generator>,
        limits: Limits,
    ) -> Result<Self, ApiError> {
        if encoder.key_dim() != memory.dim() {
            return Err(ApiError::Invalid(format!(
                "the CLIP makes {}-d keys but the memory in {} holds {}-d keys",
                encoder.key_dim(),
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
        let policy = RetrievalPolicy {
            k: request.k,
            query_threshold: request.query_threshold.unwrap_or(DEFAULT_THRESHOLD),
            pairwise_threshold: request.pairwise_threshold.unwrap_or(DEFAULT_THRESHOLD),
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
        validate_guidance("cfg", request.cfg)
            .map_err(|invalid| ApiError::Invalid(invalid.to_string()))?;
        let streams = if request.cfg == 1.0 { 1 } else { 2 };
        let steps = request.sampling.samples * generator.vqgan().tokens_per_image() * streams;
        let settings = self.sample_settings(&request.sampling, steps, DRAWING_COPY_BIAS)?;
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
                        copied: sample.copied,
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
        let settings = self.sample_settings(&request.sampling, steps, CAPTION_COPY_BIAS)?;
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
        let k = request.num_images;
        if k == 0 || memory.is_empty() {
            return Ok(Vec::new());
        }
        // A search service returns exact matches; deduplication is the pairwise rule.
        let plain = RetrievalPolicy::top(k).without_skips();
        let policy = RetrievalPolicy {
            pairwise_threshold: if request.deduplicate {
                DEFAULT_THRESHOLD
            } else {
                plain.pairwise_threshold
            },
            ..plain
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
        // Every image's size from its header, before any is decoded.
        let mut pixels = 0u64;
        let mut images = Vec::with_capacity(request.documents.len());
        for new in &request.documents {
            let bytes = match new.image.as_deref() {
                Some(data) => {
                    let (bytes, size) = self.image_header(data)?;
                    pixels = pixels.saturating_add(size);
                    Some(bytes)
                }
                None => None,
            };
            images.push(bytes);
        }
        if pixels > self.limits.max_request_pixels {
            return Err(ApiError::Limit {
                name: "request_pixels",
                limit: self.limits.max_request_pixels,
                got: pixels,
            });
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let mut documents = Vec::with_capacity(request.documents.len());
        for (index, (new, image)) in request.documents.iter().zip(images).enumerate() {
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
            let document = match image {
                Some(bytes) => {
                    Document::image_caption(&id, caption, self.stored_image(&bytes)?, source)
                }
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
        // Not acknowledged unless on disk: a failed commit takes the documents back out.
        racm3::memory::add_keyed(&mut memory, &documents, &keys)?;
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
                query_threshold: sampling.query_threshold.unwrap_or(DEFAULT_THRESHOLD),
                ..RetrievalPolicy::top(sampling.k)
            },
        })
    }

    /// The request's settings, at `default_copy_bias` where it names none.
    fn sample_settings(
        &self,
        sampling: &Sampling,
        steps: usize,
        default_copy_bias: f32,
    ) -> Result<SampleSettings, ApiError> {
        self.check_limit("k", sampling.k, self.limits.max_prompt_k)?;
        self.check_limit("samples", sampling.samples, self.limits.max_samples)?;
        self.check_limit("steps", steps, self.limits.max_steps)?;
        let settings = SampleSettings {
            samples: sampling.samples,
            sampling: SamplingConfig {
                temperature: sampling.temperature,
                top_k: sampling.top_k,
                top_p: sampling.top_p,
            },
            seed: sampling.seed,
            retrieval_guidance: sampling.retrieval_guidance,
            copy_bias: sampling.copy_bias.unwrap_or(default_copy_bias),
        };
        settings
            .validate()
            .map_err(|err| ApiError::Invalid(err.to_string()))?;
        Ok(settings)
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
        decode(&self.image_header(data)?.0)
    }

    /// A base64 image's bytes and pixel count, read from its header alone and checked
    /// against the per-image limit.
    fn image_header(&self, data: &str) -> Result<(Vec<u8>, u64), ApiError> {
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
        Ok((bytes, pixels))
    }

    /// A document's image as stored: decoded from bytes [`Service::image_header`] checked,
    /// then scaled down to fit `stored_image_side`, so only one full-size image is held at
    /// a time.
    fn stored_image(&self, bytes: &[u8]) -> Result<RgbImage, ApiError> {
        let image = decode(bytes)?;
        let side = self.limits.stored_image_side.max(1);
        if image.width() <= side && image.height() <= side {
            return Ok(image);
        }
        let scale = f64::from(side) / f64::from(image.width().max(image.height()));
        let fit = |length: u32| ((f64::from(length) * scale).round() as u32).max(1);
        Ok(image::imageops::resize(
            &image,
            fit(image.width()),
            fit(image.height()),
            image::imageops::FilterType::Triangle,
        ))
    }

    /// The key of a text and/or base64 image query.
    fn query_key(&self, text: Option<&str>, image: Option<&str>) -> Result<SearchQuery, ApiError> {
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

    fn embedding(&self, embedding: &[f32]) -> Result<SearchQuery, ApiError> {
        if embedding.len() != self.encoder.dim() {
            return Err(ApiError::Invalid(format!(
                "embedding_input has {} values; the CLIP's embeddings have {}",
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
        let unit: Vec<f32> = embedding.iter().map(|v| v / norm).collect();
        // Text or image, it is scored against the joint keys, as a query of both is, not
        // against a part kept for one modality.
        Ok(self.encoder.query_of_embeddings(Some(&unit), Some(&unit))?)
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
    let bytes = racm3::data::encode_png(image, "a generated image")
        .map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(BASE64.encode(bytes))
}

/// An image's pixels from its checked bytes.
fn decode(bytes: &[u8]) -> Result<RgbImage, ApiError> {
    racm3::data::decode_rgb(bytes, "the image").map_err(|err| ApiError::Invalid(err.to_string()))
}
