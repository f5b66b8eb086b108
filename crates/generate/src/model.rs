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
//! RMSNorm and softmax are written from tensor ops: candle 0.11's fused kernels pass back
//! no gradient (../shared/FINDINGS.md).

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};

use crate::config::Config;

/// The keys and values of every layer for the tokens seen so far, one per sequence being
/// decoded. Create it empty and pass it to each [`Cm3Model::forward`] call.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// Per layer: keys and values, each (b, heads, seen, head_dim).
    layers: Vec<Option<(Tensor, Tensor)>>,
    seen: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens already in the cache.
    pub fn len(&self) -> usize {
        self.seen
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.seen == 0
    }
}

/// A bias-free linear layer applied to (b, t, in) as one (b·t, in) × (in, out) product.
/// candle's `Linear` runs b products instead, which in decoding (t = 1) are b
/// matrix-vector products that each read the whole weight.
#[derive(Debug, Clone)]
struct Dense {
    /// (out, in), as PyTorch and candle store it.
    weight: Tensor,
}

impl Dense {
    fn new(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Self> {
        // The initialization candle_nn::linear_no_bias uses.
        let weight = vb.get_with_hints(
            (outputs, inputs),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        Ok(Self { weight })
    }
}

impl Module for Dense {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        project(xs, &self.weight)
    }
}

/// `xs` (…, in) times `weight`ᵀ for a weight (out, in), as one matrix product over all
/// leading dimensions.
fn project(xs: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let mut dims = xs.dims().to_vec();
    let inputs = dims.pop().unwrap_or(1);
    let rows: usize = dims.iter().product();
    let out = xs.reshape((rows, inputs))?.matmul(&weight.t()?)?;
    dims.push(weight.dim(0)?);
    out.reshape(dims)
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
        let mean_square = xs.sqr()?.mean_keepdim(D::Minus1)?;
        xs.broadcast_div(&(mean_square + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)
    }
}

/// cos and sin tables for rotary embeddings, (max_seq_len, head_dim / 2).
#[derive(Debug, Clone)]
struct Rotary {
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
        Ok(Self {
            cos: angles.cos()?,
            sin: angles.sin()?,
        })
    }

    /// Rotates (b, heads, t, head_dim) at positions offset..offset + t.
    fn apply(&self, xs: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, seq_len, head_dim) = xs.dims4()?;
        let half = head_dim / 2;
        // (t, half) -> (t, head_dim): the same angle for both halves.
        let cos = self.cos.narrow(0, offset, seq_len)?;
        let sin = self.sin.narrow(0, offset, seq_len)?;
        let cos = Tensor::cat(&[&cos, &cos], 1)?;
        let sin = Tensor::cat(&[&sin, &sin], 1)?;
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
            qkv_proj: Dense::new(cfg.hidden_size, 3 * cfg.hidden_size, vb.pp("qkv_proj"))?,
            o_proj: Dense::new(cfg.hidden_size, cfg.hidden_size, vb.pp("o_proj"))?,
            num_heads: cfg.num_heads,
            head_dim: cfg.head_dim(),
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        rotary: &Rotary,
        offset: usize,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
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
            Some(slot) => {
                let (k, v) = match slot.take() {
                    Some((past_k, past_v)) => (
                        Tensor::cat(&[&past_k, &k], 2)?,
                        Tensor::cat(&[&past_v, &v], 2)?,
                    ),
                    None => (k, v),
                };
                *slot = Some((k.clone(), v.clone()));
                (k, v)
            }
            None => (k, v),
        };
        let total = k.dim(2)?;
        // (b, heads, t, total)
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let scores = if seq_len > 1 {
            scores.broadcast_add(&causal_mask(seq_len, total, xs.device())?)?
        } else {
            scores
        };
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
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
            fc1: Dense::new(cfg.hidden_size, cfg.intermediate_size, vb.pp("fc1"))?,
            fc2: Dense::new(cfg.intermediate_size, cfg.hidden_size, vb.pp("fc2"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.apply(&self.fc1)?.gelu_erf()?.apply(&self.fc2)
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
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let attended =
            self.self_attn
                .forward(&xs.apply(&self.attention_norm)?, rotary, offset, cache)?;
        let xs = (xs + attended)?;
        let transformed = xs.apply(&self.mlp_norm)?.apply(&self.mlp)?;
        xs + transformed
    }
}

/// The CM3 decoder.
#[derive(Debug, Clone)]
pub struct Cm3Model {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    rotary: Rotary,
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
        Ok(Self {
            embed_tokens: Embedding::new(embedding, cfg.hidden_size),
            layers,
            norm: RmsNorm::new(cfg, vb.pp("norm"))?,
            rotary: Rotary::new(cfg, vb.device())?,
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

    /// Logits (b, t, vocab) for token ids (b, t). With a cache, the ids continue the
    /// cached sequence and the cache grows by t; without one, they start at position 0.
    pub fn forward(&self, input_ids: &Tensor, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (_, seq_len) = input_ids.dims2()?;
        let offset = cache.as_ref().map_or(0, |cache| cache.seen);
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
            cache.layers = vec![None; self.layers.len()];
        }
        let mut xs = input_ids.apply(&self.embed_tokens)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|cache| &mut cache.layers[index]);
            xs = layer.forward(&xs, &self.rotary, offset, slot)?;
        }
        if let Some(cache) = cache {
            cache.seen += seq_len;
        }
        // The head is the embedding, transposed: (b, t, hidden) · (hidden, vocab).
        project(&xs.apply(&self.norm)?, self.embed_tokens.embeddings())
    }
}
