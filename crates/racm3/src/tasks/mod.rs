//! RA-CM3's tasks (Yasunaga et al., 2023, §3.4 and §4): caption to image, image to
//! caption, infilling, and in-context few-shot classification, each reading the documents
//! the retriever finds in front of its prompt.
//!
//! Every prompt is `[ret_1 <break> … ret_K <break>] task`, the layout the generator trained
//! on. Captioning and infilling use CM3's causal masking: the hole is a `<mask:0>`
//! placeholder and the model writes the span after a second `<mask:0>` at the end. Every
//! output carries its [`Context`]: the retrieved documents with their scores, and notes on
//! any policy that changed the request (truncation, an empty memory), so a user sees what
//! informed the output.

mod generator;

use std::path::Path;

use candle_core::Device;
use image::RgbImage;
use racm3_generate::Cm3Model;
use racm3_generate::decode::{CopyDecoding, Copying};
use racm3_generate::sampler::{SamplingConfig, validate_guidance};
use racm3_memory::Memory;
use racm3_retrieve::{ClipEncoder, MAX_PROMPT_K, RetrievalPolicy};
use racm3_tokenize::Cm3Codec;
use racm3_tokenize::vqgan::ImageTokenizer;
use serde::Serialize;

use crate::Error;

/// A trained CM3 generator with the tokenizers that read and write its documents.
pub struct Generator {
    model: Cm3Model,
    codec: Cm3Codec,
    vqgan: ImageTokenizer,
}

/// Where retrieval comes from: the encoder that makes query keys, the memory, the policy.
#[derive(Clone, Copy)]
pub struct Retriever<'a> {
    /// CLIP, the one that keyed the memory.
    pub encoder: &'a ClipEncoder,
    /// The memory searched.
    pub memory: &'a Memory,
    /// k and the near-copy thresholds.
    pub policy: RetrievalPolicy,
}

/// A retrieved document as a user sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// The document's id in the memory.
    pub id: String,
    /// Its caption.
    pub caption: String,
    /// Inner product of its key with the query's.
    pub score: f32,
}

/// What went in front of a prompt, and what was changed to make the request fit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Context {
    /// The retrieved documents in the prompt, best first.
    pub documents: Vec<Evidence>,
    /// Policies that applied: truncation, an empty memory, documents left out.
    pub notes: Vec<String>,
    #[serde(skip)]
    tokens: Vec<Vec<u32>>,
}

/// Settings shared by every sampled task.
#[derive(Debug, Clone, Copy)]
pub struct SampleSettings {
    /// Samples to draw; with a re-ranker, the best comes first.
    pub samples: usize,
    /// Temperature, top-k and top-p.
    pub sampling: SamplingConfig,
    /// Sample i uses seed + i.
    pub seed: u64,
    /// Retrieval guidance: the scale s in u + s · (c − u) against a stream without the
    /// retrieved documents, so l(R) + (s − 1) · (l(R) − l(none)); 1 is none. It applies
    /// beside classifier-free guidance, and only when documents were retrieved.
    pub retrieval_guidance: f32,
    /// Added to the copy pointer's log-weight of every retrieved source before its mixture
    /// is renormalized (0: as trained; b multiplies the odds of copying by e^b). Only a
    /// generator trained with a pointer (`--image-copy`, `--caption-copy`) has one.
    pub copy_bias: f32,
}

/// The most samples one request may draw.
pub const MAX_SAMPLES: usize = 64;

/// The copy bias caption to image draws at unless told otherwise: a pointer trained on
/// likelihood copies little (another rendition's codes rarely equal the answer's), and at
/// this bias a drawing follows one retrieved image for nearly all its codes; on 64
/// held-out val captions FID fell from 290.5 (bias 0) to 254.1 (BENCHMARKS.md, "Copy
/// bias").
pub const DRAWING_COPY_BIAS: f32 = 8.0;

/// The copy bias image to caption writes at unless told otherwise: at this bias a greedy
/// caption is one retrieved document's caption, the one the model picks; on the 189
/// held-out val drawings (K = 2) CIDEr-D rose from 1.533 at bias 0 to 2.063 (the same at 4
/// and 12; BENCHMARKS.md, "Copy bias for captions"). Infilling stays at 0, as trained.
pub const CAPTION_COPY_BIAS: f32 = 8.0;

/// The largest copy bias, either way: e^20 already leaves the other side no weight.
pub const MAX_COPY_BIAS: f32 = 20.0;

impl SampleSettings {
    /// One greedy sample (temperature 0, seed 0, no retrieval guidance): how the
    /// evaluation captions.
    pub fn greedy() -> Self {
        Self {
            samples: 1,
            sampling: SamplingConfig {
                temperature: 0.0,
                top_k: None,
                top_p: None,
            },
            seed: 0,
            retrieval_guidance: 1.0,
            copy_bias: 0.0,
        }
    }

    /// How the copy pointer copies at these settings, its sources mixed as `sources` says.
    pub fn copying(&self, sources: CopyDecoding) -> Copying {
        Copying {
            sources,
            bias: self.copy_bias,
        }
    }

    /// Refuses settings no task can sample with: no samples, more than [`MAX_SAMPLES`],
    /// sampling values outside their ranges ([`SamplingConfig::validate`]), or a copy bias
    /// beyond ±[`MAX_COPY_BIAS`].
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            return Err(Error::BadInput(format!(
                "samples is {}; it must be 1 to {MAX_SAMPLES}",
                self.samples
            )));
        }
        validate_copy_bias("copy_bias", self.copy_bias)?;
        self.sampling
            .validate()
            .and_then(|()| validate_guidance("retrieval_guidance", self.retrieval_guidance))
            .map_err(|invalid| Error::BadInput(invalid.to_string()))
    }
}

/// Refuses a copy bias that is not a number from -[`MAX_COPY_BIAS`] to [`MAX_COPY_BIAS`],
/// naming the setting `name`.
pub fn validate_copy_bias(name: &str, bias: f32) -> Result<(), Error> {
    if (-MAX_COPY_BIAS..=MAX_COPY_BIAS).contains(&bias) {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "{name} is {bias}; it must be a number from -{MAX_COPY_BIAS} to {MAX_COPY_BIAS}"
        )))
    }
}

/// A generated image.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedImage {
    /// The pixels.
    #[serde(skip)]
    pub image: RgbImage,
    /// Its codebook indices, row by row.
    pub codes: Vec<u32>,
    /// Cosine of its CLIP embedding with the caption's, when re-ranked.
    pub clip_similarity: Option<f32>,
    /// The seed that drew it.
    pub seed: u64,
    /// Caption to image: the retrieved image it agrees with most, code for code at the
    /// same places (none without retrieved images), so how much of it was copied and from
    /// which document.
    pub copied: Option<Copied>,
}

/// Which retrieved image a drawing follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Copied {
    /// The document's place in the context (0: the best retrieved).
    pub document: usize,
    /// Codes equal to that document's image's at the same place.
    pub codes: usize,
}

/// A generated caption or infilled text.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedText {
    /// The text.
    pub text: String,
    /// Cosine of its CLIP embedding with the image's, when re-ranked.
    pub clip_similarity: Option<f32>,
    /// The seed that drew it.
    pub seed: u64,
}

/// Outputs of a task, best first when re-ranked, with their context.
#[derive(Debug, Clone, Serialize)]
pub struct Outputs<T> {
    /// The samples.
    pub samples: Vec<T>,
    /// What informed them.
    pub context: Context,
}

/// A labeled example shown in context.
#[derive(Debug, Clone)]
pub struct Demonstration {
    /// The image.
    pub image: RgbImage,
    /// Its label.
    pub label: String,
}

/// The answer of in-context classification.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    /// The most likely label.
    pub label: String,
    /// Every candidate label with log p(label | context), best first.
    pub scores: Vec<(String, f64)>,
    /// What was in front of the demonstrations.
    pub context: Context,
}

/// The longest caption a prompt keeps, in text tokens; longer ones are cut, and say so.
const MAX_CAPTION_TOKENS: usize = 64;

/// A generator with what retrieval needs beside it: the memory, its CLIP, the policy.
pub struct Loaded {
    /// The generator.
    pub generator: Generator,
    /// The memory retrieved from; none when retrieval is off.
    pub memory: Option<Memory>,
    /// The CLIP that keyed the memory (or the one given, for re-ranking without one).
    pub clip: Option<ClipEncoder>,
    /// K and the near-copy thresholds.
    pub policy: RetrievalPolicy,
}

impl Loaded {
    /// Loads the generator in `model` (trained with the VQGAN in `vqgan`) on `device`; with
    /// a `memory` and K > 0, the memory and its CLIP (`clip`, else the one it records);
    /// without, the CLIP in `clip` if given, for re-ranking.
    pub fn open(
        model: &Path,
        vqgan: &Path,
        memory: Option<&Path>,
        clip: Option<&Path>,
        policy: RetrievalPolicy,
        device: &Device,
    ) -> Result<Self, Error> {
        use crate::error::WithContext;
        if policy.k > MAX_PROMPT_K {
            return Err(Error::BadInput(format!(
                "k must be at most {MAX_PROMPT_K}, got {}: more documents do not fit a prompt",
                policy.k
            )));
        }
        policy.validate()?;
        let generator = Generator::load(model, vqgan, device).context(|| {
            format!(
                "loading the generator in {} with the VQGAN in {}",
                model.display(),
                vqgan.display()
            )
        })?;
        let memory = match memory {
            Some(dir) if policy.k > 0 => Some(crate::memory::open(dir)?),
            _ => None,
        };
        let clip = match (&memory, clip) {
            (Some(memory), clip) => Some(crate::memory::encoder_for(memory, clip)?),
            (None, Some(dir)) => Some(crate::memory::load_clip(dir)?),
            (None, None) => None,
        };
        Ok(Self {
            generator,
            memory,
            clip,
            policy,
        })
    }

    /// Where retrieval comes from, when there is a memory.
    pub fn retriever(&self) -> Option<Retriever<'_>> {
        Some(Retriever {
            encoder: self.clip.as_ref()?,
            memory: self.memory.as_ref()?,
            policy: self.policy,
        })
    }
}
