//! The transformer encoder both CLIP towers share: pre-norm layers of self-attention and
//! an MLP. Names are Hugging Face's (`layers.N.self_attn.q_proj`, `layer_norm1`, ...).
//!
//! LayerNorm is racm3-kernels' fused normalization (with its backward pass) and softmax
//! candle's tensor-op form, because candle 0.11's fused `LayerNorm` and
//! `softmax_last_dim` pass back no gradient to their inputs (a model trained through them
//! silently learns nothing in those layers), and the same modules train and load.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;
use racm3_kernels::dense::Dense;

/// The activation between the MLP's two layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// x · sigmoid(1.702 x), OpenAI CLIP's.
    QuickGelu,
    /// The exact (erf) GELU, as LAION's checkpoints use.
    Gelu,
    /// The tanh approximation of GELU.
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
}

impl Module for Activation {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Activation::QuickGelu => racm3_kernels::gelu::quick_gelu(xs),
            Activation::Gelu => xs.gelu_erf(),
            Activation::GeluNew => xs.gelu(),
        }
    }
}

/// Layer normalization over the last dimension, with gradients.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        racm3_kernels::row_norm::normalize_rows(xs, self.eps, true)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Sizes of one tower's encoder.
#[derive(Debug, Clone, Copy)]
pub struct EncoderShape {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: Activation,
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Dense,
    k_proj: Dense,
    v_proj: Dense,
    out_proj: Dense,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(shape: &EncoderShape, vb: VarBuilder) -> Result<Self> {
        let size = shape.hidden_size;
        Ok(Self {
            q_proj: Dense::new(size, size, true, vb.pp("q_proj"))?,
            k_proj: Dense::new(size, size, true, vb.pp("k_proj"))?,
            v_proj: Dense::new(size, size, true, vb.pp("v_proj"))?,
            out_proj: Dense::new(size, size, true, vb.pp("out_proj"))?,
            num_heads: shape.num_attention_heads,
            head_dim: size / shape.num_attention_heads,
        })
    }

    /// `mask`, when given, is (seq_len, seq_len) of 0 and -inf, added to the scores.
    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b_sz, seq_len, size) = xs.dims3()?;
        let heads = |proj: &Dense| -> Result<Tensor> {
            // (b, seq, size) -> (b, heads, seq, head_dim)
            xs.apply(proj)?
                .reshape((b_sz, seq_len, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = (heads(&self.q_proj)? * (self.head_dim as f64).powf(-0.5))?;
        let k = heads(&self.k_proj)?;
        let v = heads(&self.v_proj)?;
        // (b, heads, seq, seq)
        let mut scores = q.matmul(&k.transpose(2, 3)?.contiguous()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        // (b, heads, seq, head_dim) -> (b, seq, size)
        weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b_sz, seq_len, size))?
            .apply(&self.out_proj)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    fc1: Dense,
    fc2: Dense,
    activation: Activation,
}

impl Mlp {
    fn new(shape: &EncoderShape, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: Dense::new(
                shape.hidden_size,
                shape.intermediate_size,
                true,
                vb.pp("fc1"),
            )?,
            fc2: Dense::new(
                shape.intermediate_size,
                shape.hidden_size,
                true,
                vb.pp("fc2"),
            )?,
            activation: shape.hidden_act,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.apply(&self.fc1)?
            .apply(&self.activation)?
            .apply(&self.fc2)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    mlp: Mlp,
    layer_norm2: LayerNorm,
}

impl EncoderLayer {
    fn new(shape: &EncoderShape, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(shape, vb.pp("self_attn"))?,
            layer_norm1: LayerNorm::new(
                shape.hidden_size,
                shape.layer_norm_eps,
                vb.pp("layer_norm1"),
            )?,
            mlp: Mlp::new(shape, vb.pp("mlp"))?,
            layer_norm2: LayerNorm::new(
                shape.hidden_size,
                shape.layer_norm_eps,
                vb.pp("layer_norm2"),
            )?,
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let attended = self
            .self_attn
            .forward(&xs.apply(&self.layer_norm1)?, mask)?;
        let xs = (xs + attended)?;
        let transformed = xs.apply(&self.layer_norm2)?.apply(&self.mlp)?;
        xs + transformed
    }
}

/// The stack of encoder layers (`encoder.layers.N`).
#[derive(Debug, Clone)]
pub struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(shape: &EncoderShape, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("layers");
        let layers = (0..shape.num_hidden_layers)
            .map(|index| EncoderLayer::new(shape, vb.pp(index)))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    pub fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.layers
            .iter()
            .try_fold(xs.clone(), |xs, layer| layer.forward(&xs, mask))
    }
}
