//! The generator's tasks: prompts with the retrieved documents in front, sampling with
//! the KV cache, re-ranking, scoring labels.

use std::ops::Range;
use std::path::Path;

use candle_core::{Device, IndexOp, Tensor};
use image::RgbImage;
use racm3_data::Document;
use racm3_generate::decode::{CopyDecoding, Copying, Guidance, sample_batch};
use racm3_generate::sampler::{Sampler, Structure};
use racm3_generate::{Cm3Model, KvCache};
use racm3_retrieve::{ClipEncoder, Query, retrieve_for_query};
use racm3_tokenize::vqgan::ImageTokenizer;
use racm3_tokenize::{Cm3Codec, IdSpace, Special, TextTokenizer};

use super::{
    Classification, Context, Copied, Demonstration, Evidence, GeneratedImage, GeneratedText,
    Generator, MAX_CAPTION_TOKENS, Outputs, Retriever, SampleSettings,
};
use crate::Error;
use crate::run::corpus::tokenize_documents;

impl Generator {
    /// A model with its tokenizers; the model's vocabulary must be the codec's id space.
    pub fn new(model: Cm3Model, text: TextTokenizer, vqgan: ImageTokenizer) -> Result<Self, Error> {
        let codec = Cm3Codec::new(text, vqgan.codebook_size());
        let expected = codec.ids().len() as usize;
        if model.config().vocab_size != expected {
            return Err(Error::BadInput(format!(
                "the generator's vocab_size is {} but its text tokenizer and VQGAN make {} ids \
                 (text, codebook and specials): they are not the ones it was trained with",
                model.config().vocab_size,
                expected
            )));
        }
        Ok(Self {
            model,
            codec,
            vqgan,
        })
    }

    /// Loads a `racm3 train` run folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`) and the VQGAN folder it was trained with.
    pub fn load(run: &Path, vqgan: &Path, device: &Device) -> Result<Self, Error> {
        let model = Cm3Model::load(run, device).map_err(Error::model)?;
        let text = TextTokenizer::from_file(&run.join("tokenizer.json"))?;
        let vqgan = ImageTokenizer::load(vqgan, device)?;
        Self::new(model, text, vqgan)
    }

    /// The decoder.
    pub fn model(&self) -> &Cm3Model {
        &self.model
    }

    /// The document codec.
    pub fn codec(&self) -> &Cm3Codec {
        &self.codec
    }

    /// The image tokenizer.
    pub fn vqgan(&self) -> &ImageTokenizer {
        &self.vqgan
    }

    fn ids(&self) -> IdSpace {
        *self.codec.ids()
    }

    fn special(&self, special: Special) -> u32 {
        self.ids().special(special)
    }

    fn mask0(&self) -> u32 {
        self.ids().mask(0).expect("<mask:0> exists")
    }

    /// The documents `retriever` finds for `query`, tokenized for a prompt. Without a
    /// retriever, or with an empty memory, the context is empty (K = 0) and says why.
    pub fn retrieve(&self, retriever: Option<&Retriever>, query: &Query) -> Result<Context, Error> {
        let mut context = Context::default();
        let Some(retriever) = retriever else {
            return Ok(context);
        };
        let memory = retriever.memory;
        if memory.is_empty() || retriever.policy.k == 0 {
            context.notes.push(format!(
                "the memory at {} is empty: generating without retrieval (K = 0)",
                memory.dir().display()
            ));
            return Ok(context);
        }
        let policy = retriever.policy;
        let found = retrieve_for_query(retriever.encoder, memory, query, &policy)?;
        if found.near_copies > 0 {
            context.notes.push(format!(
                "skipped {} near copies of the query (score above {})",
                found.near_copies, policy.query_threshold
            ));
        }
        let documents: Vec<Document> = found
            .documents
            .iter()
            .map(|hit| memory.document(hit.row))
            .collect::<Result<_, _>>()?;
        for (hit, document) in found.documents.iter().zip(&documents) {
            context.tokens.push(self.document_tokens(document)?);
            context.documents.push(Evidence {
                id: hit.id.clone(),
                caption: document.caption(),
                score: hit.score,
            });
        }
        Ok(context)
    }

    /// A context of the given `documents` instead of retrieved ones (an oracle's, a probe's),
    /// each with score 1.
    pub fn context_of(&self, documents: &[Document]) -> Result<Context, Error> {
        let mut context = Context::default();
        for document in documents {
            context.tokens.push(self.document_tokens(document)?);
            context.documents.push(Evidence {
                id: document.id().to_owned(),
                caption: document.caption(),
                score: 1.0,
            });
        }
        Ok(context)
    }

    /// A document's CM3 tokens, its images through the VQGAN.
    pub fn document_tokens(&self, document: &Document) -> Result<Vec<u32>, Error> {
        let mut tokens = tokenize_documents(
            std::slice::from_ref(document),
            &self.codec,
            &self.vqgan,
            |_| {},
        )?;
        Ok(tokens.remove(document.id()).unwrap_or_default())
    }

    /// `[ret_1 <break> … ret_K <break>] body`, leaving `reserve` positions free for the
    /// output. Retrieved documents that do not fit are left out, last first, with a note.
    fn prompt(
        &self,
        context: &mut Context,
        body: &[u32],
        reserve: usize,
    ) -> Result<Vec<u32>, Error> {
        let max = self.model.config().max_seq_len;
        if body.len() + reserve > max {
            return Err(Error::BadInput(format!(
                "the prompt needs {} tokens and the output {reserve}, more than the model's \
                 context of {max}",
                body.len()
            )));
        }
        let mut budget = max - body.len() - reserve;
        let mut kept = 0;
        for document in &context.tokens {
            if document.len() + 1 > budget {
                break;
            }
            budget -= document.len() + 1;
            kept += 1;
        }
        if kept < context.tokens.len() {
            context.notes.push(format!(
                "left out {} retrieved document(s) to fit the context of {max} tokens",
                context.tokens.len() - kept
            ));
            context.tokens.truncate(kept);
            context.documents.truncate(kept);
        }
        let mut prompt: Vec<u32> = Vec::with_capacity(max - budget);
        for document in &context.tokens {
            prompt.extend_from_slice(document);
            prompt.push(self.special(Special::Break));
        }
        prompt.extend_from_slice(body);
        Ok(prompt)
    }

    /// Text tokens of a caption, cut to [`MAX_CAPTION_TOKENS`] with a note.
    fn caption_tokens(&self, caption: &str, context: &mut Context) -> Result<Vec<u32>, Error> {
        let mut tokens = self.codec.text().encode(caption)?;
        if tokens.len() > MAX_CAPTION_TOKENS {
            context.notes.push(format!(
                "the caption has {} tokens; kept the first {MAX_CAPTION_TOKENS}",
                tokens.len()
            ));
            tokens.truncate(MAX_CAPTION_TOKENS);
        }
        Ok(tokens)
    }

    /// `<img alt="caption" src="`: the frame before an image's codes.
    fn image_opening(&self, caption: &[u32]) -> Vec<u32> {
        let mut tokens = vec![self.special(Special::ImgAlt)];
        tokens.extend_from_slice(caption);
        tokens.push(self.special(Special::ImgSrc));
        tokens
    }

    /// `<img alt="caption" src="codes">`.
    fn image_document(&self, caption: &[u32], codes: &[u32]) -> Result<Vec<u32>, Error> {
        let mut tokens = self.image_opening(caption);
        for &code in codes {
            tokens.push(self.ids().image(code)?);
        }
        tokens.push(self.special(Special::ImgEnd));
        Ok(tokens)
    }

    fn encode_image(&self, image: &RgbImage) -> Result<Vec<u32>, Error> {
        Ok(self.vqgan.encode(std::slice::from_ref(image), 1)?.remove(0))
    }

    /// Caption to image: `<img alt="caption" src="` and 64 sampled codes, with
    /// classifier-free guidance at `guidance` (1 is none) against a stream whose caption is
    /// `<mask:0>`. With a `reranker`, the samples are sorted by CLIP similarity to the
    /// caption, best first.
    pub fn text_to_image(
        &self,
        caption: &str,
        retriever: Option<&Retriever>,
        settings: &SampleSettings,
        guidance: f32,
        reranker: Option<&ClipEncoder>,
    ) -> Result<Outputs<GeneratedImage>, Error> {
        let query = Query {
            text: Some(caption),
            image: None,
        };
        let context = self.retrieve(retriever, &query)?;
        self.text_to_image_in(context, caption, settings, guidance, reranker)
    }

    /// [`Generator::text_to_image`] with `context` in front of the prompt, however it was
    /// found.
    pub fn text_to_image_in(
        &self,
        mut context: Context,
        caption: &str,
        settings: &SampleSettings,
        guidance: f32,
        reranker: Option<&ClipEncoder>,
    ) -> Result<Outputs<GeneratedImage>, Error> {
        let caption_ids = self.caption_tokens(caption, &mut context)?;
        let grid = self.vqgan.tokens_per_image();
        let prompt = self.prompt(&mut context, &self.image_opening(&caption_ids), grid + 1)?;
        // The unconditional stream: the same retrieved documents, the caption masked.
        let body_len = self.image_opening(&caption_ids).len();
        let mut unconditional = prompt[..prompt.len() - body_len].to_vec();
        unconditional.extend(self.image_opening(&[self.mask0()]));
        let guide = (guidance != 1.0).then_some(Guidance {
            unconditional_prompt: &unconditional,
            scale: guidance,
        });
        let img_end = self.special(Special::ImgEnd);
        let opened = |ids| {
            let mut structure = Structure::new(ids, grid);
            prompt.iter().for_each(|&token| structure.observe(token));
            structure
        };
        let streams = Self::streams(&prompt, &context, guide, settings);
        let drawn = self.draw(
            &prompt,
            &streams,
            opened,
            grid + 1,
            settings,
            // A drawing that takes each code from whichever retrieved image offers it is a
            // collage of both: on 64 held-out val captions, copy bias 8, FID 280.4 mixed
            // against 254.1 following one (BENCHMARKS.md, "Copy bias").
            settings.copying(CopyDecoding::FollowOne),
            |t| t == img_end,
        )?;
        let image_start = self.ids().image_range().start;
        let grids: Vec<Vec<u32>> = drawn
            .iter()
            .map(|(_, new)| {
                new.iter()
                    .take(grid)
                    .map(|&token| token - image_start)
                    .collect()
            })
            .collect();
        let mut samples = self.images_of(grids, &drawn)?;
        self.mark_copies(&mut samples, &context);
        if let Some(clip) = reranker {
            let text = clip.embed_texts(&[caption])?;
            let images: Vec<RgbImage> = samples.iter().map(|s| s.image.clone()).collect();
            let embedded = clip.embed_images(&images)?;
            rank(&mut samples, &text, &embedded, |s, score| {
                s.clip_similarity = Some(score)
            });
        }
        Ok(Outputs { samples, context })
    }

    /// Image to caption by infilling `alt`: `<img alt="<mask:0>" src="codes"> <mask:0>`,
    /// then text until `<eos>`. With a `reranker`, captions are sorted by CLIP similarity to
    /// the image, best first.
    pub fn image_to_caption(
        &self,
        image: &RgbImage,
        retriever: Option<&Retriever>,
        settings: &SampleSettings,
        reranker: Option<&ClipEncoder>,
    ) -> Result<Outputs<GeneratedText>, Error> {
        let query = Query {
            text: None,
            image: Some(image),
        };
        let context = self.retrieve(retriever, &query)?;
        self.image_to_caption_in(context, image, settings, reranker)
    }

    /// [`Generator::image_to_caption`] with `context` in front of the prompt, however it
    /// was found.
    pub fn image_to_caption_in(
        &self,
        mut context: Context,
        image: &RgbImage,
        settings: &SampleSettings,
        reranker: Option<&ClipEncoder>,
    ) -> Result<Outputs<GeneratedText>, Error> {
        let codes = self.encode_image(image)?;
        let mut body = self.image_document(&[self.mask0()], &codes)?;
        body.push(self.mask0());
        let mut samples = self.fill_text(&mut context, &body, settings)?;
        if let Some(clip) = reranker {
            let image_key = clip.embed_images(std::slice::from_ref(image))?;
            let texts: Vec<&str> = samples.iter().map(|s| s.text.as_str()).collect();
            let embedded = clip.embed_texts(&texts)?;
            rank(&mut samples, &image_key, &embedded, |s, score| {
                s.clip_similarity = Some(score)
            });
        }
        Ok(Outputs { samples, context })
    }

    /// Caption infilling: the caption `before … after` of `image`, with the gap written by
    /// the model (`<img alt="before <mask:0> after" src="codes"> <mask:0>` → gap `<eos>`).
    pub fn infill_caption(
        &self,
        image: &RgbImage,
        before: &str,
        after: &str,
        retriever: Option<&Retriever>,
        settings: &SampleSettings,
    ) -> Result<Outputs<GeneratedText>, Error> {
        let known = format!("{before} {after}");
        let query = Query {
            text: Some(known.trim()),
            image: Some(image),
        };
        let mut context = self.retrieve(retriever, &query)?;
        let codes = self.encode_image(image)?;
        let mut alt = self.codec.text().encode(before)?;
        alt.push(self.mask0());
        alt.extend(self.codec.text().encode(after)?);
        let mut body = self.image_document(&alt, &codes)?;
        body.push(self.mask0());
        let mut samples = self.fill_text(&mut context, &body, settings)?;
        for sample in &mut samples {
            sample.text = format!("{before}{}{after}", sample.text);
        }
        Ok(Outputs { samples, context })
    }

    /// Image infilling: `rows` of the code grid are redrawn given the caption and the other
    /// rows (`<img alt="caption" src="top <mask:0> bottom"> <mask:0>` → exactly the hole's
    /// codes).
    pub fn infill_image(
        &self,
        image: &RgbImage,
        caption: &str,
        rows: Range<usize>,
        retriever: Option<&Retriever>,
        settings: &SampleSettings,
    ) -> Result<Outputs<GeneratedImage>, Error> {
        let side = self.vqgan.model().config().grid_size();
        if rows.is_empty() || rows.end > side {
            return Err(Error::BadInput(format!(
                "rows {}..{} are not a non-empty range inside the {side}-row code grid",
                rows.start, rows.end
            )));
        }
        let query = Query {
            text: Some(caption),
            image: Some(image),
        };
        let mut context = self.retrieve(retriever, &query)?;
        let codes = self.encode_image(image)?;
        let hole = rows.start * side..rows.end * side;
        let caption_ids = self.caption_tokens(caption, &mut context)?;
        let mut body = self.image_opening(&caption_ids);
        let image_ids = |codes: &[u32]| -> Result<Vec<u32>, Error> {
            codes
                .iter()
                .map(|&code| Ok(self.ids().image(code)?))
                .collect()
        };
        body.extend(image_ids(&codes[..hole.start])?);
        body.push(self.mask0());
        body.extend(image_ids(&codes[hole.end..])?);
        body.push(self.special(Special::ImgEnd));
        body.push(self.mask0());
        let prompt = self.prompt(&mut context, &body, hole.len() + 1)?;
        let img_end = self.special(Special::ImgEnd);
        let hole_structure = |ids| Structure::image_hole(ids, hole.len());
        let streams = Self::streams(&prompt, &context, None, settings);
        let drawn = self.draw(
            &prompt,
            &streams,
            hole_structure,
            hole.len() + 1,
            settings,
            settings.copying(CopyDecoding::Mixed),
            |t| t == img_end,
        )?;
        let image_start = self.ids().image_range().start;
        let grids: Vec<Vec<u32>> = drawn
            .iter()
            .map(|(_, new)| {
                let mut filled = codes.clone();
                for (slot, token) in filled[hole.clone()].iter_mut().zip(new) {
                    *slot = token - image_start;
                }
                filled
            })
            .collect();
        let samples = self.images_of(grids, &drawn)?;
        Ok(Outputs { samples, context })
    }

    /// The guidance streams for `prompt`, which begins with `context`'s documents:
    /// classifier-free guidance's `cfg`, if any, and retrieval guidance's (the prompt
    /// without those documents) when `settings` asks for it and documents were retrieved.
    fn streams<'a>(
        prompt: &'a [u32],
        context: &Context,
        cfg: Option<Guidance<'a>>,
        settings: &SampleSettings,
    ) -> Vec<Guidance<'a>> {
        let retrieved: usize = context
            .tokens
            .iter()
            .map(|document| document.len() + 1)
            .sum();
        let retrieval = (settings.retrieval_guidance != 1.0 && retrieved > 0).then(|| Guidance {
            unconditional_prompt: &prompt[retrieved.min(prompt.len())..],
            scale: settings.retrieval_guidance,
        });
        cfg.into_iter().chain(retrieval).collect()
    }

    /// `settings.samples` continuations of `prompt`, sample i drawn with seed + i under a
    /// fresh constraint from `structure`, each up to `max_new` tokens and through the first
    /// token for which `stop` is true, the copy pointer copying as `copy` says.
    /// Returns (seed, new tokens) per sample.
    #[allow(clippy::too_many_arguments)]
    fn draw(
        &self,
        prompt: &[u32],
        streams: &[Guidance],
        structure: impl Fn(IdSpace) -> Structure,
        max_new: usize,
        settings: &SampleSettings,
        copy: Copying,
        stop: impl Fn(u32) -> bool + Copy,
    ) -> Result<Vec<(u64, Vec<u32>)>, Error> {
        let seeds: Vec<u64> = (0..settings.samples)
            .map(|index| settings.seed.wrapping_add(index as u64))
            .collect();
        let mut samplers: Vec<Sampler> = seeds
            .iter()
            .map(|&seed| Sampler::new(settings.sampling, seed))
            .collect();
        let mut constraints: Vec<Structure> = seeds.iter().map(|_| structure(self.ids())).collect();
        let drawn = sample_batch(
            &self.model,
            prompt,
            streams,
            &mut constraints,
            &mut samplers,
            max_new,
            stop,
            copy,
        )
        .map_err(Error::model)?;
        Ok(seeds.into_iter().zip(drawn).collect())
    }

    /// Sets each sample's [`Copied`]: the retrieved image in `context` with the most codes
    /// equal to the sample's at the same place (the first on a tie).
    fn mark_copies(&self, samples: &mut [GeneratedImage], context: &Context) {
        let image_ids = self.ids().image_range();
        let sources: Vec<Vec<u32>> = context
            .tokens
            .iter()
            .map(|tokens| {
                tokens
                    .iter()
                    .filter(|token| image_ids.contains(token))
                    .map(|token| token - image_ids.start)
                    .collect()
            })
            .collect();
        for sample in samples {
            sample.copied = sources
                .iter()
                .enumerate()
                .filter(|(_, codes)| !codes.is_empty())
                .map(|(document, codes)| Copied {
                    document,
                    codes: codes
                        .iter()
                        .zip(&sample.codes)
                        .filter(|(a, b)| a == b)
                        .count(),
                })
                .min_by_key(|copied| (std::cmp::Reverse(copied.codes), copied.document));
        }
    }

    /// Decoded images of code grids, one per drawn sample.
    fn images_of(
        &self,
        grids: Vec<Vec<u32>>,
        drawn: &[(u64, Vec<u32>)],
    ) -> Result<Vec<GeneratedImage>, Error> {
        let images = self.vqgan.decode(&grids)?;
        Ok(images
            .into_iter()
            .zip(grids)
            .zip(drawn)
            .map(|((image, codes), &(seed, _))| GeneratedImage {
                image,
                codes,
                clip_similarity: None,
                seed,
                copied: None,
            })
            .collect())
    }

    /// Samples text spans after `body` (which ends with the `<mask:0>` that opens the span)
    /// until `<eos>`; text only, no image ids.
    fn fill_text(
        &self,
        context: &mut Context,
        body: &[u32],
        settings: &SampleSettings,
    ) -> Result<Vec<GeneratedText>, Error> {
        let prompt = self.prompt(context, body, MAX_CAPTION_TOKENS + 1)?;
        let ids = self.ids();
        let stops = [
            Special::Eos,
            Special::Break,
            Special::ImgAlt,
            Special::ImgSrc,
        ]
        .map(|special| ids.special(special));
        let text_structure = |ids| Structure::new(ids, self.vqgan.tokens_per_image());
        let streams = Self::streams(&prompt, context, None, settings);
        let drawn = self.draw(
            &prompt,
            &streams,
            text_structure,
            MAX_CAPTION_TOKENS + 1,
            settings,
            // A caption that takes words from two retrieved captions reads as neither:
            // on the held-out val drawings one source per caption raised CIDEr-D from
            // 1.405 to 1.533 (BENCHMARKS.md, "One source per caption").
            settings.copying(CopyDecoding::OneSource),
            |t| stops.contains(&t) || ids.mask_index(t).is_some(),
        )?;
        let mut samples = Vec::with_capacity(drawn.len());
        for (seed, new) in drawn {
            let text_ids: Vec<u32> = new
                .into_iter()
                .filter(|&t| t < ids.image_range().start)
                .collect();
            samples.push(GeneratedText {
                text: self.codec.text().decode(&text_ids)?.trim().to_owned(),
                clip_similarity: None,
                seed,
            });
        }
        Ok(samples)
    }

    /// Few-shot classification in context: the demonstrations as documents
    /// (`<img alt="label" src="codes"> <break>`, after any retrieved ones), then the query
    /// image with its caption masked; each candidate label is scored by
    /// log p(label `<eos>` | everything before). `labels` defaults to the demonstrations'
    /// distinct labels.
    pub fn classify_in_context(
        &self,
        demonstrations: &[Demonstration],
        query: &RgbImage,
        labels: &[String],
        retriever: Option<&Retriever>,
    ) -> Result<Classification, Error> {
        let mut candidates: Vec<String> = labels.to_vec();
        if candidates.is_empty() {
            for demo in demonstrations {
                if !candidates.contains(&demo.label) {
                    candidates.push(demo.label.clone());
                }
            }
        }
        if candidates.is_empty() {
            return Err(Error::BadInput(
                "few-shot classification needs candidate labels or demonstrations".into(),
            ));
        }
        let mut context = self.retrieve(
            retriever,
            &Query {
                text: None,
                image: Some(query),
            },
        )?;
        let mut images: Vec<RgbImage> = demonstrations.iter().map(|d| d.image.clone()).collect();
        images.push(query.clone());
        let mut grids = self.vqgan.encode(&images, 16)?;
        let query_codes = grids.pop().expect("the query was encoded");
        let mut body = Vec::new();
        for (demo, codes) in demonstrations.iter().zip(&grids) {
            let label = self.codec.text().encode(&demo.label)?;
            body.extend(self.image_document(&label, codes)?);
            body.push(self.special(Special::Break));
        }
        body.extend(self.image_document(&[self.mask0()], &query_codes)?);
        body.push(self.mask0());
        let label_ids: Vec<Vec<u32>> = candidates
            .iter()
            .map(|label| {
                let mut ids = self.codec.text().encode(label)?;
                ids.push(self.special(Special::Eos));
                Ok(ids)
            })
            .collect::<Result<_, Error>>()?;
        let longest = label_ids.iter().map(Vec::len).max().unwrap_or(1);
        let prompt = self.prompt(&mut context, &body, longest)?;
        let device = self.model.device();
        let mut cache = KvCache::new();
        let prefix_logits = self
            .model
            .forward(
                &Tensor::new(prompt.as_slice(), device)?.unsqueeze(0)?,
                Some(&mut cache),
            )
            .map_err(Error::model)?;
        let last = prefix_logits.i((0, prompt.len() - 1))?.to_vec1::<f32>()?;
        let mut scores = Vec::with_capacity(candidates.len());
        for (label, ids) in candidates.iter().zip(&label_ids) {
            let mut score = log_prob(&last, ids[0]);
            if ids.len() > 1 {
                let mut branch = cache.branch()?;
                let input = Tensor::new(&ids[..ids.len() - 1], device)?.unsqueeze(0)?;
                let logits = self
                    .model
                    .forward(&input, Some(&mut branch))
                    .map_err(Error::model)?
                    .squeeze(0)?
                    .to_vec2::<f32>()?;
                for (row, &target) in logits.iter().zip(&ids[1..]) {
                    score += log_prob(row, target);
                }
            }
            scores.push((label.clone(), score));
        }
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(Classification {
            label: scores[0].0.clone(),
            scores,
            context,
        })
    }
}

/// CLIP re-ranking: each sample's similarity is its embedding (a row of `embedded`, unit
/// vectors) dotted with `anchor`, stored by `set`; samples are sorted best first.
fn rank<T>(samples: &mut Vec<T>, anchor: &[f32], embedded: &[f32], set: impl Fn(&mut T, f32)) {
    let scores = embedded
        .chunks(anchor.len())
        .map(|row| racm3_memory::dot(anchor, row));
    let mut scored: Vec<(f32, T)> = scores.zip(samples.drain(..)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    samples.extend(scored.into_iter().map(|(score, mut sample)| {
        set(&mut sample, score);
        sample
    }));
}

/// log softmax(logits)[target], in f64.
fn log_prob(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    logits[target as usize] as f64 - max - sum.ln()
}
