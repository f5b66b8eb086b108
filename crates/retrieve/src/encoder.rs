//! Keys and queries: CLIP with its tokenizer and preprocessing, turning documents and
//! queries into l2-normalized vectors in one space.
//!
//! RA-CM3 (Yasunaga et al., 2023, §3.2): a document's key is the mean of its text and image
//! embeddings, each l2-normalized; a text-only or image-only document uses the one it has,
//! and a query is encoded the same way. The mean is normalized again so that every key
//! and query is a unit vector and inner product is cosine similarity.
//!
//! A memory may also keep each document's image embedding beside that joint key
//! ([`KeyLayout::JointAndImage`]), so that a query that is only an image is scored image
//! against image. A small CLIP's joint key lets a drawing find drawings of the same style
//! more than of the same thing, since half of every key is text (BENCHMARKS.md, "Image
//! keys"). A CLIP folder may also carry [`PixelKeys`] fitted on renditions of the train
//! entities; [`KeyLayout::JointAndPixels`] keeps their key beside the joint one instead,
//! which finds an entity across renditions more often still, and
//! [`KeyLayout::JointTextAndPixels`] keeps the text embedding too, so that a caption finds
//! the documents that carry it.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;
use racm3_data::{Document, Part};
use racm3_tokenize::TextTokenizer;

use crate::clip::{ClipModel, Config, l2_normalize};
use crate::error::{Error, Result};
use crate::pixel_keys::{PIXEL_KEYS_FILE, PixelKeys};
use crate::preprocess::pixel_values;

/// OpenAI's spelling of CLIP's start and end tokens.
pub const START_TOKEN: &str = "<|startoftext|>";
/// See [`START_TOKEN`].
pub const END_TOKEN: &str = "<|endoftext|>";

/// CLIP's text side: BPE ids framed by start and end tokens, cut to the context length.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    text: TextTokenizer,
    start: u32,
    end: u32,
    pad: u32,
    context_length: usize,
}

impl ClipTokenizer {
    /// Wraps a tokenizer whose vocabulary holds [`START_TOKEN`] and [`END_TOKEN`] (OpenAI's
    /// and every tokenizer racm3 trains for CLIP do), for a model of `config`.
    pub fn new(text: TextTokenizer, config: &Config) -> Result<Self> {
        let find = |token: &str| {
            text.token_to_id(token)
                .ok_or_else(|| Error::Tokenizer(format!("the tokenizer has no {token} token")))
        };
        let (start, end) = (find(START_TOKEN)?, find(END_TOKEN)?);
        let vocab = config.text_config.vocab_size as u32;
        if start >= vocab || end >= vocab {
            return Err(Error::Tokenizer(format!(
                "its start/end tokens ({start}, {end}) are outside the model's vocabulary of {vocab}"
            )));
        }
        Ok(Self {
            text,
            start,
            end,
            pad: config.text_config.pad_token_id.min(vocab - 1),
            context_length: config.text_config.max_position_embeddings,
        })
    }

    /// `[start, bpe ids..., end]`, with the BPE ids cut so the whole fits the context.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self
            .text
            .encode(text)
            .map_err(|err| Error::Tokenizer(err.to_string()))?;
        Ok(self.frame(&ids))
    }

    /// The BPE ids of `text` without the start and end tokens.
    pub fn encode_words(&self, text: &str) -> Result<Vec<u32>> {
        self.text
            .encode(text)
            .map_err(|err| Error::Tokenizer(err.to_string()))
    }

    /// Frames BPE ids with the start and end tokens, cut to fit the context.
    pub fn frame(&self, ids: &[u32]) -> Vec<u32> {
        let keep = ids.len().min(self.context_length.saturating_sub(2));
        let mut framed = Vec::with_capacity(keep + 2);
        framed.push(self.start);
        framed.extend_from_slice(&ids[..keep]);
        framed.push(self.end);
        framed
    }

    /// A (b, longest) tensor of framed rows, padded after their end token.
    pub fn batch(&self, rows: &[Vec<u32>], device: &Device) -> Result<Tensor> {
        let longest = rows.iter().map(Vec::len).max().unwrap_or(2);
        let mut flat = Vec::with_capacity(rows.len() * longest);
        for row in rows {
            flat.extend_from_slice(row);
            flat.extend(std::iter::repeat_n(self.pad, longest - row.len()));
        }
        Ok(Tensor::from_vec(flat, (rows.len(), longest), device)?)
    }

    /// The underlying BPE.
    pub fn text(&self) -> &TextTokenizer {
        &self.text
    }
}

/// A retrieval query: text, an image, or both.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    /// The query's text.
    pub text: Option<&'a str>,
    /// The query's image.
    pub image: Option<&'a RgbImage>,
}

/// A query as a memory is searched with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// Scored against every key by inner product, laid out for the memory's [`KeyLayout`].
    pub vector: Vec<f32>,
    /// The query's joint key, RA-CM3's (the normalized mean of its text's and image's unit
    /// CLIP embeddings): what the near-copy skip compares with a document's joint key.
    pub joint: Vec<f32>,
}

impl SearchQuery {
    /// The search of a joint-keyed memory ([`KeyLayout::Joint`]) by the unit vector `key`.
    pub fn of_joint_key(key: Vec<f32>) -> Self {
        Self {
            vector: key.clone(),
            joint: key,
        }
    }
}

/// What a memory's keys hold; the memory's manifest records it as the encoder's `keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyLayout {
    /// RA-CM3's key: the normalized mean of the text and image embeddings (`dim` values).
    #[default]
    Joint,
    /// The joint key and then the image embedding (zeros without an image), both scaled
    /// by 1/√2 so the key stays a unit vector (`2 · dim` values). Text queries, and
    /// queries of text and image, are scored against the joint half as with
    /// [`KeyLayout::Joint`]; a query that is only an image against the image half. Every
    /// score is still a cosine.
    JointAndImage,
    /// The joint key and then the CLIP folder's [`PixelKeys`] key of the image, each scaled
    /// by 1/√2, scored as [`KeyLayout::JointAndImage`] is.
    JointAndPixels,
    /// The joint key, the text embedding (zeros without text) and the [`PixelKeys`] key of
    /// the image (zeros without one), each scaled by 1/√3 (`2 · dim` + pixel values).
    /// Queries of text and image are scored against the joint part, an image alone against
    /// the pixel part, and a text alone mostly against the text part (caption against
    /// caption; [`CAPTION_SCORE_WEIGHT`] of its score, the rest against the joint part).
    /// Renditions of one entity share its caption, so a caption finds them all where the
    /// joint key, half image, finds drawings of the wrong entity (BENCHMARKS.md, "Caption
    /// queries scored against captions"). The near-copy skip compares the paper's score,
    /// the query's joint key against the document's ([`KeyLayout::near_copy_score`]), for
    /// every layout: an identical caption, or a drawing of the same thing in another
    /// rendition, is the knowledge to use, not a copy of the query.
    JointTextAndPixels,
}

impl KeyLayout {
    /// The name in a manifest and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Joint => "joint",
            Self::JointAndImage => "joint+image",
            Self::JointAndPixels => "joint+pixels",
            Self::JointTextAndPixels => "joint+text+pixels",
        }
    }

    /// The layout named `name`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "joint" => Ok(Self::Joint),
            "joint+image" => Ok(Self::JointAndImage),
            "joint+pixels" => Ok(Self::JointAndPixels),
            "joint+text+pixels" => Ok(Self::JointTextAndPixels),
            other => Err(Error::BadInput(format!(
                "unknown key layout '{other}': expected joint, joint+image, joint+pixels or \
                 joint+text+pixels"
            ))),
        }
    }

    /// The layout an encoder description (a memory's manifest) records; memories made
    /// before layouts existed hold joint keys.
    pub fn of_description(encoder: &serde_json::Value) -> Result<Self> {
        match &encoder["keys"] {
            serde_json::Value::Null => Ok(Self::Joint),
            serde_json::Value::String(name) => Self::from_name(name),
            other => Err(Error::BadInput(format!(
                "the memory's encoder records keys = {other}, not a layout name"
            ))),
        }
    }

    /// The values of the joint part of a memory's keys, from its description and key size.
    /// Memories record it since pixel keys came; before, joint+image keys were halves.
    pub fn joint_dim(self, encoder: &serde_json::Value, key_dim: usize) -> Result<usize> {
        match (self, encoder["joint_dim"].as_u64()) {
            (Self::Joint, _) => Ok(key_dim),
            (_, Some(joint)) if (joint as usize) < key_dim => Ok(joint as usize),
            (Self::JointAndImage, None) => Ok(key_dim / 2),
            (_, joint) => Err(Error::BadInput(format!(
                "the memory's encoder records {} keys of {key_dim} values with joint_dim {joint:?}",
                self.name()
            ))),
        }
    }

    /// The cosine between two documents' joint keys (their first `joint_dim` values), which
    /// the redundancy skip compares.
    pub fn joint_similarity(self, joint_dim: usize, a: &[f32], b: &[f32]) -> f32 {
        // Each part carries 1/√parts, so the joint parts' product is the cosine / parts.
        self.parts() as f32 * racm3_memory::dot(&a[..joint_dim], &b[..joint_dim])
    }

    /// The score the near-copy skip compares: RA-CM3's, the cosine of the query's joint
    /// key (see [`SearchQuery::joint`]) with a document's (the first `joint_dim` values of
    /// its `key`), whatever part of the key the search ranks by.
    pub fn near_copy_score(self, joint_dim: usize, joint_query: &[f32], key: &[f32]) -> f32 {
        // A key's joint part carries 1/√parts.
        (self.parts() as f32).sqrt() * racm3_memory::dot(joint_query, &key[..joint_dim])
    }

    /// Whether images are keyed by the CLIP folder's [`PixelKeys`].
    fn uses_pixel_keys(self) -> bool {
        matches!(self, Self::JointAndPixels | Self::JointTextAndPixels)
    }

    /// How many parts a key has; each is scaled by 1/√parts.
    fn parts(self) -> usize {
        match self {
            Self::Joint => 1,
            Self::JointAndImage | Self::JointAndPixels => 2,
            Self::JointTextAndPixels => 3,
        }
    }
}

/// CLIP as racm3's retriever encoder: documents and queries in, unit vectors out.
#[derive(Debug, Clone)]
pub struct ClipEncoder {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    device: Device,
    name: String,
    layout: KeyLayout,
    pixel_keys: Option<PixelKeys>,
}

/// Inputs per forward pass when embedding many documents.
const BATCH: usize = 64;

impl ClipEncoder {
    /// A model and its tokenizer; `name` identifies them in a memory's manifest.
    pub fn new(model: ClipModel, tokenizer: ClipTokenizer, device: Device, name: String) -> Self {
        Self {
            model,
            tokenizer,
            device,
            name,
            layout: KeyLayout::Joint,
            pixel_keys: None,
        }
    }

    /// This encoder making keys and queries of `layout`; [`KeyLayout::JointAndPixels`]
    /// needs pixel keys (see [`ClipEncoder::with_pixel_keys`]).
    pub fn with_layout(self, layout: KeyLayout) -> Result<Self> {
        if layout.uses_pixel_keys() && self.pixel_keys.is_none() {
            return Err(Error::BadInput(format!(
                "{} keys need pixel keys, and the CLIP {} has no {PIXEL_KEYS_FILE}: \
                 fit them with `racm3 clip fit-pixel-keys`",
                layout.name(),
                self.name
            )));
        }
        Ok(Self { layout, ..self })
    }

    /// This encoder with `pixel_keys` for [`KeyLayout::JointAndPixels`].
    pub fn with_pixel_keys(self, pixel_keys: PixelKeys) -> Self {
        Self {
            pixel_keys: Some(pixel_keys),
            ..self
        }
    }

    /// Its pixel keys, if its folder has them.
    pub fn pixel_keys(&self) -> Option<&PixelKeys> {
        self.pixel_keys.as_ref()
    }

    /// The layout of the keys and queries it makes.
    pub fn layout(&self) -> KeyLayout {
        self.layout
    }

    /// Loads a CLIP folder: `config.json`, `model.safetensors` and `tokenizer.json`, as
    /// Hugging Face saves a `CLIPModel` with its tokenizer, or as `racm3 clip train` writes,
    /// and [`PIXEL_KEYS_FILE`] where there is one.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let model = ClipModel::load(dir, device)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let text = TextTokenizer::from_file(&tokenizer_path)
            .map_err(|err| Error::Tokenizer(err.to_string()))?;
        let tokenizer = ClipTokenizer::new(text, model.config())
            .map_err(|err| Error::Tokenizer(format!("{}: {err}", tokenizer_path.display())))?;
        let name = dir.display().to_string();
        let encoder = Self::new(model, tokenizer, device.clone(), name);
        let pixel_keys = dir.join(PIXEL_KEYS_FILE);
        Ok(if pixel_keys.exists() {
            encoder.with_pixel_keys(PixelKeys::load(&pixel_keys)?)
        } else {
            encoder
        })
    }

    /// The model.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The embedding dimension (the projection size).
    pub fn dim(&self) -> usize {
        self.model.config().projection_dim
    }

    /// The values in a key and a query: the memory's dimension.
    pub fn key_dim(&self) -> usize {
        self.dim() + self.text_key_dim() + self.image_key_dim()
    }

    /// The values of a key's text part after the joint key (only
    /// [`KeyLayout::JointTextAndPixels`] has one).
    fn text_key_dim(&self) -> usize {
        match self.layout {
            KeyLayout::JointTextAndPixels => self.dim(),
            _ => 0,
        }
    }

    /// The values of a key's image part, last (none for joint keys).
    fn image_key_dim(&self) -> usize {
        match self.layout {
            KeyLayout::Joint => 0,
            KeyLayout::JointAndImage => self.dim(),
            KeyLayout::JointAndPixels | KeyLayout::JointTextAndPixels => {
                self.layout_pixel_keys().map_or(0, PixelKeys::dims)
            }
        }
    }

    /// The pixel keys its layout keys images by, if it does (with_layout let those
    /// layouts in only with pixel keys).
    fn layout_pixel_keys(&self) -> Option<&PixelKeys> {
        self.pixel_keys
            .as_ref()
            .filter(|_| self.layout.uses_pixel_keys())
    }

    /// The search vector that scores keys by the cosine of their `part` with the unit
    /// vector `unit`: zeros over the other parts, and `unit` scaled by √parts, which undoes
    /// the keys' 1/√parts.
    fn part_query(&self, part: KeyPart, unit: &[f32]) -> Vec<f32> {
        let (text, image) = (self.text_key_dim(), self.image_key_dim());
        let (before, after) = match part {
            KeyPart::Joint => (0, text + image),
            KeyPart::Text => (self.dim(), image),
            KeyPart::Image => (self.dim() + text, 0),
        };
        let scale = (self.layout.parts() as f32).sqrt();
        std::iter::repeat_n(0.0, before)
            .chain(unit.iter().map(|v| v * scale))
            .chain(std::iter::repeat_n(0.0, after))
            .collect()
    }

    /// What a memory records about the encoder that made its keys.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "encoder": "clip",
            "name": self.name,
            "dim": self.key_dim(),
            "joint_dim": self.dim(),
            "image_size": self.model.config().vision_config.image_size,
            "keys": self.layout.name(),
        })
    }

    /// Unit text embeddings, n × dim row-major.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let rows = texts
            .iter()
            .map(|text| self.tokenizer.encode(text))
            .collect::<Result<Vec<_>>>()?;
        self.embed_token_rows(&rows)
    }

    /// Unit text embeddings of already framed token rows (see [`ClipTokenizer::frame`]).
    pub fn embed_token_rows(&self, rows: &[Vec<u32>]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(rows.len() * self.dim());
        for chunk in rows.chunks(BATCH) {
            let ids = self.tokenizer.batch(chunk, &self.device)?;
            let features = l2_normalize(&self.model.text_features(&ids)?)?;
            out.extend(features.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Unit image embeddings, n × dim row-major. Any size is resized and cropped.
    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<f32>> {
        let size = self.model.config().vision_config.image_size as u32;
        let mut out = Vec::with_capacity(images.len() * self.dim());
        for chunk in images.chunks(BATCH) {
            let pixels = pixel_values(chunk, size, &self.device)?;
            let features = l2_normalize(&self.model.image_features(&pixels)?)?;
            out.extend(features.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// The search of a query: its text's and image's unit embeddings averaged, then
    /// normalized (either alone when only one is given), laid out for the encoder's
    /// [`KeyLayout`].
    pub fn query_key(&self, query: &Query) -> Result<SearchQuery> {
        let text = query
            .text
            .map(|text| self.embed_texts(&[text]))
            .transpose()?;
        let image = query
            .image
            .map(|image| self.embed_images(std::slice::from_ref(image)))
            .transpose()?;
        if let (None, Some(image), Some(embedding), Some(keys)) =
            (query.text, query.image, &image, self.layout_pixel_keys())
        {
            return Ok(SearchQuery {
                vector: self.part_query(KeyPart::Image, &keys.embed(std::slice::from_ref(image))?),
                joint: embedding.clone(),
            });
        }
        self.query_of_embeddings(text.as_deref(), image.as_deref())
    }

    /// The search of a query given as unit CLIP embeddings (text, image or both), laid out
    /// for the encoder's [`KeyLayout`]: its inner product with a key is a cosine (a
    /// weighted mean of two, for a caption of [`KeyLayout::JointTextAndPixels`]). An image
    /// alone under a layout with pixel keys is queried by its pixels, so
    /// [`ClipEncoder::query_key`] with the image instead.
    pub fn query_of_embeddings(
        &self,
        text: Option<&[f32]>,
        image: Option<&[f32]>,
    ) -> Result<SearchQuery> {
        let joint = combine(text, image)
            .ok_or_else(|| Error::BadInput("a query needs text, an image, or both".into()))?;
        let vector = match (self.layout, text, image) {
            (KeyLayout::Joint, _, _) => joint.clone(),
            (KeyLayout::JointAndImage, None, _) => self.part_query(KeyPart::Image, &joint),
            (KeyLayout::JointAndPixels | KeyLayout::JointTextAndPixels, None, _) => {
                return Err(Error::BadInput(format!(
                    "an image-only query of {} keys is made from the image, not its CLIP \
                     embedding",
                    self.layout.name()
                )));
            }
            (KeyLayout::JointTextAndPixels, Some(text), None) => {
                let weight = CAPTION_SCORE_WEIGHT;
                let by_caption = self.part_query(KeyPart::Text, text);
                let by_joint = self.part_query(KeyPart::Joint, text);
                by_caption
                    .iter()
                    .zip(by_joint)
                    .map(|(caption, joint)| weight * caption + (1.0 - weight) * joint)
                    .collect()
            }
            (_, Some(_), _) => self.part_query(KeyPart::Joint, &joint),
        };
        Ok(SearchQuery { vector, joint })
    }

    /// Keys of documents, n × [`Self::key_dim`] row-major: each the normalized mean of its
    /// text's and its first image's unit embeddings, then the parts its [`KeyLayout`] adds
    /// (the text embedding, the image's embedding or pixel key). Text is every caption and
    /// text part, in order.
    pub fn document_keys(&self, documents: &[Document]) -> Result<Vec<f32>> {
        let dim = self.dim();
        let texts: Vec<Option<String>> = documents.iter().map(document_text).collect();
        let with_text: Vec<&str> = texts.iter().flatten().map(String::as_str).collect();
        let images: Vec<RgbImage> = documents
            .iter()
            .filter_map(|doc| doc.images().next().map(|image| image.pixels.clone()))
            .collect();
        let text_keys = self.embed_texts(&with_text)?;
        let image_keys = self.embed_images(&images)?;
        let pixel_keys = match self.layout_pixel_keys() {
            Some(keys) => keys.embed(&images)?,
            None => Vec::new(),
        };
        let image_dim = self.image_key_dim();
        let no_image = vec![0.0; image_dim];
        let no_text = vec![0.0; self.text_key_dim()];
        let scale = 1.0 / (self.layout.parts() as f32).sqrt();
        let (mut next_text, mut next_image) = (0, 0);
        let mut keys = Vec::with_capacity(documents.len() * self.key_dim());
        for (doc, text) in documents.iter().zip(&texts) {
            let text_key = text.as_ref().map(|_| {
                next_text += 1;
                &text_keys[(next_text - 1) * dim..next_text * dim]
            });
            let image_key = doc.images().next().map(|_| {
                next_image += 1;
                &image_keys[(next_image - 1) * dim..next_image * dim]
            });
            let key = combine(text_key, image_key).ok_or_else(|| {
                Error::BadInput(format!(
                    "document '{}' has neither text nor an image",
                    doc.id()
                ))
            })?;
            let text_part = match (self.layout, text_key) {
                (KeyLayout::JointTextAndPixels, Some(text)) => text,
                (KeyLayout::JointTextAndPixels, None) => &no_text,
                _ => &[],
            };
            let image_part = match (self.layout, image_key) {
                (KeyLayout::Joint, _) => &[],
                (KeyLayout::JointAndImage, Some(image)) => image,
                (_, Some(_)) => &pixel_keys[(next_image - 1) * image_dim..next_image * image_dim],
                (_, None) => &no_image,
            };
            let parts = key.iter().chain(text_part).chain(image_part);
            keys.extend(parts.map(|v| v * scale));
        }
        Ok(keys)
    }
}

/// A document's text: its captions and text parts in reading order, or `None`.
pub fn document_text(document: &Document) -> Option<String> {
    let pieces: Vec<&str> = document
        .parts()
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.trim(),
            Part::Image(image) => image.alt.trim(),
        })
        .filter(|piece| !piece.is_empty())
        .collect();
    (!pieces.is_empty()).then(|| pieces.join(" "))
}

/// How much of a caption query's score under [`KeyLayout::JointTextAndPixels`] is its
/// cosine with a document's caption embedding; the rest is its cosine with the document's
/// joint key, which orders the renditions that share the caption. Chosen on the 189 val
/// entities (BENCHMARKS.md, "Caption queries scored against captions"): the entity first
/// for 0.989 of the captions and among 2 for all, where 0.5 gives 0.931 / 0.968.
pub const CAPTION_SCORE_WEIGHT: f32 = 0.7;

/// The parts of a key, in order, that a query may be scored against.
#[derive(Debug, Clone, Copy)]
enum KeyPart {
    Joint,
    Text,
    Image,
}

/// The normalized mean of two unit vectors, or the one that is present.
fn combine(text: Option<&[f32]>, image: Option<&[f32]>) -> Option<Vec<f32>> {
    let mean: Vec<f32> = match (text, image) {
        (Some(t), Some(i)) => t.iter().zip(i).map(|(a, b)| (a + b) / 2.0).collect(),
        (Some(one), None) | (None, Some(one)) => one.to_vec(),
        (None, None) => return None,
    };
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    Some(mean.into_iter().map(|v| v / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The key of text and image is the normalized mean; one modality alone is itself.
    #[test]
    fn combine_is_normalized_mean() {
        let text = [1.0, 0.0];
        let image = [0.0, 1.0];
        let both = combine(Some(&text), Some(&image)).unwrap();
        let half = 0.5f32.sqrt();
        assert!((both[0] - half).abs() < 1e-6 && (both[1] - half).abs() < 1e-6);
        assert_eq!(combine(Some(&text), None).unwrap(), text.to_vec());
        assert!(combine(None, None).is_none());
    }
}
