//! CLIP: a text transformer and a vision transformer projected into one embedding space.
//!
//! Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
//! (2021), arXiv:2103.00020. Parameter names, config fields and defaults are Hugging Face
//! transformers' `CLIPModel` (transformers v4.46, `models/clip/modeling_clip.py`), so an
//! HF checkpoint (`config.json` + `model.safetensors`) loads unchanged; the same
//! constructors build a fresh model for training here.

mod text;
mod transformer;
mod vision;

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder, linear_no_bias};
use serde::{Deserialize, Serialize};

pub use transformer::Activation;
use transformer::EncoderShape;

/// The text tower's config (HF `CLIPTextConfig`; absent fields take HF's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    /// Token ids are `0..vocab_size`.
    pub vocab_size: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of each MLP's hidden layer.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// The context length: longer texts are cut to it.
    pub max_position_embeddings: usize,
    /// The MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Start-of-text token id.
    pub bos_token_id: u32,
    /// End-of-text token id; its hidden state is the text's pooled output.
    pub eos_token_id: u32,
    /// Padding token id.
    pub pad_token_id: u32,
}

impl Default for TextConfig {
    /// HF's defaults, which are OpenAI ViT-B/32's text tower.
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            bos_token_id: 49406,
            eos_token_id: 49407,
            pad_token_id: 1,
        }
    }
}

impl TextConfig {
    fn encoder_shape(&self) -> EncoderShape {
        EncoderShape {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
            hidden_act: self.hidden_act,
        }
    }
}

/// The vision tower's config (HF `CLIPVisionConfig`; absent fields take HF's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of each MLP's hidden layer.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input channels (3).
    pub num_channels: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// The MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for VisionConfig {
    /// HF's defaults, which are OpenAI ViT-B/32's vision tower.
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl VisionConfig {
    fn encoder_shape(&self) -> EncoderShape {
        EncoderShape {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
            hidden_act: self.hidden_act,
        }
    }
}

/// A CLIP model's `config.json` (HF `CLIPConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The text tower.
    #[serde(default)]
    pub text_config: TextConfig,
    /// The vision tower.
    #[serde(default)]
    pub vision_config: VisionConfig,
    /// Dimension of the shared embedding space.
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    /// Initial log of the inverse softmax temperature: ln(1 / 0.07).
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init_value: f64,
    /// "clip", so that HF transformers also opens racm3's checkpoints.
    #[serde(default = "default_model_type")]
    pub model_type: String,
}

fn default_projection_dim() -> usize {
    512
}
fn default_logit_scale() -> f64 {
    2.6592
}
fn default_model_type() -> String {
    "clip".into()
}

impl Config {
    /// A few thousand parameters, for tests.
    pub fn tiny(vocab_size: usize, bos_token_id: u32, eos_token_id: u32) -> Self {
        Self {
            text_config: TextConfig {
                vocab_size,
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                max_position_embeddings: 16,
                bos_token_id,
                eos_token_id,
                pad_token_id: eos_token_id,
                ..TextConfig::default()
            },
            vision_config: VisionConfig {
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                image_size: 32,
                patch_size: 8,
                ..VisionConfig::default()
            },
            projection_dim: 16,
            logit_scale_init_value: default_logit_scale(),
            model_type: default_model_type(),
        }
    }

    /// The small CLIP racm3 trains on 64×64 emoji in minutes on two cores: 8×8 patches
    /// of 8 pixels, three layers of width 128 in each tower, and a 256-d key space.
    pub fn emoji_small(vocab_size: usize, bos_token_id: u32, eos_token_id: u32) -> Self {
        Self {
            text_config: TextConfig {
                vocab_size,
                hidden_size: 128,
                intermediate_size: 512,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                max_position_embeddings: 32,
                bos_token_id,
                eos_token_id,
                pad_token_id: eos_token_id,
                ..TextConfig::default()
            },
            vision_config: VisionConfig {
                hidden_size: 128,
                intermediate_size: 512,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                image_size: 64,
                patch_size: 8,
                ..VisionConfig::default()
            },
            projection_dim: 256,
            logit_scale_init_value: default_logit_scale(),
            model_type: default_model_type(),
        }
    }

    /// A preset by name: `emoji-small`.
    pub fn preset(
        name: &str,
        vocab_size: usize,
        bos_token_id: u32,
        eos_token_id: u32,
    ) -> Option<Self> {
        match name {
            "emoji-small" => Some(Self::emoji_small(vocab_size, bos_token_id, eos_token_id)),
            "tiny" => Some(Self::tiny(vocab_size, bos_token_id, eos_token_id)),
            _ => None,
        }
    }
}

/// The two towers, their projections and the learnable logit scale.
#[derive(Debug, Clone)]
pub struct ClipModel {
    text_model: text::TextTransformer,
    vision_model: vision::VisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
    logit_scale: Tensor,
    config: Config,
}

impl ClipModel {
    /// Builds the model from `vb`: a checkpoint's tensors, or fresh ones for training.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            text_model: text::TextTransformer::new(&cfg.text_config, vb.pp("text_model"))?,
            vision_model: vision::VisionTransformer::new(
                &cfg.vision_config,
                vb.pp("vision_model"),
            )?,
            text_projection: linear_no_bias(
                cfg.text_config.hidden_size,
                cfg.projection_dim,
                vb.pp("text_projection"),
            )?,
            visual_projection: linear_no_bias(
                cfg.vision_config.hidden_size,
                cfg.projection_dim,
                vb.pp("visual_projection"),
            )?,
            logit_scale: vb.get_with_hints(
                (),
                "logit_scale",
                Init::Const(cfg.logit_scale_init_value),
            )?,
            config: cfg.clone(),
        })
    }

    /// Loads `dir/config.json` and `dir/model.safetensors`, as HF saves a `CLIPModel`.
    pub fn load(dir: &Path, device: &Device) -> crate::Result<Self> {
        let config_path = dir.join("config.json");
        let text = std::fs::read(&config_path).map_err(crate::Error::io(&config_path))?;
        let config: Config =
            serde_json::from_slice(&text).map_err(|source| crate::Error::Json {
                path: config_path.clone(),
                source,
            })?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is mapped read-only and not modified while the model lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(|err| crate::Error::checkpoint(&weights, err))?;
        Self::new(&config, vb).map_err(|err| crate::Error::checkpoint(&weights, err))
    }

    /// The config it was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Unnormalized text embeddings (b, projection_dim) of token ids (b, seq_len).
    pub fn text_features(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.text_model
            .forward(input_ids)?
            .apply(&self.text_projection)
    }

    /// Unnormalized image embeddings (b, projection_dim) of normalized pixels.
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.vision_model
            .forward(pixel_values)?
            .apply(&self.visual_projection)
    }

    /// The learnable log inverse temperature (a scalar).
    pub fn logit_scale(&self) -> &Tensor {
        &self.logit_scale
    }
}

/// Rows divided by their l2 norm.
pub fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    let norm = xs.sqr()?.sum_keepdim(candle_core::D::Minus1)?.sqrt()?;
    xs.broadcast_div(&(norm + 1e-12)?)
}
