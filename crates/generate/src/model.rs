//! The CM3 decoder: a pre-norm, decoder-only transformer over one id space of text, image
//! and structure tokens, with rotary positions, fused QKV projections and an output head
//! tied to the input embedding.
//!
//! CM3: Aghajanyan et al., "CM3: A Causal Masked Multimodal Model of the Internet" (2022),
//! arXiv:2201.07520; RA-CM3: Yasunaga et al. (2023), arXiv:2211.12561. Rotary embeddings:
//! Su et al. (2021), arXiv:2104.09864, in the GPT-NeoX layout (halves rotated, as candle
//! `llama.rs` does). Decoding state lives in a [`KvCache`] the caller owns, so one model
//! serves many requests at once.
//!
//! RMSNorm, softmax and the rotation are written from tensor ops for training: candle
//! 0.11's fused kernels pass back no gradient to their inputs, so a model trained through
//! them silently learns nothing in those layers. Where no gradient
//! is tracked (a loaded checkpoint, decoding), the fused kernels run instead.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};

use crate::config::{Config, ImageCopy, ImagePositions};
use racm3_kernels::attention::SingleQueryAttention;
use racm3_kernels::dense::Dense;

/// The keys and values of every layer for the tokens seen so far, one per sequence being
/// decoded. Create it empty and pass it to each [`Cm3Model::forward`] call.
///
/// Each layer's buffers have room to spare, so a decoding step writes only its own token
/// instead of copying the whole cache. The buffers are written in place, so a cache is
/// not `Clone`: [`KvCache::branch`] copies it for decoding two continuations.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    /// Per row, the image codes in a row at the end of the cached tokens (for
    /// [`crate::config::ImagePositions`]).
    image_runs: Vec<usize>,
    /// Per row, every token so far, and the copy pointer's key at each of them (b, len,
    /// key width): only with an [`ImageCopy`] pointer.
    history: Vec<Vec<u32>>,
    copy_keys: Option<Tensor>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache of batch size `rows` holding this batch-1 cache in every row, for decoding
    /// several continuations of one prompt together.
    pub fn repeat(&self, rows: usize) -> Result<Self> {
        Ok(Self {
            layers: self
                .layers
                .iter()
                .map(|layer| layer.repeat(rows))
                .collect::<Result<_>>()?,
            image_runs: vec![self.image_runs.first().copied().unwrap_or(0); rows],
            history: vec![self.history.first().cloned().unwrap_or_default(); rows],
            copy_keys: self
                .copy_keys
                .as_ref()
                .map(|keys| keys.repeat((rows, 1, 1)))
                .transpose()?,
        })
    }

    /// An independent copy: decoding on with one leaves the other as it was.
    pub fn branch(&self) -> Result<Self> {
        Ok(Self {
            layers: self
                .layers
                .iter()
                .map(LayerCache::deep_copy)
                .collect::<Result<_>>()?,
            image_runs: self.image_runs.clone(),
            history: self.history.clone(),
            copy_keys: self.copy_keys.as_ref().map(Tensor::copy).transpose()?,
        })
    }

    /// Tokens already in the cache.
    pub fn len(&self) -> usize {
        // The last layer appends last: it counts only tokens every layer holds.
        self.layers.last().map_or(0, |layer| layer.len)
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One layer's keys and values: buffers (b, heads, capacity, head_dim), of which the first
/// `len` positions are filled.
#[derive(Debug, Default)]
struct LayerCache {
    buffers: Option<(Tensor, Tensor)>,
    len: usize,
}

/// The smallest buffer a layer starts with, in positions.
const MIN_CACHE_CAPACITY: usize = 64;

impl LayerCache {
    fn deep_copy(&self) -> Result<Self> {
        let buffers = match &self.buffers {
            Some((keys, values)) => Some((keys.copy()?, values.copy()?)),
            None => None,
        };
        Ok(Self {
            buffers,
            len: self.len,
        })
    }

    fn repeat(&self, rows: usize) -> Result<Self> {
        let buffers = match &self.buffers {
            Some((keys, values)) => {
                if keys.dim(0)? != 1 {
                    candle_core::bail!(
                        "only a batch-1 cache repeats, this one has {} rows",
                        keys.dim(0)?
                    );
                }
                Some((
                    keys.repeat((rows, 1, 1, 1))?,
                    values.repeat((rows, 1, 1, 1))?,
                ))
            }
            None => None,
        };
        Ok(Self {
            buffers,
            len: self.len,
        })
    }

    /// Appends keys and values (b, heads, t, head_dim) and returns all of them so far.
    /// A full buffer doubles (up to `max_len` positions), copying once.
    fn append(
        &mut self,
        keys: &Tensor,
        values: &Tensor,
        max_len: usize,
    ) -> Result<(Tensor, Tensor)> {
        let added = keys.dim(2)?;
        let needed = self.len + added;
        let capacity = self.buffers.as_ref().map_or(Ok(0), |(k, _)| k.dim(2))?;
        if needed > capacity {
            let capacity = (2 * needed)
                .max(MIN_CACHE_CAPACITY)
                .min(max_len.max(needed));
            let grow = |old: Option<&Tensor>, fresh: &Tensor| -> Result<Tensor> {
                let (b, heads, _, head_dim) = fresh.dims4()?;
                let buffer = Tensor::zeros(
                    (b, heads, capacity, head_dim),
                    fresh.dtype(),
                    fresh.device(),
                )?;
                if let Some(old) = old {
                    buffer.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
                Ok(buffer)
            };
            let old = self.buffers.take();
            self.buffers = Some((
                grow(old.as_ref().map(|(k, _)| k), keys)?,
                grow(old.as_ref().map(|(_, v)| v), values)?,
            ));
        }
        let Some((key_buffer, value_buffer)) = &self.buffers else {
            candle_core::bail!("the key-value cache has no buffers after growing");
        };
        key_buffer.slice_set(&keys.contiguous()?, 2, self.len)?;
        value_buffer.slice_set(&values.contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok((
            key_buffer.narrow(2, 0, needed)?,
            value_buffer.narrow(2, 0, needed)?,
        ))
    }
}

#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(cfg.hidden_size, "weight", Init::Const(1.0))?,
            eps: cfg.norm_eps,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if untracked(&[xs, &self.weight]) {
            return candle_nn::ops::rms_norm(xs, &self.weight, self.eps as f32);
        }
        racm3_kernels::row_norm::normalize_rows(xs, self.eps, false)?.broadcast_mul(&self.weight)
    }
}

/// True when no gradient flows through any of `tensors`, so candle's fused kernels, which
/// pass none back, give the same result as the tensor-op forms.
fn untracked(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|tensor| !tensor.track_op())
}

/// cos and sin tables for rotary embeddings: (max_seq_len, head_dim / 2) for candle's
/// fused kernel, and (max_seq_len, head_dim), each angle twice (once for each half of a
/// head), for the tensor-op form.
#[derive(Debug, Clone)]
struct Rotary {
    cos_half: Tensor,
    sin_half: Tensor,
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &Config, device: &Device) -> Result<Self> {
        let half = cfg.head_dim() / 2;
        let inverse: Vec<f32> = (0..half)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim() as f64) as f32)
            .collect();
        let inverse = Tensor::from_vec(inverse, (1, half), device)?;
        let positions = Tensor::arange(0u32, cfg.max_seq_len as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((cfg.max_seq_len, 1))?;
        let angles = positions.broadcast_mul(&inverse)?;
        let (cos_half, sin_half) = (angles.cos()?, angles.sin()?);
        Ok(Self {
            cos: Tensor::cat(&[&cos_half, &cos_half], 1)?,
            sin: Tensor::cat(&[&sin_half, &sin_half], 1)?,
            cos_half,
            sin_half,
        })
    }

    /// The longest sequence the tables cover.
    fn max_len(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates (b, heads, t, head_dim), contiguous, at positions offset..offset + t.
    fn apply(&self, xs: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, seq_len, head_dim) = xs.dims4()?;
        if untracked(&[xs]) {
            let cos = self.cos_half.narrow(0, offset, seq_len)?;
            let sin = self.sin_half.narrow(0, offset, seq_len)?;
            return candle_nn::rotary_emb::rope(xs, &cos, &sin);
        }
        let half = head_dim / 2;
        let cos = self.cos.narrow(0, offset, seq_len)?;
        let sin = self.sin.narrow(0, offset, seq_len)?;
        let first = xs.narrow(D::Minus1, 0, half)?;
        let second = xs.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&second.neg()?, &first], D::Minus1)?;
        xs.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
    }
}

#[derive(Debug, Clone)]
struct Attention {
    /// (3 · hidden, hidden): queries, keys and values in one product.
    qkv_proj: Dense,
    o_proj: Dense,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv_proj: Dense::new(
                cfg.hidden_size,
                3 * cfg.hidden_size,
                false,
                vb.pp("qkv_proj"),
            )?,
            o_proj: Dense::new(cfg.hidden_size, cfg.hidden_size, false, vb.pp("o_proj"))?,
            num_heads: cfg.num_heads,
            head_dim: cfg.head_dim(),
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        rotary: &Rotary,
        offset: usize,
        cache: Option<&mut LayerCache>,
    ) -> Result<Tensor> {
        let (b_sz, seq_len, hidden) = xs.dims3()?;
        // (b, t, 3·hidden) -> (3, b, heads, t, head_dim)
        let qkv = xs
            .apply(&self.qkv_proj)?
            .reshape((b_sz, seq_len, 3, self.num_heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = rotary.apply(&qkv.get(0)?.contiguous()?, offset)?;
        let k = rotary.apply(&qkv.get(1)?.contiguous()?, offset)?;
        let v = qkv.get(2)?.contiguous()?;
        // With a cache: (b, heads, offset + t, head_dim).
        let (k, v) = match cache {
            Some(layer) => layer.append(&k, &v, rotary.max_len())?,
            None => (k, v),
        };
        if seq_len == 1
            && xs.device().is_cpu()
            && xs.dtype() == DType::F32
            && untracked(&[&q, &k, &v])
        {
            let scale = (self.head_dim as f32).sqrt().recip();
            return q
                .apply_op3_no_bwd(&k, &v, &SingleQueryAttention { scale })?
                .reshape((b_sz, 1, hidden))?
                .apply(&self.o_proj);
        }
        let total = k.dim(2)?;
        // (b, heads, t, total)
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let scores = if seq_len > 1 {
            scores.broadcast_add(&causal_mask(seq_len, total, xs.device())?)?
        } else {
            scores
        };
        let weights = if untracked(&[&scores]) {
            candle_nn::ops::softmax_last_dim(&scores)?
        } else {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        };
        // (b, heads, t, head_dim) -> (b, t, hidden)
        weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b_sz, seq_len, hidden))?
            .apply(&self.o_proj)
    }
}

/// (t, total): query i (at position total - t + i) sees keys 0..=total - t + i.
fn causal_mask(seq_len: usize, total: usize, device: &Device) -> Result<Tensor> {
    let offset = total - seq_len;
    let values: Vec<f32> = (0..seq_len)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(values, (seq_len, total), device)
}

#[derive(Debug, Clone)]
struct Mlp {
    fc1: Dense,
    fc2: Dense,
}

impl Mlp {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: Dense::new(cfg.hidden_size, cfg.intermediate_size, false, vb.pp("fc1"))?,
            fc2: Dense::new(cfg.intermediate_size, cfg.hidden_size, false, vb.pp("fc2"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        racm3_kernels::gelu::gelu(&xs.apply(&self.fc1)?)?.apply(&self.fc2)
    }
}

#[derive(Debug, Clone)]
struct Block {
    attention_norm: RmsNorm,
    self_attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attention_norm: RmsNorm::new(cfg, vb.pp("attention_norm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            mlp_norm: RmsNorm::new(cfg, vb.pp("mlp_norm"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        rotary: &Rotary,
        offset: usize,
        cache: Option<&mut LayerCache>,
    ) -> Result<Tensor> {
        let attended =
            self.self_attn
                .forward(&xs.apply(&self.attention_norm)?, rotary, offset, cache)?;
        let xs = (xs + attended)?;
        let transformed = xs.apply(&self.mlp_norm)?.apply(&self.mlp)?;
        xs + transformed
    }
}

/// What one pass of the decoder writes for every position.
#[derive(Debug, Clone)]
pub struct Cm3Output {
    /// Next-token logits over the vocabulary (b, t, vocab).
    pub logits: Tensor,
    /// The copy pointer's mixture, with an [`ImageCopy`] pointer.
    pub copy: Option<CopyMix>,
}

/// The weights of an [`ImageCopy`] pointer's mixture at every position.
#[derive(Debug, Clone)]
pub struct CopyMix {
    /// Log-weights (b, t, 1 + sources): the vocabulary's first, then each source's. Where a
    /// position has no candidate code, the vocabulary's is 0 (weight 1).
    pub log_weights: Tensor,
    /// Each position's candidate code per source, row-major (b · t · sources),
    /// [`CopyMix::NONE`] where there is none.
    pub codes: Vec<u32>,
}

impl CopyMix {
    /// No candidate code.
    pub const NONE: u32 = u32::MAX;

    /// Sources per position.
    pub fn sources(&self) -> usize {
        self.log_weights.dims().last().map_or(0, |width| width - 1)
    }
}

impl Cm3Output {
    /// Scores to sample from, per row of the vocabulary: the logits where nothing can be
    /// copied, and the mixture's log-probabilities where something can (equal to the
    /// logits up to a constant without a pointer). Computed without gradient: training goes
    /// through [`crate::rag_loss`] on the output itself.
    pub fn scores(&self) -> Result<Tensor> {
        self.scores_without(&[], 0.0)
    }

    /// [`Cm3Output::scores`] with the sources marked in `dropped` (row-major, b · sources;
    /// empty: none) taken out of the mixture and `copy_bias` added to every other source's
    /// log-weight (0: as trained; e^bias times the odds of copying), renormalized.
    pub fn scores_without(&self, dropped: &[bool], copy_bias: f32) -> Result<Tensor> {
        let Some(copy) = &self.copy else {
            return Ok(self.logits.clone());
        };
        let (rows, steps, vocab) = self.logits.dims3()?;
        let sources = copy.sources();
        if !dropped.is_empty() && dropped.len() != rows * sources {
            candle_core::bail!(
                "{} dropped-source flags for {rows} rows of {sources} sources",
                dropped.len()
            );
        }
        let mut values = self.logits.flatten_all()?.to_vec1::<f32>()?;
        let weights = copy.log_weights.flatten_all()?.to_vec1::<f32>()?;
        for position in 0..rows * steps {
            let codes = &copy.codes[position * sources..(position + 1) * sources];
            if codes.iter().all(|&code| code == CopyMix::NONE) {
                continue;
            }
            let row = &mut values[position * vocab..(position + 1) * vocab];
            let mut weights =
                weights[position * (sources + 1)..(position + 1) * (sources + 1)].to_vec();
            if !dropped.is_empty() || copy_bias != 0.0 {
                let batch_row = position / steps;
                for (source, weight) in weights[1..].iter_mut().enumerate() {
                    if dropped.get(batch_row * sources + source) == Some(&true) {
                        *weight = f32::NEG_INFINITY;
                    } else {
                        *weight += copy_bias;
                    }
                }
                let total = weights.iter().copied().fold(f32::NEG_INFINITY, log_add_exp);
                weights.iter_mut().for_each(|weight| *weight -= total);
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let normalizer = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
            row.iter_mut()
                .for_each(|value| *value += weights[0] - normalizer);
            for (&code, &weight) in codes.iter().zip(&weights[1..]) {
                if let Some(value) = row.get_mut(code as usize) {
                    *value = log_add_exp(*value, weight);
                }
            }
        }
        Tensor::from_vec(values, (rows, steps, vocab), self.logits.device())
    }
}

/// ln(e^a + e^b) without overflow.
fn log_add_exp(a: f32, b: f32) -> f32 {
    let (high, low) = if a > b { (a, b) } else { (b, a) };
    if low == f32::NEG_INFINITY {
        return high;
    }
    high + (low - high).exp().ln_1p()
}

/// A score low enough to give a missing candidate no weight, and finite, so gradients stay
/// finite.
const NO_CANDIDATE: f32 = -1e4;

/// Where each new position's sources are: per position and source, the position of the
/// code at the place it predicts, and that code; row-major (b · t · sources).
struct SourcePlaces {
    positions: Vec<Option<usize>>,
    codes: Vec<u32>,
}

/// What an [`ImageCopy`] reads from earlier images: its pointer's layers, its features'
/// layers, or both.
#[derive(Debug, Clone)]
struct CopyHead {
    pointer: Option<Pointer>,
    features: Option<SourceFeatures>,
    copy: ImageCopy,
    positions: ImagePositions,
}

#[derive(Debug, Clone)]
struct Pointer {
    /// From a position's final hidden state: its query, its key, then the vocabulary's
    /// score, in one product.
    projection: Dense,
    /// The vocabulary's learned prior.
    vocabulary_bias: Tensor,
    /// A learned prior per source (the first retrieved document is the best match).
    source_bias: Tensor,
    key_width: usize,
}

#[derive(Debug, Clone)]
struct SourceFeatures {
    /// A learned gain per source and width on the source code's token embedding. The
    /// embedding is the output head's too (tied), so a source code starts as a vote for
    /// itself; a separate table did not begin to copy in 60 steps of `copy_task`.
    gain: Tensor,
}

impl CopyHead {
    fn new(
        cfg: &Config,
        copy: ImageCopy,
        positions: ImagePositions,
        vb: VarBuilder,
    ) -> Result<Self> {
        let key_width = cfg.head_dim();
        let pointer = if copy.pointer {
            Some(Pointer {
                // Small, as the embedding's: the scores start near 0 and their gradients
                // small; with candle's Kaiming init (scores of std ~2 and 2/3 of the mass on
                // the sources at step 0) the run's val loss ended 0.16 nats worse
                // (BENCHMARKS.md, gen5-ra-ptr).
                projection: Dense::from_weight(&vb.pp("projection").get_with_hints(
                    (2 * key_width + 1, cfg.hidden_size),
                    "weight",
                    Init::Randn {
                        mean: 0.0,
                        stdev: 0.02,
                    },
                )?)?,
                // The vocabulary starts with 0.9 of the mass: a pointer must earn its share.
                vocabulary_bias: vb.get_with_hints(
                    1,
                    "vocabulary_bias",
                    Init::Const((9.0 * copy.sources as f64).ln()),
                )?,
                source_bias: vb.get_with_hints(copy.sources, "source_bias", Init::Const(0.0))?,
                key_width,
            })
        } else {
            None
        };
        let features = if copy.features {
            Some(SourceFeatures {
                gain: vb.get_with_hints(
                    (copy.sources, cfg.hidden_size),
                    "source_gain",
                    Init::Const(1.0),
                )?,
            })
        } else {
            None
        };
        Ok(Self {
            pointer,
            features,
            copy,
            positions,
        })
    }

    /// The sources of the last `steps` tokens of each row of `history` (the row's tokens
    /// so far).
    fn places(&self, history: &[Vec<u32>], steps: usize) -> SourcePlaces {
        let sources = self.copy.sources;
        let mut places = SourcePlaces {
            positions: Vec::with_capacity(history.len() * steps * sources),
            codes: Vec::with_capacity(history.len() * steps * sources),
        };
        for tokens in history {
            let candidates = self.copy.candidates(&self.positions, tokens);
            for candidate in &candidates[(tokens.len() - steps) * sources..] {
                places.positions.push(candidate.map(|(at, _)| at));
                places
                    .codes
                    .push(candidate.map_or(CopyMix::NONE, |(_, token)| token));
            }
        }
        places
    }

    /// Σₖ gainₖ ⊙ E[codeₖ] (b, t, d) over the sources that have a code, to add to the
    /// input of each position: the source codes at the place it predicts.
    fn features(
        &self,
        features: &SourceFeatures,
        embedding: &Embedding,
        places: &SourcePlaces,
        rows: usize,
        steps: usize,
    ) -> Result<Tensor> {
        let sources = self.copy.sources;
        let device = features.gain.device();
        // A missing source reads id 0, masked out below.
        let indices: Vec<u32> = places
            .codes
            .iter()
            .map(|&code| if code == CopyMix::NONE { 0 } else { code })
            .collect();
        let present: Vec<f32> = places
            .codes
            .iter()
            .map(|&code| f32::from(u8::from(code != CopyMix::NONE)))
            .collect();
        let embedded =
            Tensor::from_vec(indices, (rows, steps, sources), device)?.apply(embedding)?;
        let present = Tensor::from_vec(present, (rows, steps, sources, 1), device)?;
        embedded
            .broadcast_mul(&present)?
            .broadcast_mul(&features.gain)?
            .sum(2)
    }

    /// The pointer's mixture for hidden states (b, t, d) of the last t tokens of each row,
    /// whose earlier keys `cached_keys` holds (b, len - t, key width). Returns it and the
    /// keys of every token so far.
    fn mix(
        &self,
        pointer: &Pointer,
        hidden: &Tensor,
        places: SourcePlaces,
        cached_keys: Option<&Tensor>,
    ) -> Result<(CopyMix, Tensor)> {
        let (rows, steps, _) = hidden.dims3()?;
        let key_width = pointer.key_width;
        let projected = hidden.apply(&pointer.projection)?;
        let queries = projected.narrow(2, 0, key_width)?;
        let keys = projected.narrow(2, key_width, key_width)?;
        let vocabulary_score = projected
            .narrow(2, 2 * key_width, 1)?
            .broadcast_add(&pointer.vocabulary_bias)?;
        let keys = match cached_keys {
            Some(cached) => Tensor::cat(&[cached, &keys], 1)?,
            None => keys.contiguous()?,
        };
        let total = keys.dim(1)?;
        let sources = self.copy.sources;
        let per_row = steps * sources;
        let picks: Vec<u32> = places
            .positions
            .iter()
            .enumerate()
            .map(|(i, at)| ((i / per_row) * total + at.unwrap_or(0)) as u32)
            .collect();
        let mask: Vec<f32> = places
            .positions
            .iter()
            .map(|at| at.map_or(NO_CANDIDATE, |_| 0.0))
            .collect();
        let device = hidden.device();
        let picked = keys
            .reshape((rows * total, key_width))?
            .index_select(&Tensor::from_vec(picks, rows * per_row, device)?, 0)?
            .reshape((rows, steps, sources, key_width))?;
        let source_scores = (queries
            .unsqueeze(2)?
            .broadcast_mul(&picked)?
            .sum(D::Minus1)?
            / (key_width as f64).sqrt())?
        .broadcast_add(&pointer.source_bias)?
        .broadcast_add(&Tensor::from_vec(mask, (rows, steps, sources), device)?)?;
        let log_weights = candle_nn::ops::log_softmax(
            &Tensor::cat(&[&vocabulary_score, &source_scores], 2)?,
            D::Minus1,
        )?;
        let mix = CopyMix {
            log_weights,
            codes: places.codes,
        };
        Ok((mix, keys))
    }
}

/// The CM3 decoder.
#[derive(Debug, Clone)]
pub struct Cm3Model {
    embed_tokens: Embedding,
    /// The output head: the embedding itself, transposed (tied weights).
    head: Dense,
    layers: Vec<Block>,
    norm: RmsNorm,
    rotary: Rotary,
    /// Copy-friendly image positions, when the config has them.
    image_positions: Option<(Embedding, ImagePositions)>,
    copy_head: Option<CopyHead>,
    config: Config,
}

impl Cm3Model {
    /// Builds the model from `vb`: a checkpoint's tensors, or fresh ones for training.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        // GPT-2's N(0, 0.02) for the (tied) embedding.
        let embedding = vb.pp("embed_tokens").get_with_hints(
            (cfg.vocab_size, cfg.hidden_size),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let layers = (0..cfg.num_layers)
            .map(|index| Block::new(cfg, vb.pp("layers").pp(index)))
            .collect::<Result<_>>()?;
        let image_positions = match cfg.image_positions {
            Some(positions) => {
                let table = vb.pp("image_positions").get_with_hints(
                    (positions.grid + 1, cfg.hidden_size),
                    "weight",
                    Init::Randn {
                        mean: 0.0,
                        stdev: 0.02,
                    },
                )?;
                Some((Embedding::new(table, cfg.hidden_size), positions))
            }
            None => None,
        };
        let copy_head = match (cfg.image_copy, cfg.image_positions) {
            (Some(copy), Some(positions)) => {
                Some(CopyHead::new(cfg, copy, positions, vb.pp("image_copy"))?)
            }
            _ => None,
        };
        Ok(Self {
            head: Dense::from_weight(&embedding)?,
            embed_tokens: Embedding::new(embedding, cfg.hidden_size),
            layers,
            norm: RmsNorm::new(cfg, vb.pp("norm"))?,
            rotary: Rotary::new(cfg, vb.device())?,
            image_positions,
            copy_head,
            config: cfg.clone(),
        })
    }

    /// Loads a saved model folder: `config.json` and `model.safetensors`, as
    /// `racm3 train` writes them. A tensor missing from the file, or of a shape the config
    /// does not give, is an error naming the tensor and the file.
    pub fn load(dir: &std::path::Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let in_file = |path: &std::path::Path, err: &dyn std::fmt::Display| {
            candle_core::Error::msg(format!("{}: {err}", path.display()))
        };
        let text = std::fs::read(&config_path).map_err(|err| in_file(&config_path, &err))?;
        let config: Config =
            serde_json::from_slice(&text).map_err(|err| in_file(&config_path, &err))?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is mapped read-only and not modified while the model lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(|err| in_file(&weights, &err))?;
        Self::new(&config, vb).map_err(|err| in_file(&weights, &err))
    }

    /// The config it was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device its weights live on.
    pub fn device(&self) -> &Device {
        self.embed_tokens.embeddings().device()
    }

    /// Scores (b, t, vocab) to sample the next token from, for token ids (b, t): the
    /// logits, or with an [`ImageCopy`] pointer [`Cm3Output::scores`]. With a cache, the ids
    /// continue the cached sequence and the cache grows by t; without one, they start at
    /// position 0.
    pub fn forward(&self, input_ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let output = self.forward_output(input_ids, cache)?;
        if output.copy.is_none() {
            return Ok(output.logits);
        }
        output.scores()
    }

    /// The logits and, with an [`ImageCopy`] pointer, its mixture: what training needs.
    pub fn forward_output(
        &self,
        input_ids: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Cm3Output> {
        let (rows, seq_len) = input_ids.dims2()?;
        if rows * seq_len == 1 || !self.device().is_cpu() {
            // One token: the products are matrix-vector ones that gemm runs on the calling
            // thread, so there is no work to hand to the pool. A GPU needs no CPU threads.
            return self.forward_here(input_ids, cache);
        }
        // On the CPU with several tokens every matrix product is split over rayon's pool.
        // Called from outside it, each product hands its halves to the pool's threads and
        // puts the caller to sleep, and the pool's threads spin for work while the caller
        // runs the element-wise ops: three threads on two cores. The whole pass on one of
        // the pool's threads decoded batch 8 about 6% faster in an alternating A/B
        // (BENCHMARKS.md).
        rayon::scope(|_| self.forward_here(input_ids, cache))
    }

    fn forward_here(
        &self,
        input_ids: &Tensor,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Cm3Output> {
        let (_, seq_len) = input_ids.dims2()?;
        let offset = cache.as_ref().map_or(0, |cache| cache.len());
        if offset + seq_len > self.config.max_seq_len {
            candle_core::bail!(
                "sequence of {} tokens is longer than the model's max_seq_len {}",
                offset + seq_len,
                self.config.max_seq_len
            );
        }
        if let Some(cache) = cache.as_deref_mut()
            && cache.layers.len() != self.layers.len()
        {
            cache.layers = (0..self.layers.len())
                .map(|_| LayerCache::default())
                .collect();
        }
        let mut xs = input_ids.apply(&self.embed_tokens)?;
        let (rows, _) = input_ids.dims2()?;
        let places = match &self.copy_head {
            Some(head) => {
                let new_ids = input_ids.to_vec2::<u32>()?;
                let places = match cache.as_deref_mut() {
                    Some(cache) => {
                        if cache.history.len() != rows {
                            cache.history = vec![Vec::new(); rows];
                        }
                        for (history, ids) in cache.history.iter_mut().zip(&new_ids) {
                            history.extend(ids);
                        }
                        head.places(&cache.history, seq_len)
                    }
                    None => head.places(&new_ids, seq_len),
                };
                if let Some(features) = &head.features {
                    xs = (xs
                        + head.features(features, &self.embed_tokens, &places, rows, seq_len)?)?;
                }
                Some(places)
            }
            None => None,
        };
        if let Some((table, positions)) = &self.image_positions {
            let runs = cache.as_ref().map(|cache| cache.image_runs.clone());
            let mut rows = Vec::with_capacity(input_ids.elem_count());
            let mut runs_after = Vec::new();
            for (row, ids) in input_ids.to_vec2::<u32>()?.iter().enumerate() {
                let before = runs.as_ref().and_then(|runs| runs.get(row)).copied();
                let (these, run) = positions.rows(ids, before.unwrap_or(0));
                rows.extend(these);
                runs_after.push(run);
            }
            let rows = Tensor::from_vec(rows, input_ids.dims2()?, input_ids.device())?;
            xs = (xs + rows.apply(table)?)?;
            if let Some(cache) = cache.as_deref_mut() {
                cache.image_runs = runs_after;
            }
        }
        for (index, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|cache| &mut cache.layers[index]);
            xs = layer.forward(&xs, &self.rotary, offset, slot)?;
        }
        let hidden = xs.apply(&self.norm)?;
        let logits = hidden.apply(&self.head)?;
        let (Some(head), Some(places)) = (&self.copy_head, places) else {
            return Ok(Cm3Output { logits, copy: None });
        };
        let Some(pointer) = &head.pointer else {
            return Ok(Cm3Output { logits, copy: None });
        };
        let copy = match cache {
            Some(cache) => {
                let (copy, keys) = head.mix(pointer, &hidden, places, cache.copy_keys.as_ref())?;
                cache.copy_keys = Some(keys);
                copy
            }
            None => head.mix(pointer, &hidden, places, None)?.0,
        };
        Ok(Cm3Output {
            logits,
            copy: Some(copy),
        })
    }
}
