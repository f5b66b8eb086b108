//! CLIP's vision tower (ViT): patches, a class token, a transformer, and the class
//! token's final state as the pooled output (`vision_model.*` in HF checkpoints).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::VisionConfig;
use super::transformer::{Encoder, LayerNorm};

#[derive(Debug, Clone)]
pub(super) struct VisionTransformer {
    /// (hidden, 3, patch, patch), applied as one matrix product over flattened patches.
    patch_embedding: Tensor,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    patch_size: usize,
    num_channels: usize,
}

impl VisionTransformer {
    pub(super) fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let embeddings = vb.pp("embeddings");
        let hidden = cfg.hidden_size;
        let patches = (cfg.image_size / cfg.patch_size).pow(2);
        let fan_in = cfg.num_channels * cfg.patch_size * cfg.patch_size;
        let randn = |stdev: f64| Init::Randn { mean: 0.0, stdev };
        Ok(Self {
            patch_embedding: embeddings.pp("patch_embedding").get_with_hints(
                (hidden, cfg.num_channels, cfg.patch_size, cfg.patch_size),
                "weight",
                randn((fan_in as f64).powf(-0.5)),
            )?,
            class_embedding: embeddings.get_with_hints(hidden, "class_embedding", randn(0.02))?,
            position_embedding: embeddings.pp("position_embedding").get_with_hints(
                (patches + 1, hidden),
                "weight",
                randn(0.02),
            )?,
            // "pre_layrnorm" is the checkpoint's spelling.
            pre_layrnorm: LayerNorm::new(hidden, cfg.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            encoder: Encoder::new(&cfg.encoder_shape(), vb.pp("encoder"))?,
            post_layernorm: LayerNorm::new(hidden, cfg.layer_norm_eps, vb.pp("post_layernorm"))?,
            patch_size: cfg.patch_size,
            num_channels: cfg.num_channels,
        })
    }
}

impl Module for VisionTransformer {
    /// Pooled outputs (b, hidden) of normalized pixels (b, 3, size, size).
    fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (b_sz, channels, height, width) = pixel_values.dims4()?;
        let p = self.patch_size;
        if channels != self.num_channels || height % p != 0 || width % p != 0 {
            candle_core::bail!(
                "pixel_values of shape {:?} do not fit {} channels in {p}x{p} patches",
                pixel_values.dims(),
                self.num_channels
            );
        }
        let (rows, cols) = (height / p, width / p);
        let hidden = self.class_embedding.dim(0)?;
        // A stride-p convolution with a p×p kernel is a product over flattened patches:
        // (b, c, rows, p, cols, p) -> (b, rows, cols, c, p, p) -> (b, rows*cols, c*p*p)
        let patches = pixel_values
            .reshape((b_sz, channels, rows, p, cols, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b_sz, rows * cols, channels * p * p))?;
        // (hidden, c*p*p)ᵀ
        let kernel = self
            .patch_embedding
            .reshape((hidden, channels * p * p))?
            .t()?;
        let embedded = patches.broadcast_matmul(&kernel)?;
        // (b, 1 + rows*cols, hidden)
        let class = self
            .class_embedding
            .reshape((1, 1, hidden))?
            .repeat((b_sz, 1, 1))?;
        let xs = Tensor::cat(&[&class, &embedded], 1)?.broadcast_add(&self.position_embedding)?;
        let xs = self.encoder.forward(&xs.apply(&self.pre_layrnorm)?, None)?;
        // (b, hidden): the class token.
        xs.narrow(1, 0, 1)?.squeeze(1)?.apply(&self.post_layernorm)
    }
}
